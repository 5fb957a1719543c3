//! stat family and access checks: the same call on the physical path.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, AT_SYMLINK_NOFOLLOW, c_char, c_int, c_uint};

use super::with_path;
use crate::real;

macro_rules! ver_path_call {
    (fn $name:ident($ver:ident, $path:ident, $buf:ident : $ty:ty) follow = $follow:expr) => {
        /// # Safety
        /// As glibc's versioned stat entry point: the path is null or a
        /// NUL-terminated string and the buffer is writable for the stat
        /// structure of that version.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($ver: c_int, $path: *const c_char, $buf: $ty) -> c_int {
            with_path(
                AT_FDCWD,
                $path,
                $follow,
                // SAFETY: the caller's arguments, passed on unchanged.
                || unsafe { real::$name($ver, $path, $buf) },
                // SAFETY: as_c_ptr NUL-terminates lk.phys, which outlives the
                // call; the buffer is the caller's (our contract).
                |_, lk| unsafe { real::$name($ver, lk.phys.as_c_ptr(), $buf) },
            )
        }
    };
}

path_call!(fn stat(path, buf: *mut libc::stat) follow = true);
path_call!(fn stat64(path, buf: *mut libc::stat64) follow = true);
path_call!(fn lstat(path, buf: *mut libc::stat) follow = false);
path_call!(fn lstat64(path, buf: *mut libc::stat64) follow = false);
path_call!(fn access(path, mode: c_int) follow = true);
path_call!(fn euidaccess(path, mode: c_int) follow = true);
path_call!(fn eaccess(path, mode: c_int) follow = true);
ver_path_call!(fn __xstat(ver, path, buf: *mut libc::stat) follow = true);
ver_path_call!(fn __xstat64(ver, path, buf: *mut libc::stat64) follow = true);
ver_path_call!(fn __lxstat(ver, path, buf: *mut libc::stat) follow = false);
ver_path_call!(fn __lxstat64(ver, path, buf: *mut libc::stat64) follow = false);

at_call!(fn fstatat(dirfd, path, buf: *mut libc::stat; flags));
at_call!(fn fstatat64(dirfd, path, buf: *mut libc::stat64; flags));
at_call!(fn faccessat(dirfd, path, mode: c_int; flags));

macro_rules! ver_at_stat {
    ($name:ident, $ty:ty) => {
        /// # Safety
        /// As glibc's `__fxstatat`: the path is null or a NUL-terminated string
        /// and `buf` is writable for the stat structure of that version.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            ver: c_int,
            dirfd: c_int,
            path: *const c_char,
            buf: $ty,
            flags: c_int,
        ) -> c_int {
            with_path(
                dirfd,
                path,
                flags & AT_SYMLINK_NOFOLLOW == 0,
                // SAFETY: the caller's arguments, passed on unchanged.
                || unsafe { real::$name(ver, dirfd, path, buf, flags) },
                // SAFETY: as_c_ptr NUL-terminates lk.phys, which outlives the
                // call (absolute, so AT_FDCWD is right); buf is the caller's.
                |_, lk| unsafe { real::$name(ver, AT_FDCWD, lk.phys.as_c_ptr(), buf, flags) },
            )
        }
    };
}

ver_at_stat!(__fxstatat, *mut libc::stat);
ver_at_stat!(__fxstatat64, *mut libc::stat64);

/// # Safety
/// As `statx(2)`: `path` is null or a NUL-terminated string and `buf` is
/// writable for a `struct statx`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: c_uint,
    buf: *mut libc::statx,
) -> c_int {
    with_path(
        dirfd,
        path,
        flags & AT_SYMLINK_NOFOLLOW == 0,
        // SAFETY: the caller's arguments, passed on unchanged.
        || unsafe { real::statx(dirfd, path, flags, mask, buf) },
        // SAFETY: as_c_ptr NUL-terminates lk.phys, which outlives the call
        // (absolute, so AT_FDCWD is right); buf is the caller's.
        |_, lk| unsafe { real::statx(AT_FDCWD, lk.phys.as_c_ptr(), flags, mask, buf) },
    )
}

path_call!(fn getxattr(path, name: *const c_char, value: *mut libc::c_void, size: libc::size_t) -> libc::ssize_t, follow = true);
path_call!(fn lgetxattr(path, name: *const c_char, value: *mut libc::c_void, size: libc::size_t) -> libc::ssize_t, follow = false);
path_call!(fn listxattr(path, list: *mut c_char, size: libc::size_t) -> libc::ssize_t, follow = true);
path_call!(fn llistxattr(path, list: *mut c_char, size: libc::size_t) -> libc::ssize_t, follow = false);
