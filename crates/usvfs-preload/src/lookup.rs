//! From a hooked call's `(dirfd, path)` to the physical path to use, with the
//! cheap exits first: most paths never reach the index walk.

use libc::{AT_FDCWD, c_char, c_int};
use std::ffi::CStr;

use usvfs_view::path::{self, PathBuffer};
use usvfs_view::semantics::Resolved;

use crate::fdtable;
use crate::state::{self, State};

/// A lookup's buffers and result. About 20 KiB: kept on the heap, one spare
/// per thread reused from call to call, so hooked calls need little stack
/// (small thread stacks stay safe) and allocate nothing in the steady state.
pub struct Lookup {
    input: PathBuffer,
    /// The resolution: virtual and physical path, index node.
    r: Resolved,
}

/// A lookup reads as its resolution (`lk.virt`, `lk.phys`, `lk.res`).
impl std::ops::Deref for Lookup {
    type Target = Resolved;
    fn deref(&self) -> &Resolved {
        &self.r
    }
}

impl std::ops::DerefMut for Lookup {
    fn deref_mut(&mut self) -> &mut Resolved {
        &mut self.r
    }
}

thread_local! {
    static SPARE: Spare = const { Spare(std::cell::Cell::new(std::ptr::null_mut())) };
}

struct Spare(std::cell::Cell<*mut Lookup>);

impl Drop for Spare {
    fn drop(&mut self) {
        let p = self.0.replace(std::ptr::null_mut());
        if !p.is_null() {
            // SAFETY: allocated by `Lookup::new` with this layout.
            unsafe { std::alloc::dealloc(p.cast(), std::alloc::Layout::new::<Lookup>()) };
        }
    }
}

/// An owned `Lookup` that returns to the thread's spare slot when dropped.
pub struct LookupBox(std::ptr::NonNull<Lookup>);

impl std::ops::Deref for LookupBox {
    type Target = Lookup;
    fn deref(&self) -> &Lookup {
        // SAFETY: valid and exclusively owned while the box lives.
        unsafe { self.0.as_ref() }
    }
}

impl std::ops::DerefMut for LookupBox {
    fn deref_mut(&mut self) -> &mut Lookup {
        // SAFETY: as above.
        unsafe { self.0.as_mut() }
    }
}

impl Drop for LookupBox {
    fn drop(&mut self) {
        let p = self.0.as_ptr();
        let kept = SPARE
            .try_with(|s| {
                if s.0.get().is_null() {
                    s.0.set(p);
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if !kept {
            // SAFETY: allocated by `Lookup::new` with this layout.
            unsafe { std::alloc::dealloc(p.cast(), std::alloc::Layout::new::<Lookup>()) };
        }
    }
}

impl Lookup {
    /// A lookup ready for use (the thread's spare, or a fresh allocation).
    #[allow(clippy::new_ret_no_self)] // the owner type returns it to the spare slot
    pub fn new() -> LookupBox {
        let spare = SPARE
            .try_with(|s| s.0.replace(std::ptr::null_mut()))
            .unwrap_or(std::ptr::null_mut());
        let p = if spare.is_null() {
            // SAFETY: non-zero-sized layout.
            let p =
                unsafe { std::alloc::alloc(std::alloc::Layout::new::<Lookup>()) } as *mut Lookup;
            if p.is_null() {
                std::alloc::handle_alloc_error(std::alloc::Layout::new::<Lookup>());
            }
            p
        } else {
            spare
        };
        // SAFETY: p points to memory for a Lookup; only lengths and flags need values.
        unsafe {
            PathBuffer::init_at(std::ptr::addr_of_mut!((*p).input));
            Resolved::init_at(std::ptr::addr_of_mut!((*p).r));
            LookupBox(std::ptr::NonNull::new_unchecked(p))
        }
    }

    /// The node is a directory of the view (a merged listing).
    pub fn is_virtual_dir(&self, st: &State) -> bool {
        st.view().is_merged_dir(self.res.node)
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

/// A component of `p` is named like a destination's last component (the path
/// may reach a destination through a symlink).
fn names_anchor(st: &State, p: &[u8]) -> bool {
    path::components(p).any(|c| st.snap.anchors().any(|a| a == c))
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

/// Where `(dirfd, p)` is taken from in the view: `/` for an absolute path, the
/// logical working directory, or the virtual path a recorded descriptor was
/// opened on; and whether the kernel would start from that same place.
fn start_dir(dirfd: c_int, p: &[u8]) -> Option<(&'static [u8], bool)> {
    if p.first() == Some(&b'/') {
        Some((b"/", true))
    } else if p.is_empty() {
        None
    } else if dirfd == AT_FDCWD {
        state::cwd().map(|c| (&*c.path, !c.is_virtual))
    } else {
        fdtable::get(dirfd).map(|e| (&*e.vpath, false))
    }
}

/// Writes the absolute, normalized virtual path `(dirfd, p)` names into
/// `out`; returns whether the kernel would reach the same place from the
/// caller's own arguments (`None`: no virtual path).
pub fn virtual_target(dirfd: c_int, p: &[u8], out: &mut PathBuffer) -> Option<bool> {
    let (base, same) = start_dir(dirfd, p)?;
    path::normalize_into(p, base, out).ok()?;
    Some(same)
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
    if certainly_outside(st, dirfd, p) {
        return Outcome::Pass;
    }
    lookup_inside(st, dirfd, p, follow, lk)
}

/// [`lookup`] for a path that [`certainly_outside`] did not exclude.
pub fn lookup_inside(st: &State, dirfd: c_int, p: &[u8], follow: bool, lk: &mut Lookup) -> Outcome {
    let Some((base, caller_sees_same)) = start_dir(dirfd, p) else {
        return Outcome::Pass;
    };
    if path::normalize_into(p, base, &mut lk.input).is_err() {
        return Outcome::Pass;
    }
    let Lookup { input, r } = lk;
    match st.view().resolve(input.as_bytes(), follow, r) {
        Err(e) => Outcome::Fail(e),
        Ok(()) => {
            if !r.res.redirected && r.res.node.is_none() && caller_sees_same {
                return Outcome::Pass;
            }
            // Keep a trailing slash: it makes the kernel insist on a directory.
            if p.len() > 1 && p.ends_with(b"/") && !r.phys.as_bytes().ends_with(b"/") {
                let _ = r.phys.push_bytes(b"/");
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
