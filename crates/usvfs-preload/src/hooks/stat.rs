//! stat family and access checks: the same call on the physical path.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, AT_SYMLINK_NOFOLLOW, c_char, c_int, c_uint};

use super::with_path;
use crate::real;

macro_rules! ver_path_call {
    (fn $name:ident($ver:ident, $path:ident, $buf:ident : $ty:ty) => $at:ident, flags = $flags:expr, follow = $follow:expr) => {
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
                |st, lk| {
                    crate::layerfd::call(st, lk, |fd, p| {
                        // SAFETY: a layer descriptor and the NUL-terminated path below it, or
                        // AT_FDCWD and the absolute path (layerfd); the rest is the caller's.
                        unsafe { real::$at($ver, fd, p, $buf, $flags) }
                    })
                },
            )
        }
    };
}

/// Defines a hook for a path-only stat or access call, made through its
/// `*at` form so a layer's descriptor can serve it (see `layerfd`).
macro_rules! via_at {
    (fn $name:ident($path:ident, $arg:ident : $ty:ty) => $at:ident, flags = $flags:expr, follow = $follow:expr) => {
        /// # Safety
        /// As the C library function of this name: the path is null or a
        /// NUL-terminated string, the other argument is as it requires.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($path: *const c_char, $arg: $ty) -> c_int {
            with_path(
                AT_FDCWD,
                $path,
                $follow,
                // SAFETY: the caller's arguments, passed on unchanged.
                || unsafe { real::$name($path, $arg) },
                |st, lk| {
                    crate::layerfd::call(st, lk, |fd, p| {
                        // SAFETY: a layer descriptor and the NUL-terminated path below it, or
                        // AT_FDCWD and the absolute path (layerfd); the rest is the caller's.
                        unsafe { real::$at(fd, p, $arg, $flags) }
                    })
                },
            )
        }
    };
}

via_at!(fn stat(path, buf: *mut libc::stat) => fstatat, flags = 0, follow = true);
via_at!(fn stat64(path, buf: *mut libc::stat64) => fstatat64, flags = 0, follow = true);
via_at!(fn lstat(path, buf: *mut libc::stat) => fstatat, flags = AT_SYMLINK_NOFOLLOW, follow = false);
via_at!(fn lstat64(path, buf: *mut libc::stat64) => fstatat64, flags = AT_SYMLINK_NOFOLLOW, follow = false);
via_at!(fn access(path, mode: c_int) => faccessat, flags = 0, follow = true);
via_at!(fn euidaccess(path, mode: c_int) => faccessat, flags = libc::AT_EACCESS, follow = true);
via_at!(fn eaccess(path, mode: c_int) => faccessat, flags = libc::AT_EACCESS, follow = true);
ver_path_call!(fn __xstat(ver, path, buf: *mut libc::stat) => __fxstatat, flags = 0, follow = true);
ver_path_call!(fn __xstat64(ver, path, buf: *mut libc::stat64) => __fxstatat64, flags = 0, follow = true);
ver_path_call!(fn __lxstat(ver, path, buf: *mut libc::stat) => __fxstatat, flags = AT_SYMLINK_NOFOLLOW, follow = false);
ver_path_call!(fn __lxstat64(ver, path, buf: *mut libc::stat64) => __fxstatat64, flags = AT_SYMLINK_NOFOLLOW, follow = false);

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
                |st, lk| {
                    crate::layerfd::call(st, lk, |fd, p| {
                        // SAFETY: a layer descriptor and the NUL-terminated path below it, or
                        // AT_FDCWD and the absolute path (layerfd); the rest is the caller's.
                        unsafe { real::$name(ver, fd, p, buf, flags) }
                    })
                },
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
        |st, lk| {
            crate::layerfd::call(st, lk, |fd, p| {
                // SAFETY: a layer descriptor and the NUL-terminated path below it, or
                // AT_FDCWD and the absolute path (layerfd); the rest is the caller's.
                unsafe { real::statx(fd, p, flags, mask, buf) }
            })
        },
    )
}

path_call!(fn getxattr(path, name: *const c_char, value: *mut libc::c_void, size: libc::size_t) -> libc::ssize_t, follow = true);
path_call!(fn lgetxattr(path, name: *const c_char, value: *mut libc::c_void, size: libc::size_t) -> libc::ssize_t, follow = false);
path_call!(fn listxattr(path, list: *mut c_char, size: libc::size_t) -> libc::ssize_t, follow = true);
path_call!(fn llistxattr(path, list: *mut c_char, size: libc::size_t) -> libc::ssize_t, follow = false);
