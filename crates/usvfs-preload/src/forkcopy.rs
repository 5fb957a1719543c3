//! Our code stays mapped in a forked child.
//!
//! `fork` copies the page-table entries of a mapping only when it has
//! private (copied-on-write) pages; for plain file-backed code it copies
//! none, and the child faults in again every page of this library it runs
//! (its exec hook first of all): about a dozen faults per `fork` + `exec`,
//! more than the hook's own work. One copied-on-write page in our code
//! mapping changes that: from then on `fork` hands the child the parent's
//! entries for the whole mapping. Only our own code: doing the same to the
//! C library's and the loader's was measured slower, since each entry
//! `fork` copies takes a reference on a page every process shares, and the
//! `exec` right after drops them again.
//!
//! The page is made private by writing one byte of our code back unchanged
//! through `/proc/self/mem`, which writes through the protection (as a
//! debugger's breakpoint does) without ever making the code unexecutable for
//! the other threads. Done once per process, before its first `fork` (a
//! process that never forks pays nothing); a kernel that refuses the write
//! only leaves things as they were.

use std::sync::atomic::{AtomicBool, Ordering};

static DONE: AtomicBool = AtomicBool::new(false);

/// Before a `fork` (`pthread_atfork`'s prepare handler): raw system calls
/// only, async-signal-safe like `fork` itself.
pub extern "C" fn before_fork() {
    if DONE.swap(true, Ordering::Relaxed) {
        return;
    }
    let saved = crate::guard::errno();
    let at = before_fork as *const () as usize;
    // SAFETY: reads one byte of this function's own code, mapped readable.
    let byte = unsafe { std::ptr::read_volatile(at as *const u8) };
    // SAFETY: openat/pwrite64/close with a literal C string, a local byte and
    // our own descriptor. The write puts back the byte just read.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/proc/self/mem".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC,
        ) as libc::c_int;
        if fd >= 0 {
            libc::syscall(libc::SYS_pwrite64, fd, &byte as *const u8, 1usize, at);
            libc::syscall(libc::SYS_close, fd);
        }
    }
    crate::guard::set_errno(saved);
}
