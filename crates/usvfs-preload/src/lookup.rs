//! From a hooked call's `(dirfd, path)` to the physical path to use, with the
//! cheap exits first: most paths never reach the index walk.

use libc::{AT_FDCWD, c_char, c_int};
use std::ffi::CStr;

use usvfs_core::path::{self, PathBuffer};
use usvfs_core::resolve::{ResolveFs, resolve_with};
use usvfs_core::{NodeId, NodeKind};

use crate::state::{self, State};
use crate::{fdtable, real};

/// The result of a lookup that touched the view.
pub struct Lookup {
    /// Normalized absolute virtual path, symlinks in layers expanded.
    pub virt: PathBuffer,
    /// Where the call must go.
    pub phys: PathBuffer,
    pub node: Option<NodeId>,
    /// The journal placed this path (or an ancestor) physically.
    pub from_journal: bool,
}

impl Lookup {
    #[inline(always)]
    pub fn new() -> Self {
        Lookup {
            virt: PathBuffer::new(),
            phys: PathBuffer::new(),
            node: None,
            from_journal: false,
        }
    }

    /// The node is a directory of the view (a merged listing).
    pub fn is_virtual_dir(&self, st: &State) -> bool {
        self.node.is_some_and(|n| st.snap.kind(n) == NodeKind::Dir)
    }
}

pub enum Outcome {
    /// Call the original with the caller's own arguments.
    Pass,
    /// Call the original with `lookup.phys` (absolute).
    Redirect,
    /// Fail with this errno.
    Fail(i32),
}

/// Real readlink/realpath for the resolver (the guard is held by our caller).
pub struct RealFs;

impl ResolveFs for RealFs {
    fn readlink(&self, p: &mut PathBuffer, out: &mut [u8]) -> Result<usize, i32> {
        // SAFETY: NUL-terminated path, valid buffer.
        let n = unsafe { real::readlink(p.as_c_ptr(), out.as_mut_ptr().cast(), out.len()) };
        if n < 0 {
            Err(crate::guard::errno())
        } else {
            Ok(n as usize)
        }
    }

    fn realpath(&self, p: &mut PathBuffer, out: &mut PathBuffer) -> Result<(), i32> {
        let mut buf = [0u8; path::PATH_MAX + 1];
        // SAFETY: buf holds PATH_MAX bytes.
        let r = unsafe { real::realpath(p.as_c_ptr(), buf.as_mut_ptr().cast()) };
        if r.is_null() {
            return Err(crate::guard::errno());
        }
        // SAFETY: realpath NUL-terminates.
        let s = unsafe { CStr::from_ptr(buf.as_ptr().cast()) };
        out.clear();
        out.push_bytes(s.to_bytes()).map_err(|_| libc::ENAMETOOLONG)
    }
}

fn has_component(st: &State, p: &[u8], pred: impl Fn(&[u8]) -> bool) -> bool {
    let _ = st;
    path::components(p).any(pred)
}

fn names_anchor(st: &State, p: &[u8]) -> bool {
    has_component(st, p, |c| st.snap.anchors().any(|a| a == c))
}

/// Could this absolute path touch the view? False for almost every path
/// outside the destinations: one binary search among the root's few children.
#[inline]
fn may_touch_absolute(st: &State, p: &[u8]) -> bool {
    if st.root_mapped {
        return true;
    }
    match path::components(p).next() {
        None => false,
        Some(first) => st.snap.child(st.snap.root(), first).is_some() || names_anchor(st, p),
    }
}

/// The absolute, normalized virtual path `(dirfd, p)` names, when the view may
/// be concerned (for creates: the caller decides with the create targets).
pub fn virtual_path(st: &State, dirfd: c_int, p: &[u8], out: &mut PathBuffer) -> bool {
    let _ = st;
    if p.first() == Some(&b'/') {
        path::normalize_into(p, b"/", out).is_ok()
    } else if p.is_empty() {
        false
    } else if dirfd == AT_FDCWD {
        match state::cwd() {
            Some(cwd) => path::normalize_into(p, &cwd.path, out).is_ok(),
            None => false,
        }
    } else {
        match fdtable::get(dirfd) {
            Some(e) => path::normalize_into(p, &e.vpath, out).is_ok(),
            None => false,
        }
    }
}

/// The cheap exits of [`lookup`], without its path buffers: true when the view
/// certainly does not change `(dirfd, p)`. Keeps the pass-through path free of
/// the 12 KiB of buffers a full lookup needs (small thread stacks stay safe).
#[inline]
pub fn certainly_outside(st: &State, dirfd: c_int, p: &[u8]) -> bool {
    if p.first() == Some(&b'/') {
        !may_touch_absolute(st, p)
    } else if p.is_empty() {
        true
    } else if dirfd == AT_FDCWD {
        match state::cwd() {
            None => true,
            Some(cwd) => {
                !cwd.on_node
                    && !cwd.is_virtual
                    && !path::components(p).any(|c| c == b"..")
                    && !names_anchor(st, p)
            }
        }
    } else {
        !fdtable::is_recorded(dirfd)
    }
}

/// Resolves `(dirfd, path)`. `follow`: follow a symlink in the last component.
pub fn lookup(st: &State, dirfd: c_int, p: &[u8], follow: bool, lk: &mut Lookup) -> Outcome {
    let mut input = PathBuffer::new();
    let caller_sees_same;
    if p.first() == Some(&b'/') {
        if !may_touch_absolute(st, p) {
            return Outcome::Pass;
        }
        if path::normalize_into(p, b"/", &mut input).is_err() {
            return Outcome::Pass;
        }
        caller_sees_same = true;
    } else if p.is_empty() {
        return Outcome::Pass;
    } else if dirfd == AT_FDCWD {
        let Some(cwd) = state::cwd() else {
            return Outcome::Pass;
        };
        let dotdot = path::components(p).any(|c| c == b"..");
        if !cwd.on_node && !cwd.is_virtual && !dotdot && !names_anchor(st, p) {
            return Outcome::Pass;
        }
        if path::normalize_into(p, &cwd.path, &mut input).is_err() {
            return Outcome::Pass;
        }
        caller_sees_same = !cwd.is_virtual;
    } else {
        let Some(e) = fdtable::get(dirfd) else {
            return Outcome::Pass;
        };
        if path::normalize_into(p, &e.vpath, &mut input).is_err() {
            return Outcome::Pass;
        }
        caller_sees_same = false;
    }
    match resolve_with(
        &st.snap,
        st.journal.as_ref(),
        &RealFs,
        input.as_bytes(),
        follow,
        &mut lk.virt,
        &mut lk.phys,
    ) {
        Err(e) => Outcome::Fail(e),
        Ok(r) => {
            lk.node = r.node;
            lk.from_journal = r.from_journal;
            if !r.redirected && r.node.is_none() && caller_sees_same {
                return Outcome::Pass;
            }
            // Keep a trailing slash: it makes the kernel insist on a directory.
            if p.len() > 1 && p.ends_with(b"/") && !lk.phys.as_bytes().ends_with(b"/") {
                let _ = lk.phys.push_bytes(b"/");
            }
            Outcome::Redirect
        }
    }
}

/// Borrows a C string argument as bytes.
///
/// # Safety
/// `p` must be null or a valid NUL-terminated string.
#[inline(always)]
pub unsafe fn bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}
