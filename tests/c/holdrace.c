// One thread keeps exec'ing a program of the view that fails (EACCES: a
// directory) while the main thread forks: prints how many children found the
// instance hold (descriptors 860-879) open across exec.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static atomic_int stop;

static void *execer(void *dir) {
    char *argv[] = {dir, NULL};
    while (!stop) execve(dir, argv, environ);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pthread_t t;
    pthread_create(&t, NULL, execer, argv[1]);
    int open_across = 0;
    for (int i = 0; i < 600; i++) {
        pid_t p = fork();
        if (p == 0) {
            for (int fd = 860; fd < 880; fd++)
                if (fcntl(fd, F_GETFD) == 0) _exit(1);
            _exit(0);
        }
        int st;
        waitpid(p, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 1) open_across++;
    }
    stop = 1;
    pthread_join(t, NULL);
    printf("%d\n", open_across);
    return 0;
}
