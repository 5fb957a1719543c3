//! Descriptor bookkeeping: closing and duplicating keep the table exact.

#![allow(clippy::missing_safety_doc)]

use libc::{c_int, c_uint, ssize_t};

use super::inotify;
use crate::{fdtable, hold, layerfd, real};

/// # Safety
/// As `close(2)`: the caller gives up `fd` (no memory is involved).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if hold::is_hold(fd) {
        // Ours, not the program's: it stays open (the program closing every
        // descriptor it did not open must not unregister the process).
        return 0;
    }
    layerfd::forget(fd);
    fdtable::remove(fd);
    inotify::forget(fd);
    // SAFETY: close takes a plain descriptor number; a bad one yields EBADF.
    unsafe { real::close(fd) }
}

/// # Safety
/// None beyond `dup(2)`'s: any descriptor number is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: dup takes a plain descriptor number; a bad one yields EBADF.
    let r = unsafe { real::dup(fd) };
    if r >= 0 {
        fdtable::copy(fd, r);
    }
    r
}

/// # Safety
/// As `dup2(2)`: the caller gives up whatever `to` referred to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(fd: c_int, to: c_int) -> c_int {
    if fd != to {
        hold::before_replacing(to);
    }
    // SAFETY: plain descriptor numbers; bad ones yield EBADF.
    let r = unsafe { real::dup2(fd, to) };
    if r >= 0 && fd != to {
        layerfd::forget(to);
        inotify::forget(to);
        fdtable::copy(fd, to);
    }
    r
}

/// # Safety
/// As `dup3(2)`: the caller gives up whatever `to` referred to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(fd: c_int, to: c_int, flags: c_int) -> c_int {
    if fd != to {
        hold::before_replacing(to);
    }
    // SAFETY: plain descriptor numbers and flags; bad ones yield an errno.
    let r = unsafe { real::dup3(fd, to, flags) };
    if r >= 0 {
        layerfd::forget(to);
        inotify::forget(to);
        fdtable::copy(fd, to);
    }
    r
}

/// # Safety
/// As `close_range(2)`: the caller gives up the descriptors in `lo..=hi`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(lo: c_uint, hi: c_uint, flags: c_int) -> c_int {
    let r = hold::close_range_around(lo, hi, flags);
    if r == 0 && flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
        layerfd::forget_range(lo, hi);
        fdtable::remove_range(lo, hi);
        inotify::forget_range(lo, hi);
    }
    r
}

/// # Safety
/// As `closefrom(3)`: the caller gives up every descriptor from `lo` up.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closefrom(lo: c_int) {
    layerfd::forget_range(lo.max(0) as u32, u32::MAX);
    fdtable::remove_range(lo.max(0) as u32, u32::MAX);
    inotify::forget_range(lo.max(0) as u32, u32::MAX);
    hold::close_range_around(lo.max(0) as c_uint, c_uint::MAX, 0);
}

/// `fcntl` and `fcntl64` (variadic entry points in variadic.c): duplicates
/// made with F_DUPFD name the same virtual path.
///
/// # Safety
/// As `fcntl(2)`: `arg` is what `cmd` expects (an integer or a pointer to the
/// matching structure), as variadic.c passes it on.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usvfs_fcntl(fd: c_int, cmd: c_int, arg: *mut libc::c_void) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged (our contract).
    let r = unsafe { real::fcntl64(fd, cmd, arg) };
    if r >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
        fdtable::copy(fd, r);
    }
    r
}

/// Descriptors received over a unix socket (`SCM_RIGHTS`) come from another
/// process (Wine's server sends every file and directory it opens): whatever
/// the table knew about their numbers is stale, so they are classified from
/// their physical paths when first used relative to.
///
/// # Safety
/// `msg` must point to a `msghdr` filled in by a successful `recvmsg`.
unsafe fn forget_received(msg: *const libc::msghdr) {
    // SAFETY: per the contract, msg and its control buffer are valid; the
    // CMSG_* helpers stay within msg_controllen.
    unsafe {
        if (*msg).msg_control.is_null() || (*msg).msg_controllen == 0 {
            return;
        }
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<c_int>();
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<c_int>() {
                    fdtable::remove(data.add(i).read_unaligned());
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
}

/// # Safety
/// As `recvmsg(2)`: `msg` points to a valid `msghdr` with writable buffers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, passed on unchanged.
    let r = unsafe { real::recvmsg(fd, msg, flags) };
    if r >= 0 && !msg.is_null() {
        // SAFETY: recvmsg succeeded and filled msg in.
        unsafe { forget_received(msg) };
    }
    r
}

/// # Safety
/// As `recvmmsg(2)`: `msgs` points to `n` valid `mmsghdr`s with writable buffers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    n: c_uint,
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let r = unsafe { real::recvmmsg(fd, msgs, n, flags, timeout) };
    for i in 0..r.max(0) as usize {
        // SAFETY: recvmmsg filled in the first r headers.
        unsafe { forget_received(std::ptr::addr_of!((*msgs.add(i)).msg_hdr)) };
    }
    r
}
