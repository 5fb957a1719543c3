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
///
/// # Safety
/// As `open(2)`: `path` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usvfs_open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: same contract as usvfs_openat.
    unsafe { usvfs_openat(AT_FDCWD, path, flags, mode) }
}

/// `openat` and `openat64`.
///
/// # Safety
/// As `openat(2)`: `path` is null or a NUL-terminated string.
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
        || {
            // SAFETY: the caller's arguments, passed on unchanged.
            let fd = unsafe { real::openat(dirfd, path, flags, mode) };
            if fd >= 0 {
                // Relative calls on it need no lookup (and must not map it
                // into the view by its physical path).
                fdtable::mark_physical(fd);
            }
            fd
        },
        |st, lk| {
            // Writes go by absolute path: through a layer's descriptor they
            // could land, for up to 100 ms, in a source folder that was
            // replaced (and is about to be deleted).
            let writes =
                flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (O_CREAT | libc::O_TRUNC) != 0;
            if writes {
                // SAFETY: as_c_ptr NUL-terminates lk.phys, which outlives the
                // call (absolute, so AT_FDCWD is right).
                let fd = unsafe { real::openat(AT_FDCWD, lk.phys.as_c_ptr(), flags, mode) };
                if fd >= 0 {
                    fdtable::insert(fd, lk.virt.as_bytes(), fdtable::ident_for_flags(flags));
                }
                return fd;
            }
            let fd = crate::layerfd::call(st, lk, |d, p| {
                // SAFETY: a layer descriptor and the NUL-terminated path below it, or
                // AT_FDCWD and the absolute path (layerfd); the rest is the caller's.
                unsafe { real::openat(d, p, flags, mode) }
            });
            if fd >= 0 {
                fdtable::insert(fd, lk.virt.as_bytes(), fdtable::ident_for_flags(flags));
            }
            fd
        },
    )
}

/// # Safety
/// As `creat(2)`: `path` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn creat(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: same contract as usvfs_openat.
    unsafe {
        usvfs_openat(
            AT_FDCWD,
            path,
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            mode,
        )
    }
}

/// # Safety
/// As [`creat`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn creat64(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: same contract as creat.
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
    // SAFETY: fd was just opened; mode is a non-null C string (fopen_flags
    // read it, and fopen's contract makes it NUL-terminated).
    let f = unsafe { libc::fdopen(fd, mode) };
    if f.is_null() {
        let e = crate::guard::errno();
        fdtable::remove(fd);
        // SAFETY: fdopen failed, so fd is still ours alone; closed once.
        unsafe { real::close(fd) };
        crate::guard::set_errno(e);
    }
    Some(f)
}

macro_rules! fopen_hook {
    ($name:ident) => {
        /// # Safety
        /// As `fopen(3)`: `path` and `mode` are null or NUL-terminated strings.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, mode: *const c_char) -> *mut FILE {
            if let Some(f) = fopen_create(path, mode) {
                return f;
            }
            with_path(
                AT_FDCWD,
                path,
                mode_follows(mode),
                // SAFETY: the caller's arguments, passed on unchanged.
                || unsafe { real::$name(path, mode) },
                |_, lk| {
                    // SAFETY: as_c_ptr NUL-terminates lk.phys, which outlives
                    // the call; mode is the caller's.
                    let f = unsafe { real::$name(lk.phys.as_c_ptr(), mode) };
                    if !f.is_null() {
                        // SAFETY: f is the open stream fopen just returned.
                        let fd = unsafe { libc::fileno(f) };
                        fdtable::insert(fd, lk.virt.as_bytes(), fdtable::Ident::Later);
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
        /// # Safety
        /// As `freopen(3)`: `path` and `mode` are null or NUL-terminated
        /// strings, and `stream` is an open stream.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            mode: *const c_char,
            stream: *mut FILE,
        ) -> *mut FILE {
            if !stream.is_null() {
                // SAFETY: stream is non-null and open (our contract).
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
                // SAFETY: fd was just opened by open_create and is ours alone.
                unsafe { real::close(fd) };
            }
            with_path(
                AT_FDCWD,
                path,
                mode_follows(mode),
                // SAFETY: the caller's arguments, passed on unchanged.
                || unsafe { real::$name(path, mode, stream) },
                |_, lk| {
                    // SAFETY: as_c_ptr NUL-terminates lk.phys, which outlives
                    // the call; mode and stream are the caller's.
                    let f = unsafe { real::$name(lk.phys.as_c_ptr(), mode, stream) };
                    if !f.is_null() {
                        // SAFETY: f is the open stream freopen just returned.
                        let fd = unsafe { libc::fileno(f) };
                        fdtable::insert(fd, lk.virt.as_bytes(), fdtable::Ident::Later);
                    }
                    f
                },
            )
        }
    };
}

freopen_hook!(freopen);
freopen_hook!(freopen64);

/// # Safety
/// As `fclose(3)`: `stream` is an open stream, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fclose(stream: *mut FILE) -> c_int {
    if !stream.is_null() {
        // SAFETY: stream is non-null and open (our contract).
        let fd = unsafe { libc::fileno(stream) };
        fdtable::remove(fd);
    }
    // SAFETY: the caller's stream, passed on unchanged.
    unsafe { real::fclose(stream) }
}
