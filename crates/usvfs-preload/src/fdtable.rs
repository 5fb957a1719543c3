//! What the engine knows about each descriptor number: nothing yet (opened
//! where no hook saw it: before the library loaded, by a raw system call,
//! received over a socket, inherited across exec), opened on the real disk
//! through a hook, or opened on a virtual path. `*at` calls relative to a
//! virtual descriptor resolve in the view, and `/proc/self/fd/N` reads back
//! its virtual path. One atomic slot per descriptor number, so the
//! pass-through cost of `open` and `close` is a single store or load.
//!
//! The table is a cache, never the only truth: an entry remembers the device
//! and inode its descriptor had, and [`crate::lookup::fd_entry`] checks them
//! before trusting it (a descriptor closed behind our back and reused must
//! not redirect later calls); unknown descriptors are classified from the
//! physical path the kernel reports for them.
//!
//! Entries are freed only while no thread reads any (a [`Pin`] counts the
//! readers): a thread closing a descriptor that another thread is using in
//! an `*at` call retires its entry, and the last reader out frees it.
//!
//! Freed entries are parked per thread (a few) and reused by the next
//! virtual open, path buffer included: `open` + `close` of a virtual file
//! then calls the allocator not at all, and so does not pay the two
//! signal-mask system calls each allocation holds signals with.

use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::hooks::calls::in_vfork_child;
use crate::parked::Parked;

const SLOTS: usize = 1 << 16;

pub struct FdEntry {
    /// Kept with its capacity when the entry is parked for reuse.
    pub vpath: Vec<u8>,
    /// The file the descriptor refers to (`st_dev`, `st_ino`); inode 0: not
    /// taken yet (see [`Ident`]).
    pub dev: AtomicU64,
    pub ino: AtomicU64,
    /// Cursor of `getdents64` on a virtual directory descriptor.
    pub dents: Mutex<Option<usvfs_view::semantics::listing::Cursor>>,
    /// Link in the list of retired entries.
    next: AtomicPtr<FdEntry>,
}

/// Threads between [`pin`] and the end of their `Pin`.
static READERS: AtomicUsize = AtomicUsize::new(0);
/// Entries taken out of the table, freed when no reader is left.
static RETIRED: AtomicPtr<FdEntry> = AtomicPtr::new(std::ptr::null_mut());

/// While it lives, no entry this thread reads from the table is freed.
pub struct Pin(());

/// Starts a read of the table's entries (nests; a signal handler may pin on
/// top of its interrupted thread).
#[inline]
pub fn pin() -> Pin {
    READERS.fetch_add(1, Ordering::SeqCst);
    Pin(())
}

impl Drop for Pin {
    #[inline]
    fn drop(&mut self) {
        if READERS.fetch_sub(1, Ordering::SeqCst) == 1 && !RETIRED.load(Ordering::Relaxed).is_null()
        {
            reclaim();
        }
    }
}

/// A forked child has one thread: readers of the others are gone with them.
pub fn after_fork_child() {
    READERS.store(0, Ordering::SeqCst);
}

/// Pushes a chain `first..=last` onto the retired list.
fn push_retired(first: *mut FdEntry, last: *mut FdEntry) {
    let mut head = RETIRED.load(Ordering::Relaxed);
    loop {
        // SAFETY: `last` is a retired entry only this thread holds.
        unsafe { (*last).next.store(head, Ordering::Relaxed) };
        match RETIRED.compare_exchange_weak(head, first, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

/// Frees the retired entries if no thread reads the table. A reader that
/// holds one of them pinned before its slot was emptied, so it still counts
/// when the list is taken. (A signal handler interleaving here is safe: the
/// list is taken whole by one swap, and the allocator holds signals while
/// inside `free`.)
fn reclaim() {
    // A vfork child leaves the parent's memory to the parent.
    if READERS.load(Ordering::SeqCst) != 0 || in_vfork_child() {
        return;
    }
    let mut p = RETIRED.swap(std::ptr::null_mut(), Ordering::SeqCst);
    if p.is_null() {
        return;
    }
    if READERS.load(Ordering::SeqCst) != 0 {
        // A reader arrived meanwhile: it may hold none of these, but tell
        // nothing apart; give them back.
        let mut last = p;
        loop {
            // SAFETY: the taken chain belongs to this thread alone.
            let n = unsafe { (*last).next.load(Ordering::Relaxed) };
            if n.is_null() {
                break;
            }
            last = n;
        }
        push_retired(p, last);
        return;
    }
    // Parked for reuse where this thread has room; the rest freed, with
    // signals held once for all of them.
    let mut rest: *mut FdEntry = std::ptr::null_mut();
    while !p.is_null() {
        // SAFETY: retired entries came from Box::into_raw, are out of the
        // table, and no reader pinned before their removal is left: this
        // thread owns them.
        let e = unsafe { &mut *p };
        let next = e.next.load(Ordering::Relaxed);
        if !park(e) {
            e.next.store(rest, Ordering::Relaxed);
            rest = p;
        }
        p = next;
    }
    if rest.is_null() {
        return;
    }
    crate::alloc::held(|| {
        while !rest.is_null() {
            // SAFETY: as above; not parked, owned by this thread.
            let b = unsafe { Box::from_raw(rest) };
            rest = b.next.load(Ordering::Relaxed);
        }
    });
}

/// Freed entries kept for reuse, per thread.
const PARKED: usize = 8;

thread_local! {
    static FREE: Free = const { Free(Parked::new()) };
}

struct Free(Parked<FdEntry, PARKED>);

impl Drop for Free {
    fn drop(&mut self) {
        self.0.drain(|p| {
            // SAFETY: parked entries came from Box::into_raw and belong to
            // this slot alone.
            drop(unsafe { Box::from_raw(p) });
        });
    }
}

/// Parks an entry this thread owns for reuse; false when there is no room,
/// or it holds a directory listing (freeing that is the allocator's work).
fn park(e: &mut FdEntry) -> bool {
    if e.vpath.capacity() > usvfs_view::path::PATH_MAX {
        return false;
    }
    e.dents.clear_poison();
    if e.dents.get_mut().map_or(true, |c| c.is_some()) {
        return false;
    }
    let p: *mut FdEntry = e;
    FREE.try_with(|f| f.0.park(p)).unwrap_or(false)
}

/// A parked entry of this thread, taken out of its slot.
fn unpark() -> *mut FdEntry {
    FREE.try_with(|f| f.0.take())
        .unwrap_or(std::ptr::null_mut())
}

/// What the table says about one descriptor number.
pub enum Slot {
    /// No hook saw it opened: classify it from its physical path.
    Unknown,
    /// Opened through a hook on the real disk: the view does not apply.
    Physical,
    Virtual(&'static FdEntry),
}

static TABLE: [AtomicPtr<FdEntry>; SLOTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

/// The mark of a descriptor opened on the real disk: an address no entry
/// has (never dereferenced).
#[inline(always)]
fn physical_mark() -> *mut FdEntry {
    std::ptr::dangling_mut()
}

#[inline(always)]
fn slot(fd: i32) -> Option<&'static AtomicPtr<FdEntry>> {
    usize::try_from(fd).ok().and_then(|i| TABLE.get(i))
}

/// Retires what a slot held, if it was an entry.
fn release(old: *mut FdEntry) {
    if !old.is_null() && old != physical_mark() {
        push_retired(old, old);
        reclaim();
    }
}

/// The identity of the file `fd` refers to now.
pub fn identity(fd: i32) -> Option<(u64, u64)> {
    crate::sys::fstat(fd).ok().map(|s| (s.st_dev, s.st_ino))
}

/// When an entry learns which file its descriptor refers to.
#[derive(Clone, Copy)]
pub enum Ident {
    /// Now (one `fstat`): directories, whose entries later calls resolve
    /// against, so a descriptor reused behind our back is caught.
    Now,
    /// At first use relative to it: plain file opens stay one system call.
    Later,
    Known(u64, u64),
}

/// Records that `fd` was opened on virtual path `vpath`.
pub fn insert(fd: i32, vpath: &[u8], ident: Ident) {
    let Some(s) = slot(fd) else { return };
    // A vfork child's descriptors are its own, its table is its parent's.
    if in_vfork_child() {
        return;
    }
    let (dev, ino) = match ident {
        Ident::Now => identity(fd).unwrap_or((0, 0)),
        Ident::Later => (0, 0),
        Ident::Known(d, i) => (d, i),
    };
    let e = reuse(vpath, dev, ino).unwrap_or_else(|| {
        crate::alloc::held(|| {
            // Room for most paths at once, so a reused entry rarely needs more.
            let mut v = Vec::with_capacity(vpath.len().max(256));
            v.extend_from_slice(vpath);
            Box::into_raw(Box::new(FdEntry {
                vpath: v,
                dev: AtomicU64::new(dev),
                ino: AtomicU64::new(ino),
                dents: Mutex::new(None),
                next: AtomicPtr::new(std::ptr::null_mut()),
            }))
        })
    });
    release(s.swap(e, Ordering::SeqCst));
}

/// A parked entry of this thread set up for `vpath`, if there is one with
/// room for it.
fn reuse(vpath: &[u8], dev: u64, ino: u64) -> Option<*mut FdEntry> {
    let p = unpark();
    if p.is_null() {
        return None;
    }
    // SAFETY: a parked entry is this thread's alone once taken out.
    let e = unsafe { &mut *p };
    if e.vpath.capacity() < vpath.len() {
        // SAFETY: as above; too small for this path, so freed here.
        crate::alloc::held(|| drop(unsafe { Box::from_raw(p) }));
        return None;
    }
    e.vpath.clear();
    e.vpath.extend_from_slice(vpath);
    e.dev.store(dev, Ordering::Relaxed);
    e.ino.store(ino, Ordering::Relaxed);
    e.next.store(std::ptr::null_mut(), Ordering::Relaxed);
    Some(p)
}

/// Insert with the identity `O_DIRECTORY`/`O_PATH` opens call for.
pub fn ident_for_flags(flags: i32) -> Ident {
    if flags & (libc::O_DIRECTORY | libc::O_PATH) != 0 {
        Ident::Now
    } else {
        Ident::Later
    }
}

/// Records that `fd` was opened on the real disk, outside the view.
#[inline(always)]
pub fn mark_physical(fd: i32) {
    let Some(s) = slot(fd) else { return };
    // Usually already marked (a number reused by another physical open):
    // a plain load then, no read-modify-write.
    if s.load(Ordering::Relaxed) == physical_mark() || in_vfork_child() {
        return;
    }
    release(s.swap(physical_mark(), Ordering::SeqCst));
}

/// Forgets `fd` (it is being closed or replaced, or arrived from elsewhere).
#[inline(always)]
pub fn remove(fd: i32) {
    let Some(s) = slot(fd) else { return };
    if s.load(Ordering::Relaxed).is_null() || in_vfork_child() {
        return;
    }
    release(s.swap(std::ptr::null_mut(), Ordering::SeqCst));
}

/// Forgets every descriptor in `lo..=hi`.
pub fn remove_range(lo: u32, hi: u32) {
    let hi = (hi as usize).min(SLOTS - 1);
    for fd in lo as usize..=hi {
        remove(fd as i32);
    }
}

/// The table's knowledge of `fd`, unchecked. Numbers beyond the table
/// (and negative ones) count as physical: the view never applies to them.
#[inline(always)]
pub fn state(fd: i32) -> Slot {
    let Some(s) = slot(fd) else {
        return Slot::Physical;
    };
    // SeqCst: ordered after the caller's `pin` (see `reclaim`).
    let p = s.load(Ordering::SeqCst);
    if p.is_null() {
        Slot::Unknown
    } else if p == physical_mark() {
        Slot::Physical
    } else {
        // SAFETY: an entry is freed only after it left its slot and every
        // reader pinned before then has finished; callers read entries under
        // a `Pin` and do not keep them past it.
        Slot::Virtual(unsafe { &*p })
    }
}

/// The entry of a descriptor recorded as virtual (unchecked).
#[inline(always)]
pub fn get(fd: i32) -> Option<&'static FdEntry> {
    match state(fd) {
        Slot::Virtual(e) => Some(e),
        _ => None,
    }
}

/// The descriptor certainly refers to the real disk (opened through a hook
/// outside the view): relative calls pass through without a lookup.
#[inline(always)]
pub fn is_physical(fd: i32) -> bool {
    matches!(state(fd), Slot::Physical)
}

/// `dup`: the new descriptor is what the old one is.
pub fn copy(from: i32, to: i32) {
    let _pin = pin();
    match state(from) {
        Slot::Virtual(e) => {
            let vpath = e.vpath.clone();
            let (dev, ino) = (e.dev.load(Ordering::Relaxed), e.ino.load(Ordering::Relaxed));
            let ident = if ino == 0 {
                Ident::Later
            } else {
                Ident::Known(dev, ino)
            };
            insert(to, &vpath, ident);
        }
        Slot::Physical => mark_physical(to),
        Slot::Unknown => remove(to),
    }
}
