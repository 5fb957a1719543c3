//! The instance's shared journal of changes made by hooked processes after the
//! index snapshot was built: paths that were deleted (whiteouts) and paths that
//! now live at a given physical place (created, or renamed to). Every hooked
//! process maps it read-write and shared, so a change one process makes is seen
//! by all at once.
//!
//! Layout (version 4, magic `USVFSJN4`): a header, then two areas, each an open-addressing hash
//! table of record offsets keyed by virtual path followed by an append-only
//! record area; one area is active. The journal of a case-insensitive
//! instance keys paths by their folded form ([`crate::fold`]): a record made
//! for `/d/New.txt` answers for `/d/NEW.TXT`, and keeps the spelling it was
//! made with.
//!
//! Readers take no lock: a record is fully written before its offset is
//! published with a release store. Writers serialize with a process-shared
//! robust pthread mutex in the header (initialized once by the creator): a
//! waiter sleeps in the kernel, and a holder that dies (in any PID namespace)
//! hands the lock to the next writer with `EOWNERDEAD`. Every change becomes
//! visible by one final atomic store (area length, then a table slot, or the
//! active area), so a holder that died mid-write left nothing half-visible.
//!
//! Space: the file is allocated up front (`posix_fallocate`), so a full file
//! system is an error when the journal is created, never a SIGBUS later. When
//! the active area is full, the writer compacts: it copies the current
//! records (the latest per path) into the other area and switches the active
//! area with one store (readers retry when the `epoch` moved under them).
//! When even the current records crowd an area, the writer builds a larger
//! journal file of the same generation, renames it over this one and marks
//! this one `moved` (and superseded, so processes switch to it; writers that
//! still hold this one forward to it). [`Journal::reserve`] makes room before
//! a physical change, so a change that cannot be recorded fails with ENOSPC
//! before anything on disk changes.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};

const MAGIC: u64 = u64::from_le_bytes(*b"USVFSJN4");
/// Hash slots of a new journal's areas (a power of two).
pub const SLOTS: usize = 1 << 16;
/// Record bytes of a new journal's areas.
const MIN_CAP: u64 = 4 << 20;
const HEADER_SIZE: usize = 4096;
const REC_HEADER: usize = 24;
/// The largest record: both paths at their longest.
const MAX_RECORD: u64 = (REC_HEADER + 2 * u16::MAX as usize + 8) as u64;
/// Room [`Journal::reserve`] keeps beyond what it was asked for, for writers
/// racing between their reservation and their record.
const HEADROOM_BYTES: u64 = 256 << 10;
const HEADROOM_SLOTS: u32 = 256;

pub const OP_WHITEOUT: u8 = 1;
pub const OP_PHYSICAL: u8 = 2;

/// `PTHREAD_MUTEX_ROBUST` (not exported by `libc` for every target).
const MUTEX_ROBUST: libc::c_int = 1;

/// FNV-1a, 64-bit: hashes a virtual path, and extends a parent's hash with
/// `/component` so the resolver can hash every prefix as it walks.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

#[inline(always)]
pub fn fnv_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Hash of a normalized absolute path: `/` alone hashes as the offset basis.
pub fn path_hash(p: &[u8]) -> u64 {
    if p == b"/" {
        FNV_OFFSET
    } else {
        fnv_extend(FNV_OFFSET, p)
    }
}

#[repr(C)]
struct Header {
    magic: u64,
    generation: u64,
    /// `FLAG_FOLD`: paths are keyed case-insensitively.
    flags: u32,
    /// Set when a new mapping (or a larger journal) was published: processes
    /// that still use this journal switch to the new index and journal.
    superseded: AtomicU32,
    /// Set when a larger journal of the same generation replaced this one:
    /// writers forward their records to it.
    moved: AtomicU32,
    /// The area readers use (0 or 1).
    active: AtomicU32,
    /// Hash slots per area (a power of two).
    slots: u32,
    _pad: u32,
    /// Record bytes per area.
    cap: u64,
    /// Bumped before and after a compaction rewrites the inactive area.
    epoch: AtomicU64,
    /// Keys (occupied slots) per area; 0 lets readers skip the journal.
    count: [AtomicU32; 2],
    /// Bytes used in each area's records.
    used: [AtomicU64; 2],
    /// The writers' lock: process-shared and robust. Lives in the shared
    /// mapping so it excludes threads, forked children and other processes
    /// alike (flock would not: threads and forks share its lock).
    mutex: libc::pthread_mutex_t,
    /// Changes published in this journal, bumped after each one is
    /// visible: resolvers cache walks for one count (a walk that started
    /// before a change never outlives it).
    changes: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);

/// Journal flag: paths are keyed by their folded form.
const FLAG_FOLD: u32 = 0x1;

/// One journal entry as the resolver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// The path was deleted: absent, whatever the layers below hold.
    Whiteout,
    /// The path now lives at this physical path (kind: a `NodeKind` code).
    Physical { phys: &'a [u8], kind: u8 },
}

/// A record found while scanning (for listings).
pub struct Record<'a> {
    pub vpath: &'a [u8],
    pub parent_hash: u64,
    pub entry: Entry<'a>,
    /// For a whiteout: the physical place the path had when it was deleted
    /// or renamed away and the process that did it (see
    /// [`Journal::origin`]; empty when unknown). For a physical entry: its
    /// place.
    pub origin: &'a [u8],
}

/// A mapped journal.
pub struct Journal {
    base: *mut u8,
    len: usize,
    fold: bool,
    slots: usize,
    cap: u64,
    path: PathBuf,
    /// The largest file this process grows the journal to.
    size_limit: std::sync::atomic::AtomicUsize,
    _file: File,
}

// SAFETY: the mapping is owned by the Journal and unmapped only on drop; all
// shared state in it is accessed through atomics, the process-shared mutex or
// immutable published records.
unsafe impl Send for Journal {}
// SAFETY: as above: concurrent readers and the lock-serialized writer touch
// the mapping only through atomics and records that are immutable once published.
unsafe impl Sync for Journal {}

fn map(file: &File, len: usize) -> std::io::Result<*mut u8> {
    // SAFETY: a shared read-write mapping of a file we keep open.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// Bits of an area's parent filter: bit `parent_hash % PARENT_BITS` is set
/// once a record of an entry of that directory is written, so listings of
/// the (many) directories without records skip the journal.
const PARENT_BITS: usize = 1 << 16;
const PARENT_BYTES: usize = PARENT_BITS / 8;

fn area_len(slots: usize, cap: u64) -> usize {
    slots * 4 + PARENT_BYTES + cap as usize
}

fn file_len(slots: usize, cap: u64) -> usize {
    HEADER_SIZE + 2 * area_len(slots, cap)
}

/// Holds the writers' lock; unlocks on drop.
/// The writers' lock, held. Signals stay blocked on this thread while it is
/// held: a handler that records a change itself (a hooked call from a signal
/// handler) would otherwise wait for its own thread forever.
pub struct LockGuard<'a> {
    journal: &'a Journal,
    /// The signal mask to restore (`None`: blocking failed, nothing to undo).
    mask: Option<libc::sigset_t>,
}

/// Blocks every signal on this thread; returns the mask to restore.
fn block_signals() -> Option<libc::sigset_t> {
    let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: both sets are writable sigset_t; sigfillset initializes `all`
    // and a successful pthread_sigmask fills `old` in.
    unsafe {
        libc::sigfillset(all.as_mut_ptr());
        (libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr()) == 0)
            .then(|| old.assume_init())
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard's thread locked the mutex.
        unsafe { libc::pthread_mutex_unlock(self.journal.mutex()) };
        if let Some(old) = &self.mask {
            // SAFETY: `old` is the mask block_signals saved on this thread.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
        }
    }
}

fn enospc() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::ENOSPC)
}

impl Journal {
    /// Creates an empty journal at `path` (replacing any), for a new mapping.
    pub fn create(path: &Path, generation: u64) -> Result<()> {
        Self::create_with(path, generation, false)
    }

    /// Like [`Journal::create`]; `case_insensitive` keys paths by their
    /// folded form (for the index of a case-insensitive mapping).
    pub fn create_with(path: &Path, generation: u64, case_insensitive: bool) -> Result<()> {
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let r = Self::create_sized(&tmp, path, generation, case_insensitive, SLOTS, MIN_CAP);
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, path).map_err(|e| Error::io("publishing journal", path, e))
    }

    /// Writes an empty journal file with areas of `slots` and `cap` bytes,
    /// its space allocated.
    fn create_sized(
        path: &Path,
        shown: &Path,
        generation: u64,
        case_insensitive: bool,
        slots: usize,
        cap: u64,
    ) -> Result<()> {
        let f = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::io("creating journal", path, e))?
        };
        let len = file_len(slots, cap);
        // SAFETY: a valid descriptor; allocates the whole file now.
        let r = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len as libc::off_t) };
        if r != 0 {
            return Err(Error::Index {
                path: shown.into(),
                message: format!(
                    "cannot allocate {} MiB for the journal: {}; free space on that file system (or point XDG_RUNTIME_DIR at one with room) and start again",
                    len >> 20,
                    std::io::Error::from_raw_os_error(r)
                ),
            });
        }
        let base = map(&f, HEADER_SIZE).map_err(|e| Error::io("mapping journal", path, e))?;
        // SAFETY: the header lies in the fresh mapping, which no one else
        // sees yet; the mutex is initialized once, here.
        unsafe {
            // One page, not the read-ahead window: the kernel would fill
            // megabytes of the fresh file with zeros (a few ms per start).
            libc::madvise(base.cast(), HEADER_SIZE, libc::MADV_RANDOM);
            let h = &mut *(base as *mut Header);
            h.magic = MAGIC;
            h.generation = generation;
            h.flags = if case_insensitive { FLAG_FOLD } else { 0 };
            h.slots = slots as u32;
            h.cap = cap;
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(&mut attr, MUTEX_ROBUST);
            let r = libc::pthread_mutex_init(&mut h.mutex, &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            libc::munmap(base.cast(), HEADER_SIZE);
            if r != 0 {
                return Err(Error::io(
                    "initializing the journal lock",
                    path,
                    std::io::Error::from_raw_os_error(r),
                ));
            }
        }
        Ok(())
    }

    /// Maps an existing journal.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("opening journal", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("opening journal", path, e))?
            .len() as usize;
        let bad = |m: &str| Error::Index {
            path: path.into(),
            message: format!(
                "journal {m}: set the mapping again (a new `usvfs run` with rules) to recreate it"
            ),
        };
        if len < HEADER_SIZE {
            return Err(bad("is truncated"));
        }
        // The sizes come first with one read (a mapping of the header alone
        // would cost a map and an unmap in every hooked process).
        let (magic, slots, cap) = {
            use std::mem::offset_of;
            use std::os::unix::fs::FileExt;
            let mut head = [0u8; offset_of!(Header, cap) + 8];
            file.read_exact_at(&mut head, 0)
                .map_err(|e| Error::io("reading journal", path, e))?;
            let u32_at = |o: usize| {
                let mut b = [0u8; 4];
                b.copy_from_slice(&head[o..o + 4]);
                u32::from_ne_bytes(b)
            };
            let u64_at = |o: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&head[o..o + 8]);
                u64::from_ne_bytes(b)
            };
            (
                u64_at(offset_of!(Header, magic)),
                u32_at(offset_of!(Header, slots)) as usize,
                u64_at(offset_of!(Header, cap)),
            )
        };
        if magic != MAGIC {
            let m = magic.to_le_bytes();
            return Err(match m.strip_prefix(b"USVFSJN") {
                Some(&[v]) if v.is_ascii_digit() => Error::Index {
                    path: path.into(),
                    message: format!(
                        "journal written by another version of usvfs (journal format {}; this \
                         one reads {}): end that instance and start the program again with \
                         this version's `usvfs run`",
                        v as char,
                        MAGIC.to_le_bytes()[7] as char
                    ),
                },
                _ => bad("is not a usvfs journal"),
            });
        }
        if !slots.is_power_of_two() || cap % 8 != 0 || len < file_len(slots, cap) {
            return Err(bad("is truncated"));
        }
        let len = file_len(slots, cap);
        let base = map(&file, len).map_err(|e| Error::io("mapping journal", path, e))?;
        let mut j = Journal {
            base,
            len,
            fold: false,
            slots,
            cap,
            path: path.into(),
            size_limit: std::sync::atomic::AtomicUsize::new(usize::MAX),
            _file: file,
        };
        j.fold = j.header().flags & FLAG_FOLD != 0;
        Ok(j)
    }

    #[inline(always)]
    fn header(&self) -> &Header {
        // SAFETY: the header lies at the start of the mapping.
        unsafe { &*(self.base as *const Header) }
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        // SAFETY: the header lies at the start of the mapping.
        unsafe { std::ptr::addr_of_mut!((*(self.base as *mut Header)).mutex) }
    }

    /// Takes the writers' lock, sleeping while another writer holds it. A
    /// holder that died left nothing half-visible (see the module doc): the
    /// lock is marked consistent and taken.
    pub fn lock(&self) -> std::io::Result<LockGuard<'_>> {
        let mask = block_signals();
        let guard = LockGuard {
            journal: self,
            mask,
        };
        // SAFETY: the mutex was initialized by the creator and lives in the
        // shared mapping for as long as `self`.
        let r = unsafe { libc::pthread_mutex_lock(self.mutex()) };
        match r {
            0 => Ok(guard),
            libc::EOWNERDEAD => {
                // Repair: records, slots and the active area are published
                // by single atomic stores; an area being rewritten is not
                // active and is cleared by the next compaction. Readers
                // compare epochs, not their parity: nothing to undo there.
                // A replacement renamed over this file is announced.
                // SAFETY: we own the mutex (EOWNERDEAD returns it locked).
                unsafe { libc::pthread_mutex_consistent(self.mutex()) };
                self.repair_replaced();
                // The dead writer may have published a record and died
                // before counting it: count it now, so no resolver keeps
                // a walk cached from before it.
                self.header().changes.fetch_add(1, Ordering::Release);
                Ok(guard)
            }
            e => {
                // Not locked: restore the mask without unlocking.
                if let Some(old) = &guard.mask {
                    // SAFETY: the mask block_signals saved on this thread.
                    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
                }
                std::mem::forget(guard);
                Err(std::io::Error::from_raw_os_error(e))
            }
        }
    }

    #[inline(always)]
    fn area(&self, a: usize) -> usize {
        HEADER_SIZE + a * area_len(self.slots, self.cap)
    }

    /// Offset of area `a`'s records.
    #[inline(always)]
    fn records_at(&self, a: usize) -> usize {
        self.area(a) + self.slots * 4 + PARENT_BYTES
    }

    /// The word of area `a`'s parent filter holding parent hash `ph`'s bit.
    #[inline(always)]
    fn parent_word(&self, a: usize, ph: u64) -> (&AtomicU64, u64) {
        let bit = ph as usize % PARENT_BITS;
        // SAFETY: the filter lies inside the area, 8-aligned (the table is a
        // multiple of 8 bytes: slots is a power of two >= 2).
        let w = unsafe {
            &*(self
                .base
                .add(self.area(a) + self.slots * 4 + (bit / 64) * 8)
                as *const AtomicU64)
        };
        (w, 1u64 << (bit % 64))
    }

    /// False when no record of an entry of directory `parent` was written
    /// (the common case: the caller can skip [`Journal::children`]).
    #[inline]
    pub fn may_have_children(&self, parent: &[u8]) -> bool {
        if self.is_empty() {
            return false;
        }
        let ph = self.key_hash(parent);
        self.read(|a| {
            let (w, m) = self.parent_word(a, ph);
            w.load(Ordering::Acquire) & m != 0
        })
    }

    #[inline(always)]
    fn active(&self) -> usize {
        (self.header().active.load(Ordering::Acquire) & 1) as usize
    }

    #[inline(always)]
    fn slot_in(&self, a: usize, i: usize) -> &AtomicU32 {
        // SAFETY: i masked to the table; the table lies inside the mapping, 4-aligned.
        unsafe { &*(self.base.add(self.area(a) + (i & (self.slots - 1)) * 4) as *const AtomicU32) }
    }

    /// Paths are keyed case-insensitively.
    #[inline(always)]
    pub fn folds(&self) -> bool {
        self.fold
    }

    /// The key hash of `vpath` (normalized, absolute): [`path_hash`], of the
    /// folded path when the journal folds.
    pub fn key_hash(&self, vpath: &[u8]) -> u64 {
        if !self.fold || vpath == b"/" {
            return path_hash(vpath);
        }
        let mut h = FNV_OFFSET;
        crate::fold::path_key(vpath, &mut |b| h = fnv_extend(h, &[b]));
        h
    }

    /// Extends the key hash of a directory with `/name` (the resolver hashes
    /// every prefix as it walks).
    #[inline(always)]
    pub fn key_extend(&self, h: u64, name: &[u8]) -> u64 {
        let h = fnv_extend(h, b"/");
        if !self.fold {
            return fnv_extend(h, name);
        }
        let mut h = h;
        for b in crate::fold::folded(name) {
            h = fnv_extend(h, &[b]);
        }
        h
    }

    /// Two virtual paths are the same key.
    #[inline]
    fn same_key(&self, a: &[u8], b: &[u8]) -> bool {
        a == b || (self.fold && crate::fold::path_eq(a, b))
    }

    /// The generation of the index this journal belongs to.
    pub fn generation(&self) -> u64 {
        self.header().generation
    }

    /// A newer mapping replaced this one.
    #[inline(always)]
    pub fn is_superseded(&self) -> bool {
        self.header().superseded.load(Ordering::Relaxed) != 0
    }

    /// Tells every process using this journal that a new mapping is published.
    pub fn set_superseded(&self) {
        self.header().superseded.store(1, Ordering::Release);
    }

    /// This mapping, for as long as the process lives (journals that were
    /// replaced stay mapped; see the preload engine's state).
    #[inline(always)]
    pub fn identity(&self) -> usize {
        self.base as usize
    }

    /// How many changes were published so far (see [`Header::changes`]).
    #[inline(always)]
    pub fn changes(&self) -> u64 {
        self.header().changes.load(Ordering::Acquire)
    }

    /// True while no change was recorded: the common, fast case.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of paths with a record.
    pub fn len(&self) -> usize {
        self.header().count[self.active()].load(Ordering::Acquire) as usize
    }

    /// Bytes of the journal file (both areas).
    pub fn file_len(&self) -> usize {
        self.len
    }

    /// Limits the file size this handle grows the journal to (beyond it,
    /// changes fail with ENOSPC), as a full file system would.
    pub fn set_size_limit(&self, bytes: usize) {
        self.size_limit.store(bytes, Ordering::Relaxed);
    }

    /// A larger journal replaced this one (writers forward to it).
    pub fn is_moved(&self) -> bool {
        self.header().moved.load(Ordering::Acquire) != 0
    }

    /// Reads the record at `off` of area `a`'s records.
    fn record(&self, a: usize, off: u64) -> Option<(u64, Record<'_>)> {
        if off + REC_HEADER as u64 > self.cap {
            return None;
        }
        let start = self.records_at(a) + off as usize;
        let end = self.area(a) + area_len(self.slots, self.cap);
        // SAFETY: bounds checked against the area; records are immutable
        // once published (until a compaction reuses the area: readers
        // check the epoch).
        unsafe {
            let p = self.base.add(start);
            let hash = (p as *const u64).read();
            let parent_hash = (p.add(8) as *const u64).read();
            let op = *p.add(16);
            let kind = *p.add(17);
            let vlen = (p.add(18) as *const u16).read_unaligned() as usize;
            let plen = (p.add(20) as *const u16).read_unaligned() as usize;
            if start + REC_HEADER + vlen + plen > end {
                return None;
            }
            let vpath = std::slice::from_raw_parts(p.add(REC_HEADER), vlen);
            let phys = std::slice::from_raw_parts(p.add(REC_HEADER + vlen), plen);
            let entry = if op == OP_WHITEOUT {
                Entry::Whiteout
            } else {
                Entry::Physical { phys, kind }
            };
            Some((
                hash,
                Record {
                    vpath,
                    parent_hash,
                    entry,
                    origin: phys,
                },
            ))
        }
    }

    fn record_size(vlen: usize, plen: usize) -> u64 {
        ((REC_HEADER + vlen + plen).div_ceil(8) * 8) as u64
    }

    /// The current entry for `vpath` (hash `h = key_hash(vpath)`).
    #[inline]
    pub fn get(&self, vpath: &[u8], h: u64) -> Option<Entry<'_>> {
        self.get_record(vpath, h).map(|(e, _)| e)
    }

    /// Runs a read of the active area again until no compaction switched
    /// areas under it.
    #[inline(always)]
    fn read<T>(&self, f: impl Fn(usize) -> T) -> T {
        loop {
            let e = self.header().epoch.load(Ordering::Acquire);
            let out = f(self.active());
            if self.header().epoch.load(Ordering::Acquire) == e {
                return out;
            }
        }
    }

    /// The current entry for `vpath` (hash `h = key_hash(vpath)`) and the
    /// path as the record spells it.
    #[inline]
    pub fn get_record(&self, vpath: &[u8], h: u64) -> Option<(Entry<'_>, &[u8])> {
        self.read(|a| self.get_in(a, vpath, h))
    }

    /// [`Journal::get_record`] for a path whose directory has key hash
    /// `parent`: a directory with no record below it (the parent filter,
    /// one bit of 8 KiB) answers without the table (a cache miss in
    /// 256 KiB). Both are read in the same area.
    #[inline]
    pub fn get_child_record(
        &self,
        parent: u64,
        vpath: &[u8],
        h: u64,
    ) -> Option<(Entry<'_>, &[u8])> {
        self.read(|a| {
            let (w, m) = self.parent_word(a, parent);
            if w.load(Ordering::Acquire) & m == 0 {
                return None;
            }
            self.get_in(a, vpath, h)
        })
    }

    fn get_in(&self, a: usize, vpath: &[u8], h: u64) -> Option<(Entry<'_>, &[u8])> {
        self.find_in(a, vpath, h).map(|r| (r.entry, r.vpath))
    }

    fn find_in(&self, a: usize, vpath: &[u8], h: u64) -> Option<Record<'_>> {
        let mut i = h as usize;
        for _ in 0..self.slots {
            let v = self.slot_in(a, i).load(Ordering::Acquire);
            if v == 0 {
                return None;
            }
            if let Some((rh, r)) = self.record(a, ((v - 1) as u64) * 8)
                && rh == h
                && self.same_key(r.vpath, vpath)
            {
                return Some(r);
            }
            i = i.wrapping_add(1);
        }
        None
    }

    /// Records an entry for `vpath` (replacing the previous one). Makes room
    /// first (compaction, a larger journal); ENOSPC when there is none.
    pub fn put(&self, vpath: &[u8], entry: Entry<'_>) -> std::io::Result<()> {
        match entry {
            Entry::Whiteout => self.put_raw(vpath, OP_WHITEOUT, 0, b""),
            Entry::Physical { phys, kind } => self.put_raw(vpath, OP_PHYSICAL, kind, phys),
        }
    }

    /// Records that process `pid` removed `vpath` from physical place
    /// `origin` (see [`Record::origin`]; stored as the path, a NUL and the
    /// pid, since paths hold no NUL).
    pub fn put_whiteout(&self, vpath: &[u8], origin: &[u8], pid: u32) -> std::io::Result<()> {
        if origin.is_empty() || pid == 0 {
            return self.put_raw(vpath, OP_WHITEOUT, 0, b"");
        }
        let mut o = Vec::with_capacity(origin.len() + 5);
        o.extend_from_slice(origin);
        o.push(0);
        o.extend_from_slice(&pid.to_le_bytes());
        self.put_raw(vpath, OP_WHITEOUT, 0, &o)
    }

    /// The place a whiteout of `vpath` remembers and the process that made
    /// it, if its current record is one that does.
    pub fn origin(&self, vpath: &[u8]) -> Option<(&[u8], u32)> {
        let h = self.key_hash(vpath);
        self.read(|a| {
            let r = self.find_in(a, vpath, h)?;
            if r.entry != Entry::Whiteout || r.origin.len() < 5 {
                return None;
            }
            let (path, tail) = r.origin.split_at(r.origin.len() - 5);
            let pid = u32::from_le_bytes(tail[1..].try_into().ok()?);
            (tail[0] == 0).then_some((path, pid))
        })
    }

    fn put_raw(&self, vpath: &[u8], op: u8, kind: u8, phys: &[u8]) -> std::io::Result<()> {
        let h = self.key_hash(vpath);
        if vpath.len() > u16::MAX as usize || phys.len() > u16::MAX as usize {
            return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        let size = Self::record_size(vpath.len(), phys.len());
        let g = self.lock()?;
        if self.is_moved() {
            drop(g);
            return match self.forward()? {
                Some(j) => j.put_raw(vpath, op, kind, phys),
                None => Ok(()),
            };
        }
        if let Some(bigger) = self.make_room(size, 1)? {
            drop(g);
            return bigger.put_raw(vpath, op, kind, phys);
        }
        let ph = self.key_hash(parent_of(vpath));
        self.put_in(self.active(), vpath, h, ph, op, kind, phys)
            .ok_or_else(enospc)?;
        drop(g);
        Ok(())
    }

    /// Decides and records under the writers' lock: `decide` sees the
    /// current entry for `vpath` and returns the entry to record, if any, so
    /// no writer changes the path between the look and the record.
    pub fn update(
        &self,
        vpath: &[u8],
        decide: impl FnOnce(Option<Entry<'_>>) -> Option<(u8, u8, Vec<u8>)>,
    ) -> std::io::Result<()> {
        let h = self.key_hash(vpath);
        let g = self.lock()?;
        if self.is_moved() {
            drop(g);
            return match self.forward()? {
                Some(j) => j.update(vpath, decide),
                None => Ok(()),
            };
        }
        let Some((op, kind, phys)) = decide(self.get(vpath, h)) else {
            return Ok(());
        };
        if vpath.len() > u16::MAX as usize || phys.len() > u16::MAX as usize {
            return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        let size = Self::record_size(vpath.len(), phys.len());
        if let Some(bigger) = self.make_room(size, 1)? {
            drop(g);
            return bigger.put_raw(vpath, op, kind, &phys);
        }
        let ph = self.key_hash(parent_of(vpath));
        self.put_in(self.active(), vpath, h, ph, op, kind, &phys)
            .ok_or_else(enospc)?;
        drop(g);
        Ok(())
    }

    /// Makes sure `records` records can be written now (compacting, or
    /// moving to a larger journal, when needed): ENOSPC when the journal
    /// cannot make room. Call it before a physical change that will be
    /// recorded, so a change that cannot be recorded is refused up front.
    pub fn reserve(&self, records: usize) -> std::io::Result<()> {
        let g = self.lock()?;
        if self.is_moved() {
            drop(g);
            return match self.forward()? {
                Some(j) => j.reserve(records),
                None => Ok(()),
            };
        }
        let bytes = records as u64 * MAX_RECORD.min(self.cap / 8) + HEADROOM_BYTES;
        self.make_room(bytes, records as u32 + HEADROOM_SLOTS)?;
        Ok(())
    }

    /// The journal that replaced this one (same generation); `None` when a
    /// new mapping replaced it since (its records no longer matter: every
    /// process switches to the new mapping).
    fn forward(&self) -> std::io::Result<Option<Journal>> {
        let j = Journal::open(&self.path).map_err(|_| enospc())?;
        Ok((j.generation() == self.generation()).then_some(j))
    }

    /// After a writer died holding the lock: if it had already renamed a
    /// replacement over this journal (growth, or a publish) but not yet said
    /// so, say it now, so no process keeps writing here.
    fn repair_replaced(&self) {
        use std::os::unix::fs::MetadataExt;
        let (Ok(ours), Ok(there)) = (self._file.metadata(), std::fs::metadata(&self.path)) else {
            return;
        };
        if (ours.dev(), ours.ino()) == (there.dev(), there.ino()) {
            return;
        }
        if let Ok(j) = Journal::open(&self.path)
            && j.generation() == self.generation()
        {
            self.header().moved.store(1, Ordering::Release);
        }
        self.set_superseded();
    }

    fn has_room(&self, a: usize, bytes: u64, keys: u32) -> bool {
        let h = self.header();
        h.used[a].load(Ordering::Relaxed) + bytes <= self.cap
            && (h.count[a].load(Ordering::Relaxed) + keys) as usize <= self.slots * 3 / 4
    }

    /// Under the lock: room for `bytes` and `keys` in the active area, by
    /// compaction, else in a larger journal (returned; this one is moved).
    fn make_room(&self, bytes: u64, keys: u32) -> std::io::Result<Option<Journal>> {
        if self.has_room(self.active(), bytes, keys) {
            return Ok(None);
        }
        let (live_bytes, live_keys) = self.compact();
        // Still crowded: current records fill half an area.
        if self.has_room(self.active(), bytes, keys)
            && live_bytes * 2 <= self.cap
            && live_keys as usize * 2 <= self.slots * 3 / 4
        {
            return Ok(None);
        }
        let need_keys = (live_keys + keys) as usize;
        let slots = (need_keys * 3).next_power_of_two().max(SLOTS);
        let cap = ((live_bytes + bytes) * 3).div_ceil(8) * 8;
        let cap = cap.max(MIN_CAP);
        match self.grow(slots, cap) {
            Ok(j) => Ok(Some(j)),
            // Crowded but not full: go on here while there is room.
            Err(_) if self.has_room(self.active(), bytes, keys) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Under the lock: copies the current records of the active area into
    /// the other one and makes it active. Returns the bytes and keys copied.
    fn compact(&self) -> (u64, u32) {
        let h = self.header();
        let from = self.active();
        let to = 1 - from;
        h.epoch.fetch_add(1, Ordering::AcqRel);
        // SAFETY: the inactive area's table lies inside the mapping; no
        // reader uses it (readers of an older epoch retry).
        unsafe {
            std::ptr::write_bytes(
                self.base.add(self.area(to)),
                0,
                self.slots * 4 + PARENT_BYTES,
            )
        };
        h.used[to].store(0, Ordering::Release);
        h.count[to].store(0, Ordering::Release);
        for (hash, r) in self.current_in(from) {
            let (op, kind, phys) = match r.entry {
                Entry::Whiteout => (OP_WHITEOUT, 0, r.origin),
                Entry::Physical { phys, kind } => (OP_PHYSICAL, kind, phys),
            };
            // The same records fit in an area of the same size.
            let _ = self.put_in(to, r.vpath, hash, r.parent_hash, op, kind, phys);
        }
        h.active.store(to as u32, Ordering::Release);
        h.epoch.fetch_add(1, Ordering::AcqRel);
        (
            h.used[to].load(Ordering::Relaxed),
            h.count[to].load(Ordering::Relaxed),
        )
    }

    /// Under the lock: writes the current records into a new, larger journal
    /// file, renames it over this one and marks this one moved.
    fn grow(&self, slots: usize, cap: u64) -> std::io::Result<Journal> {
        if file_len(slots, cap) > self.size_limit.load(Ordering::Relaxed) {
            return Err(enospc());
        }
        let tmp = self
            .path
            .with_extension(format!("grow.{}", std::process::id()));
        let made = Self::create_sized(&tmp, &self.path, self.generation(), self.fold, slots, cap)
            .and_then(|()| Journal::open(&tmp));
        let new = match made {
            Ok(j) => j,
            Err(_) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(enospc());
            }
        };
        let from = self.active();
        for (hash, r) in self.current_in(from) {
            let (op, kind, phys) = match r.entry {
                Entry::Whiteout => (OP_WHITEOUT, 0, r.origin),
                Entry::Physical { phys, kind } => (OP_PHYSICAL, kind, phys),
            };
            let _ = new.put_in(0, r.vpath, hash, r.parent_hash, op, kind, phys);
        }
        // A newer mapping replaced this journal meanwhile: not ours to replace.
        if self.is_superseded() {
            let _ = std::fs::remove_file(&tmp);
            return Err(std::io::Error::from_raw_os_error(libc::ESTALE));
        }
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let mut new = new;
        new.path = self.path.clone();
        self.header().moved.store(1, Ordering::Release);
        self.set_superseded();
        Ok(new)
    }

    /// Under the lock (or before the journal is shared): appends a record
    /// to area `a` and points its key's slot at it. `None` when the area is
    /// full. Each step is published by one store: the record by `used`, the
    /// key by its slot (counted first, so a count never misses a key).
    #[allow(clippy::too_many_arguments)]
    fn put_in(
        &self,
        a: usize,
        vpath: &[u8],
        h: u64,
        ph: u64,
        op: u8,
        kind: u8,
        phys: &[u8],
    ) -> Option<()> {
        let hdr = self.header();
        let off = hdr.used[a].load(Ordering::Acquire);
        let size = Self::record_size(vpath.len(), phys.len());
        if off + size > self.cap || hdr.count[a].load(Ordering::Relaxed) as usize >= self.slots - 1
        {
            return None;
        }
        // SAFETY: the record area from `off` is unused and inside the area.
        unsafe {
            let p = self.base.add(self.records_at(a) + off as usize);
            (p as *mut u64).write(h);
            (p.add(8) as *mut u64).write(ph);
            *p.add(16) = op;
            *p.add(17) = kind;
            (p.add(18) as *mut u16).write_unaligned(vpath.len() as u16);
            (p.add(20) as *mut u16).write_unaligned(phys.len() as u16);
            std::ptr::copy_nonoverlapping(vpath.as_ptr(), p.add(REC_HEADER), vpath.len());
            std::ptr::copy_nonoverlapping(
                phys.as_ptr(),
                p.add(REC_HEADER + vpath.len()),
                phys.len(),
            );
        }
        // The parent's filter bit before the record is reachable.
        let (w, m) = self.parent_word(a, ph);
        w.fetch_or(m, Ordering::AcqRel);
        hdr.used[a].store(off + size, Ordering::Release);
        let value = (off / 8) as u32 + 1;
        let mut i = h as usize;
        loop {
            let s = self.slot_in(a, i);
            let v = s.load(Ordering::Acquire);
            if v == 0 {
                hdr.count[a].fetch_add(1, Ordering::AcqRel);
                s.store(value, Ordering::Release);
                hdr.changes.fetch_add(1, Ordering::Release);
                return Some(());
            }
            if let Some((rh, r)) = self.record(a, ((v - 1) as u64) * 8)
                && rh == h
                && self.same_key(r.vpath, vpath)
            {
                s.store(value, Ordering::Release);
                hdr.changes.fetch_add(1, Ordering::Release);
                return Some(());
            }
            i = i.wrapping_add(1);
        }
    }

    /// The current records of area `a` (the latest per path) with their key
    /// hashes, in the order they were made: one walk of the table, so the
    /// cost follows the number of paths, not of changes ever made.
    fn current_in(&self, a: usize) -> impl Iterator<Item = (u64, Record<'_>)> {
        let mut offs: Vec<u64> = (0..self.slots)
            .filter_map(|i| {
                let v = self.slot_in(a, i).load(Ordering::Acquire);
                (v != 0).then(|| ((v - 1) as u64) * 8)
            })
            .collect();
        offs.sort_unstable();
        offs.into_iter().filter_map(move |off| self.record(a, off))
    }

    /// Every current record, sorted by path.
    pub fn records(&self) -> Vec<Record<'_>> {
        let mut out: Vec<Record<'_>> = self.read(|a| self.current_in(a).map(|(_, r)| r).collect());
        out.sort_by(|a, b| a.vpath.cmp(b.vpath));
        out
    }

    /// Current records of the entries of directory `parent`.
    pub fn children(&self, parent: &[u8]) -> Vec<Record<'_>> {
        let ph = self.key_hash(parent);
        self.read(|a| {
            self.current_in(a)
                .map(|(_, r)| r)
                .filter(|r| r.parent_hash == ph && self.same_key(parent_of(r.vpath), parent))
                .collect()
        })
    }

    /// True if any current record lies strictly below `dir`.
    pub fn has_records_below(&self, dir: &[u8]) -> bool {
        self.read(|a| self.current_in(a).any(|(_, r)| self.below(r.vpath, dir)))
    }

    /// `p` lies strictly below `dir` (as keys: folded when the journal folds).
    pub fn below(&self, p: &[u8], dir: &[u8]) -> bool {
        if !self.fold {
            return crate::path::strip_prefix(p, dir).is_some_and(|rest| !rest.is_empty());
        }
        let mut pc = crate::path::components(p);
        for d in crate::path::components(dir) {
            match pc.next() {
                Some(c) if crate::fold::eq(c, d) => {}
                _ => return false,
            }
        }
        pc.next().is_some()
    }
}

fn parent_of(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&c| c == b'/') {
        Some(0) | None => b"/",
        Some(i) => &p[..i],
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_versions_journal_is_named_with_what_to_do() {
        use std::os::unix::fs::FileExt;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("journal");
        Journal::create(&p, 1).unwrap();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(b"USVFSJN3", 0).unwrap();
        let e = Journal::open(&p)
            .err()
            .expect("an older journal is refused");
        assert_eq!(
            e.to_string(),
            format!(
                "index \"{}\": journal written by another version of usvfs (journal format 3; \
                 this one reads 4): end that instance and start the program again with this \
                 version's `usvfs run`",
                p.display()
            )
        );
        f.write_all_at(b"NOTUSVFS", 0).unwrap();
        let e = Journal::open(&p).err().expect("a foreign file is refused");
        assert!(
            e.to_string().contains("journal is not a usvfs journal"),
            "{e}"
        );
    }

    #[test]
    fn records_replace_and_list() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("journal");
        Journal::create(&p, 1).unwrap();
        let j = Journal::open(&p).unwrap();
        assert!(j.is_empty());
        assert_eq!(j.get(b"/a/b", path_hash(b"/a/b")), None);
        j.put(b"/a/b", Entry::Whiteout).unwrap();
        assert_eq!(j.get(b"/a/b", path_hash(b"/a/b")), Some(Entry::Whiteout));
        j.put(
            b"/a/b",
            Entry::Physical {
                phys: b"/ow/b",
                kind: 2,
            },
        )
        .unwrap();
        j.put(b"/a/c", Entry::Whiteout).unwrap();
        j.put(b"/a/d/e", Entry::Whiteout).unwrap();
        // Every published change moves the change count, a record that
        // replaces another too (the count of paths stays); another
        // process's mapping sees the same count.
        assert_eq!((j.len(), j.changes()), (3, 4));
        assert_eq!(Journal::open(&p).unwrap().changes(), 4);
        assert_eq!(
            j.get(b"/a/b", path_hash(b"/a/b")),
            Some(Entry::Physical {
                phys: b"/ow/b",
                kind: 2
            })
        );
        let kids: Vec<&[u8]> = j.children(b"/a").iter().map(|r| r.vpath).collect();
        assert_eq!(kids, [&b"/a/b"[..], b"/a/c"]);
        assert!(j.has_records_below(b"/a/d"));
        assert!(!j.has_records_below(b"/a/b"));
        // A second mapping sees the same records.
        let j2 = Journal::open(&p).unwrap();
        assert_eq!(j2.get(b"/a/c", path_hash(b"/a/c")), Some(Entry::Whiteout));
    }

    #[test]
    fn folding_journal_keys_case_insensitively() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("journal");
        Journal::create_with(&p, 1, true).unwrap();
        let j = Journal::open(&p).unwrap();
        assert!(j.folds());
        let file = Entry::Physical {
            phys: b"/ow/New.txt",
            kind: 2,
        };
        j.put("/d/Ärger/New.txt".as_bytes(), file).unwrap();
        for spelling in ["/d/Ärger/New.txt", "/D/äRGER/NEW.TXT", "/d/ärger/new.txt"] {
            let v = spelling.as_bytes();
            assert_eq!(
                j.get_record(v, j.key_hash(v)),
                Some((file, "/d/Ärger/New.txt".as_bytes())),
                "{spelling}"
            );
        }
        // Incremental hashing agrees with whole-path hashing.
        let h = j.key_extend(
            j.key_extend(j.key_extend(FNV_OFFSET, b"D"), "ÄRGER".as_bytes()),
            b"nEw.TxT",
        );
        assert_eq!(h, j.key_hash("/d/ärger/new.txt".as_bytes()));
        // A whiteout in another spelling replaces the record.
        j.put(b"/d/\xc3\x84rger/NEW.TXT", Entry::Whiteout).unwrap();
        j.put("/D/ÄRGER/NEW.TXT".as_bytes(), Entry::Whiteout)
            .unwrap();
        assert_eq!(j.get(b"/d/x", j.key_hash(b"/d/x")), None);
        let v = "/d/ärger/new.txt".as_bytes();
        assert_eq!(j.get(v, j.key_hash(v)), Some(Entry::Whiteout));
        let kids = j.children("/D/ÄRGER".as_bytes());
        assert_eq!(kids.len(), 1);
        assert_eq!(kids[0].vpath, "/D/ÄRGER/NEW.TXT".as_bytes());
        assert!(j.has_records_below(b"/d"));
        assert!(j.has_records_below("/d/äRGER".as_bytes()));
        assert!(!j.has_records_below("/d/ärger/new.txt".as_bytes()));
        // A case-sensitive journal keeps spellings apart.
        let q = t.path().join("cs");
        Journal::create(&q, 1).unwrap();
        let c = Journal::open(&q).unwrap();
        c.put(b"/d/New.txt", file).unwrap();
        assert_eq!(c.get(b"/d/new.txt", c.key_hash(b"/d/new.txt")), None);
    }

    fn phys(p: &[u8]) -> Entry<'_> {
        Entry::Physical { phys: p, kind: 2 }
    }

    fn fresh() -> (tempfile::TempDir, PathBuf, Journal) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("journal");
        Journal::create(&p, 1).unwrap();
        let j = Journal::open(&p).unwrap();
        (t, p, j)
    }

    /// Forks a child that takes the writers' lock, runs `then` while holding
    /// it, and never unlocks. Returns its pid once it holds the lock.
    fn child_holding(j: &Journal, then: fn(&Journal)) -> libc::pid_t {
        let mut fds = [0; 2];
        // SAFETY: a pipe into a two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only locks, writes to the mapping and the pipe,
        // and leaves with _exit or a signal.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: in the child, as above.
            unsafe {
                libc::pthread_mutex_lock(j.mutex());
                libc::write(fds[1], b"x".as_ptr().cast(), 1);
                then(j);
                libc::_exit(0);
            }
        }
        let mut b = [0u8; 1];
        // SAFETY: reading one byte into a one-byte buffer.
        unsafe {
            assert_eq!(libc::read(fds[0], b.as_mut_ptr().cast(), 1), 1);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        pid
    }

    fn reap(pid: libc::pid_t) {
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
    }

    #[test]
    fn lock_of_a_writer_that_exited_mid_write_is_recovered() {
        let (_t, _p, j) = fresh();
        j.put(b"/a", phys(b"/x/a")).unwrap();
        // The child scribbles a half record past the used bytes, then exits
        // holding the lock.
        let pid = child_holding(&j, |j| {
            let a = j.active();
            let off = j.header().used[a].load(Ordering::Relaxed) as usize;
            // SAFETY: inside the active area's records.
            unsafe { std::ptr::write_bytes(j.base.add(j.records_at(a) + off), 0xAB, 40) };
        });
        reap(pid);
        j.put(b"/b", phys(b"/x/b")).unwrap();
        assert_eq!(j.get(b"/a", path_hash(b"/a")), Some(phys(b"/x/a")));
        assert_eq!(j.get(b"/b", path_hash(b"/b")), Some(phys(b"/x/b")));
        assert_eq!(j.records().len(), 2);
        assert_eq!(j.len(), 2);
    }

    #[test]
    fn a_record_a_dead_writer_published_but_did_not_count_is_counted() {
        let (_t, _p, j) = fresh();
        j.put(b"/a", Entry::Whiteout).unwrap();
        // The writer publishes a record and dies before counting it.
        let pid = child_holding(&j, |j| {
            let h = j.key_hash(b"/d");
            let ph = j.key_hash(b"/");
            j.put_in(j.active(), b"/d", h, ph, OP_WHITEOUT, 0, b"")
                .unwrap();
            j.header().changes.fetch_sub(1, Ordering::Release);
        });
        reap(pid);
        let before = j.changes();
        assert_eq!(j.get(b"/d", path_hash(b"/d")), Some(Entry::Whiteout));
        // The next writer to take the lock counts it.
        drop(j.lock().unwrap());
        assert_eq!(j.changes(), before + 1);
    }

    #[test]
    fn a_replacement_renamed_by_a_dead_writer_is_announced() {
        let (t, p, j) = fresh();
        j.put(b"/a", Entry::Whiteout).unwrap();
        let pid = child_holding(&j, |_| {});
        reap(pid);
        // As if the dead writer had renamed a larger journal over this one.
        let q = t.path().join("bigger");
        Journal::create(&q, 1).unwrap();
        std::fs::rename(&q, &p).unwrap();
        j.put(b"/b", Entry::Whiteout).unwrap();
        assert!(j.is_moved() && j.is_superseded());
        let now = Journal::open(&p).unwrap();
        assert_eq!(now.get(b"/b", path_hash(b"/b")), Some(Entry::Whiteout));
    }

    #[test]
    fn lock_of_a_writer_in_another_pid_namespace_is_recovered() {
        let (_t, _p, j) = fresh();
        // SAFETY: the child only calls unshare, fork, waitpid, the lock and
        // _exit; the grandchild is process 1 of a new PID namespace.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                if libc::unshare(libc::CLONE_NEWPID) != 0 {
                    libc::_exit(77);
                }
                let c = libc::fork();
                if c == 0 {
                    libc::pthread_mutex_lock(j.mutex());
                    libc::_exit(if libc::getpid() == 1 { 0 } else { 3 });
                }
                let mut st = 0;
                libc::waitpid(c, &mut st, 0);
                libc::_exit(if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else {
                    4
                });
            }
        }
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        let code = libc::WEXITSTATUS(st);
        if code == 77 {
            eprintln!("skipped: cannot make a PID namespace here");
            return;
        }
        assert_eq!(code, 0, "the holder ran as process 1 of its namespace");
        let start = std::time::Instant::now();
        j.put(b"/ns", Entry::Whiteout).unwrap();
        assert!(start.elapsed() < std::time::Duration::from_millis(500));
        assert_eq!(j.get(b"/ns", path_hash(b"/ns")), Some(Entry::Whiteout));
    }

    #[test]
    fn waiting_writer_sleeps_while_a_stopped_holder_holds_the_lock() {
        let (_t, _p, j) = fresh();
        let pid = child_holding(&j, |_| {
            // SAFETY: stopping ourselves; the parent kills us.
            unsafe { libc::raise(libc::SIGSTOP) };
        });
        let start = std::time::Instant::now();
        let cpu = std::thread::scope(|s| {
            let w = s.spawn(|| {
                j.put(b"/w", Entry::Whiteout).unwrap();
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: reading this thread's CPU clock into ts.
                unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
                std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
            });
            std::thread::sleep(std::time::Duration::from_secs(1));
            assert!(!w.is_finished(), "the writer must wait for the holder");
            // SAFETY: killing our own (stopped) child: its lock is recovered.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            w.join().unwrap()
        });
        reap(pid);
        assert!(start.elapsed() >= std::time::Duration::from_secs(1));
        assert!(
            cpu < std::time::Duration::from_millis(200),
            "waiting cost {cpu:?} of CPU"
        );
        assert_eq!(j.get(b"/w", path_hash(b"/w")), Some(Entry::Whiteout));
    }

    #[test]
    fn compaction_keeps_exactly_the_current_records() {
        let (_t, _p, j) = fresh();
        let mut want = std::collections::BTreeMap::new();
        for i in 0..2000u32 {
            let v = format!("/d{}/f{}", i % 5, i % 250);
            let ph = format!("/phys/{i}");
            let e = if i % 3 == 0 {
                Entry::Whiteout
            } else {
                phys(ph.as_bytes())
            };
            j.put(v.as_bytes(), e).unwrap();
            want.insert(v, ph_of(&e));
        }
        let before: Vec<(Vec<u8>, Option<Vec<u8>>)> = snapshot_of(&j);
        let used_before = j.header().used[j.active()].load(Ordering::Relaxed);
        {
            let _g = j.lock().unwrap();
            j.compact();
        }
        let after = snapshot_of(&j);
        assert_eq!(before, after);
        assert_eq!(after.len(), want.len());
        for (v, p) in &after {
            assert_eq!(
                &want[std::str::from_utf8(v).unwrap()],
                &p.clone().unwrap_or_default()
            );
        }
        assert!(j.header().used[j.active()].load(Ordering::Relaxed) < used_before / 4);
        for (v, p) in &after {
            let got = j.get(v, path_hash(v)).unwrap();
            assert_eq!(got, p.as_deref().map_or(Entry::Whiteout, phys));
        }
        // Twice more: the areas alternate.
        for _ in 0..2 {
            let _g = j.lock().unwrap();
            j.compact();
        }
        assert_eq!(snapshot_of(&j), before);
    }

    fn ph_of(e: &Entry<'_>) -> Vec<u8> {
        match e {
            Entry::Whiteout => Vec::new(),
            Entry::Physical { phys, .. } => phys.to_vec(),
        }
    }

    fn snapshot_of(j: &Journal) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        j.records()
            .iter()
            .map(|r| {
                (
                    r.vpath.to_vec(),
                    match r.entry {
                        Entry::Whiteout => None,
                        Entry::Physical { phys, .. } => Some(phys.to_vec()),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_million_cycles_of_one_path_keep_the_file_size() {
        let (_t, _p, j) = fresh();
        let len = j.file_len();
        j.put(b"/keep", phys(b"/x/keep")).unwrap();
        for _ in 0..1_000_000 {
            j.put(b"/d/churn.txt", phys(b"/overwrite/d/churn.txt"))
                .unwrap();
            j.put(b"/d/churn.txt", Entry::Whiteout).unwrap();
        }
        assert!(!j.is_moved());
        assert_eq!(j.file_len(), len);
        assert_eq!(j.len(), 2);
        assert_eq!(
            j.get(b"/d/churn.txt", path_hash(b"/d/churn.txt")),
            Some(Entry::Whiteout)
        );
        assert_eq!(j.get(b"/keep", path_hash(b"/keep")), Some(phys(b"/x/keep")));
        assert_eq!(j.children(b"/d").len(), 1);
    }

    #[test]
    fn distinct_paths_grow_the_journal_in_proportion() {
        let (_t, p, first) = fresh();
        let mut j = Journal::open(&p).unwrap();
        const N: usize = 300_000;
        for i in 0..N {
            if j.is_moved() {
                j = Journal::open(&p).unwrap();
            }
            let v = format!("/game/data/dir{}/file{i}.esp", i % 100);
            let ph = format!("/mods/overwrite/data/dir{}/file{i}.esp", i % 100);
            j.put(v.as_bytes(), phys(ph.as_bytes())).unwrap();
        }
        assert!(first.is_superseded() && first.is_moved());
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.len(), N);
        assert_eq!(j.generation(), 1);
        for i in (0..N).step_by(997) {
            let v = format!("/game/data/dir{}/file{i}.esp", i % 100);
            let ph = format!("/mods/overwrite/data/dir{}/file{i}.esp", i % 100);
            assert_eq!(
                j.get(v.as_bytes(), j.key_hash(v.as_bytes())),
                Some(phys(ph.as_bytes()))
            );
        }
        assert_eq!(j.children(b"/game/data/dir7").len(), N / 100);
        // Records of ~110 bytes: the file stays within a small multiple.
        assert!(j.file_len() < 40 * N * 110 / 10, "{} bytes", j.file_len());
        // Writes through the first handle still land in the current file.
        first.put(b"/late", Entry::Whiteout).unwrap();
        assert_eq!(j.get(b"/late", path_hash(b"/late")), Some(Entry::Whiteout));
    }

    #[test]
    fn no_room_is_enospc_at_reservation() {
        let (_t, _p, j) = fresh();
        j.set_size_limit(j.file_len());
        let mut i = 0u64;
        let err = loop {
            if let Err(e) = j.reserve(1) {
                break e;
            }
            let v = format!("/d/file{i}");
            j.put(v.as_bytes(), phys(b"/o/d/f")).unwrap();
            i += 1;
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(i > 10_000, "{i} records");
        // Nothing was lost; a replacement of a known path still fits.
        assert_eq!(j.len() as u64, i);
        assert!(!j.is_moved());
    }

    #[test]
    fn incremental_hash_matches() {
        let h = fnv_extend(fnv_extend(FNV_OFFSET, b"/a"), b"/bc");
        assert_eq!(h, path_hash(b"/a/bc"));
    }
}
