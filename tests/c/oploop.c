/* Runs the file operations listed in OPS inside DIR, one per line, and
 * reports each one's result on stdout as "INDEX RC" (RC 0 or the errno),
 * written unbuffered right after the call, so a process killed at any
 * moment has reported exactly the operations that finished.
 *   c PATH DATA   create or truncate PATH and write DATA
 *   u PATH        unlink
 *   r OLD NEW     rename
 *   m PATH        mkdir
 *   d PATH        rmdir
 * usage: oploop DIR OPS [START]   (START: first line to run, default 0) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int create(const char *p, const char *data) {
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) return errno;
    size_t n = strlen(data);
    if (write(fd, data, n) != (ssize_t)n) {
        int e = errno;
        close(fd);
        return e ? e : EIO;
    }
    return close(fd) == 0 ? 0 : errno;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: oploop DIR OPS [START]\n");
        return 2;
    }
    long start = argc > 3 ? atol(argv[3]) : 0;
    FILE *ops = fopen(argv[2], "r");
    if (!ops) {
        perror(argv[2]);
        return 2;
    }
    if (chdir(argv[1]) != 0) {
        perror(argv[1]);
        return 2;
    }
    char line[8192], out[64];
    for (long i = 0; fgets(line, sizeof line, ops); i++) {
        if (i < start) continue;
        line[strcspn(line, "\n")] = 0;
        char *op = strtok(line, " ");
        char *a = strtok(NULL, " ");
        char *b = strtok(NULL, " ");
        if (!op || !a) continue;
        int rc = 0;
        switch (op[0]) {
        case 'c': rc = create(a, b ? b : ""); break;
        case 'u': rc = unlink(a) == 0 ? 0 : errno; break;
        case 'r': rc = b && rename(a, b) == 0 ? 0 : errno; break;
        case 'm': rc = mkdir(a, 0755) == 0 ? 0 : errno; break;
        case 'd': rc = rmdir(a) == 0 ? 0 : errno; break;
        default: continue;
        }
        int n = snprintf(out, sizeof out, "%ld %d\n", i, rc);
        if (write(1, out, n) != n) return 3;
    }
    return 0;
}
