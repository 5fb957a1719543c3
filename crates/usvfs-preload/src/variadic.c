/* Variadic libc entry points, forwarded to the Rust hooks with fixed arguments. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

int usvfs_open(const char *path, int flags, unsigned mode);
int usvfs_openat(int dirfd, const char *path, int flags, unsigned mode);
int usvfs_execve(const char *path, char *const argv[], char *const envp[]);
int usvfs_execvpe(const char *file, char *const argv[], char *const envp[]);
extern char **environ;

static int wants_mode(int flags) {
    return (flags & O_CREAT) || ((flags & O_TMPFILE) == O_TMPFILE);
}

#define MODE_ARG(flags, mode)                 \
    unsigned mode = 0;                        \
    if (wants_mode(flags)) {                  \
        va_list ap;                           \
        va_start(ap, flags);                  \
        mode = va_arg(ap, unsigned);          \
        va_end(ap);                           \
    }

int open(const char *path, int flags, ...) { MODE_ARG(flags, mode) return usvfs_open(path, flags, mode); }
int open64(const char *path, int flags, ...) { MODE_ARG(flags, mode) return usvfs_open(path, flags, mode); }
int openat(int dirfd, const char *path, int flags, ...) { MODE_ARG(flags, mode) return usvfs_openat(dirfd, path, flags, mode); }
int openat64(int dirfd, const char *path, int flags, ...) { MODE_ARG(flags, mode) return usvfs_openat(dirfd, path, flags, mode); }
/* Fortified variants: no mode argument by contract. */
int __open_2(const char *path, int flags) { return usvfs_open(path, flags, 0); }
int __open64_2(const char *path, int flags) { return usvfs_open(path, flags, 0); }
int __openat_2(int dirfd, const char *path, int flags) { return usvfs_openat(dirfd, path, flags, 0); }
int __openat64_2(int dirfd, const char *path, int flags) { return usvfs_openat(dirfd, path, flags, 0); }

/* execl family: collect the NULL-terminated argument list on the stack. */
#define COLLECT_ARGS(first, last_named)                          \
    va_list ap;                                                  \
    size_t argc = 1;                                             \
    va_start(ap, last_named);                                    \
    while (va_arg(ap, char *) != NULL) argc++;                   \
    va_end(ap);                                                  \
    char **argv = alloca((argc + 1) * sizeof(char *));           \
    argv[0] = (char *)(first);                                   \
    va_start(ap, last_named);                                    \
    for (size_t i = 1; i <= argc; i++) argv[i] = va_arg(ap, char *);

int execl(const char *path, const char *arg, ...) {
    COLLECT_ARGS(arg, arg)
    va_end(ap);
    return usvfs_execve(path, argv, environ);
}

int execlp(const char *file, const char *arg, ...) {
    COLLECT_ARGS(arg, arg)
    va_end(ap);
    return usvfs_execvpe(file, argv, environ);
}

int execle(const char *path, const char *arg, ...) {
    COLLECT_ARGS(arg, arg)
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return usvfs_execve(path, argv, envp);
}

/* fcntl: the third argument is an int or a pointer; pass it on as a pointer-sized word. */
int usvfs_fcntl(int fd, int cmd, void *arg);
int fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return usvfs_fcntl(fd, cmd, arg);
}
int fcntl64(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return usvfs_fcntl(fd, cmd, arg);
}
