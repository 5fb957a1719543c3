/* A thread with the smallest stack POSIX allows calls file functions on paths
 * outside the view and inside it: hooks must not need big stack frames.
 * usage: tinystack FILE [FILE...]   (files to stat/open; their directories are listed)
 *        tinystack -w DIR [DIR...]  (on a 16 KiB stack: create, rename, mkdir,
 *                                    unlink, rmdir, link, symlink, truncate,
 *                                    chmod, fopen, mkstemp, syscall(), chdir,
 *                                    fchdir, getcwd, realpath, scandir, nftw,
 *                                    glob, wordexp, getdents64 in each DIR,
 *                                    and posix_spawn/posix_spawnp) */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ftw.h>
#include <glob.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <wordexp.h>

extern char **environ;

static char **targets;
static int ntargets, ok;
static char home[4096];

static int walked(const char *p, const struct stat *s, int f, struct FTW *w) {
    (void)p, (void)s, (void)f, (void)w;
    return 0;
}

/* The other path hooks, reading and writing; 0 on success. */
static int more(const char *dir, char *a, char *b, size_t n) {
    snprintf(a, n, "%s/tiny_more", dir);
    snprintf(b, n, "%s/tiny_more_2", dir);
    FILE *f = fopen(a, "w");
    if (!f || fclose(f) != 0) return 1;
    if (truncate(a, 0) != 0 || chmod(a, 0600) != 0 || link(a, b) != 0 || unlink(b) != 0) return 2;
    if (symlink("tiny_more", b) != 0 || unlink(b) != 0) return 3;
    if (syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 0) != 0 || unlink(b) != 0) return 4;
    snprintf(a, n, "%s/tiny_tmpXXXXXX", dir);
    int fd = mkstemp(a);
    if (fd < 0 || close(fd) != 0 || unlink(a) != 0) return 5;
    char *r = realpath(dir, NULL);
    if (!r) return 6;
    free(r);
    if (chdir(dir) != 0 || !getcwd(a, n) || chdir(home) != 0) return 7;
    fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fchdir(fd) != 0 || chdir(home) != 0) return 8;
    if (syscall(SYS_getdents64, fd, a, n) <= 0 || close(fd) != 0) return 9;
    struct dirent **list;
    int k = scandir(dir, &list, NULL, alphasort);
    if (k <= 0) return 10;
    while (k--) free(list[k]);
    free(list);
    if (nftw(dir, walked, 4, FTW_PHYS) != 0) return 11;
    glob_t g;
    snprintf(a, n, "%s/*", dir);
    if (glob(a, 0, NULL, &g) != 0) return 12;
    globfree(&g);
    wordexp_t we;
    if (wordexp(a, &we, 0) != 0) return 13;
    wordfree(&we);
    char *args[] = {"true", NULL};
    pid_t pid;
    int st;
    if (posix_spawnp(&pid, "true", NULL, NULL, args, environ) != 0 || waitpid(pid, &st, 0) != pid || st != 0) return 14;
    if (posix_spawn(&pid, "/bin/true", NULL, NULL, args, environ) != 0 || waitpid(pid, &st, 0) != pid || st != 0) return 15;
    return 0;
}

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
            if (i % 10 == 0 && more(targets[k], a, b, sizeof a) != 0) return NULL;
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
        if (!getcwd(home, sizeof home)) return 5;
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
