/* Descriptors the view did not see opened: received over a unix socket
 * (SCM_RIGHTS, as Wine's server sends them), opened by a raw system call, or
 * a recorded one closed behind the library's back and reused.
 *
 *   fdorigin recv DIR [FILE]   a child opens DIR and sends the descriptor;
 *                              the parent fchdir()s into it, lists ".",
 *                              prints getcwd and /proc/self/fd/N, reads FILE
 *   fdorigin raw DIR [FILE]    DIR opened by libc's own syscall(SYS_openat): list it
 *                              (fdopendir) and read FILE relative to it
 *   fdorigin stale VDIR PDIR FILE
 *                              open VDIR through libc, close it by a raw
 *                              syscall, open PDIR by a raw syscall (same
 *                              number): FILE is read relative to PDIR
 *   fdorigin open DIR [FILE]   DIR opened through libc: list it, read FILE
 * Names are printed sorted, one per line. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A system call no hook sees: the preload library routes syscall() through
 * its hooks too, so take libc's own. */
static long raw_syscall(long nr, long a, long b, long c) {
    static long (*real)(long, ...);
    if (!real) {
        void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
        real = (long (*)(long, ...))dlsym(libc, "syscall");
    }
    return real(nr, a, b, c);
}

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

static void list(DIR *d) {
    char *names[4096];
    int n = 0;
    struct dirent *e;
    if (!d) { perror("opendir"); exit(1); }
    while ((e = readdir(d)) && n < 4096)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            names[n++] = strdup(e->d_name);
    qsort(names, n, sizeof *names, cmp);
    for (int i = 0; i < n; i++) printf("%s\n", names[i]);
    closedir(d);
}

static void cat_at(int dirfd, const char *file) {
    char buf[4096];
    int f = openat(dirfd, file, O_RDONLY);
    if (f < 0) { printf("openat %s: failed\n", file); return; }
    ssize_t n = read(f, buf, sizeof buf);
    if (n > 0) fwrite(buf, 1, n, stdout);
    close(f);
}

static int recv_dir(const char *dir) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) { perror("socketpair"); exit(1); }
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY);
        if (fd < 0) { perror("child open"); _exit(1); }
        char c = 'x', ctl[CMSG_SPACE(sizeof(int))] = {0};
        struct iovec iov = {&c, 1};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(h), &fd, sizeof fd);
        _exit(sendmsg(sv[1], &m, 0) == 1 ? 0 : 1);
    }
    char c, ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&c, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    if (recvmsg(sv[0], &m, 0) != 1) { perror("recvmsg"); exit(1); }
    int st;
    waitpid(pid, &st, 0);
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *mode = argv[1], *dir = argv[2], *file = argc > 3 ? argv[3] : NULL;
    if (!strcmp(mode, "recv")) {
        int fd = recv_dir(dir);
        char proc[64], link[4096] = {0}, cwd[4096];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (readlink(proc, link, sizeof link - 1) < 0) strcpy(link, "?");
        printf("fd: %s\n", link);
        if (fchdir(fd)) { perror("fchdir"); return 1; }
        printf("cwd: %s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
        list(opendir("."));
        if (file) cat_at(AT_FDCWD, file);
        if (file) cat_at(fd, file);
    } else if (!strcmp(mode, "raw") || !strcmp(mode, "open")) {
        int fd = !strcmp(mode, "raw") ? (int)raw_syscall(SYS_openat, AT_FDCWD, (long)dir, O_RDONLY | O_DIRECTORY)
                                      : open(dir, O_RDONLY | O_DIRECTORY);
        if (fd < 0) { perror("open"); return 1; }
        if (file) cat_at(fd, file);
        list(fdopendir(dup(fd)));
    } else if (!strcmp(mode, "stale") && argc > 4) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY);
        if (fd < 0) { perror("open"); return 1; }
        raw_syscall(SYS_close, fd, 0, 0);
        int fd2 = (int)raw_syscall(SYS_openat, AT_FDCWD, (long)file, O_RDONLY | O_DIRECTORY);
        if (fd2 != fd) { printf("descriptor not reused (%d, %d)\n", fd, fd2); return 1; }
        cat_at(fd2, argv[4]);
        list(fdopendir(fd2));
    } else {
        return 2;
    }
    return 0;
}
