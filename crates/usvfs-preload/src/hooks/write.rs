//! Changes: the hooks translate each mutating call into the view's
//! semantics (`usvfs_view::semantics`: where a create lands, what a delete or
//! rename does and records, the errno of each case) and make the physical call
//! the semantics ask for.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, c_char, c_int, c_uint, mode_t};

use usvfs_view::FileKind;
use usvfs_view::path::PathBuffer;
use usvfs_view::semantics::{Change, Probe};

use super::{Detour, hook_opt, hook_result, or_bypass, sys};
use crate::guard::{errno, set_errno};
use crate::lookup::{bytes, certainly_outside, virtual_target};
use crate::state::State;
use crate::{fdtable, real};

/// Where `(dirfd, p)` is in the view.
struct Target {
    /// The absolute, normalized virtual path.
    virt: PathBuffer,
    /// The caller's own arguments reach the same place (else calls outside
    /// the view must use `virt`: the working directory or `dirfd` is virtual).
    same: bool,
}

/// The target of a mutating call, or `None` when the view certainly does not
/// change it (the cheap exit: most paths are outside every destination).
fn target(st: &State, dirfd: c_int, p: &[u8]) -> Option<Target> {
    if certainly_outside(st, dirfd, p) {
        return None;
    }
    let mut virt = PathBuffer::new();
    let same = virtual_target(st, dirfd, p, &mut virt)?;
    Some(Target { virt, same })
}

/// A call the view does not change: the original with the caller's
/// arguments, or with the absolute virtual path when those would go elsewhere.
fn outside<R: Copy + PartialOrd + Default>(
    t: &mut Target,
    call: impl FnOnce(*const c_char) -> R,
) -> Detour<R> {
    if t.same {
        Detour::Bypass
    } else {
        sys(call(t.virt.as_c_ptr()))
    }
}

fn change(c: Change<()>) -> Detour<c_int> {
    match c {
        Change::Done(()) => Detour::Success(0),
        Change::Fail(e) => Detour::Error(e),
        Change::Outside => Detour::Bypass,
    }
}

// ---------------------------------------------------------------- open + create

/// `open` with `O_CREAT`: opens the view's file, or creates it where creates
/// go. `None`: not ours, the caller continues with the plain open path.
pub(crate) fn open_create(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> Option<c_int> {
    hook_opt(|st| {
        // SAFETY: libc contract: path is NULL or a C string.
        let p = or_bypass!(unsafe { bytes(path) });
        let mut t = or_bypass!(target(st, dirfd, p));
        let excl = flags & libc::O_EXCL != 0;
        let v = st.view();
        match v.probe(
            t.virt.as_bytes(),
            !excl && flags & libc::O_NOFOLLOW == 0,
            FileKind::File,
        ) {
            Probe::Outside => {
                // SAFETY: a NUL-terminated path; flags and mode are the caller's.
                outside(&mut t, |p| unsafe {
                    real::openat(AT_FDCWD, p, flags, mode)
                })
            }
            Probe::Fail(e) => Detour::Error(e),
            Probe::Exists(_) if excl => Detour::Error(libc::EEXIST),
            Probe::Exists(mut f) => {
                // SAFETY: as above, on the winning physical file.
                let fd = unsafe { real::openat(AT_FDCWD, f.r.phys.as_c_ptr(), flags, mode) };
                if fd >= 0 {
                    fdtable::insert(fd, f.r.virt.as_bytes(), fdtable::Ident::Later);
                }
                sys(fd)
            }
            Probe::New(mut place) => {
                // SAFETY: as above, at the place the semantics chose.
                let fd = unsafe { real::openat(AT_FDCWD, place.loc.as_c_ptr(), flags, mode) };
                if fd < 0 {
                    let e = errno();
                    place.abort(&v);
                    return Detour::Error(e);
                }
                // The file exists now: a panic recording it must not make the
                // skeleton fall back to a second open (leaking this one).
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    place.commit(&v, FileKind::File);
                    fdtable::insert(fd, place.virt.as_bytes(), fdtable::Ident::Later);
                }));
                Detour::Success(fd)
            }
        }
    })
}

/// `O_TMPFILE`: the unnamed file is made where a new file in that directory
/// would go, so a later `linkat` can name it there.
pub(crate) fn open_tmpfile(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> Option<c_int> {
    hook_opt(|st| {
        // SAFETY: libc contract: path is NULL or a C string.
        let p = or_bypass!(unsafe { bytes(path) });
        let mut lk = crate::lookup::Lookup::new();
        match super::resolve_in_view(st, dirfd, p, true, &mut lk) {
            Detour::Success(()) => {}
            Detour::Error(e) => return Detour::Error(e),
            Detour::Bypass => return Detour::Bypass,
        }
        let mut dir = match st
            .view()
            .new_entry_dir(lk.virt.as_bytes(), lk.phys.as_bytes())
        {
            Ok(d) => d,
            Err(e) => return Detour::Error(e),
        };
        // SAFETY: a NUL-terminated directory path; flags and mode are the caller's.
        let fd = unsafe { real::openat(AT_FDCWD, dir.as_c_ptr(), flags, mode) };
        if fd >= 0 {
            fdtable::insert(fd, lk.virt.as_bytes(), fdtable::Ident::Later);
        }
        sys(fd)
    })
}

// ---------------------------------------------------------------- mkdir, symlink, link, mknod

/// Creates a new entry with `op(physical path)` where the semantics place it.
/// `Exists` is `EEXIST`; outside the view, `op` runs on the caller's path.
fn create_with(
    st: &'static State,
    dirfd: c_int,
    path: *const c_char,
    kind: FileKind,
    op: impl FnOnce(*const c_char) -> c_int,
) -> Detour<c_int> {
    // SAFETY: libc contract: path is NULL or a C string.
    let p = or_bypass!(unsafe { bytes(path) });
    let mut t = or_bypass!(target(st, dirfd, p));
    let v = st.view();
    match v.probe(t.virt.as_bytes(), false, kind) {
        Probe::Outside => outside(&mut t, op),
        Probe::Fail(e) => Detour::Error(e),
        Probe::Exists(_) => Detour::Error(libc::EEXIST),
        Probe::New(mut place) => {
            if op(place.loc.as_c_ptr()) != 0 {
                let e = errno();
                place.abort(&v);
                return Detour::Error(e);
            }
            place.commit(&v, kind);
            Detour::Success(0)
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    hook_result(
        // SAFETY: the caller's arguments, unchanged.
        || unsafe { real::mkdirat(dirfd, path, mode) },
        |st| {
            create_with(st, dirfd, path, FileKind::Dir, |loc| {
                // SAFETY: a NUL-terminated physical path.
                unsafe { real::mkdirat(AT_FDCWD, loc, mode) }
            })
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdir(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { mkdirat(AT_FDCWD, path, mode) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlinkat(
    target: *const c_char,
    dirfd: c_int,
    path: *const c_char,
) -> c_int {
    hook_result(
        // SAFETY: the caller's arguments, unchanged.
        || unsafe { real::symlinkat(target, dirfd, path) },
        |st| {
            create_with(st, dirfd, path, FileKind::Symlink, |loc| {
                // SAFETY: the caller's target string and a NUL-terminated path.
                unsafe { real::symlinkat(target, AT_FDCWD, loc) }
            })
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlink(target: *const c_char, path: *const c_char) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { symlinkat(target, AT_FDCWD, path) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mknodat(
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    dev: libc::dev_t,
) -> c_int {
    hook_result(
        // SAFETY: the caller's arguments, unchanged.
        || unsafe { real::mknodat(dirfd, path, mode, dev) },
        |st| {
            create_with(st, dirfd, path, FileKind::Other, |loc| {
                // SAFETY: a NUL-terminated physical path.
                unsafe { real::mknodat(AT_FDCWD, loc, mode, dev) }
            })
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mknod(path: *const c_char, mode: mode_t, dev: libc::dev_t) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { mknodat(AT_FDCWD, path, mode, dev) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xmknodat(
    _ver: c_int,
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    dev: *const libc::dev_t,
) -> c_int {
    // SAFETY: `dev` is NULL or points to a dev_t (glibc's contract).
    unsafe { mknodat(dirfd, path, mode, if dev.is_null() { 0 } else { *dev }) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xmknod(
    _ver: c_int,
    path: *const c_char,
    mode: mode_t,
    dev: *const libc::dev_t,
) -> c_int {
    // SAFETY: `dev` is NULL or points to a dev_t (glibc's contract).
    unsafe { mknodat(AT_FDCWD, path, mode, if dev.is_null() { 0 } else { *dev }) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkfifoat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { mknodat(dirfd, path, (mode & 0o7777) | libc::S_IFIFO, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkfifo(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { mkfifoat(AT_FDCWD, path, mode) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn linkat(
    olddirfd: c_int,
    old: *const c_char,
    newdirfd: c_int,
    new: *const c_char,
    flags: c_int,
) -> c_int {
    hook_result(
        // SAFETY: the caller's arguments, unchanged.
        || unsafe { real::linkat(olddirfd, old, newdirfd, new, flags) },
        |st| {
            // SAFETY: libc contract: paths are NULL or C strings.
            let (o, n) = or_bypass!(unsafe { bytes(old).zip(bytes(new)) });
            // The existing side: its winning physical file (unless given by fd).
            let mut olk = crate::lookup::Lookup::new();
            let old_phys = if o.is_empty() {
                None
            } else {
                let follow = flags & AT_SYMLINK_FOLLOW != 0;
                match super::resolve_in_view(st, olddirfd, o, follow, &mut olk) {
                    Detour::Success(()) => Some(&mut olk.phys),
                    Detour::Error(e) => return Detour::Error(e),
                    Detour::Bypass => None,
                }
            };
            let (odirfd, optr) = match old_phys {
                Some(p) => (AT_FDCWD, p.as_c_ptr()),
                None => (olddirfd, old),
            };
            let new_in_view = target(st, newdirfd, n);
            let v = st.view();
            let probe = match &new_in_view {
                Some(t) => v.probe(t.virt.as_bytes(), false, FileKind::File),
                None => Probe::Outside,
            };
            match probe {
                Probe::Fail(e) => Detour::Error(e),
                Probe::Exists(_) => Detour::Error(libc::EEXIST),
                Probe::Outside if odirfd == olddirfd && optr == old => match new_in_view {
                    Some(mut t) => outside(&mut t, |p| {
                        // SAFETY: the caller's old side and a NUL-terminated new path.
                        unsafe { real::linkat(olddirfd, old, AT_FDCWD, p, flags) }
                    }),
                    None => Detour::Bypass,
                },
                Probe::Outside => {
                    let (ndirfd, nptr) = match new_in_view {
                        Some(mut t) if !t.same => {
                            // SAFETY: both paths NUL-terminated.
                            return sys(unsafe {
                                real::linkat(odirfd, optr, AT_FDCWD, t.virt.as_c_ptr(), flags)
                            });
                        }
                        _ => (newdirfd, new),
                    };
                    // SAFETY: the physical old path and the caller's new side.
                    sys(unsafe { real::linkat(odirfd, optr, ndirfd, nptr, flags) })
                }
                Probe::New(mut place) => {
                    // SAFETY: both paths NUL-terminated.
                    let r = unsafe {
                        real::linkat(odirfd, optr, AT_FDCWD, place.loc.as_c_ptr(), flags)
                    };
                    if r != 0 {
                        let e = errno();
                        place.abort(&v);
                        return Detour::Error(e);
                    }
                    let kind = v
                        .lstat(place.loc.as_bytes())
                        .map(|m| m.kind)
                        .unwrap_or(FileKind::File);
                    place.commit(&v, kind);
                    Detour::Success(0)
                }
            }
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn link(old: *const c_char, new: *const c_char) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { linkat(AT_FDCWD, old, AT_FDCWD, new, 0) }
}

// ---------------------------------------------------------------- delete

/// Deletes through the semantics; `remove_dir` as in `View::delete`.
fn delete(
    st: &'static State,
    dirfd: c_int,
    path: *const c_char,
    remove_dir: Option<bool>,
    op: impl FnOnce(*const c_char) -> c_int,
) -> Detour<c_int> {
    // SAFETY: libc contract: path is NULL or a C string.
    let p = or_bypass!(unsafe { bytes(path) });
    let mut t = or_bypass!(target(st, dirfd, p));
    match st.view().delete(t.virt.as_bytes(), remove_dir) {
        Change::Outside => outside(&mut t, op),
        c => change(c),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    hook_result(
        // SAFETY: the caller's arguments, unchanged.
        || unsafe { real::unlinkat(dirfd, path, flags) },
        |st| {
            delete(st, dirfd, path, Some(flags & AT_REMOVEDIR != 0), |p| {
                // SAFETY: a NUL-terminated path.
                unsafe { real::unlinkat(AT_FDCWD, p, flags) }
            })
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { unlinkat(AT_FDCWD, path, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { unlinkat(AT_FDCWD, path, AT_REMOVEDIR) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn remove(path: *const c_char) -> c_int {
    hook_result(
        // SAFETY: the caller's argument, unchanged.
        || unsafe { real::remove(path) },
        |st| {
            delete(st, AT_FDCWD, path, None, |p| {
                // SAFETY: a NUL-terminated path.
                unsafe { real::remove(p) }
            })
        },
    )
}

// ---------------------------------------------------------------- rename

#[unsafe(no_mangle)]
pub unsafe extern "C" fn renameat2(
    olddirfd: c_int,
    old: *const c_char,
    newdirfd: c_int,
    new: *const c_char,
    flags: c_uint,
) -> c_int {
    hook_result(
        // SAFETY: the caller's arguments, unchanged.
        || unsafe { real::renameat2(olddirfd, old, newdirfd, new, flags) },
        |st| {
            // SAFETY: libc contract: paths are NULL or C strings.
            let (o, n) = or_bypass!(unsafe { bytes(old).zip(bytes(new)) });
            let (ot, nt) = (target(st, olddirfd, o), target(st, newdirfd, n));
            if ot.is_none() && nt.is_none() {
                return Detour::Bypass;
            }
            // A side the view certainly does not change still needs its
            // absolute path for the semantics.
            let abs = |t: Option<Target>, dirfd: c_int, p: &[u8]| -> Option<Target> {
                t.or_else(|| {
                    let mut virt = PathBuffer::new();
                    let same = virtual_target(st, dirfd, p, &mut virt)?;
                    Some(Target { virt, same })
                })
            };
            let (Some(mut ot), Some(mut nt)) = (abs(ot, olddirfd, o), abs(nt, newdirfd, n)) else {
                return Detour::Bypass;
            };
            match st
                .view()
                .rename(ot.virt.as_bytes(), nt.virt.as_bytes(), flags)
            {
                Change::Outside if ot.same && nt.same => Detour::Bypass,
                Change::Outside => sys(unsafe {
                    // SAFETY: both paths NUL-terminated.
                    real::renameat2(
                        AT_FDCWD,
                        ot.virt.as_c_ptr(),
                        AT_FDCWD,
                        nt.virt.as_c_ptr(),
                        flags,
                    )
                }),
                c => change(c),
            }
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn renameat(
    olddirfd: c_int,
    old: *const c_char,
    newdirfd: c_int,
    new: *const c_char,
) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { renameat2(olddirfd, old, newdirfd, new, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { renameat2(AT_FDCWD, old, AT_FDCWD, new, 0) }
}

// ---------------------------------------------------------------- temporary files

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// glibc's mkstemp family opens through internal calls: fill the X's here and
/// create through the hooks, so temporary files in the view land where creates go.
unsafe fn make_temp(
    template: *mut c_char,
    suffix: c_int,
    mut create: impl FnMut(*const c_char) -> c_int,
) -> c_int {
    // SAFETY: the caller passes a NUL-terminated, writable template.
    let Some(t) = (unsafe { bytes(template) }) else {
        set_errno(libc::EINVAL);
        return -1;
    };
    let len = t.len();
    let suffix = suffix.max(0) as usize;
    if len < 6 + suffix || &t[len - 6 - suffix..len - suffix] != b"XXXXXX" {
        set_errno(libc::EINVAL);
        return -1;
    }
    let start = len - 6 - suffix;
    for _ in 0..1000 {
        let mut rnd = [0u8; 6];
        // SAFETY: rnd has the 6 bytes we ask for.
        unsafe { libc::getrandom(rnd.as_mut_ptr().cast(), 6, 0) };
        for (i, r) in rnd.iter().enumerate() {
            // SAFETY: start + i lies inside the template's XXXXXX run (checked above).
            unsafe { *template.add(start + i) = LETTERS[*r as usize % LETTERS.len()] as c_char };
        }
        let r = create(template);
        if r >= 0 || errno() != libc::EEXIST {
            return r;
        }
    }
    set_errno(libc::EEXIST);
    -1
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemps(template: *mut c_char, suffixlen: c_int, flags: c_int) -> c_int {
    let flags = (flags & !libc::O_ACCMODE) | libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
    // SAFETY: the template is the caller's; flags and mode are valid for openat.
    unsafe {
        make_temp(template, suffixlen, |p| {
            crate::hooks::open::usvfs_openat(AT_FDCWD, p, flags, 0o600)
        })
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemp(template: *mut c_char) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    unsafe { mkostemps(template, 0, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemp64(template: *mut c_char) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    unsafe { mkostemps(template, 0, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemp(template: *mut c_char, flags: c_int) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    unsafe { mkostemps(template, 0, flags) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemp64(template: *mut c_char, flags: c_int) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    unsafe { mkostemps(template, 0, flags) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemps(template: *mut c_char, suffixlen: c_int) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    unsafe { mkostemps(template, suffixlen, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemps64(template: *mut c_char, suffixlen: c_int) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    unsafe { mkostemps(template, suffixlen, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemps64(
    template: *mut c_char,
    suffixlen: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    unsafe { mkostemps(template, suffixlen, flags) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdtemp(template: *mut c_char) -> *mut c_char {
    // SAFETY: the caller passes a NUL-terminated, writable template.
    let r = unsafe { make_temp(template, 0, |p| mkdir(p, 0o700)) };
    if r == 0 {
        template
    } else {
        std::ptr::null_mut()
    }
}
