/* A thread with the smallest stack POSIX allows calls file functions on paths
 * outside the view and inside it: hooks must not need big stack frames.
 * usage: tinystack FILE [FILE...]   (files to stat/open; their directories are listed) */
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

int main(int argc, char **argv) {
    if (argc < 2) return 2;
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
