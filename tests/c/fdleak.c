/* Calls that fail in the view must not leave descriptors behind: each is
 * repeated, and the process's open descriptors are counted after 20 rounds
 * and at the end (the first rounds may open the descriptors the view keeps
 * for good: one per layer it reads from often enough).
 * usage: fdleak DIR FILE   (a directory and a file of the view) */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int count_fds(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

static int filter_none(const struct dirent *e) { (void)e; return 0; }

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    const char *dir = argv[1], *file = argv[2];
    char missing[4096], below_file[4096], tmpl[8300], excl[4096];
    snprintf(missing, sizeof missing, "%s/no such dir", dir);
    snprintf(below_file, sizeof below_file, "%s/x", file);
    snprintf(excl, sizeof excl, "%s", file);
    int before = count_fds(), failures = 0, unexpected = 0;
    for (int i = 0; i < 200; i++) {
        if (i == 20) before = count_fds();
        struct dirent **list;
        int fd;
        DIR *d;
        /* Each of these must fail. */
        if ((d = opendir(file))) { closedir(d); unexpected++; } else failures++;
        if ((d = opendir(missing))) { closedir(d); unexpected++; } else failures++;
        if ((fd = open(file, O_RDONLY | O_DIRECTORY)) >= 0) { close(fd); unexpected++; } else failures++;
        if ((fd = open(excl, O_CREAT | O_EXCL | O_WRONLY, 0644)) >= 0) { close(fd); unexpected++; } else failures++;
        if ((fd = open(below_file, O_CREAT | O_WRONLY, 0644)) >= 0) { close(fd); unexpected++; } else failures++;
        if ((fd = open(missing, O_RDONLY)) >= 0) { close(fd); unexpected++; } else failures++;
        if ((fd = open(dir, O_TMPFILE | O_RDWR, 0600)) >= 0) close(fd); /* may or may not be supported */
        if ((fd = open(missing, O_TMPFILE | O_RDWR, 0600)) >= 0) { close(fd); unexpected++; } else failures++;
        fd = open(file, O_RDONLY);
        if (fd >= 0) {
            if ((d = fdopendir(fd))) { closedir(d); unexpected++; } else failures++;
            close(fd);
        }
        int n = scandir(missing, &list, NULL, NULL);
        if (n >= 0) { unexpected++; } else failures++;
        n = scandirat(AT_FDCWD, file, &list, filter_none, alphasort);
        if (n >= 0) { free(list); unexpected++; } else failures++;
        FILE *f = fopen(missing, "r");
        if (f) { fclose(f); unexpected++; } else failures++;
        if ((f = fopen(below_file, "w"))) { fclose(f); unexpected++; } else failures++;
        snprintf(tmpl, sizeof tmpl, "%s/tmpXXXXXX", missing);
        if ((fd = mkstemp(tmpl)) >= 0) { close(fd); unexpected++; } else failures++;
        glob_t g;
        snprintf(tmpl, sizeof tmpl, "%s/*", missing);
        if (glob(tmpl, 0, NULL, &g) == 0) unexpected++; else failures++;
        globfree(&g);
    }
    int after = count_fds();
    printf("failures %d unexpected %d leaked %d\n", failures, unexpected, after - before);
    return 0;
}
