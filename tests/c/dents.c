/* Lists directories three more ways than walk.c: the getdents64 system-call
 * wrapper on a descriptor, readdir_r, and a stream rewound and re-read with
 * telldir/seekdir. Prints sorted "name type" lines per method.
 * usage: dents DIR... */
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* readdir_r is under test */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void emit(const char *how, const char *dir, char **names, int n) {
    qsort(names, n, sizeof *names, cmp);
    for (int i = 0; i < n; i++) {
        printf("%s %s/%s\n", how, dir, names[i]);
        free(names[i]);
    }
}

static char *entry(const char *name, int type) {
    char *s;
    if (asprintf(&s, "%s type=%d", name, type) < 0) exit(1);
    return s;
}

int main(int argc, char **argv) {
    for (int a = 1; a < argc; a++) {
        char *names[4096];
        int n = 0;
        int fd = open(argv[a], O_RDONLY | O_DIRECTORY);
        if (fd < 0) { perror(argv[a]); return 1; }
        /* Small: forces several calls. Aligned for the records. */
        union { struct dirent64 d; char b[512]; } u;
        char *buf = u.b;
        for (;;) {
            ssize_t got = getdents64(fd, buf, sizeof u.b);
            if (got < 0) { perror("getdents64"); return 1; }
            if (got == 0) break;
            for (ssize_t off = 0; off < got;) {
                struct dirent64 *d = (struct dirent64 *)(buf + off);
                if (n < 4096) names[n++] = entry(d->d_name, d->d_type);
                off += d->d_reclen;
            }
        }
        close(fd);
        emit("getdents64", argv[a], names, n);

        DIR *d = opendir(argv[a]);
        if (!d) { perror(argv[a]); return 1; }
        struct dirent64 e, *res;
        n = 0;
        long mark = -1;
        while (readdir64_r(d, &e, &res) == 0 && res) {
            if (n == 2) mark = telldir(d);
            if (n < 4096) names[n++] = entry(res->d_name, res->d_type);
        }
        emit("readdir_r", argv[a], names, n);
        /* Re-read from the third entry on, then from the start. */
        int after = 0, again = 0;
        if (mark >= 0) {
            seekdir(d, mark);
            while (readdir(d)) after++;
        }
        rewinddir(d);
        while (readdir(d)) again++;
        printf("seek %s after_mark=%d total=%d\n", argv[a], after, again);
        closedir(d);
    }
    return 0;
}
