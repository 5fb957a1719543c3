//! Paths given back to the program: `readlink` of `/proc/self/fd/N` and
//! `/proc/self/cwd`, and `realpath`, report virtual paths.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, c_char, c_int, size_t, ssize_t};

use super::with_path;
use crate::guard::{self, set_errno};
use crate::lookup::{Lookup, bytes};
use crate::state;
use crate::{fdtable, real};

/// For `/proc/self/fd/N`, `/proc/<our pid>/fd/N`, `/proc/thread-self/fd/N` and
/// the matching `cwd` links: the virtual path, if the view has one.
fn proc_link(p: &[u8]) -> Option<Box<[u8]>> {
    let rest = p.strip_prefix(b"/proc/")?;
    let slash = rest.iter().position(|&c| c == b'/')?;
    let (who, what) = (&rest[..slash], &rest[slash + 1..]);
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() }.to_string();
    if who != b"self" && who != b"thread-self" && who != me.as_bytes() {
        return None;
    }
    if what == b"cwd" {
        let c = state::cwd()?;
        return c.is_virtual.then(|| c.path.clone());
    }
    let fd: i32 = std::str::from_utf8(what.strip_prefix(b"fd/")?)
        .ok()?
        .parse()
        .ok()?;
    fdtable::get(fd).map(|e| e.vpath.clone())
}

unsafe fn copy_link(target: &[u8], buf: *mut c_char, size: size_t) -> ssize_t {
    let n = target.len().min(size);
    unsafe { std::ptr::copy_nonoverlapping(target.as_ptr(), buf.cast::<u8>(), n) };
    n as ssize_t
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlinkat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
) -> ssize_t {
    if state::get().is_some()
        && let Some(p) = unsafe { bytes(path) }
        && p.starts_with(b"/proc/")
        && let Some(_g) = guard::enter()
        && let Some(t) = proc_link(p)
    {
        return unsafe { copy_link(&t, buf, size) };
    }
    with_path(
        dirfd,
        path,
        false,
        -1,
        || unsafe { real::readlinkat(dirfd, path, buf, size) },
        |_, lk| unsafe { real::readlinkat(AT_FDCWD, lk.phys.as_c_ptr(), buf, size) },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t {
    unsafe { readlinkat(AT_FDCWD, path, buf, size) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __readlink_chk(
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    _l: size_t,
) -> ssize_t {
    unsafe { readlinkat(AT_FDCWD, path, buf, size) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __readlinkat_chk(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    _l: size_t,
) -> ssize_t {
    unsafe { readlinkat(dirfd, path, buf, size) }
}

unsafe fn give(path: &[u8], out: *mut c_char) -> *mut c_char {
    if path.len() >= libc::PATH_MAX as usize {
        set_errno(libc::ENAMETOOLONG);
        return std::ptr::null_mut();
    }
    let dst = if out.is_null() {
        let p = unsafe { libc::malloc(path.len() + 1) } as *mut c_char;
        if p.is_null() {
            set_errno(libc::ENOMEM);
            return p;
        }
        p
    } else {
        out
    };
    unsafe {
        std::ptr::copy_nonoverlapping(path.as_ptr(), dst.cast::<u8>(), path.len());
        *dst.add(path.len()) = 0;
    }
    dst
}

fn virtual_realpath(lk: &mut Lookup, out: *mut c_char) -> *mut c_char {
    // Like realpath, insist that the path exists.
    let mut s = std::mem::MaybeUninit::<libc::stat>::uninit();
    if unsafe { real::stat(lk.phys.as_c_ptr(), s.as_mut_ptr()) } != 0 {
        return std::ptr::null_mut();
    }
    if lk.node.is_none() && lk.phys.as_bytes() == lk.virt.as_bytes() {
        // Below the layers, on the real disk: the kernel's answer is the view's.
        return unsafe { real::realpath(lk.phys.as_c_ptr(), out) };
    }
    unsafe { give(lk.virt.as_bytes(), out) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn realpath(path: *const c_char, out: *mut c_char) -> *mut c_char {
    with_path(
        AT_FDCWD,
        path,
        true,
        std::ptr::null_mut(),
        || unsafe { real::realpath(path, out) },
        |_, lk| virtual_realpath(lk, out),
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __realpath_chk(
    path: *const c_char,
    out: *mut c_char,
    _l: size_t,
) -> *mut c_char {
    unsafe { realpath(path, out) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn canonicalize_file_name(path: *const c_char) -> *mut c_char {
    unsafe { realpath(path, std::ptr::null_mut()) }
}
