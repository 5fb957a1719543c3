/* A thread with the smallest stack POSIX allows calls file functions on paths
 * outside the view: the pass-through path must not need big stack frames.
 * usage: tinystack PATH_OUTSIDE */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *target;
static int ok;

static void *work(void *arg) {
    (void)arg;
    struct stat st;
    for (int i = 0; i < 1000; i++) {
        if (stat(target, &st) != 0 || lstat(target, &st) != 0 || access(target, R_OK) != 0) return NULL;
        int fd = open(target, O_RDONLY);
        if (fd < 0) return NULL;
        close(fd);
    }
    ok = 1;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    target = argv[1];
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, PTHREAD_STACK_MIN);
    pthread_t t;
    if (pthread_create(&t, &a, work, NULL) != 0) return 3;
    pthread_join(t, NULL);
    puts(ok ? "ok" : "failed");
    return ok ? 0 : 1;
}
