/* A vfork child shares the parent's memory, thread-local storage included:
 * whatever state the engine touches while the child execs must be as the
 * parent left it. The child runs `true` through fexecve (or execve), then the
 * parent looks up a path that exists only in the view. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: vfork_exec fexecve|execve VIRTUAL_PATH\n");
        return 2;
    }
    char *args[] = {"true", NULL};
    int fd = open("/bin/true", O_RDONLY | O_CLOEXEC);
    pid_t pid = vfork();
    if (pid == 0) {
        if (strcmp(argv[1], "fexecve") == 0)
            fexecve(fd, args, environ);
        else
            execve("/bin/true", args, environ);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf("child %d, %s %s\n", WEXITSTATUS(status), argv[2],
           access(argv[2], F_OK) == 0 ? "visible" : "missing");
    return 0;
}
