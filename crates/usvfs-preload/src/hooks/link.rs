//! Paths given back to the program: `readlink` of `/proc/self/fd/N` and
//! `/proc/self/cwd`, and `realpath`, report virtual paths.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, c_char, c_int, size_t, ssize_t};

use super::with_path;
use crate::guard::{self, set_errno};
use crate::lookup::{Lookup, bytes};
use crate::real;
use crate::state;

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
    let st = state::get()?;
    let _pin = crate::fdtable::pin();
    crate::lookup::fd_entry(st, fd).map(|e| e.vpath.as_slice().into())
}

/// Copies a link target out like readlink does (truncated, no NUL).
///
/// # Safety
/// `buf` must be writable for `size` bytes.
unsafe fn copy_link(target: &[u8], buf: *mut c_char, size: size_t) -> ssize_t {
    let n = target.len().min(size);
    // SAFETY: n <= size and buf is writable for size bytes (caller contract);
    // target is our own slice, so the two cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(target.as_ptr(), buf.cast::<u8>(), n) };
    n as ssize_t
}

/// # Safety
/// As `readlinkat(2)`: `path` is null or a NUL-terminated string and `buf` is
/// writable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlinkat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
) -> ssize_t {
    if state::get().is_some()
        // SAFETY: path is null or a NUL-terminated string (our contract).
        && let Some(p) = unsafe { bytes(path) }
        && p.starts_with(b"/proc/")
        && !guard::internal()
        && let Some(t) = proc_link(p)
    {
        // SAFETY: buf is writable for size bytes (our contract).
        return unsafe { copy_link(&t, buf, size) };
    }
    with_path(
        dirfd,
        path,
        false,
        // SAFETY: the caller's arguments, passed on unchanged.
        || unsafe { real::readlinkat(dirfd, path, buf, size) },
        |st, lk| {
            crate::layerfd::call(st, lk, |fd, p| {
                // SAFETY: a layer descriptor and the NUL-terminated path below it, or
                // AT_FDCWD and the absolute path (layerfd); the rest is the caller's.
                unsafe { real::readlinkat(fd, p, buf, size) }
            })
        },
    )
}

/// # Safety
/// As `readlink(2)`: `path` is null or a NUL-terminated string and `buf` is
/// writable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t {
    // SAFETY: same contract as readlinkat.
    unsafe { readlinkat(AT_FDCWD, path, buf, size) }
}

/// # Safety
/// As [`readlink`]; `_l` (the buffer's real size) is not checked.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __readlink_chk(
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    _l: size_t,
) -> ssize_t {
    // SAFETY: same contract as readlinkat.
    unsafe { readlinkat(AT_FDCWD, path, buf, size) }
}

/// # Safety
/// As [`readlinkat`]; `_l` (the buffer's real size) is not checked.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __readlinkat_chk(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    _l: size_t,
) -> ssize_t {
    // SAFETY: same contract as readlinkat.
    unsafe { readlinkat(dirfd, path, buf, size) }
}

/// Hands a path out like realpath does (into `out`, or a fresh malloc block).
///
/// # Safety
/// `out` must be null or writable for `PATH_MAX` bytes.
unsafe fn give(path: &[u8], out: *mut c_char) -> *mut c_char {
    if path.len() >= libc::PATH_MAX as usize {
        set_errno(libc::ENAMETOOLONG);
        return std::ptr::null_mut();
    }
    let dst = if out.is_null() {
        // SAFETY: malloc has no preconditions; a null result is checked below.
        let p = unsafe { libc::malloc(path.len() + 1) } as *mut c_char;
        if p.is_null() {
            set_errno(libc::ENOMEM);
            return p;
        }
        p
    } else {
        out
    };
    // SAFETY: dst holds at least path.len() + 1 bytes: a malloc of that size,
    // or out, which holds PATH_MAX > path.len() bytes (caller contract); path
    // is our own slice, so the two cannot overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(path.as_ptr(), dst.cast::<u8>(), path.len());
        *dst.add(path.len()) = 0;
    }
    dst
}

fn virtual_realpath(lk: &mut Lookup, out: *mut c_char) -> *mut c_char {
    // Like realpath, insist that the path exists.
    if real::stat_path(lk.phys.as_c_str()).is_err() {
        return std::ptr::null_mut();
    }
    if lk.res.node.is_none() && lk.phys.as_bytes() == lk.virt.as_bytes() {
        // Below the layers, on the real disk: the kernel's answer is the view's.
        // SAFETY: lk.phys is NUL-terminated; out is the realpath hook's
        // argument, null or PATH_MAX bytes per realpath's contract (our only
        // caller).
        return unsafe { real::realpath(lk.phys.as_c_ptr(), out) };
    }
    // SAFETY: out is null or PATH_MAX bytes, as above.
    unsafe { give(lk.virt.as_bytes(), out) }
}

/// # Safety
/// As `realpath(3)`: `path` is null or a NUL-terminated string and `out` is
/// null or writable for `PATH_MAX` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realpath(path: *const c_char, out: *mut c_char) -> *mut c_char {
    with_path(
        AT_FDCWD,
        path,
        true,
        // SAFETY: the caller's arguments, passed on unchanged.
        || unsafe { real::realpath(path, out) },
        |_, lk| virtual_realpath(lk, out),
    )
}

/// # Safety
/// As [`realpath`]; `_l` (the buffer's real size) is not checked.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __realpath_chk(
    path: *const c_char,
    out: *mut c_char,
    _l: size_t,
) -> *mut c_char {
    // SAFETY: same contract as realpath.
    unsafe { realpath(path, out) }
}

/// # Safety
/// `path` is null or a NUL-terminated string; the result is a malloc block
/// (or null) the caller frees.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn canonicalize_file_name(path: *const c_char) -> *mut c_char {
    // SAFETY: path per our contract; a null out makes realpath allocate.
    unsafe { realpath(path, std::ptr::null_mut()) }
}
