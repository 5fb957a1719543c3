/* 8 threads stat/open/read/readdir virtual paths while another thread forks
 * and execs children that read through the view too. Every result is checked;
 * exit status 0 means no crash and no wrong answer.
 * usage: stress DIR FILE EXPECTED_CONTENT EXPECTED_ENTRIES ITERATIONS */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dir, *file, *expected;
static int entries, iterations;
static atomic_int failures;

static void fail(const char *what) {
    atomic_fetch_add(&failures, 1);
    fprintf(stderr, "FAIL: %s\n", what);
}

static void *worker(void *arg) {
    (void)arg;
    char buf[256];
    for (int i = 0; i < iterations; i++) {
        struct stat st;
        if (stat(file, &st) != 0 || st.st_size != (off_t)strlen(expected)) fail("stat");
        int fd = open(file, O_RDONLY);
        if (fd < 0) { fail("open"); continue; }
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n != (ssize_t)strlen(expected) || memcmp(buf, expected, n) != 0) fail("read");
        DIR *d = opendir(dir);
        if (!d) { fail("opendir"); continue; }
        int count = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) count++;
        closedir(d);
        if (count != entries) fail("readdir");
    }
    return NULL;
}

static void *spawner(void *arg) {
    (void)arg;
    for (int i = 0; i < iterations / 10 + 1; i++) {
        int p[2];
        if (pipe(p) != 0) { fail("pipe"); continue; }
        pid_t pid = (i % 2) ? vfork() : fork();
        if (pid == 0) {
            dup2(p[1], 1);
            close(p[0]);
            close(p[1]);
            execl("/bin/cat", "cat", file, (char *)NULL);
            _exit(127);
        }
        close(p[1]);
        char buf[256];
        ssize_t n = 0, r;
        while ((r = read(p[0], buf + n, sizeof buf - 1 - n)) > 0) n += r;
        close(p[0]);
        int status;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("child status");
        if (n != (ssize_t)strlen(expected) || memcmp(buf, expected, n) != 0) fail("child output");
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6) return 2;
    dir = argv[1], file = argv[2], expected = argv[3];
    entries = atoi(argv[4]), iterations = atoi(argv[5]);
    pthread_t t[9];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, worker, NULL);
    pthread_create(&t[8], NULL, spawner, NULL);
    for (int i = 0; i < 9; i++) pthread_join(t[i], NULL);
    printf("failures=%d\n", failures);
    return failures ? 1 : 0;
}
