/* Reads files of the view before and after the program closes or replaces
 * every descriptor it did not open (as daemons and shells' exec paths do),
 * and before and after a layer's source directory is renamed away and made
 * again. Prints each file's first line; `fds` prints how many descriptors
 * the process holds beyond 0-2.
 *
 *   layerfd closeall FILE...     close(3..4095), then again
 *   layerfd closefrom FILE...    closefrom(3)
 *   layerfd closerange FILE...   close_range(3, ~0U, 0)
 *   layerfd dup2 FILE...         dup2(0, 10..1023) over the descriptors
 *   layerfd vfork FILE...        a vfork child reads them, then the parent
 *   layerfd replace SRC NEW FILE...  read, rename SRC to NEW, make SRC with
 *                                the same files holding "replaced", wait
 *                                $LAYERFD_SETTLE_MS, read
 *   layerfd vforkclose FILE...   50 vfork children close every descriptor
 *                                (as Python's subprocess does), read, then
 *                                name the high descriptors
 *   layerfd fds FILE...          read, then name the descriptors numbered
 *                                512-5119
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void show(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        printf("%s: lstat: %s\n", path, strerror(errno));
        return;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("%s: open: %s\n", path, strerror(errno));
        return;
    }
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) n = 0;
    buf[n] = 0;
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
    printf("%s\n", buf);
}

/* Each file read 5 times (the view opens a layer's descriptor once the
 * layer is used a few times), printed once. */
static void show_all(char **files, int n) {
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < n; i++) {
            struct stat st;
            char buf[64];
            int fd = open(files[i], O_RDONLY);
            if (lstat(files[i], &st) == 0 && fd >= 0 && read(fd, buf, sizeof buf) < 0) perror(files[i]);
            if (fd >= 0) close(fd);
        }
    }
    for (int i = 0; i < n; i++) show(files[i]);
    fflush(stdout);
}

/* What each descriptor numbered 512 to 5119 names (the ones the view keeps),
 * one per line, in descriptor order. */
static void high_fds(void) {
    for (int fd = 512; fd < 5120; fd++) {
        char link[64], target[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n < 0) continue;
        target[n] = 0;
        printf("high: %s\n", target);
    }
}

static void refill(const char *src, const char *old) {
    /* The same tree as `old`, every file holding "replaced". */
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && find . -type d -exec mkdir -p '%s/{}' \\; && "
             "find . -type f -exec sh -c 'echo replaced > \"$0/$1\"' '%s' {} \\;",
             old, src, src);
    if (system(cmd) != 0) {
        fprintf(stderr, "refill failed\n");
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "replace")) {
        if (argc < 5) return 2;
        show_all(argv + 4, argc - 4);
        if (rename(argv[2], argv[3]) != 0) { perror("rename"); return 1; }
        if (mkdir(argv[2], 0755) != 0) { perror("mkdir"); return 1; }
        refill(argv[2], argv[3]);
        const char *settle = getenv("LAYERFD_SETTLE_MS");
        if (settle) usleep(atoi(settle) * 1000);
        show_all(argv + 4, argc - 4);
        return 0;
    }
    char **files = argv + 2;
    int n = argc - 2;
    show_all(files, n);
    if (!strcmp(mode, "closeall")) {
        for (int fd = 3; fd < 4096; fd++) close(fd);
    } else if (!strcmp(mode, "closefrom")) {
        closefrom(3);
    } else if (!strcmp(mode, "closerange")) {
        if (close_range(3, ~0U, 0) != 0) { perror("close_range"); return 1; }
    } else if (!strcmp(mode, "dup2")) {
        /* 3-9 stay free for the reads (under a limit of 1024 every
         * other number is taken). */
        for (int fd = 10; fd < 1024; fd++) dup2(0, fd);
        show_all(files, n);
        for (int fd = 10; fd < 1024; fd++) close(fd);
    } else if (!strcmp(mode, "vfork")) {
        pid_t p = vfork();
        if (p == 0) {
            for (int i = 0; i < n; i++) {
                struct stat st;
                if (lstat(files[i], &st) != 0) _exit(1);
            }
            _exit(0);
        }
        int status;
        waitpid(p, &status, 0);
        printf("child: %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    } else if (!strcmp(mode, "vforkclose")) {
        for (int i = 0; i < 50; i++) {
            pid_t p = vfork();
            if (p == 0) {
                closefrom(3);
                _exit(0);
            }
            int status;
            waitpid(p, &status, 0);
        }
        show_all(files, n);
        high_fds();
        return 0;
    } else if (!strcmp(mode, "fds")) {
        high_fds();
        return 0;
    } else {
        return 2;
    }
    show_all(files, n);
    return 0;
}
