/* Benchmark workloads, run the same way in the view and on the merged copy.
 *   workload walk DIR     readdir every directory and lstat every entry
 *   workload read DIR     also open + read + close every regular file
 *   workload miss DIR N   N failed lookups (stat of names that do not exist)
 *   workload list DIR     list one directory once
 * Prints a checksum line (entries, bytes) so both sides can be compared. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long long entries, bytes;
static int do_read;
static char buf[65536];

static void walk(char *path, size_t len) {
    DIR *d = opendir(path);
    if (!d) { perror(path); exit(1); }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        size_t n = strlen(e->d_name);
        path[len] = '/';
        memcpy(path + len + 1, e->d_name, n + 1);
        struct stat st;
        if (lstat(path, &st) != 0) { perror(path); exit(1); }
        entries++;
        if (S_ISDIR(st.st_mode)) {
            walk(path, len + 1 + n);
        } else if (do_read && S_ISREG(st.st_mode)) {
            int fd = open(path, O_RDONLY);
            if (fd < 0) { perror(path); exit(1); }
            ssize_t r;
            while ((r = read(fd, buf, sizeof buf)) > 0) bytes += r;
            close(fd);
        }
        path[len] = 0;
    }
    closedir(d);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    static char path[8192];
    strcpy(path, argv[2]);
    if (!strcmp(argv[1], "walk") || !strcmp(argv[1], "read")) {
        do_read = !strcmp(argv[1], "read");
        walk(path, strlen(path));
    } else if (!strcmp(argv[1], "miss")) {
        int n = argc > 3 ? atoi(argv[3]) : 10000;
        struct stat st;
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/d%d/missing_%d.dat", argv[2], i % 50, i);
            if (stat(path, &st) == 0) { fprintf(stderr, "unexpected: %s\n", path); return 1; }
            entries++;
        }
    } else if (!strcmp(argv[1], "list")) {
        DIR *d = opendir(argv[2]);
        if (!d) { perror(argv[2]); return 1; }
        while (readdir(d)) entries++;
        closedir(d);
    } else {
        return 2;
    }
    printf("entries=%lld bytes=%lld\n", entries, bytes);
    return 0;
}
