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
    /// Resolves the originals calls.c forwards to (from the constructor).
    pub fn usvfs_calls_init();
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
    /// The physical path handed to the real dlopen (it copies the name
    /// before it runs any constructor, so one buffer per thread is enough).
    static DL_PATH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The physical file of `(AT_FDCWD, p)` if the view redirects it and it exists.
fn in_view(st: &State, p: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    let mut lk = Lookup::new();
    match lookup(st, AT_FDCWD, p, true, &mut lk) {
        Outcome::Redirect => {
            let mut s = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: a NUL-terminated path and a writable stat buffer.
            if unsafe { real::stat(lk.phys.as_c_ptr(), s.as_mut_ptr()) } != 0 {
                return Err(());
            }
            Ok((lk.phys.as_bytes() != p).then(|| lk.phys.as_bytes().to_vec()))
        }
        Outcome::Fail(_) => Err(()),
        Outcome::Pass => {
            let mut s = std::mem::MaybeUninit::<libc::stat>::uninit();
            let mut c = p.to_vec();
            c.push(0);
            // SAFETY: a NUL-terminated path and a writable stat buffer.
            if unsafe { real::stat(c.as_ptr().cast(), s.as_mut_ptr()) } != 0 {
                return Err(());
            }
            Ok(None)
        }
    }
}

/// What the real dlopen should load for `file`: a path with a slash that the
/// view redirects, or a bare name found first in an `LD_LIBRARY_PATH`
/// directory of the view, becomes its physical file. `None`: the caller's own.
fn dl_physical(st: &State, file: &[u8]) -> Option<Vec<u8>> {
    if file.contains(&b'/') {
        return in_view(st, file).ok().flatten();
    }
    // SAFETY: getenv returns NULL or a C string (read, not kept).
    let dirs = unsafe { bytes(libc::getenv(c"LD_LIBRARY_PATH".as_ptr())) }?.to_vec();
    for dir in dirs.split(|&c| c == b':' || c == b';') {
        let mut cand = if dir.is_empty() {
            b".".to_vec()
        } else {
            dir.to_vec()
        };
        cand.push(b'/');
        cand.extend_from_slice(file);
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
    let found = std::panic::catch_unwind(|| dl_physical(st, f))
        .ok()
        .flatten();
    guard::set_errno(saved);
    let Some(mut phys) = found else { return file };
    phys.push(0);
    DL_PATH
        .try_with(|b| {
            let mut b = b.borrow_mut();
            *b = phys;
            b.as_ptr().cast::<c_char>()
        })
        .unwrap_or(file)
}
