/* A thread with the smallest stack POSIX allows calls file functions on paths
 * outside the view and inside it: hooks must not need big stack frames.
 * usage: tinystack FILE [FILE...]   (files to stat/open; their directories are listed)
 *        tinystack -w DIR [DIR...]  (on a 16 KiB stack: create, rename, mkdir,
 *                                    unlink and rmdir in each DIR) */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libgen.h>
#include <string.h>

static char **targets;
static int ntargets, ok;

static void *work(void *arg) {
    (void)arg;
    struct stat st;
    for (int i = 0; i < 300; i++) {
        for (int k = 0; k < ntargets; k++) {
            const char *target = targets[k];
            if (stat(target, &st) != 0 || lstat(target, &st) != 0 || access(target, R_OK) != 0) return NULL;
            int fd = open(target, O_RDONLY);
            if (fd < 0) return NULL;
            close(fd);
            char dir[4096];
            strncpy(dir, target, sizeof dir - 1);
            dir[sizeof dir - 1] = 0;
            DIR *d = opendir(dirname(dir));
            if (!d) return NULL;
            while (readdir(d)) {}
            closedir(d);
        }
    }
    ok = 1;
    return NULL;
}

/* The write hooks: each leaves DIR as it found it. */
static void *writes(void *arg) {
    (void)arg;
    char a[512], b[512], d[512]; /* the stack is small */
    for (int i = 0; i < 50; i++) {
        for (int k = 0; k < ntargets; k++) {
            snprintf(a, sizeof a, "%s/tiny_new_%d.txt", targets[k], i);
            snprintf(b, sizeof b, "%s/tiny_renamed_%d.txt", targets[k], i);
            snprintf(d, sizeof d, "%s/tiny_dir_%d", targets[k], i);
            int fd = open(a, O_CREAT | O_WRONLY | O_TRUNC, 0644);
            if (fd < 0 || write(fd, "x", 1) != 1) return NULL;
            close(fd);
            if (rename(a, b) != 0 || mkdir(d, 0755) != 0) return NULL;
            if (unlink(b) != 0 || rmdir(d) != 0) return NULL;
            if (access(b, F_OK) == 0 || access(d, F_OK) == 0) return NULL;
        }
    }
    ok = 1;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (strcmp(argv[1], "-w") == 0) {
        if (argc < 3) return 2;
        targets = argv + 2;
        ntargets = argc - 2;
        pthread_attr_t a;
        pthread_attr_init(&a);
        if (pthread_attr_setstacksize(&a, 16384) != 0) return 4;
        pthread_t t;
        if (pthread_create(&t, &a, writes, NULL) != 0) return 3;
        pthread_join(t, NULL);
        puts(ok ? "ok" : "failed");
        return ok ? 0 : 1;
    }
    targets = argv + 1;
    ntargets = argc - 1;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, PTHREAD_STACK_MIN);
    pthread_t t;
    if (pthread_create(&t, &a, work, NULL) != 0) return 3;
    pthread_join(t, NULL);
    puts(ok ? "ok" : "failed");
    return ok ? 0 : 1;
}
