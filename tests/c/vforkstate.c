/* A vfork child shares its parent's memory: its chdir and close must leave
 * the parent's view state (logical working directory, descriptor table)
 * as it was. usage: vforkstate DIR_IN_VIEW SUBDIR_ONLY_IN_A_MOD */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *when, int fd) {
    char cwd[4096], link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    target[n > 0 ? n : 0] = 0;
    printf("%s: cwd %s fd %s\n", when, getcwd(cwd, sizeof cwd) ? cwd : "?", target);
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int fd = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (fd < 0) return 3;
    report("before", fd);
    pid_t pid = vfork();
    if (pid == 0) {
        /* The child moves into a directory of the view and reuses the
         * descriptor number for a file outside it. */
        if (chdir(argv[2]) != 0) _exit(10);
        close(fd);
        if (open("/etc/hostname", O_RDONLY) != fd) _exit(11);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf("child %d\n", WEXITSTATUS(status));
    report("after", fd);
    return 0;
}
