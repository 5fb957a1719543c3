//! From a hooked call's `(dirfd, path)` to the physical path to use, with the
//! cheap exits first: most paths never reach the index walk.

use libc::{AT_FDCWD, c_char, c_int};
use std::ffi::CStr;

use usvfs_view::path::{self, PathBuffer};
use usvfs_view::semantics::Resolved;

use crate::fdtable;
use crate::parked::Parked;
use crate::state::{self, State};

/// A lookup's buffers and result. About 20 KiB: kept on the heap, a few
/// spares per thread reused from call to call, so hooked calls need little stack
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

/// Parked lookups per thread. More than one: a signal handler whose call
/// enters a hook while the interrupted hook holds a lookup (or two, for
/// `rename`) takes another parked one instead of allocating.
const SPARES: usize = 4;

thread_local! {
    static SPARE: Spare = const { Spare(Parked::new()) };
}

struct Spare(Parked<Lookup, SPARES>);

impl Drop for Spare {
    fn drop(&mut self) {
        // At every thread's exit.
        self.0.drain(|p| {
            let p = p.map_addr(|a| a & !UNREADY);
            // SAFETY: allocated by `alloc_lookup`, owned by no one else once taken.
            unsafe { std::alloc::dealloc(p.cast(), std::alloc::Layout::new::<Lookup>()) };
        })
    }
}

/// Memory for one `Lookup` (uninitialized).
fn alloc_lookup() -> *mut Lookup {
    // SAFETY: non-zero-sized layout.
    let p = unsafe { std::alloc::alloc(std::alloc::Layout::new::<Lookup>()) } as *mut Lookup;
    if p.is_null() {
        std::alloc::handle_alloc_error(std::alloc::Layout::new::<Lookup>());
    }
    p
}

/// Tag on a parked lookup that was never made valid: one parked ahead for a
/// nested call keeps its pages untouched until one takes it.
const UNREADY: usize = 1;
const _: () = assert!(std::mem::align_of::<Lookup>() > UNREADY);

/// Makes the lookup at `p` valid and empty without touching its buffers.
///
/// # Safety
/// `p` is memory for a `Lookup` from [`alloc_lookup`], exclusively ours.
unsafe fn made_ready(p: *mut Lookup) -> std::ptr::NonNull<Lookup> {
    // SAFETY: per the contract; only lengths and flags need values.
    unsafe {
        PathBuffer::init_at(std::ptr::addr_of_mut!((*p).input));
        Resolved::init_at(std::ptr::addr_of_mut!((*p).r));
        std::ptr::NonNull::new_unchecked(p)
    }
}

/// An owned `Lookup` that returns to the thread's spare slots when dropped.
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
        if !SPARE.try_with(|s| s.0.park(p)).unwrap_or(false) {
            // SAFETY: allocated by `alloc_lookup` with this layout.
            unsafe { std::alloc::dealloc(p.cast(), std::alloc::Layout::new::<Lookup>()) };
        }
    }
}

impl Lookup {
    /// A lookup ready for use: a parked one of this thread, or a fresh
    /// allocation. A miss parks one more as well, so the next call nested
    /// at that depth (a signal handler's) finds one without allocating.
    #[allow(clippy::new_ret_no_self)] // the owner type returns it to the spare slots
    pub fn new() -> LookupBox {
        let spare = SPARE
            .try_with(|s| s.0.take())
            .unwrap_or(std::ptr::null_mut());
        if spare.addr() & UNREADY != 0 {
            // Parked ahead, never made valid (its pages untouched so far).
            let p = spare.map_addr(|a| a & !UNREADY);
            // SAFETY: memory for a Lookup from `alloc_lookup`, ours once taken.
            return LookupBox(unsafe { made_ready(p) });
        }
        if let Some(p) = std::ptr::NonNull::new(spare) {
            // SAFETY: a parked lookup without the tag was used before (it
            // is valid) and is exclusively ours once taken.
            let lk = unsafe { &mut *p.as_ptr() };
            lk.input.clear();
            // The walk cache stays: the next walk starts where the last one
            // went (a game's files share long prefixes).
            lk.r.reuse();
            return LookupBox(p);
        }
        let extra = alloc_lookup();
        if !SPARE
            .try_with(|s| s.0.park(extra.map_addr(|a| a | UNREADY)))
            .unwrap_or(false)
        {
            // SAFETY: just allocated with this layout, never shared.
            unsafe { std::alloc::dealloc(extra.cast(), std::alloc::Layout::new::<Lookup>()) };
        }
        // SAFETY: just allocated for a Lookup, never shared.
        LookupBox(unsafe { made_ready(alloc_lookup()) })
    }

    /// The view lists this directory itself: a merged index directory, or
    /// one outside the index that the journal adds entries to (files
    /// created in a real directory land in the create target).
    pub fn is_virtual_dir(&self, st: &State) -> bool {
        let v = st.view();
        v.is_merged_dir(self.res.node)
            || (self.res.node.is_none() && v.lists_with_journal(self.virt.as_bytes()))
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
    if st.root_mapped || fd_path(p).is_some() {
        return true;
    }
    match path::components(p).next() {
        None => false,
        Some(first) => st.snap.child(st.snap.root(), first).is_some() || names_anchor(st, p),
    }
}

/// Where `(dirfd, p)` is taken from in the view: `/` for an absolute path, the
/// logical working directory, or the virtual path of a descriptor of the
/// view; and whether the kernel would start from that same place.
fn start_dir<'p>(st: &State, dirfd: c_int, p: &'p [u8]) -> Option<(&'static [u8], &'p [u8], bool)> {
    if let Some((fd, rest)) = fd_path(p) {
        // The kernel follows the descriptor's magic link to its physical
        // directory; the view continues from its virtual path instead.
        return match fd_entry(st, fd) {
            Some(e) => Some((&*e.vpath, rest, false)),
            None => Some((b"/", p, true)),
        };
    }
    let (base, same) = if p.first() == Some(&b'/') {
        (&b"/"[..], true)
    } else if p.is_empty() {
        return None;
    } else if dirfd == AT_FDCWD {
        state::cwd().map(|c| (&*c.path, !c.is_virtual))?
    } else {
        fd_entry(st, dirfd).map(|e| (&*e.vpath, false))?
    };
    Some((base, p, same))
}

/// `/proc/self/fd/N/rest`, `/proc/thread-self/fd/N/rest` or `/dev/fd/N/rest`
/// (a path through a descriptor's magic link): `(N, rest)`. `rest` may be
/// empty. Cheap: two byte comparisons for every other path.
#[inline]
fn fd_path(p: &[u8]) -> Option<(c_int, &[u8])> {
    if p.len() < 9 || (p[1] != b'p' && p[1] != b'd') {
        return None;
    }
    let tail = p
        .strip_prefix(b"/proc/self/fd/")
        .or_else(|| p.strip_prefix(b"/proc/thread-self/fd/"))
        .or_else(|| p.strip_prefix(b"/dev/fd/"))?;
    let end = tail.iter().position(|&c| c == b'/').unwrap_or(tail.len());
    let digits = &tail[..end];
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let fd = digits
        .iter()
        .fold(0i32, |n, &d| n * 10 + i32::from(d - b'0'));
    // Every slash after the number: `N//etc` is `etc` below the descriptor,
    // as the kernel walks it, not `/etc`.
    let rest = &tail[end..];
    let from = rest.iter().position(|&c| c != b'/').unwrap_or(rest.len());
    Some((fd, &rest[from..]))
}

/// The virtual path descriptor `fd` stands for, if it belongs to the view.
/// A recorded entry is trusted only while the descriptor still refers to
/// the same file; a descriptor no hook saw opened (or whose entry is stale)
/// is classified from the physical path the kernel reports for it, once.
pub fn fd_entry(st: &State, fd: c_int) -> Option<&'static fdtable::FdEntry> {
    match fdtable::state(fd) {
        fdtable::Slot::Physical => None,
        fdtable::Slot::Virtual(e) => {
            let now = fdtable::identity(fd);
            let ino = e.ino.load(std::sync::atomic::Ordering::Relaxed);
            if ino == 0 {
                // Recorded without its identity (a plain file open): take it
                // now, at the first use relative to it.
                if let Some((d, i)) = now {
                    e.dev.store(d, std::sync::atomic::Ordering::Relaxed);
                    e.ino.store(i, std::sync::atomic::Ordering::Relaxed);
                    return Some(e);
                }
                return classify(st, fd);
            }
            if now == Some((e.dev.load(std::sync::atomic::Ordering::Relaxed), ino)) {
                Some(e)
            } else {
                classify(st, fd)
            }
        }
        fdtable::Slot::Unknown => classify(st, fd),
    }
}

/// Reads `/proc/self/fd/N` and records the descriptor as virtual (its
/// physical path shows a path of the view) or physical.
#[cold]
#[inline(never)]
fn classify(st: &State, fd: c_int) -> Option<&'static fdtable::FdEntry> {
    if fd < 0 || crate::hooks::calls::in_vfork_child() {
        return None;
    }
    let mut link = PathBuffer::new();
    let _ = link.set(b"/proc/self/fd/");
    let mut digits = [0u8; 20];
    let _ = link.push_bytes(path::decimal(fd as u64, &mut digits));
    let mut target = [0u8; path::PATH_MAX];
    let view = st.view();
    let Ok(n) = view.fs.readlink(link.as_bytes(), &mut target) else {
        // Closed, or /proc is not mounted: nothing to go by.
        fdtable::remove(fd);
        return None;
    };
    let phys = &target[..n];
    let mut virt = PathBuffer::new();
    let mut lk = Lookup::new();
    let in_view = phys.first() == Some(&b'/')
        && view.virtual_of_physical(phys, &mut virt).is_ok()
        && view.resolve(virt.as_bytes(), true, &mut lk).is_ok()
        && lk.res.in_view();
    if in_view {
        fdtable::insert(fd, lk.virt.as_bytes(), fdtable::Ident::Now);
        fdtable::get(fd)
    } else {
        fdtable::mark_physical(fd);
        None
    }
}

/// Writes the absolute, normalized virtual path `(dirfd, p)` names into
/// `out`; returns whether the kernel would reach the same place from the
/// caller's own arguments (`None`: no virtual path).
pub fn virtual_target(st: &State, dirfd: c_int, p: &[u8], out: &mut PathBuffer) -> Option<bool> {
    let (base, p, same) = start_dir(st, dirfd, p)?;
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
        fdtable::is_physical(dirfd)
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
    let _pin = fdtable::pin();
    let Some((base, rel, caller_sees_same)) = start_dir(st, dirfd, p) else {
        return Outcome::Pass;
    };
    // Into our own buffer even when already normal (then one copy): the
    // walk reads its input more than once and caches prefixes of it, and
    // the caller's string may be rewritten by another of its threads.
    if path::normalize_into(rel, base, &mut lk.input).is_err() {
        return Outcome::Pass;
    }
    let Lookup { input, r } = lk;
    match st.view().resolve(input.as_bytes(), follow, r) {
        Err(e) => Outcome::Fail(e),
        Ok(()) => {
            // Unchanged by the view: the caller's own call does it, unless
            // the journal adds entries to this real directory's listing
            // (one bit test; the journal is empty in most runs).
            if !r.res.redirected
                && r.res.node.is_none()
                && caller_sees_same
                && !st.view().lists_with_journal(r.virt.as_bytes())
            {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_path_continues_below_the_descriptor() {
        assert_eq!(fd_path(b"/proc/self/fd/5/etc/x"), Some((5, &b"etc/x"[..])));
        assert_eq!(fd_path(b"/proc/self/fd/5//etc/x"), Some((5, &b"etc/x"[..])));
        assert_eq!(fd_path(b"/dev/fd/12///"), Some((12, &b""[..])));
        assert_eq!(fd_path(b"/proc/thread-self/fd/7"), Some((7, &b""[..])));
        assert_eq!(fd_path(b"/proc/self/fdx/7"), None);
        assert_eq!(fd_path(b"/dev/fd/x"), None);
    }

    /// Lookups nested three deep (a two-lookup hook and a signal handler's
    /// call on top) come from the thread's parked buffers once warmed up.
    #[test]
    fn nested_lookups_reuse_parked_buffers() {
        let addr = |l: &LookupBox| l.0.as_ptr() as usize;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5 {
            let a = Lookup::new();
            let b = Lookup::new();
            let c = Lookup::new();
            let here = [addr(&a), addr(&b), addr(&c)];
            assert_eq!(
                here.iter().collect::<std::collections::HashSet<_>>().len(),
                3
            );
            seen.extend(here);
        }
        assert!(
            seen.len() <= SPARES,
            "{} buffers for 3 nested lookups",
            seen.len()
        );
    }
}
