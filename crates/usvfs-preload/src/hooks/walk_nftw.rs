//! `nftw` and `ftw`. glibc's own walk calls its internal `opendir`/`stat`,
//! which no preload library can reach, so a hooked process would walk the real
//! disk. This walk has glibc's semantics (flags, visit order, callback return
//! values, cycle check) but goes through the hooked functions.

#![allow(clippy::missing_safety_doc)]

use std::collections::HashSet;
use std::ffi::CStr;

use libc::{c_char, c_int};

use crate::state;

#[repr(C)]
pub struct Ftw {
    pub base: c_int,
    pub level: c_int,
}

type NftwFn = unsafe extern "C" fn(*const c_char, *const libc::stat, c_int, *mut Ftw) -> c_int;
type FtwFn = unsafe extern "C" fn(*const c_char, *const libc::stat, c_int) -> c_int;

const FTW_F: c_int = 0;
const FTW_D: c_int = 1;
const FTW_DNR: c_int = 2;
const FTW_NS: c_int = 3;
const FTW_SL: c_int = 4;
const FTW_DP: c_int = 5;
const FTW_SLN: c_int = 6;

const FTW_PHYS: c_int = 1;
const FTW_MOUNT: c_int = 2;
const FTW_CHDIR: c_int = 4;
const FTW_DEPTH: c_int = 8;
const FTW_ACTIONRETVAL: c_int = 16;

const FTW_SKIP_SUBTREE: c_int = 2;
const FTW_SKIP_SIBLINGS: c_int = 3;

/// ftw reports no symlinks and no post-order visits: map nftw's flags to its.
const FTW_MAP: [c_int; 7] = [FTW_F, FTW_D, FTW_DNR, FTW_NS, FTW_F, FTW_D, FTW_NS];

struct Walk<'a> {
    path: Vec<u8>,
    flags: c_int,
    dev: u64,
    ftw: Ftw,
    seen: HashSet<(u64, u64)>,
    call: &'a mut dyn FnMut(*const c_char, *const libc::stat, c_int, *mut Ftw) -> c_int,
}

fn stat_of(path: &[u8], follow: bool) -> Result<libc::stat, i32> {
    let mut p = path.to_vec();
    p.push(0);
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: NUL-terminated path; goes through the hooked functions.
    let r = unsafe {
        if follow {
            libc::stat(p.as_ptr().cast(), st.as_mut_ptr())
        } else {
            libc::lstat(p.as_ptr().cast(), st.as_mut_ptr())
        }
    };
    if r == 0 {
        // SAFETY: stat succeeded.
        Ok(unsafe { st.assume_init() })
    } else {
        Err(crate::guard::errno())
    }
}

fn is(st: &libc::stat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

impl Walk<'_> {
    fn callback(&mut self, st: &libc::stat, flag: c_int) -> c_int {
        let mut p = self.path.clone();
        p.push(0);
        (self.call)(p.as_ptr().cast(), st, flag, &mut self.ftw)
    }

    fn action(&self) -> bool {
        self.flags & FTW_ACTIONRETVAL != 0
    }

    /// Lists a directory through the hooked stream functions.
    fn read_names(&self) -> Option<Vec<Vec<u8>>> {
        let mut p = self.path.clone();
        p.push(0);
        // SAFETY: NUL-terminated path; the stream is closed below.
        let d = unsafe { super::dir::opendir(p.as_ptr().cast()) };
        if d.is_null() {
            return None;
        }
        let mut names = Vec::new();
        loop {
            // SAFETY: open stream.
            let e = unsafe { super::dir::readdir64(d) };
            if e.is_null() {
                break;
            }
            // SAFETY: valid entry.
            let n = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) }.to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        // SAFETY: open stream.
        unsafe { super::dir::closedir(d) };
        Some(names)
    }

    fn dir(&mut self, st: &libc::stat) -> c_int {
        let Some(names) = self.read_names() else {
            let e = crate::guard::errno();
            return if e == libc::EACCES {
                self.callback(st, FTW_DNR)
            } else {
                -1
            };
        };
        if self.flags & FTW_DEPTH == 0 {
            let r = self.callback(st, FTW_D);
            if r != 0 {
                if self.action() && r == FTW_SKIP_SUBTREE {
                    return 0;
                }
                return r;
            }
        }
        let saved_cwd = if self.flags & FTW_CHDIR != 0 {
            // SAFETY: plain descriptor calls through the hooks.
            let fd = unsafe {
                libc::open(
                    c".".as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            let mut p = self.path.clone();
            p.push(0);
            // SAFETY: NUL-terminated path.
            unsafe { libc::chdir(p.as_ptr().cast()) };
            Some(fd)
        } else {
            None
        };
        let (saved_base, saved_len) = (self.ftw.base, self.path.len());
        self.ftw.level += 1;
        if !self.path.ends_with(b"/") {
            self.path.push(b'/');
        }
        self.ftw.base = self.path.len() as c_int;
        let mut result = 0;
        for name in names {
            self.path.truncate(self.ftw.base as usize);
            self.path.extend_from_slice(&name);
            result = self.entry();
            if result != 0 {
                if self.action() && result == FTW_SKIP_SIBLINGS {
                    result = 0;
                }
                break;
            }
        }
        self.path.truncate(saved_len);
        self.ftw.base = saved_base;
        self.ftw.level -= 1;
        if let Some(fd) = saved_cwd {
            // SAFETY: fd from open above.
            unsafe {
                libc::fchdir(fd);
                libc::close(fd);
            }
        }
        if result == 0 && self.flags & FTW_DEPTH != 0 {
            result = self.callback(st, FTW_DP);
            if self.action() && result == FTW_SKIP_SUBTREE {
                result = 0;
            }
        }
        result
    }

    fn entry(&mut self) -> c_int {
        let phys = self.flags & FTW_PHYS != 0;
        let (st, flag) = match stat_of(&self.path, !phys) {
            Ok(st) if is(&st, libc::S_IFDIR) => (st, FTW_D),
            Ok(st) if is(&st, libc::S_IFLNK) => (st, FTW_SL),
            Ok(st) => (st, FTW_F),
            Err(e) if e != libc::EACCES && e != libc::ENOENT => return -1,
            Err(_) if phys => (zeroed_stat(), FTW_NS),
            Err(_) => match stat_of(&self.path, false) {
                Ok(l) if is(&l, libc::S_IFLNK) => (l, FTW_SLN),
                _ => (zeroed_stat(), FTW_NS),
            },
        };
        let mut result = 0;
        if flag == FTW_NS || self.flags & FTW_MOUNT == 0 || st.st_dev == self.dev {
            if flag == FTW_D {
                if phys || self.seen.insert((st.st_dev, st.st_ino)) {
                    result = self.dir(&st);
                }
            } else {
                result = self.callback(&st, flag);
            }
        }
        if self.action() && result == FTW_SKIP_SUBTREE {
            result = 0;
        }
        result
    }
}

fn zeroed_stat() -> libc::stat {
    // SAFETY: plain data.
    unsafe { std::mem::zeroed() }
}

fn walk(
    dir: *const c_char,
    flags: c_int,
    call: &mut dyn FnMut(*const c_char, *const libc::stat, c_int, *mut Ftw) -> c_int,
) -> c_int {
    // SAFETY: the caller passes a C string.
    let Some(d) = (unsafe { crate::lookup::bytes(dir) }) else {
        crate::guard::set_errno(libc::EFAULT);
        return -1;
    };
    if d.is_empty() {
        crate::guard::set_errno(libc::ENOENT);
        return -1;
    }
    let mut path = d.to_vec();
    while path.len() > 1 && path.ends_with(b"/") {
        path.pop();
    }
    let base = path
        .iter()
        .rposition(|&c| c == b'/')
        .map(|i| i + 1)
        .unwrap_or(0) as c_int;
    let mut w = Walk {
        path,
        flags,
        dev: 0,
        ftw: Ftw { base, level: 0 },
        seen: HashSet::new(),
        call,
    };
    let phys = flags & FTW_PHYS != 0;
    let result = match stat_of(&w.path, !phys) {
        Err(libc::ENOENT) if !phys => match stat_of(&w.path, false) {
            Ok(l) if is(&l, libc::S_IFLNK) => w.callback(&l, FTW_SLN),
            _ => -1,
        },
        Err(_) => -1,
        Ok(st) => {
            w.dev = st.st_dev;
            if is(&st, libc::S_IFDIR) {
                if !phys {
                    w.seen.insert((st.st_dev, st.st_ino));
                }
                w.dir(&st)
            } else {
                let flag = if is(&st, libc::S_IFLNK) {
                    FTW_SL
                } else {
                    FTW_F
                };
                w.callback(&st, flag)
            }
        }
    };
    if flags & FTW_ACTIONRETVAL != 0 && (result == FTW_SKIP_SUBTREE || result == FTW_SKIP_SIBLINGS)
    {
        0
    } else {
        result
    }
}

/// # Safety
/// As `nftw(3)`: `dir` is null or a NUL-terminated path, and `f` is safe to
/// call with a path, a `struct stat`, a type flag and a `struct FTW`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nftw(
    dir: *const c_char,
    f: Option<NftwFn>,
    _nopenfd: c_int,
    flags: c_int,
) -> c_int {
    let Some(f) = f else {
        crate::guard::set_errno(libc::EINVAL);
        return -1;
    };
    if state::get().is_none() {
        // SAFETY: the caller's arguments, passed on unchanged under the same
        // contract.
        return unsafe { crate::real::nftw(dir, Some(f), _nopenfd, flags) };
    }
    // SAFETY: f is the caller's callback (our contract); walk passes it a
    // NUL-terminated path, a stat and the walk's Ftw, valid for the call.
    let mut call = |p: *const c_char, st: *const libc::stat, flag: c_int, ftw: *mut Ftw| unsafe {
        f(p, st, flag, ftw)
    };
    walk(dir, flags, &mut call)
}

/// # Safety
/// As [`nftw`] (`struct stat64` is `struct stat` on 64-bit Linux).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nftw64(
    dir: *const c_char,
    f: Option<NftwFn>,
    nopenfd: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: same contract as nftw.
    unsafe { nftw(dir, f, nopenfd, flags) }
}

/// # Safety
/// As `ftw(3)`: `dir` is null or a NUL-terminated path, and `f` is safe to
/// call with a path, a `struct stat` and a type flag.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftw(dir: *const c_char, f: Option<FtwFn>, nopenfd: c_int) -> c_int {
    let Some(f) = f else {
        crate::guard::set_errno(libc::EINVAL);
        return -1;
    };
    if state::get().is_none() {
        // SAFETY: the caller's arguments, passed on unchanged under the same
        // contract.
        return unsafe { crate::real::ftw(dir, Some(f), nopenfd) };
    }
    // SAFETY: f is the caller's callback (our contract); walk passes it a
    // NUL-terminated path and a stat valid for the call, and flag is always
    // one of FTW_F..=FTW_SLN, in FTW_MAP's bounds.
    let mut call = |p: *const c_char, st: *const libc::stat, flag: c_int, _: *mut Ftw| unsafe {
        f(p, st, FTW_MAP[flag as usize])
    };
    walk(dir, 0, &mut call)
}

/// # Safety
/// As [`ftw`] (`struct stat64` is `struct stat` on 64-bit Linux).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftw64(dir: *const c_char, f: Option<FtwFn>, nopenfd: c_int) -> c_int {
    // SAFETY: same contract as ftw.
    unsafe { ftw(dir, f, nopenfd) }
}
