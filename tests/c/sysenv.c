/* system() and popen() after the program scrubbed the view's variables: the
 * shell must still join the view, and the program's own environment must
 * stay as the program left it. usage: sysenv FILE_IN_VIEW */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    unsetenv("LD_PRELOAD");
    unsetenv("USVFS_INSTANCE_DIR");
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "cat '%s'; echo \"[$0]\"", argv[1]);
    fflush(stdout);
    int r = system(cmd);
    printf("system %d\n", r);
    FILE *p = popen(cmd, "r");
    char buf[256];
    size_t n = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
    buf[n] = 0;
    printf("popen %s", buf);
    printf("pclose %d\n", p ? pclose(p) : -1);
    printf("parent LD_PRELOAD %s, USVFS_INSTANCE_DIR %s\n", getenv("LD_PRELOAD") ? "set" : "unset",
           getenv("USVFS_INSTANCE_DIR") ? "set" : "unset");
    return 0;
}
