// Prints the resident size (KiB) of the preload library's code mapping in a
// forked child, read before the child runs any of it, then the parent's.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Raw system calls only: nothing here runs the library's hooks.
static long code_rss(void) {
    static char buf[1 << 20];
    int fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/smaps", O_RDONLY);
    if (fd < 0) return -1;
    long n = 0, r;
    while ((r = syscall(SYS_read, fd, buf + n, sizeof buf - 1 - n)) > 0) n += r;
    syscall(SYS_close, fd);
    buf[n] = 0;
    long total = 0;
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        // A mapping's header: "start-end perms offset dev inode path".
        if (strstr(line, " r-xp ") && strstr(line, "libusvfs_preload")) {
            for (char *l = next; l && *l;) {
                char *nn = strchr(l, '\n');
                if (nn) *nn = 0;
                long kb;
                if (sscanf(l, "Rss: %ld kB", &kb) == 1) { total += kb; if (nn) *nn = '\n'; break; }
                if (nn) *nn = '\n';
                l = nn ? nn + 1 : NULL;
            }
        }
        line = next;
    }
    return total;
}

int main(int argc, char **argv) {
    struct stat st;
    // Run a good part of the library in the parent first.
    for (int i = 1; i < argc; i++) stat(argv[i], &st);
    pid_t pid = fork();
    if (pid == 0) {
        long kb = code_rss();
        char out[64];
        int len = snprintf(out, sizeof out, "child %ld\n", kb);
        syscall(SYS_write, 1, out, len);
        syscall(SYS_exit_group, 0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("parent %ld\n", code_rss());
    return 0;
}
