//! The Rust halves of calls.c: `syscall(SYS_openat2)` with resolve flags,
//! the path `dlopen`/`dlmopen` load, and the vfork-child checks the tables
//! make before they change.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, c_char, c_int, c_long, c_uint, c_ulong};
use std::cell::RefCell;

use super::with_path;
use crate::lookup::{Lookup, Outcome, bytes, lookup};
use crate::state::{self, State};
use crate::{fdtable, guard, real};

unsafe extern "C" {
    /// Resolves the originals calls.c forwards to (from the constructor),
    /// each through `find(ctx, name)`, or `dlsym` when `find` is `None`.
    pub fn usvfs_calls_init(
        find: Option<unsafe extern "C" fn(*const libc::c_void, *const c_char) -> *mut libc::c_void>,
        ctx: *const libc::c_void,
    );
    fn usvfs_real_syscall(
        nr: c_long,
        a: c_long,
        b: c_long,
        c: c_long,
        d: c_long,
        e: c_long,
        f: c_long,
    ) -> c_long;
    fn usvfs_vfork_state() -> c_int;
    fn usvfs_dl_loaded(name: *const c_char) -> c_int;
    fn usvfs_vfork_chdir();
    pub fn usvfs_vfork_forget();
}

/// This thread runs a vfork child: the descriptor table and the working
/// directory belong to the suspended parent.
#[inline(always)]
pub fn in_vfork_child() -> bool {
    // SAFETY: reads this thread's own storage (and getpid while a vfork
    // was seen on it).
    unsafe { usvfs_vfork_state() != 0 }
}

/// A vfork child that changed directory (its relative paths are the kernel's).
#[inline(always)]
pub fn vfork_child_moved() -> bool {
    // SAFETY: as in_vfork_child.
    unsafe { usvfs_vfork_state() == 2 }
}

/// In a vfork child, records that it changed directory and returns true (the
/// parent's logical working directory must stay); false elsewhere.
pub fn vfork_child_chdir() -> bool {
    if !in_vfork_child() {
        return false;
    }
    // SAFETY: sets a flag in this thread's own storage.
    unsafe { usvfs_vfork_chdir() };
    true
}

// ------------------------------------------------------------------ syscall

const SYS_FACCESSAT2: c_long = 439;
const SYS_FCHMODAT2: c_long = 452;

/// `syscall(nr, a..f)` for a file-system call: the hook of its libc wrapper,
/// called directly (a program's own function of the same name must not be
/// reached: gnulib's renameat2 calls syscall() itself). `None`: not ours, or a
/// NULL path (the kernel's own rules apply), so the real syscall().
///
/// # Safety
/// The registers are what the kernel call takes (pointers valid as it needs).
unsafe fn route(
    nr: c_long,
    a: c_long,
    b: c_long,
    c: c_long,
    d: c_long,
    e: c_long,
) -> Option<c_long> {
    use super::{cwd, dir, fd, inplace, link, open, stat, write};
    let p = |x: c_long| x as *const c_char;
    let i = |x: c_long| x as c_int;
    let nonnull = |x: c_long| (x != 0).then_some(());
    // SAFETY: each hook gets the registers as its libc wrapper's arguments,
    // under the same contract as the kernel call (our contract).
    unsafe {
        Some(match nr {
            #[cfg(target_arch = "x86_64")]
            libc::SYS_open => {
                nonnull(a)?;
                c_long::from(open::usvfs_openat(AT_FDCWD, p(a), i(b), c as c_uint))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_creat => {
                nonnull(a)?;
                c_long::from(open::creat(p(a), b as libc::mode_t))
            }
            libc::SYS_openat => {
                nonnull(b)?;
                c_long::from(open::usvfs_openat(i(a), p(b), i(c), d as c_uint))
            }
            libc::SYS_openat2 => {
                nonnull(b)?;
                nonnull(c)?;
                usvfs_openat2(a, p(b), c as *const OpenHow, d as c_ulong)
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_stat => {
                nonnull(a)?;
                c_long::from(stat::stat(p(a), b as *mut libc::stat))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_lstat => {
                nonnull(a)?;
                c_long::from(stat::lstat(p(a), b as *mut libc::stat))
            }
            libc::SYS_newfstatat => {
                nonnull(b)?;
                c_long::from(stat::fstatat(i(a), p(b), c as *mut libc::stat, i(d)))
            }
            libc::SYS_statx => {
                nonnull(b)?;
                c_long::from(stat::statx(
                    i(a),
                    p(b),
                    i(c),
                    d as c_uint,
                    e as *mut libc::statx,
                ))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_access => {
                nonnull(a)?;
                c_long::from(stat::access(p(a), i(b)))
            }
            // The kernel's faccessat has no flags argument.
            libc::SYS_faccessat => {
                nonnull(b)?;
                c_long::from(stat::faccessat(i(a), p(b), i(c), 0))
            }
            SYS_FACCESSAT2 => {
                nonnull(b)?;
                c_long::from(stat::faccessat(i(a), p(b), i(c), i(d)))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_rename => {
                nonnull(a)?;
                nonnull(b)?;
                c_long::from(write::rename(p(a), p(b)))
            }
            libc::SYS_renameat => {
                nonnull(b)?;
                nonnull(d)?;
                c_long::from(write::renameat(i(a), p(b), i(c), p(d)))
            }
            libc::SYS_renameat2 => {
                nonnull(b)?;
                nonnull(d)?;
                c_long::from(write::renameat2(i(a), p(b), i(c), p(d), e as c_uint))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_unlink => {
                nonnull(a)?;
                c_long::from(write::unlink(p(a)))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_rmdir => {
                nonnull(a)?;
                c_long::from(write::rmdir(p(a)))
            }
            libc::SYS_unlinkat => {
                nonnull(b)?;
                c_long::from(write::unlinkat(i(a), p(b), i(c)))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_mkdir => {
                nonnull(a)?;
                c_long::from(write::mkdir(p(a), b as libc::mode_t))
            }
            libc::SYS_mkdirat => {
                nonnull(b)?;
                c_long::from(write::mkdirat(i(a), p(b), c as libc::mode_t))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_link => {
                nonnull(a)?;
                nonnull(b)?;
                c_long::from(write::link(p(a), p(b)))
            }
            libc::SYS_linkat => {
                nonnull(b)?;
                nonnull(d)?;
                c_long::from(write::linkat(i(a), p(b), i(c), p(d), i(e)))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_symlink => {
                nonnull(a)?;
                nonnull(b)?;
                c_long::from(write::symlink(p(a), p(b)))
            }
            libc::SYS_symlinkat => {
                nonnull(a)?;
                nonnull(c)?;
                c_long::from(write::symlinkat(p(a), i(b), p(c)))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_readlink => {
                nonnull(a)?;
                link::readlink(p(a), b as *mut c_char, c as usize) as c_long
            }
            libc::SYS_readlinkat => {
                nonnull(b)?;
                link::readlinkat(i(a), p(b), c as *mut c_char, d as usize) as c_long
            }
            libc::SYS_getdents64 => {
                dir::getdents64(i(a), b as *mut libc::c_void, c as usize) as c_long
            }
            libc::SYS_chdir => {
                nonnull(a)?;
                c_long::from(cwd::chdir(p(a)))
            }
            libc::SYS_fchdir => c_long::from(cwd::fchdir(i(a))),
            libc::SYS_close => c_long::from(fd::close(i(a))),
            // The kernel's getcwd returns the length with the NUL.
            libc::SYS_getcwd => {
                nonnull(a)?;
                let r = cwd::getcwd(a as *mut c_char, b as usize);
                if r.is_null() {
                    -1
                } else {
                    libc::strlen(r) as c_long + 1
                }
            }
            libc::SYS_truncate => {
                nonnull(a)?;
                c_long::from(inplace::truncate(p(a), b as libc::off_t))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_chmod => {
                nonnull(a)?;
                c_long::from(inplace::chmod(p(a), b as libc::mode_t))
            }
            // The kernel's fchmodat has no flags argument.
            libc::SYS_fchmodat => {
                nonnull(b)?;
                c_long::from(inplace::fchmodat(i(a), p(b), c as libc::mode_t, 0))
            }
            SYS_FCHMODAT2 => {
                nonnull(b)?;
                c_long::from(inplace::fchmodat(i(a), p(b), c as libc::mode_t, i(d)))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_chown => {
                nonnull(a)?;
                c_long::from(inplace::chown(p(a), b as libc::uid_t, c as libc::gid_t))
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_lchown => {
                nonnull(a)?;
                c_long::from(inplace::lchown(p(a), b as libc::uid_t, c as libc::gid_t))
            }
            libc::SYS_fchownat => {
                nonnull(b)?;
                c_long::from(inplace::fchownat(
                    i(a),
                    p(b),
                    c as libc::uid_t,
                    d as libc::gid_t,
                    i(e),
                ))
            }
            // A NULL path means the descriptor itself (futimens): raw.
            libc::SYS_utimensat => {
                nonnull(b)?;
                c_long::from(inplace::utimensat(
                    i(a),
                    p(b),
                    c as *const libc::timespec,
                    i(d),
                ))
            }
            libc::SYS_setxattr => {
                nonnull(a)?;
                c_long::from(inplace::setxattr(
                    p(a),
                    p(b),
                    c as *const libc::c_void,
                    d as usize,
                    i(e),
                ))
            }
            libc::SYS_lsetxattr => {
                nonnull(a)?;
                c_long::from(inplace::lsetxattr(
                    p(a),
                    p(b),
                    c as *const libc::c_void,
                    d as usize,
                    i(e),
                ))
            }
            libc::SYS_getxattr => {
                nonnull(a)?;
                stat::getxattr(p(a), p(b), c as *mut libc::c_void, d as usize) as c_long
            }
            libc::SYS_lgetxattr => {
                nonnull(a)?;
                stat::lgetxattr(p(a), p(b), c as *mut libc::c_void, d as usize) as c_long
            }
            libc::SYS_listxattr => {
                nonnull(a)?;
                stat::listxattr(p(a), b as *mut c_char, c as usize) as c_long
            }
            libc::SYS_llistxattr => {
                nonnull(a)?;
                stat::llistxattr(p(a), b as *mut c_char, c as usize) as c_long
            }
            libc::SYS_removexattr => {
                nonnull(a)?;
                c_long::from(inplace::removexattr(p(a), p(b)))
            }
            libc::SYS_lremovexattr => {
                nonnull(a)?;
                c_long::from(inplace::lremovexattr(p(a), p(b)))
            }
            _ => return None,
        })
    }
}

/// calls.c's `syscall`: 1 with the result in `out` when the call was a
/// file-system call routed through its hook, 0 to make the real call.
///
/// # Safety
/// As `syscall(2)` for `nr`; `out` is writable.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn usvfs_syscall_route(
    nr: c_long,
    a: c_long,
    b: c_long,
    c: c_long,
    d: c_long,
    e: c_long,
    _f: c_long,
    out: *mut c_long,
) -> c_int {
    // SAFETY: the caller's registers under syscall(2)'s contract.
    match unsafe { route(nr, a, b, c, d, e) } {
        Some(r) => {
            // SAFETY: out is writable (our contract).
            unsafe { *out = r };
            1
        }
        None => 0,
    }
}

/// calls.c asks before it routes a call through the view.
#[unsafe(no_mangle)]
pub extern "C" fn usvfs_view_active() -> c_int {
    c_int::from(state::get().is_some() && !guard::internal())
}

// ------------------------------------------------------------------ openat2

#[repr(C)]
#[derive(Clone, Copy)]
pub struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_IN_ROOT: u64 = 0x10;
const RESOLVE_CACHED: u64 = 0x20;

/// `syscall(SYS_openat2, dirfd, path, how, size)`: without resolve flags (or
/// when creating) it is `openat`; with them, the view resolves the path and
/// the kernel applies the flags that still mean something on the physical
/// path (no symlinks, no magic links, cached only). `RESOLVE_BENEATH` and
/// `RESOLVE_IN_ROOT` confine to the descriptor's physical tree: the kernel
/// alone answers those.
///
/// # Safety
/// As `openat2(2)`: `path` is a C string and `how` points to `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usvfs_openat2(
    dirfd: c_long,
    path: *const c_char,
    how: *const OpenHow,
    size: c_ulong,
) -> c_long {
    // SAFETY: the caller's registers, passed on unchanged.
    let raw = || unsafe {
        usvfs_real_syscall(
            libc::SYS_openat2,
            dirfd,
            path as c_long,
            how as c_long,
            size as c_long,
            0,
            0,
        )
    };
    if (size as usize) < std::mem::size_of::<OpenHow>() {
        return raw();
    }
    // SAFETY: `how` holds at least an OpenHow (checked size); unaligned-safe read.
    let h = unsafe { how.read_unaligned() };
    let Ok(flags) = c_int::try_from(h.flags) else {
        return raw();
    };
    let creates = flags & (libc::O_CREAT | libc::O_TMPFILE) != 0;
    if h.resolve == 0 || creates {
        // SAFETY: the caller's path; flags and mode as openat takes them.
        return c_long::from(unsafe {
            super::open::usvfs_openat(dirfd as c_int, path, flags, h.mode as c_uint)
        });
    }
    if h.resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0 {
        return raw();
    }
    let follow = h.resolve & RESOLVE_NO_SYMLINKS == 0 && flags & libc::O_NOFOLLOW == 0;
    with_path(dirfd as c_int, path, follow, raw, |_, lk| {
        let phys = OpenHow {
            resolve: h.resolve & (RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_CACHED),
            ..h
        };
        // SAFETY: an absolute NUL-terminated path and an OpenHow of its size.
        let fd = unsafe {
            usvfs_real_syscall(
                libc::SYS_openat2,
                c_long::from(AT_FDCWD),
                lk.phys.as_c_ptr() as c_long,
                &phys as *const OpenHow as c_long,
                std::mem::size_of::<OpenHow>() as c_long,
                0,
                0,
            )
        };
        if fd >= 0 {
            fdtable::insert(
                fd as c_int,
                lk.virt.as_bytes(),
                fdtable::ident_for_flags(flags),
            );
        }
        fd
    })
}

// ------------------------------------------------------------------- dlopen

thread_local! {
    /// The physical paths handed to the real dlopen, the latest few: a
    /// plugin's constructor may dlopen again while the outer call runs.
    static DL_PATH: RefCell<([Vec<u8>; 4], usize)> =
        const { RefCell::new(([const { Vec::new() }; 4], 0)) };
}

/// `LD_LIBRARY_PATH` as the process started: ld.so reads it once, so a
/// later `setenv` changes no search.
static LIBRARY_PATH: std::sync::OnceLock<Option<Box<[u8]>>> = std::sync::OnceLock::new();

/// Called by the constructor.
pub fn remember_library_path() {
    // SAFETY: getenv returns NULL or a C string, copied at once.
    let v = unsafe { bytes(libc::getenv(c"LD_LIBRARY_PATH".as_ptr())) }.map(Box::from);
    let _ = LIBRARY_PATH.set(v);
}

/// The physical file of `(AT_FDCWD, p)` if the view redirects it and it exists.
fn in_view(st: &State, p: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    let mut lk = Lookup::new();
    match lookup(st, AT_FDCWD, p, true, &mut lk) {
        Outcome::Redirect => {
            real::stat_path(lk.phys.as_c_str()).map_err(|_| ())?;
            Ok((lk.phys.as_bytes() != p).then(|| lk.phys.as_bytes().to_vec()))
        }
        Outcome::Fail(_) => Err(()),
        Outcome::Pass => {
            let c = std::ffi::CString::new(p).map_err(|_| ())?;
            real::stat_path(&c).map_err(|_| ())?;
            Ok(None)
        }
    }
}

/// What the real dlopen should load for `file`: a path with a slash that the
/// view redirects, or a bare name found first in an `LD_LIBRARY_PATH`
/// directory of the view, becomes its physical file. `None`: the caller's own.
fn dl_physical(st: &State, file: &[u8], cfile: *const c_char) -> Option<Vec<u8>> {
    if file.contains(&b'/') {
        // Outside the view (most loads) the caller's name is right as it
        // is; a missing file keeps it too (the loader's error names it).
        let mut lk = Lookup::new();
        if !matches!(lookup(st, AT_FDCWD, file, true, &mut lk), Outcome::Redirect)
            || lk.phys.as_bytes() == file
        {
            return None;
        }
        return in_view(st, file).ok().flatten();
    }
    // SAFETY: cfile is file's NUL-terminated original.
    if unsafe { usvfs_dl_loaded(cfile) } != 0 {
        return None;
    }
    let dirs = LIBRARY_PATH.get()?.as_deref()?;
    // ld.so splits LD_LIBRARY_PATH at ':' and ';'.
    for cand in
        usvfs_view::semantics::exec::search_candidates(file, dirs, |c| c == b':' || c == b';')
    {
        match in_view(st, &cand) {
            // The first directory that has it decides, as in ld.so's search;
            // on the real disk the loader finds it there itself.
            Ok(found) => return found,
            Err(()) => continue,
        }
    }
    None
}

/// calls.c's `dlopen`/`dlmopen` load the returned name (valid until this
/// thread's next call).
///
/// # Safety
/// `file` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usvfs_dl_path(file: *const c_char) -> *const c_char {
    let Some(st) = state::get() else { return file };
    // SAFETY: dlopen's contract: file is NULL or a C string.
    let Some(f) = (unsafe { bytes(file) }) else {
        return file;
    };
    if guard::internal() || f.is_empty() {
        return file;
    }
    let saved = guard::errno();
    let found = std::panic::catch_unwind(|| dl_physical(st, f, file))
        .ok()
        .flatten();
    guard::set_errno(saved);
    let Some(mut phys) = found else { return file };
    phys.push(0);
    DL_PATH
        .try_with(|b| {
            let (ring, next) = &mut *b.borrow_mut();
            let slot = &mut ring[*next % 4];
            *next = next.wrapping_add(1);
            *slot = phys;
            slot.as_ptr().cast::<c_char>()
        })
        .unwrap_or(file)
}
