/* Benchmark workloads, run the same way on every system.
 *   workload walk DIR      readdir every directory and lstat every entry
 *   workload read DIR      also open + read + close every regular file
 *   workload miss DIR N    N failed lookups (stat of names that do not exist)
 *   workload list DIR      list one directory once
 *   workload spawn N       fork + exec /bin/true N times
 *   workload spawnenv N [VAR=VALUE...]
 *                          the same, the child getting exactly that environment
 *                          (this process itself runs without it)
 *   workload walkmem DIR   walk, then report the usvfs index mapping's memory
 *   workload statloop DIR N  stat the same four missing names N times and also
 *                          report the user time per call (user_ns_per_call):
 *                          what a hook adds to a call, without the noise of the
 *                          kernel's share
 * Prints a checksum line (entries, bytes) so the systems can be compared, and
 * the time the work itself took (elapsed_ns), process start excluded. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Rss and Pss (kB) of the mapping of the usvfs index in this process. */
static void index_memory(void) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[4096];
    int in_index = 0;
    long rss = 0, pss = 0, shared = 0, size = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx", &a, &b) == 2 && strchr(line, '/')) {
            in_index = strstr(line, "/usvfs/") && strstr(line, "/index\n");
            continue;
        }
        if (!in_index) continue;
        long v;
        if (sscanf(line, "Rss: %ld kB", &v) == 1) rss += v;
        else if (sscanf(line, "Pss: %ld kB", &v) == 1) pss += v;
        else if (sscanf(line, "Shared_Clean: %ld kB", &v) == 1) shared += v;
        else if (sscanf(line, "Size: %ld kB", &v) == 1) size += v;
    }
    if (f) fclose(f);
    printf("index_size_kb=%ld index_rss_kb=%ld index_pss_kb=%ld index_shared_kb=%ld\n", size, rss, pss, shared);
}
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
    long long t0 = now_ns();
    if (!strcmp(argv[1], "walk") || !strcmp(argv[1], "read") || !strcmp(argv[1], "walkmem")) {
        do_read = !strcmp(argv[1], "read");
        walk(path, strlen(path));
        if (!strcmp(argv[1], "walkmem")) index_memory();
    } else if (!strcmp(argv[1], "spawn") || !strcmp(argv[1], "spawnenv")) {
        int n = atoi(argv[2]);
        char *child_argv[] = {"true", NULL};
        char **child_env = !strcmp(argv[1], "spawnenv") ? argv + 3 : environ;
        for (int i = 0; i < n; i++) {
            pid_t p = fork();
            if (p == 0) {
                execve("/bin/true", child_argv, child_env);
                _exit(127);
            }
            int st;
            waitpid(p, &st, 0);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { fprintf(stderr, "child failed\n"); return 1; }
            entries++;
        }
    } else if (!strcmp(argv[1], "miss")) {
        int n = argc > 3 ? atoi(argv[3]) : 10000;
        struct stat st;
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/d%d/missing_%d.dat", argv[2], i % 50, i);
            if (stat(path, &st) == 0) { fprintf(stderr, "unexpected: %s\n", path); return 1; }
            entries++;
        }
    } else if (!strcmp(argv[1], "statloop")) {
        int n = argc > 3 ? atoi(argv[3]) : 1000000;
        char names[4][8192];
        for (int k = 0; k < 4; k++) snprintf(names[k], sizeof names[k], "%s/d%d/missing.dat", argv[2], k);
        struct stat st;
        struct rusage r0, r1;
        getrusage(RUSAGE_SELF, &r0);
        for (int i = 0; i < n; i++) {
            if (stat(names[i & 3], &st) == 0) { fprintf(stderr, "unexpected: %s\n", names[i & 3]); return 1; }
            entries++;
        }
        getrusage(RUSAGE_SELF, &r1);
        double user = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1e9 + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) * 1e3;
        printf("user_ns_per_call=%.0f\n", user / n);
    } else if (!strcmp(argv[1], "list")) {
        DIR *d = opendir(argv[2]);
        if (!d) { perror(argv[2]); return 1; }
        while (readdir(d)) entries++;
        closedir(d);
    } else {
        return 2;
    }
    long long t1 = now_ns();
    printf("entries=%lld bytes=%lld\n", entries, bytes);
    printf("elapsed_ns=%lld\n", t1 - t0);
    return 0;
}
