//! Process-wide state of a hooked process: the mapped index, where the
//! instance lives, this library's own path, and the logical working directory.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use usvfs_core::Snapshot;
use usvfs_core::path::PathBuffer;

pub struct State {
    pub snap: Snapshot<'static>,
    /// Changes made by hooked processes since the snapshot (shared, live).
    pub journal: Option<usvfs_core::journal::Journal>,
    pub instance_dir: CString,
    pub lib_path: CString,
    /// The root node has a layer: every path may be virtual (no fast path).
    pub root_mapped: bool,
}

static STATE: OnceLock<State> = OnceLock::new();

#[inline(always)]
pub fn get() -> Option<&'static State> {
    STATE.get()
}

pub fn set(s: State) {
    let _ = STATE.set(s);
}

/// The logical working directory. Replaced, never mutated: readers load one
/// pointer, no lock (a lock held across `fork` would deadlock the child).
/// Old values are leaked on purpose; `chdir` is rare.
pub struct Cwd {
    pub path: Box<[u8]>,
    /// Relative paths may name index entries: resolve them in full.
    pub on_node: bool,
    /// `getcwd` must report `path` (the physical directory differs).
    pub is_virtual: bool,
}

static CWD: AtomicPtr<Cwd> = AtomicPtr::new(std::ptr::null_mut());

#[inline(always)]
pub fn cwd() -> Option<&'static Cwd> {
    let p = CWD.load(Ordering::Acquire);
    // SAFETY: set only from leaked boxes.
    (!p.is_null()).then(|| unsafe { &*p })
}

pub fn set_cwd(path: &[u8], on_node: bool, is_virtual: bool) {
    let c = Box::into_raw(Box::new(Cwd {
        path: path.into(),
        on_node,
        is_virtual,
    }));
    CWD.store(c, Ordering::Release);
}

/// Reads the kernel's idea of the working directory.
pub fn real_cwd(out: &mut PathBuffer) -> bool {
    let mut buf = [0u8; usvfs_core::path::PATH_MAX];
    // SAFETY: buf has the size we pass.
    let r = unsafe { crate::real::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if r.is_null() {
        return false;
    }
    // SAFETY: getcwd NUL-terminates on success.
    let s = unsafe { CStr::from_ptr(buf.as_ptr().cast()) };
    out.clear();
    out.push_bytes(s.to_bytes()).is_ok()
}
