//! The original C library functions, found once in the constructor where
//! `dlsym(RTLD_NEXT)` would find them (`next.rs` searches the symbol tables
//! for all at once; `dlsym` lazily if a hook runs before it). A missing symbol makes the
//! call fail with `ENOSYS` instead of crashing the host.

#![allow(non_upper_case_globals, clippy::missing_safety_doc)]

use libc::{DIR, FILE, c_char, c_int, c_long, c_uint, dirent64, pid_t, size_t, ssize_t};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a call returns when its original is missing.
pub trait Failure {
    fn failure() -> Self;
}
impl Failure for c_int {
    fn failure() -> Self {
        -1
    }
}
impl Failure for c_long {
    fn failure() -> Self {
        -1
    }
}
impl Failure for isize {
    fn failure() -> Self {
        -1
    }
}
impl<T> Failure for *mut T {
    fn failure() -> Self {
        std::ptr::null_mut()
    }
}
impl Failure for () {
    fn failure() -> Self {}
}
impl<R: Failure> Failure for Option<R> {
    fn failure() -> Self {
        Some(R::failure())
    }
}

#[inline(always)]
fn address(slot: &AtomicUsize, name: &'static [u8]) -> usize {
    let a = slot.load(Ordering::Relaxed);
    if a != 0 {
        return a;
    }
    // SAFETY: name is NUL-terminated.
    let a = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
    slot.store(a, Ordering::Relaxed);
    a
}

/// The address `dlsym(RTLD_NEXT, name)` gives, from the table search of
/// [`crate::next`], or by `dlsym` where that search is unsure.
fn find(next: &crate::next::Next, name: &std::ffi::CStr) -> usize {
    match next.lookup(name) {
        crate::next::Found::Address(a) => a,
        // SAFETY: name is a C string.
        crate::next::Found::Unsure => unsafe {
            libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize
        },
    }
}

/// Fills `slot` through [`find`].
fn resolve(next: &crate::next::Next, slot: &AtomicUsize, name: &'static [u8]) {
    if slot.load(Ordering::Relaxed) != 0 {
        return;
    }
    if let Ok(n) = std::ffi::CStr::from_bytes_with_nul(name) {
        slot.store(find(next, n), Ordering::Relaxed);
    }
}

/// [`find`] for calls.c's own originals.
///
/// # Safety
/// `next` points to a live `Next`; `name` is a C string.
pub unsafe extern "C" fn find_for_c(
    next: *const libc::c_void,
    name: *const c_char,
) -> *mut libc::c_void {
    // SAFETY: the caller's contract.
    let (next, name) = unsafe {
        (
            &*next.cast::<crate::next::Next>(),
            std::ffi::CStr::from_ptr(name),
        )
    };
    find(next, name) as *mut libc::c_void
}

macro_rules! originals {
    ($( $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty; )*) => {
        $(
            pub mod $name {
                pub static ADDR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            }
            #[inline(always)]
            #[allow(dead_code)] // the table lists every hooked function, used or not
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                let a = address(&$name::ADDR, concat!(stringify!($name), "\0").as_bytes());
                if a == 0 {
                    // SAFETY: errno location is always valid.
                    unsafe { *libc::__errno_location() = libc::ENOSYS };
                    return <$ret as Failure>::failure();
                }
                // SAFETY: the symbol has this C signature in every glibc we support.
                let f: unsafe extern "C" fn($($ty),*) -> $ret = unsafe { std::mem::transmute(a) };
                // SAFETY: the symbol has this C signature; the arguments are the hook's, forwarded.
                unsafe { f($($arg),*) }
            }
        )*
        /// Resolves every original now, in the constructor, so no hook ever
        /// calls into the dynamic linker later (not fork- or signal-safe).
        /// Returns the search, for calls.c's originals.
        pub fn resolve_all() -> crate::next::Next {
            let next = crate::next::Next::after(resolve_all as *const () as usize);
            $( resolve(&next, &$name::ADDR, concat!(stringify!($name), "\0").as_bytes()); )*
            next
        }

        /// Each original by name, and its address (for tests).
        #[cfg(test)]
        pub fn addresses() -> Vec<(&'static str, usize)> {
            vec![$( (stringify!($name), $name::ADDR.load(Ordering::Relaxed)) ),*]
        }

        /// Each original by name, and whether it resolved (for tests).
        #[cfg(test)]
        pub fn resolved() -> Vec<(&'static str, bool)> {
            vec![$( (stringify!($name), $name::ADDR.load(Ordering::Relaxed) != 0) ),*]
        }
    };
}

originals! {
    openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int;
    close(fd: c_int) -> c_int;
    fcntl64(fd: c_int, cmd: c_int, arg: *mut libc::c_void) -> c_int;
    dup(fd: c_int) -> c_int;
    dup2(fd: c_int, to: c_int) -> c_int;
    dup3(fd: c_int, to: c_int, flags: c_int) -> c_int;
    recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t;
    bind(fd: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> c_int;
    connect(fd: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> c_int;
    sendto(fd: c_int, buf: *const libc::c_void, n: size_t, flags: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> ssize_t;
    recvmmsg(fd: c_int, msgs: *mut libc::mmsghdr, n: c_uint, flags: c_int, timeout: *mut libc::timespec) -> c_int;
    fopen(path: *const c_char, mode: *const c_char) -> *mut FILE;
    fopen64(path: *const c_char, mode: *const c_char) -> *mut FILE;
    freopen(path: *const c_char, mode: *const c_char, f: *mut FILE) -> *mut FILE;
    freopen64(path: *const c_char, mode: *const c_char, f: *mut FILE) -> *mut FILE;
    fclose(f: *mut FILE) -> c_int;
    stat(path: *const c_char, buf: *mut libc::stat) -> c_int;
    stat64(path: *const c_char, buf: *mut libc::stat64) -> c_int;
    lstat(path: *const c_char, buf: *mut libc::stat) -> c_int;
    lstat64(path: *const c_char, buf: *mut libc::stat64) -> c_int;
    fstatat(dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int;
    fstatat64(dirfd: c_int, path: *const c_char, buf: *mut libc::stat64, flags: c_int) -> c_int;
    __xstat(ver: c_int, path: *const c_char, buf: *mut libc::stat) -> c_int;
    __xstat64(ver: c_int, path: *const c_char, buf: *mut libc::stat64) -> c_int;
    __lxstat(ver: c_int, path: *const c_char, buf: *mut libc::stat) -> c_int;
    __lxstat64(ver: c_int, path: *const c_char, buf: *mut libc::stat64) -> c_int;
    __fxstatat(ver: c_int, dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int;
    __fxstatat64(ver: c_int, dirfd: c_int, path: *const c_char, buf: *mut libc::stat64, flags: c_int) -> c_int;
    statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut libc::statx) -> c_int;
    access(path: *const c_char, mode: c_int) -> c_int;
    faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int;
    euidaccess(path: *const c_char, mode: c_int) -> c_int;
    eaccess(path: *const c_char, mode: c_int) -> c_int;
    readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t;
    readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t;
    realpath(path: *const c_char, out: *mut c_char) -> *mut c_char;
    opendir(path: *const c_char) -> *mut DIR;
    fdopendir(fd: c_int) -> *mut DIR;
    readdir(d: *mut DIR) -> *mut libc::dirent;
    readdir64(d: *mut DIR) -> *mut dirent64;
    readdir_r(d: *mut DIR, e: *mut libc::dirent, out: *mut *mut libc::dirent) -> c_int;
    readdir64_r(d: *mut DIR, e: *mut dirent64, out: *mut *mut dirent64) -> c_int;
    rewinddir(d: *mut DIR) -> ();
    seekdir(d: *mut DIR, pos: c_long) -> ();
    telldir(d: *mut DIR) -> c_long;
    closedir(d: *mut DIR) -> c_int;
    dirfd(d: *mut DIR) -> c_int;
    getdents64(fd: c_int, buf: *mut libc::c_void, count: size_t) -> ssize_t;
    chdir(path: *const c_char) -> c_int;
    fchdir(fd: c_int) -> c_int;
    getcwd(buf: *mut c_char, size: size_t) -> *mut c_char;
    execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
    fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
    posix_spawn(pid: *mut pid_t, path: *const c_char, fa: *const libc::posix_spawn_file_actions_t, attr: *const libc::posix_spawnattr_t, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    posix_spawnp(pid: *mut pid_t, file: *const c_char, fa: *const libc::posix_spawn_file_actions_t, attr: *const libc::posix_spawnattr_t, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    system(cmd: *const c_char) -> c_int;
    mkdirat(dirfd: c_int, path: *const c_char, mode: libc::mode_t) -> c_int;
    symlinkat(target: *const c_char, dirfd: c_int, path: *const c_char) -> c_int;
    mknodat(dirfd: c_int, path: *const c_char, mode: libc::mode_t, dev: libc::dev_t) -> c_int;
    linkat(olddirfd: c_int, old: *const c_char, newdirfd: c_int, new: *const c_char, flags: c_int) -> c_int;
    unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    remove(path: *const c_char) -> c_int;
    renameat2(olddirfd: c_int, old: *const c_char, newdirfd: c_int, new: *const c_char, flags: c_uint) -> c_int;
    truncate(path: *const c_char, len: libc::off_t) -> c_int;
    truncate64(path: *const c_char, len: libc::off64_t) -> c_int;
    chmod(path: *const c_char, mode: libc::mode_t) -> c_int;
    fchmodat(dirfd: c_int, path: *const c_char, mode: libc::mode_t, flags: c_int) -> c_int;
    chown(path: *const c_char, uid: libc::uid_t, gid: libc::gid_t) -> c_int;
    lchown(path: *const c_char, uid: libc::uid_t, gid: libc::gid_t) -> c_int;
    fchownat(dirfd: c_int, path: *const c_char, uid: libc::uid_t, gid: libc::gid_t, flags: c_int) -> c_int;
    utime(path: *const c_char, times: *const libc::utimbuf) -> c_int;
    utimes(path: *const c_char, times: *const libc::timeval) -> c_int;
    lutimes(path: *const c_char, times: *const libc::timeval) -> c_int;
    futimesat(dirfd: c_int, path: *const c_char, times: *const libc::timeval) -> c_int;
    utimensat(dirfd: c_int, path: *const c_char, times: *const libc::timespec, flags: c_int) -> c_int;
    setxattr(path: *const c_char, name: *const c_char, value: *const libc::c_void, size: size_t, flags: c_int) -> c_int;
    lsetxattr(path: *const c_char, name: *const c_char, value: *const libc::c_void, size: size_t, flags: c_int) -> c_int;
    removexattr(path: *const c_char, name: *const c_char) -> c_int;
    lremovexattr(path: *const c_char, name: *const c_char) -> c_int;
    fts_open(argv: *const *mut c_char, options: c_int, compar: Option<unsafe extern "C" fn(*const *const crate::hooks::walk_fts::FtsEnt, *const *const crate::hooks::walk_fts::FtsEnt) -> c_int>) -> *mut crate::hooks::walk_fts::FtsHead;
    fts_read(sp: *mut crate::hooks::walk_fts::FtsHead) -> *mut crate::hooks::walk_fts::FtsEnt;
    fts_children(sp: *mut crate::hooks::walk_fts::FtsHead, options: c_int) -> *mut crate::hooks::walk_fts::FtsEnt;
    fts_set(sp: *mut crate::hooks::walk_fts::FtsHead, e: *mut crate::hooks::walk_fts::FtsEnt, instr: c_int) -> c_int;
    fts_close(sp: *mut crate::hooks::walk_fts::FtsHead) -> c_int;
    nftw(dir: *const c_char, f: Option<unsafe extern "C" fn(*const c_char, *const libc::stat, c_int, *mut crate::hooks::walk_nftw::Ftw) -> c_int>, nopenfd: c_int, flags: c_int) -> c_int;
    ftw(dir: *const c_char, f: Option<unsafe extern "C" fn(*const c_char, *const libc::stat, c_int) -> c_int>, nopenfd: c_int) -> c_int;
    getxattr(path: *const c_char, name: *const c_char, value: *mut libc::c_void, size: size_t) -> ssize_t;
    lgetxattr(path: *const c_char, name: *const c_char, value: *mut libc::c_void, size: size_t) -> ssize_t;
    listxattr(path: *const c_char, list: *mut c_char, size: size_t) -> ssize_t;
    llistxattr(path: *const c_char, list: *mut c_char, size: size_t) -> ssize_t;
    popen(cmd: *const c_char, mode: *const c_char) -> *mut FILE;
    read(fd: c_int, buf: *mut libc::c_void, n: size_t) -> ssize_t;
    __read_chk(fd: c_int, buf: *mut libc::c_void, n: size_t, buflen: size_t) -> ssize_t;
    inotify_init() -> c_int;
    inotify_init1(flags: c_int) -> c_int;
    inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int;
    inotify_rm_watch(fd: c_int, wd: c_int) -> c_int;
}

/// `stat` of a real path through the original function (no view): its
/// attributes, or the errno it failed with.
pub fn stat_path(path: &std::ffi::CStr) -> Result<libc::stat, c_int> {
    let mut s = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a NUL-terminated path and a stat buffer of the right type.
    if unsafe { stat(path.as_ptr(), s.as_mut_ptr()) } != 0 {
        return Err(crate::guard::errno());
    }
    // SAFETY: stat succeeded, so it filled the buffer.
    Ok(unsafe { s.assume_init() })
}

#[cfg(test)]
mod tests {
    /// Every original in the table exists in the C library: a hook whose
    /// original is missing would fail every call with ENOSYS.
    #[test]
    fn every_original_resolves() {
        super::resolve_all();
        let missing: Vec<&str> = super::resolved()
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| n)
            .collect();
        assert!(missing.is_empty(), "originals not found: {missing:?}");
    }

    /// The constructor's table search finds what `dlsym(RTLD_NEXT)` finds.
    #[test]
    fn every_original_is_dlsyms_answer() {
        super::resolve_all();
        for (name, addr) in super::addresses() {
            let c = std::ffi::CString::new(name).unwrap();
            // SAFETY: a NUL-terminated name.
            let want = unsafe { libc::dlsym(libc::RTLD_NEXT, c.as_ptr()) } as usize;
            assert_eq!(addr, want, "{name}");
        }
    }
}
