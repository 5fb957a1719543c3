//! This process's hold on its instance (see `InstanceDir::hold_quick`): a
//! shared lock kept through one descriptor, numbered high, that the program's
//! own closing of descriptors leaves alone, so the process stays counted
//! (and listed by `usvfs ps`) until it exits or execs.

use libc::{c_char, c_int, c_uint};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// The hold's descriptor (-1: none).
static HOLD: AtomicI32 = AtomicI32::new(-1);
/// Device and inode of the `procs` directory the hold is open on (0: not
/// known), so an exec checks its descriptor with one `fstat` and no path.
static HOLD_DEV: AtomicU64 = AtomicU64::new(0);
static HOLD_INO: AtomicU64 = AtomicU64::new(0);
/// Lowest number for the hold's descriptor, below the layer descriptors'.
const HOLD_BASE: c_int = 860;

/// Keeps `fd` as this process's hold, moved up to a high number when the
/// descriptor limit allows it; returns the number it keeps.
pub fn keep(fd: OwnedFd) -> c_int {
    let raw = fd.into_raw_fd();
    // SAFETY: fcntl and close on the descriptor we own; raw system calls.
    let high =
        unsafe { libc::syscall(libc::SYS_fcntl, raw, libc::F_DUPFD_CLOEXEC, HOLD_BASE) } as c_int;
    let kept = if high >= 0 {
        // SAFETY: the low copy is ours; the lock stays with the high one.
        unsafe { libc::syscall(libc::SYS_close, raw) };
        high
    } else {
        raw
    };
    if let Some(st) = fstat_dir(kept) {
        remember_dir(&st);
    }
    HOLD.store(kept, Ordering::Release);
    kept
}

fn remember_dir(st: &libc::stat) {
    HOLD_DEV.store(st.st_dev, Ordering::Relaxed);
    HOLD_INO.store(st.st_ino, Ordering::Relaxed);
}

/// Gives the hold up (at exit) for `InstanceDir::leave_quick`.
pub fn take() -> Option<OwnedFd> {
    let fd = HOLD.swap(-1, Ordering::AcqRel);
    // SAFETY: the descriptor is ours and no longer published.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fd` is the hold's descriptor: a program closing it keeps it open.
#[inline]
pub fn is_hold(fd: c_int) -> bool {
    fd >= 0 && fd == HOLD.load(Ordering::Relaxed)
}

/// The program is about to make `to` a copy of another descriptor (`dup2`,
/// `dup3`): if `to` is the hold's, the hold moves to another number first.
pub fn before_replacing(to: c_int) {
    // A vfork child replaces its own copy; the parent's hold stays put.
    if !is_hold(to) || crate::hooks::calls::in_vfork_child() {
        return;
    }
    // SAFETY: fcntl on our own descriptor; raw system call.
    let moved =
        unsafe { libc::syscall(libc::SYS_fcntl, to, libc::F_DUPFD_CLOEXEC, HOLD_BASE) } as c_int;
    // On failure the hold goes with the number the program takes over.
    HOLD.store(moved, Ordering::Release);
}

/// Runs `close_range(lo, hi, flags)` around the hold's descriptor, so closing
/// a range of descriptors leaves it open. Returns the first failure.
pub fn close_range_around(lo: c_uint, hi: c_uint, flags: c_int) -> c_int {
    let call = |a: c_uint, b: c_uint| -> c_int {
        // SAFETY: close_range takes three integers and touches no user memory.
        unsafe { libc::syscall(libc::SYS_close_range, a, b, flags) as c_int }
    };
    let h = HOLD.load(Ordering::Relaxed);
    let cloexec_only = flags & libc::CLOSE_RANGE_CLOEXEC as c_int != 0;
    if h < 0 || cloexec_only || !(lo..=hi).contains(&(h as c_uint)) {
        return call(lo, hi);
    }
    let h = h as c_uint;
    let below = if h > lo { call(lo, h - 1) } else { 0 };
    let above = if h < hi { call(h + 1, hi) } else { 0 };
    if below != 0 { below } else { above }
}

/// The hold to leave open across an exec into the view: its descriptor and
/// the `USVFS_HOLD` value naming it (`N:DEV:INO` of its `procs`
/// directory). `shared_table`: the exec clears close-on-exec in a descriptor
/// table other threads may fork from (a direct `execve`), so only a process
/// with no other thread passes it (a thread's fork child in between would
/// inherit it). In the exec path only, in the child about to exec.
pub fn for_exec(shared_table: bool) -> Option<(c_int, Vec<u8>)> {
    let fd = HOLD.load(Ordering::Relaxed);
    let st = fstat_dir(fd)?;
    // The number may name another directory now (a vfork child's `dup2`
    // over it leaves our hold in place): then there is none to pass.
    if HOLD_DEV.load(Ordering::Relaxed) != st.st_dev
        || HOLD_INO.load(Ordering::Relaxed) != st.st_ino
    {
        return None;
    }
    if shared_table && !single_threaded() {
        return None;
    }
    let spec = usvfs_view::launch_env::instance_fd_spec(fd, st.st_dev, st.st_ino);
    Some((fd, spec))
}

unsafe extern "C" {
    /// glibc's own record (since 2.32): true until the process first
    /// creates a thread, and never set again (not even in a forked child).
    static __libc_single_threaded: c_char;
}

/// This process has one thread. glibc's flag answers without a system call
/// for a process that never made a thread; else `/proc/self/task` links to
/// each thread's directory (a forked child of a threaded parent has one
/// again). Unknown counts as not. A thread made by a raw `clone` without
/// glibc escapes the flag, as it escapes glibc's own single-thread shortcuts.
fn single_threaded() -> bool {
    // SAFETY: a byte glibc defines; read only.
    if unsafe { std::ptr::read_volatile(&raw const __libc_single_threaded) } != 0 {
        return true;
    }
    rustix::fs::stat("/proc/self/task").is_ok_and(|s| s.st_nlink == 3)
}

/// Leaves the hold open (`open`) or closes it again (`!open`) at the next
/// exec. Raw system call: used between `vfork` and exec too, where the
/// descriptor table is the child's own.
pub fn set_inherited(fd: c_int, open: bool) {
    let flags = if open { 0 } else { libc::FD_CLOEXEC };
    // SAFETY: fcntl takes integers only; `fd` is our hold.
    unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFD, flags) };
}

/// After this process joined its instance (`joined`) or failed to: the hold
/// a parent left open across the exec (`USVFS_HOLD`), if it is still there.
/// It is closed when this process holds the instance itself or runs outside
/// it, else kept as this process's hold (close-on-exec again), so a joined
/// process holds the instance either way. A descriptor that is not that
/// `procs` directory is left alone.
pub fn settle_inherited(spec: Option<&[u8]>, joined: bool) {
    let Some((fd, dev, ino)) = spec.and_then(usvfs_view::launch_env::parse_instance_fd) else {
        return;
    };
    let ours = HOLD.load(Ordering::Relaxed);
    if fd == ours || !fstat_dir(fd).is_some_and(|s| s.st_dev == dev && s.st_ino == ino) {
        return;
    }
    if ours >= 0 || !joined {
        // SAFETY: the parent's hold, ours to close: this process holds the
        // instance through its own descriptor now, or is not in it.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    } else {
        set_inherited(fd, false);
        HOLD_DEV.store(dev, Ordering::Relaxed);
        HOLD_INO.store(ino, Ordering::Relaxed);
        HOLD.store(fd, Ordering::Release);
    }
}

/// `fstat` of `fd` when it is an open directory.
fn fstat_dir(fd: c_int) -> Option<libc::stat> {
    crate::sys::fstat(fd)
        .ok()
        .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}
