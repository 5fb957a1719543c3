/* A 32-bit game in miniature: lists its data folder, reads a mod's file and
 * writes a new one, with the plain (non-large-file) calls an old 32-bit
 * program makes.
 *
 * usage: game32 DIR FILE_TO_READ FILE_TO_CREATE
 * prints: the names in DIR (one a line, "." and ".." left out), "--", the
 * file's content, "--", and "created" once the new file is written. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DIR FILE_TO_READ FILE_TO_CREATE\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        fprintf(stderr, "opendir %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            puts(e->d_name);
    }
    if (errno != 0) {
        fprintf(stderr, "readdir %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    closedir(d);
    puts("--");
    FILE *f = fopen(argv[2], "r");
    if (!f) {
        fprintf(stderr, "fopen %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stdout);
    fclose(f);
    puts("--");
    FILE *out = fopen(argv[3], "w");
    if (!out || fputs("written by a 32-bit program\n", out) == EOF || fclose(out) != 0) {
        fprintf(stderr, "write %s: %s\n", argv[3], strerror(errno));
        return 1;
    }
    puts("created");
    return 0;
}
