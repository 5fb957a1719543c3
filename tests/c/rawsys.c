/* File-system calls made through syscall(2), as GNU patch does for
 * renameat2: they must see the view like their libc wrappers.
 * usage: rawsys DIR   (DIR holds only_m2/readme.txt; prints what it sees) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct how { unsigned long long flags, mode, resolve; };

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void show(const char *what, long fd) {
    char buf[256];
    if (fd < 0) { printf("%s: errno %d\n", what, errno); return; }
    ssize_t n = read((int)fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("%s: %s", what, buf);
    close((int)fd);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    char p[4096], q[4096];
    snprintf(p, sizeof p, "%s/only_m2/readme.txt", argv[1]);
    show("openat", syscall(SYS_openat, AT_FDCWD, p, O_RDONLY, 0));
    struct how h = {O_RDONLY, 0, 0};
    show("openat2", syscall(SYS_openat2, AT_FDCWD, p, &h, sizeof h));
    struct how h2 = {O_RDONLY, 0, 0x04 /* RESOLVE_NO_SYMLINKS */};
    show("openat2 no-symlinks", syscall(SYS_openat2, AT_FDCWD, p, &h2, sizeof h2));
    struct stat st;
    long r = syscall(SYS_newfstatat, AT_FDCWD, p, &st, 0);
    printf("newfstatat: %ld size %lld\n", r, r == 0 ? (long long)st.st_size : -1LL);
    /* getdents64 of a merged directory. */
    long dfd = syscall(SYS_openat, AT_FDCWD, argv[1], O_RDONLY | O_DIRECTORY, 0);
    char *names[256];
    int n = 0;
    char buf[4096];
    for (;;) {
        long got = syscall(SYS_getdents64, dfd, buf, sizeof buf);
        if (got <= 0) break;
        for (long off = 0; off < got;) {
            unsigned short reclen = *(unsigned short *)(buf + off + 16);
            const char *name = buf + off + 19;
            if (strcmp(name, ".") && strcmp(name, "..") && n < 256) names[n++] = strdup(name);
            off += reclen;
        }
    }
    close((int)dfd);
    qsort(names, n, sizeof *names, cmp);
    printf("getdents64:");
    for (int i = 0; i < n; i++) printf(" [%s]", names[i]);
    printf("\n");
    /* renameat2 inside the view, then the new name through the libc. */
    snprintf(q, sizeof q, "%s/only_m2/renamed.txt", argv[1]);
    r = syscall(SYS_renameat2, AT_FDCWD, p, AT_FDCWD, q, 0);
    printf("renameat2: %ld\n", r);
    printf("old %s, new %s\n", access(p, F_OK) == 0 ? "present" : "gone", access(q, F_OK) == 0 ? "present" : "gone");
    /* Other numbers pass straight through, errno as syscall(2) sets it. */
    printf("getpid same: %d\n", syscall(SYS_getpid) == getpid());
    errno = 0;
    r = syscall(100000, 1, 2, 3, 4, 5, 6);
    printf("bad number: %ld errno %s\n", r, errno == ENOSYS ? "ENOSYS" : "other");
    return 0;
}
