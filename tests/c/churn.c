/* Churns the journal of the view: CYCLES times creates, writes and deletes
 * DIR/churn.txt (with a rename every 64th cycle), then creates DISTINCT new
 * files DIR/fresh/fN and a directory DIR/fresh_dir/dN/ for every 1000th.
 * Stops at the first failure, printing the call, errno and the cycle; with
 * --until-fail it creates DIR/fill/fN until a create fails and prints
 * "fail N ERRNO". Exit 0 when everything succeeded.
 * usage: churn DIR CYCLES DISTINCT [--until-fail] */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char *what, const char *path, long i) {
    fprintf(stderr, "FAIL: %s %s at %ld: %s\n", what, path, i, strerror(errno));
    return 1;
}

static int create(const char *p) {
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) return -1;
    if (write(fd, "x\n", 2) != 2) { close(fd); return -1; }
    return close(fd);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: churn DIR CYCLES DISTINCT [--until-fail]\n");
        return 2;
    }
    const char *dir = argv[1];
    long cycles = atol(argv[2]), distinct = atol(argv[3]);
    char p[4096], q[4096];
    if (argc > 4 && strcmp(argv[4], "--until-fail") == 0) {
        snprintf(p, sizeof p, "%s/fill", dir);
        if (mkdir(p, 0755) != 0) return fail("mkdir", p, 0);
        for (long i = 0;; i++) {
            snprintf(p, sizeof p, "%s/fill/f%ld", dir, i);
            if (create(p) != 0) {
                printf("fail %ld %d\n", i, errno);
                return 0;
            }
        }
    }
    snprintf(p, sizeof p, "%s/churn.txt", dir);
    snprintf(q, sizeof q, "%s/churn_renamed.txt", dir);
    for (long i = 0; i < cycles; i++) {
        if (create(p) != 0) return fail("create", p, i);
        if (i % 64 == 0) {
            if (rename(p, q) != 0) return fail("rename", p, i);
            if (unlink(q) != 0) return fail("unlink", q, i);
        } else if (unlink(p) != 0) {
            return fail("unlink", p, i);
        }
    }
    if (access(p, F_OK) == 0 || errno != ENOENT) return fail("still there", p, cycles);
    snprintf(p, sizeof p, "%s/fresh", dir);
    if (mkdir(p, 0755) != 0) return fail("mkdir", p, 0);
    snprintf(p, sizeof p, "%s/fresh_dir", dir);
    if (mkdir(p, 0755) != 0) return fail("mkdir", p, 0);
    for (long i = 0; i < distinct; i++) {
        snprintf(p, sizeof p, "%s/fresh/f%ld", dir, i);
        if (create(p) != 0) return fail("create", p, i);
        if (i % 1000 == 0) {
            snprintf(p, sizeof p, "%s/fresh_dir/d%ld", dir, i);
            if (mkdir(p, 0755) != 0) return fail("mkdir", p, i);
        }
    }
    for (long i = 0; i < distinct; i++) {
        snprintf(p, sizeof p, "%s/fresh/f%ld", dir, i);
        if (access(p, F_OK) != 0) return fail("access", p, i);
    }
    return 0;
}
