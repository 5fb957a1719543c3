//! Opening files: the physical file is opened directly (no copy, no proxy), and
//! the descriptor remembers its virtual path.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, FILE, O_CREAT, O_EXCL, O_NOFOLLOW, c_char, c_int, c_uint, mode_t};

use super::with_path;
use crate::{fdtable, real};

fn follows(flags: c_int) -> bool {
    flags & O_NOFOLLOW == 0 && flags & (O_CREAT | O_EXCL) != (O_CREAT | O_EXCL)
}

/// `open` and `open64` (the variadic entry points live in variadic.c).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usvfs_open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    unsafe { usvfs_openat(AT_FDCWD, path, flags, mode) }
}

/// `openat` and `openat64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usvfs_openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> c_int {
    if flags & libc::O_TMPFILE == libc::O_TMPFILE {
        if let Some(fd) = super::write::open_tmpfile(dirfd, path, flags, mode) {
            return fd;
        }
    } else if flags & O_CREAT != 0
        && let Some(fd) = super::write::open_create(dirfd, path, flags, mode)
    {
        return fd;
    }
    with_path(
        dirfd,
        path,
        follows(flags),
        -1,
        || unsafe { real::openat(dirfd, path, flags, mode) },
        |_, lk| {
            let fd = unsafe { real::openat(AT_FDCWD, lk.phys.as_c_ptr(), flags, mode) };
            if fd >= 0 {
                fdtable::insert(fd, lk.virt.as_bytes());
            }
            fd
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn creat(path: *const c_char, mode: mode_t) -> c_int {
    unsafe {
        usvfs_openat(
            AT_FDCWD,
            path,
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            mode,
        )
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn creat64(path: *const c_char, mode: mode_t) -> c_int {
    unsafe { creat(path, mode) }
}

fn mode_follows(mode: *const c_char) -> bool {
    // SAFETY: fopen's mode is a C string.
    let m = unsafe { crate::lookup::bytes(mode) }.unwrap_or(b"r");
    !m.contains(&b'x')
}

/// What `open` flags an fopen mode string means (for creating modes).
fn fopen_flags(mode: *const c_char) -> Option<c_int> {
    // SAFETY: fopen's mode is a C string.
    let m = unsafe { crate::lookup::bytes(mode) }?;
    let plus = m.contains(&b'+');
    let mut f = match m.first()? {
        b'w' => libc::O_CREAT | libc::O_TRUNC | if plus { libc::O_RDWR } else { libc::O_WRONLY },
        b'a' => libc::O_CREAT | libc::O_APPEND | if plus { libc::O_RDWR } else { libc::O_WRONLY },
        _ => return None,
    };
    if m.contains(&b'x') {
        f |= libc::O_EXCL;
    }
    if m.contains(&b'e') {
        f |= libc::O_CLOEXEC;
    }
    Some(f)
}

/// `fopen` in a creating mode: create through the hooks, then wrap the fd.
fn fopen_create(path: *const c_char, mode: *const c_char) -> Option<*mut FILE> {
    let flags = fopen_flags(mode)?;
    let fd = super::write::open_create(AT_FDCWD, path, flags, 0o666)?;
    if fd < 0 {
        return Some(std::ptr::null_mut());
    }
    let f = unsafe { libc::fdopen(fd, mode) };
    if f.is_null() {
        let e = crate::guard::errno();
        fdtable::remove(fd);
        unsafe { real::close(fd) };
        crate::guard::set_errno(e);
    }
    Some(f)
}

macro_rules! fopen_hook {
    ($name:ident) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, mode: *const c_char) -> *mut FILE {
            if let Some(f) = fopen_create(path, mode) {
                return f;
            }
            with_path(
                AT_FDCWD,
                path,
                mode_follows(mode),
                std::ptr::null_mut(),
                || unsafe { real::$name(path, mode) },
                |_, lk| {
                    let f = unsafe { real::$name(lk.phys.as_c_ptr(), mode) };
                    if !f.is_null() {
                        fdtable::insert(unsafe { libc::fileno(f) }, lk.virt.as_bytes());
                    }
                    f
                },
            )
        }
    };
}

fopen_hook!(fopen);
fopen_hook!(fopen64);

macro_rules! freopen_hook {
    ($name:ident) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            mode: *const c_char,
            stream: *mut FILE,
        ) -> *mut FILE {
            if !stream.is_null() {
                fdtable::remove(unsafe { libc::fileno(stream) });
            }
            // A creating mode: make the file where creates go first, so the
            // reopen below finds it in the view.
            if let Some(flags) = fopen_flags(mode)
                && let Some(fd) = super::write::open_create(
                    AT_FDCWD,
                    path,
                    flags & !(libc::O_TRUNC | libc::O_EXCL),
                    0o666,
                )
                && fd >= 0
            {
                fdtable::remove(fd);
                unsafe { real::close(fd) };
            }
            with_path(
                AT_FDCWD,
                path,
                mode_follows(mode),
                std::ptr::null_mut(),
                || unsafe { real::$name(path, mode, stream) },
                |_, lk| {
                    let f = unsafe { real::$name(lk.phys.as_c_ptr(), mode, stream) };
                    if !f.is_null() {
                        fdtable::insert(unsafe { libc::fileno(f) }, lk.virt.as_bytes());
                    }
                    f
                },
            )
        }
    };
}

freopen_hook!(freopen);
freopen_hook!(freopen64);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fclose(stream: *mut FILE) -> c_int {
    if !stream.is_null() {
        let fd = unsafe { libc::fileno(stream) };
        if fdtable::is_recorded(fd) {
            fdtable::remove(fd);
        }
    }
    unsafe { real::fclose(stream) }
}
