/* Threads close and reopen directory descriptors of the view while other
 * threads make *at calls relative to them. A call may fail (the number was
 * just closed, or now names another directory), but it must never crash or
 * open anything but the file it named in the directory it reached.
 * usage: fdrace DIR NAME CONTENT [DIR NAME CONTENT...] */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOTS 8
#define ROUNDS 4000

static int ndirs;
static char **dirs, **names, **contents;
static _Atomic int fds[SLOTS];
static _Atomic int bad, opened;

static void *closer(void *arg) {
    unsigned seed = (unsigned)(long)arg;
    for (int i = 0; i < ROUNDS; i++) {
        int s = rand_r(&seed) % SLOTS, d = rand_r(&seed) % ndirs;
        int fd = open(dirs[d], O_RDONLY | O_DIRECTORY);
        int old = atomic_exchange(&fds[s], fd * ndirs + d);
        if (old >= 0) close(old / ndirs);
    }
    return NULL;
}

static void *user(void *arg) {
    unsigned seed = (unsigned)(long)arg;
    char buf[256];
    for (int i = 0; i < ROUNDS * 2; i++) {
        int v = atomic_load(&fds[rand_r(&seed) % SLOTS]);
        if (v < 0) continue;
        int fd = v / ndirs, d = v % ndirs;
        struct stat st;
        fstatat(fd, names[d], &st, 0);
        int f = openat(fd, names[d], O_RDONLY);
        if (f < 0) continue;
        ssize_t n = read(f, buf, sizeof buf - 1);
        close(f);
        buf[n > 0 ? n : 0] = 0;
        atomic_fetch_add(&opened, 1);
        if (strcmp(buf, contents[d]) != 0) {
            fprintf(stderr, "%s in %s read %s\n", names[d], dirs[d], buf);
            atomic_store(&bad, 1);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4 || (argc - 1) % 3) return 2;
    ndirs = (argc - 1) / 3;
    dirs = malloc(ndirs * sizeof *dirs);
    names = malloc(ndirs * sizeof *names);
    contents = malloc(ndirs * sizeof *contents);
    for (int i = 0; i < ndirs; i++) {
        dirs[i] = argv[1 + 3 * i];
        names[i] = argv[2 + 3 * i];
        contents[i] = argv[3 + 3 * i];
    }
    for (int i = 0; i < SLOTS; i++) fds[i] = -1;
    pthread_t t[6];
    for (long i = 0; i < 6; i++) pthread_create(&t[i], NULL, i < 2 ? closer : user, (void *)(i + 1));
    for (int i = 0; i < 6; i++) pthread_join(t[i], NULL);
    printf("%s opened %d\n", atomic_load(&bad) ? "bad" : "ok", atomic_load(&opened) > 0);
    return atomic_load(&bad);
}
