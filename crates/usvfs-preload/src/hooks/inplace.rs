//! Changes to an existing file's data or metadata act on the winning physical
//! file, in place: truncate, permissions, ownership, times, extended attributes.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, c_char, c_int, size_t};

use super::with_path;
use crate::real;

path_call!(fn truncate(path, len: libc::off_t) follow = true);
path_call!(fn truncate64(path, len: libc::off64_t) follow = true);
path_call!(fn chmod(path, mode: libc::mode_t) follow = true);
path_call!(fn chown(path, uid: libc::uid_t, gid: libc::gid_t) follow = true);
path_call!(fn lchown(path, uid: libc::uid_t, gid: libc::gid_t) follow = false);
path_call!(fn utime(path, times: *const libc::utimbuf) follow = true);
path_call!(fn utimes(path, times: *const libc::timeval) follow = true);
path_call!(fn lutimes(path, times: *const libc::timeval) follow = false);
path_call!(fn setxattr(path, name: *const c_char, value: *const libc::c_void, size: size_t, flags: c_int) follow = true);
path_call!(fn lsetxattr(path, name: *const c_char, value: *const libc::c_void, size: size_t, flags: c_int) follow = false);
path_call!(fn removexattr(path, name: *const c_char) follow = true);
path_call!(fn lremovexattr(path, name: *const c_char) follow = false);
at_call!(fn fchmodat(dirfd, path, mode: libc::mode_t; flags) by_path);
at_call!(fn fchownat(dirfd, path, uid: libc::uid_t, gid: libc::gid_t; flags) by_path);
at_call!(fn utimensat(dirfd, path, times: *const libc::timespec; flags) by_path);

/// # Safety
/// As `futimesat(2)`: `path` is null or a NUL-terminated string and `times`
/// is null or points to two `struct timeval`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn futimesat(
    dirfd: c_int,
    path: *const c_char,
    times: *const libc::timeval,
) -> c_int {
    with_path(
        dirfd,
        path,
        true,
        // SAFETY: the caller's arguments, passed on unchanged.
        || unsafe { real::futimesat(dirfd, path, times) },
        // SAFETY: as_c_ptr NUL-terminates lk.phys, which outlives the call
        // (absolute, so AT_FDCWD is right); times is the caller's.
        |_, lk| unsafe { real::futimesat(AT_FDCWD, lk.phys.as_c_ptr(), times) },
    )
}
