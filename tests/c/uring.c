// link: -luring
/* Reads a file and creates another with io_uring only (IORING_OP_OPENAT,
 * READ, WRITE, CLOSE): no open/read/write system call touches them, so only
 * an engine below the system calls (the mount engine) can show the view.
 * usage: uring READ_PATH CREATE_PATH; prints what it read.
 * Exit 77 when the kernel refuses io_uring (io_uring_disabled, seccomp). */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct io_uring ring;

/* Submits the prepared request and returns its result (-errno on failure). */
static int complete(void) {
    struct io_uring_cqe *cqe;
    int r = io_uring_submit(&ring);
    if (r < 0) return r;
    r = io_uring_wait_cqe(&ring, &cqe);
    if (r < 0) return r;
    r = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    return r;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: uring READ_PATH CREATE_PATH\n");
        return 2;
    }
    int r = io_uring_queue_init(8, &ring, 0);
    if (r < 0) {
        fprintf(stderr, "io_uring unavailable: %s\n", strerror(-r));
        return 77;
    }
    io_uring_prep_openat(io_uring_get_sqe(&ring), AT_FDCWD, argv[1], O_RDONLY, 0);
    int fd = complete();
    if (fd < 0) {
        fprintf(stderr, "openat %s: %s\n", argv[1], strerror(-fd));
        return 1;
    }
    char buf[4096];
    io_uring_prep_read(io_uring_get_sqe(&ring), fd, buf, sizeof buf, 0);
    int n = complete();
    if (n < 0) {
        fprintf(stderr, "read %s: %s\n", argv[1], strerror(-n));
        return 1;
    }
    fwrite(buf, 1, n, stdout);
    io_uring_prep_close(io_uring_get_sqe(&ring), fd);
    if ((r = complete()) < 0) {
        fprintf(stderr, "close: %s\n", strerror(-r));
        return 1;
    }
    io_uring_prep_openat(io_uring_get_sqe(&ring), AT_FDCWD, argv[2], O_WRONLY | O_CREAT | O_EXCL, 0644);
    fd = complete();
    if (fd < 0) {
        fprintf(stderr, "openat %s: %s\n", argv[2], strerror(-fd));
        return 1;
    }
    static const char text[] = "written by io_uring\n";
    io_uring_prep_write(io_uring_get_sqe(&ring), fd, text, sizeof text - 1, 0);
    if ((r = complete()) != (int)(sizeof text - 1)) {
        fprintf(stderr, "write %s: %s\n", argv[2], r < 0 ? strerror(-r) : "short write");
        return 1;
    }
    io_uring_prep_close(io_uring_get_sqe(&ring), fd);
    if ((r = complete()) < 0) {
        fprintf(stderr, "close: %s\n", strerror(-r));
        return 1;
    }
    io_uring_queue_exit(&ring);
    return 0;
}
