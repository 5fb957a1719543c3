//! The working directory: a process that `cd`s into a directory that exists
//! only in a mod is physically in the mod's directory, but `getcwd` reports the
//! virtual path and relative paths resolve against it.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, c_char, c_int, size_t};

use super::with_path;
use crate::guard::{self, set_errno};
use crate::lookup::{Lookup, lookup};
use crate::real;
use crate::state::{self, State};
use usvfs_view::path::PathBuffer;

/// Makes `logical` (absolute, normalized) the logical working directory.
pub fn adopt_cwd(st: &State, logical: &[u8]) {
    // Outside the view (most programs start there): no lookup buffers.
    if crate::lookup::certainly_outside(st, AT_FDCWD, logical) {
        return state::set_cwd(logical, false, false);
    }
    if index_ancestor(st, logical) {
        // What the lookup below would find, without its buffers (a
        // process's first lookup faults in every page of them).
        return state::set_cwd(logical, true, false);
    }
    let mut lk = Lookup::new();
    match lookup(st, AT_FDCWD, logical, true, &mut lk) {
        crate::lookup::Outcome::Redirect => {
            let is_virtual = lk.phys.as_bytes() != lk.virt.as_bytes();
            state::set_cwd(lk.virt.as_bytes(), lk.res.node.is_some(), is_virtual)
        }
        _ => state::set_cwd(logical, false, false),
    }
}

/// `p` is a directory of the index that no layer provides (an ancestor of a
/// destination, such as the game folder above its `Data`: where most
/// programs of a game start), spelled as the index spells it, and the
/// journal holds no records: the view leaves it where it is.
fn index_ancestor(st: &State, p: &[u8]) -> bool {
    use usvfs_view::index::NodeKind;
    if st.journal.as_ref().is_some_and(|j| !j.is_empty()) {
        return false;
    }
    let snap = &st.snap;
    let mut n = snap.root();
    for c in usvfs_view::path::components(p) {
        match snap.child(n, c) {
            Some(ch) if snap.kind(ch) == NodeKind::Dir && snap.layer(ch).is_none() => n = ch,
            _ => return false,
        }
    }
    n != snap.root()
}

/// After a chdir the view had no part in: take the kernel's answer. Not
/// inlined, and run where the stack has room: its buffers and lookup would
/// not fit a small thread stack on top of the hook's frame.
#[inline(never)]
fn adopt_real_cwd(st: &State) {
    let mut buf = PathBuffer::new();
    if state::real_cwd(&mut buf) {
        adopt_cwd(st, buf.as_bytes());
    }
}

/// # Safety
/// As `chdir(2)`: `path` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn chdir(path: *const c_char) -> c_int {
    with_path(
        AT_FDCWD,
        path,
        true,
        || {
            // SAFETY: the caller's path, passed on unchanged (our contract).
            let r = unsafe { real::chdir(path) };
            if r == 0
                && let Some(st) = state::get()
            {
                crate::stack::with_room(|| adopt_real_cwd(st));
            }
            r
        },
        |_, lk| {
            // SAFETY: as_c_ptr NUL-terminates lk.phys, which outlives the call.
            let r = unsafe { real::chdir(lk.phys.as_c_ptr()) };
            if r == 0 {
                let is_virtual = lk.phys.as_bytes() != lk.virt.as_bytes();
                state::set_cwd(lk.virt.as_bytes(), lk.res.node.is_some(), is_virtual);
            }
            r
        },
    )
}

/// # Safety
/// None beyond `fchdir(2)`'s: any descriptor number is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchdir(fd: c_int) -> c_int {
    // SAFETY: fchdir takes a plain descriptor number; a bad one yields EBADF.
    let r = unsafe { real::fchdir(fd) };
    if r != 0 {
        return r;
    }
    let Some(st) = state::get() else { return r };
    if guard::internal() {
        return r;
    }
    crate::stack::with_room(
        #[inline(never)]
        || {
            let vpath = {
                let _pin = crate::fdtable::pin();
                crate::lookup::fd_entry(st, fd).map(|e| e.vpath.clone())
            };
            match vpath {
                Some(v) => adopt_cwd(st, &v),
                None => adopt_real_cwd(st),
            }
        },
    );
    r
}

/// Copies the logical cwd out like getcwd does (allocating when `buf` is NULL).
///
/// # Safety
/// `buf` must be null or writable for `size` bytes.
unsafe fn copy_out(path: &[u8], buf: *mut c_char, size: size_t) -> *mut c_char {
    let need = path.len() + 1;
    let out = if buf.is_null() {
        let n = if size == 0 { need } else { size };
        if n < need {
            set_errno(libc::ERANGE);
            return std::ptr::null_mut();
        }
        // SAFETY: malloc has no preconditions; a null result is checked below.
        let p = unsafe { libc::malloc(n) } as *mut c_char;
        if p.is_null() {
            set_errno(libc::ENOMEM);
            return p;
        }
        p
    } else {
        if size == 0 {
            set_errno(libc::EINVAL);
            return std::ptr::null_mut();
        }
        if size < need {
            set_errno(libc::ERANGE);
            return std::ptr::null_mut();
        }
        buf
    };
    // SAFETY: out is non-null and holds at least need = path.len() + 1 bytes
    // (a malloc of n >= need, or the caller's buf of size >= need); it cannot
    // overlap path, which we own.
    unsafe {
        std::ptr::copy_nonoverlapping(path.as_ptr(), out.cast::<u8>(), path.len());
        *out.add(path.len()) = 0;
    }
    out
}

/// # Safety
/// As `getcwd(3)`: `buf` is null or writable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getcwd(buf: *mut c_char, size: size_t) -> *mut c_char {
    match state::cwd() {
        // SAFETY: buf is null or writable for size bytes (our contract).
        Some(c) if c.is_virtual && state::get().is_some() => unsafe {
            copy_out(&c.path, buf, size)
        },
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::getcwd(buf, size) },
    }
}

/// # Safety
/// As [`getcwd`]; `_buflen` (the buffer's real size) is not checked.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __getcwd_chk(
    buf: *mut c_char,
    size: size_t,
    _buflen: size_t,
) -> *mut c_char {
    // SAFETY: same contract as getcwd.
    unsafe { getcwd(buf, size) }
}

/// # Safety
/// As `getwd(3)`: `buf` is writable for `PATH_MAX` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getwd(buf: *mut c_char) -> *mut c_char {
    // SAFETY: buf holds PATH_MAX bytes (our contract).
    unsafe { getcwd(buf, libc::PATH_MAX as size_t) }
}

/// # Safety
/// None: the result is a fresh `malloc` block (or null) the caller frees.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn get_current_dir_name() -> *mut c_char {
    // SAFETY: a null buffer with size 0 makes getcwd allocate.
    unsafe { getcwd(std::ptr::null_mut(), 0) }
}
