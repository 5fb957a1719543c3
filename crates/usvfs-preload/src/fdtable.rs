//! Which descriptors refer to virtual paths: `*at` calls relative to them
//! resolve in the view, and `/proc/self/fd/N` reads back the virtual path.
//! One atomic slot per descriptor number, so the pass-through cost of `close`
//! is a single load. Every way a recorded descriptor can close (close, fclose,
//! closedir, close_range, dup2/dup3 over it) is hooked and clears its slot.

use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};

const SLOTS: usize = 1 << 16;

pub struct FdEntry {
    pub vpath: Box<[u8]>,
    /// Cursor of `getdents64` on a virtual directory descriptor.
    pub dents: Mutex<Option<usvfs_view::semantics::listing::Cursor>>,
}

static TABLE: [AtomicPtr<FdEntry>; SLOTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

#[inline(always)]
fn slot(fd: i32) -> Option<&'static AtomicPtr<FdEntry>> {
    usize::try_from(fd).ok().and_then(|i| TABLE.get(i))
}

/// Records that `fd` was opened on virtual path `vpath`.
pub fn insert(fd: i32, vpath: &[u8]) {
    let Some(s) = slot(fd) else { return };
    let e = Box::into_raw(Box::new(FdEntry {
        vpath: vpath.into(),
        dents: Mutex::new(None),
    }));
    let old = s.swap(e, Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: every non-null slot holds a Box we leaked.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// Forgets `fd` (it is being closed or replaced).
#[inline(always)]
pub fn remove(fd: i32) {
    let Some(s) = slot(fd) else { return };
    if s.load(Ordering::Relaxed).is_null() {
        return;
    }
    let old = s.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: see insert.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// Forgets every descriptor in `lo..=hi`.
pub fn remove_range(lo: u32, hi: u32) {
    let hi = (hi as usize).min(SLOTS - 1);
    for fd in lo as usize..=hi {
        remove(fd as i32);
    }
}

#[inline(always)]
pub fn is_recorded(fd: i32) -> bool {
    slot(fd).is_some_and(|s| !s.load(Ordering::Relaxed).is_null())
}

/// The entry of a recorded descriptor.
#[inline(always)]
pub fn get(fd: i32) -> Option<&'static FdEntry> {
    let p = slot(fd)?.load(Ordering::Acquire);
    // SAFETY: entries are freed only when their descriptor closes; using a
    // descriptor while another thread closes it is the program's own race.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// `dup`: the new descriptor names the same virtual path.
pub fn copy(from: i32, to: i32) {
    remove(to);
    if let Some(e) = get(from) {
        let vpath = e.vpath.clone();
        insert(to, &vpath);
    }
}
