/* Signal handlers see the view: a SIGALRM handler (interval timer) creates
 * files with open(O_CREAT) and checks access() on virtual paths while the
 * main loop spins on hooked calls (stat/open/close on virtual paths), so
 * most signals land inside a hook.
 *
 * usage: sighandler DIR N
 *   DIR: a destination of the view; N: handler invocations that act.
 * Prints "created=C create_fail=F access_fail=A errno_clobbered=E
 * main_wrong=W iters=I" and exits 0 when the run finished in time. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static size_t dirlen;
static int limit;
static volatile sig_atomic_t calls, created, create_fail, access_fail, errno_clobbered;
static char only_m2[4096];

/* dir + "/sig_" + n + ".txt", without stdio (async-signal-safe). */
static void name_of(char *out, int n) {
    char digits[16];
    int k = 0;
    memcpy(out, dir, dirlen);
    memcpy(out + dirlen, "/sig_", 5);
    char *p = out + dirlen + 5;
    do {
        digits[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    while (k)
        *p++ = digits[--k];
    memcpy(p, ".txt", 5);
}

static void on_alarm(int sig) {
    (void)sig;
    int saved = errno;
    int i = calls;
    if (i >= limit)
        return;
    calls = i + 1;
    char path[4200];
    name_of(path, i);
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) {
        created = created + 1;
        close(fd);
        if (access(path, F_OK) != 0)
            access_fail = access_fail + 1;
    } else {
        create_fail = create_fail + 1;
    }
    /* Only in mod m2: visible in the view alone. */
    if (access(only_m2, R_OK) != 0)
        access_fail = access_fail + 1;
    /* A successful hooked call leaves errno alone. */
    errno = 7777;
    if (access(only_m2, F_OK) != 0 || errno != 7777)
        errno_clobbered = errno_clobbered + 1;
    errno = saved;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    dir = argv[1];
    dirlen = strlen(dir);
    limit = atoi(argv[2]);
    if (dirlen > 4000)
        return 2;
    snprintf(only_m2, sizeof only_m2, "%s/only_m2/readme.txt", dir);
    char shared[4096], missing[4096];
    snprintf(shared, sizeof shared, "%s/shared.txt", dir);
    snprintf(missing, sizeof missing, "%s/no_such_file.txt", dir);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0)
        return 3;
    struct itimerval it = {{0, 200}, {0, 200}};
    if (setitimer(ITIMER_REAL, &it, NULL) != 0)
        return 3;

    long iters = 0, wrong = 0;
    double deadline = now() + 30.0;
    while (calls < limit && now() < deadline) {
        struct stat st;
        errno = 4242;
        /* The view's shared.txt is m3's "from m3\n" (8 bytes; base has 10). */
        if (stat(shared, &st) != 0 || st.st_size != 8 || errno != 4242)
            wrong++;
        int fd = open(only_m2, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            wrong++;
        else
            close(fd);
        if (stat(missing, &st) == 0 || errno != ENOENT)
            wrong++;
        iters++;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("created=%d create_fail=%d access_fail=%d errno_clobbered=%d main_wrong=%ld iters=%ld\n",
           (int)created, (int)create_fail, (int)access_fail, (int)errno_clobbered, wrong, iters);
    return calls >= limit ? 0 : 4;
}
