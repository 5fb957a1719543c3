/* Watches a merged directory and a file of the view with inotify, makes
 * changes there itself, and prints each event with the watch it came from:
 * `inotify_view DIR FILE`. The descriptor is non-blocking: poll() (with a
 * timeout only as a hang guard) tells when events are there. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

static int fd, wd, wd2;

static void names(unsigned m, char *out) {
    static const struct { unsigned bit; const char *name; } bits[] = {
        {IN_CREATE, "CREATE"}, {IN_DELETE, "DELETE"}, {IN_MOVED_FROM, "MOVED_FROM"},
        {IN_MOVED_TO, "MOVED_TO"}, {IN_MODIFY, "MODIFY"}, {IN_DELETE_SELF, "DELETE_SELF"},
        {IN_IGNORED, "IGNORED"}, {IN_ISDIR, "ISDIR"},
    };
    out[0] = 0;
    for (unsigned i = 0; i < sizeof bits / sizeof bits[0]; i++)
        if (m & bits[i].bit) {
            if (out[0]) strcat(out, ",");
            strcat(out, bits[i].name);
        }
}

/* Waits for events, then prints every event there is. */
static void drain(void) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 20000) != 1) {
        printf("timeout\n");
        return;
    }
    static unsigned last_cookie;
    char buf[4096] __attribute__((aligned(8)));
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno != EAGAIN) printf("read: %s\n", strerror(errno));
            return;
        }
        for (char *q = buf; q < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)q;
            char m[128];
            names(e->mask, m);
            const char *who = e->wd == wd ? "dir" : e->wd == wd2 ? "file" : "other";
            const char *cookie = "";
            if (e->mask & IN_MOVED_FROM) last_cookie = e->cookie;
            if (e->mask & IN_MOVED_TO) cookie = e->cookie == last_cookie && e->cookie ? " (same cookie)" : " (other cookie)";
            printf("%s %s %s%s\n", who, m, e->len ? e->name : "", cookie);
            q += sizeof *e + e->len;
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/c.txt", argv[1]);
    snprintf(b, sizeof b, "%s/d.txt", argv[1]);
    fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    wd = inotify_add_watch(fd, argv[1], IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF);
    if (wd < 0) {
        printf("add_watch %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int f = open(a, O_WRONLY | O_CREAT | O_EXCL, 0644);
    close(f);
    drain();
    rename(a, b);
    drain();
    unlink(b);
    drain();
    wd2 = inotify_add_watch(fd, argv[2], IN_MODIFY);
    if (wd2 < 0 || wd2 == wd) {
        printf("add_watch %s: %d %s\n", argv[2], wd2, strerror(errno));
        return 1;
    }
    f = open(argv[2], O_WRONLY | O_APPEND);
    write(f, "more\n", 5);
    close(f);
    drain();
    int r0 = inotify_rm_watch(fd, wd);
    printf("rm_watch %d\n", r0);
    drain();
    /* Nothing more: no stray event of the physical watches behind it. */
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    printf("then %zd %s\n", n, n < 0 ? strerror(errno) : "");
    int r = inotify_rm_watch(fd, wd);
    printf("rm_watch again %d %s\n", r, strerror(errno));
    return 0;
}
