//! The instance's shared journal of changes made by hooked processes after the
//! index snapshot was built: paths that were deleted (whiteouts) and paths that
//! now live at a given physical place (created, or renamed to). Every hooked
//! process maps it read-write and shared, so a change one process makes is seen
//! by all at once.
//!
//! Layout: a header, an open-addressing hash table of record offsets keyed by
//! virtual path, then an append-only record area. The journal of a
//! case-insensitive instance keys paths by their folded form
//! ([`crate::fold`]): a record made for `/d/New.txt` answers for
//! `/d/NEW.TXT`, and keeps the spelling it was made with. Readers take no lock: a
//! record is fully written before its offset is published with a release
//! store. Writers serialize with a lock word in the mapping holding the
//! writer's thread id (a dead holder is detected and replaced). The file is
//! sparse: untouched pages cost nothing.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};

const MAGIC: u64 = u64::from_le_bytes(*b"USVFSJN1");
pub const SLOTS: usize = 1 << 18;
const RECORDS_CAPACITY: u64 = 256 << 20;
const HEADER_SIZE: usize = 64;
const TABLE_OFF: usize = HEADER_SIZE;
const RECORDS_OFF: usize = TABLE_OFF + SLOTS * 4;
const REC_HEADER: usize = 24;

pub const OP_WHITEOUT: u8 = 1;
pub const OP_PHYSICAL: u8 = 2;

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
    /// Number of records; 0 lets readers skip the journal entirely.
    count: AtomicU32,
    /// Set when a new mapping was published: processes that still use this
    /// journal switch to the new index and journal.
    superseded: AtomicU32,
    /// Bytes used in the record area.
    used: AtomicU64,
    /// Writer lock: 0 when free, else the holder's thread id. Lives in the
    /// shared mapping so it excludes threads, forked children and other
    /// processes alike (flock would not: threads and forks share its lock).
    lock: AtomicU32,
    /// `FLAG_FOLD`: paths are keyed case-insensitively.
    flags: u32,
}

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
}

/// A mapped journal.
pub struct Journal {
    base: *mut u8,
    len: usize,
    fold: bool,
    _file: File,
}

// SAFETY: the mapping is owned by the Journal and unmapped only on drop; all
// shared state in it is accessed through atomics or immutable published records.
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

impl Journal {
    const LEN: usize = RECORDS_OFF + RECORDS_CAPACITY as usize;

    /// Creates an empty journal at `path` (replacing any), for a new mapping.
    pub fn create(path: &Path, generation: u64) -> Result<()> {
        Self::create_with(path, generation, false)
    }

    /// Like [`Journal::create`]; `case_insensitive` keys paths by their
    /// folded form (for the index of a case-insensitive mapping).
    pub fn create_with(path: &Path, generation: u64, case_insensitive: bool) -> Result<()> {
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let f = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| Error::io("creating journal", &tmp, e))?
        };
        f.set_len(Self::LEN as u64)
            .map_err(|e| Error::io("sizing journal", &tmp, e))?;
        let base = map(&f, HEADER_SIZE).map_err(|e| Error::io("mapping journal", &tmp, e))?;
        // SAFETY: the header lies in the fresh mapping.
        unsafe {
            let h = &mut *(base as *mut Header);
            h.magic = MAGIC;
            h.generation = generation;
            h.flags = if case_insensitive { FLAG_FOLD } else { 0 };
            libc::munmap(base.cast(), HEADER_SIZE);
        }
        std::fs::rename(&tmp, path).map_err(|e| Error::io("publishing journal", path, e))
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
        if len < Self::LEN {
            return Err(Error::Index {
                path: path.into(),
                message: "journal is truncated: set the mapping again (a new `usvfs run` with rules) to recreate it".into(),
            });
        }
        let base = map(&file, Self::LEN).map_err(|e| Error::io("mapping journal", path, e))?;
        let mut j = Journal {
            base,
            len: Self::LEN,
            fold: false,
            _file: file,
        };
        j.fold = j.header().flags & FLAG_FOLD != 0;
        if j.header().magic != MAGIC {
            return Err(Error::Index {
                path: path.into(),
                message:
                    "not a usvfs journal: remove the instance directory or set the mapping again"
                        .into(),
            });
        }
        Ok(j)
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with the header.
        unsafe { &*(self.base as *const Header) }
    }

    fn slot(&self, i: usize) -> &AtomicU32 {
        // SAFETY: i < SLOTS; the table lies inside the mapping, 4-aligned.
        unsafe { &*(self.base.add(TABLE_OFF + (i % SLOTS) * 4) as *const AtomicU32) }
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

    /// True while no change was recorded: the common, fast case.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.header().count.load(Ordering::Acquire) == 0
    }

    pub fn len(&self) -> usize {
        self.header().count.load(Ordering::Acquire) as usize
    }

    /// Reads the record at `off` (relative to the record area).
    fn record(&self, off: u64) -> Option<(u64, Record<'_>)> {
        let start = RECORDS_OFF + off as usize;
        if start + REC_HEADER > self.len {
            return None;
        }
        // SAFETY: bounds checked; records are immutable once published.
        unsafe {
            let p = self.base.add(start);
            let hash = (p as *const u64).read();
            let parent_hash = (p.add(8) as *const u64).read();
            let op = *p.add(16);
            let kind = *p.add(17);
            let vlen = (p.add(18) as *const u16).read_unaligned() as usize;
            let plen = (p.add(20) as *const u16).read_unaligned() as usize;
            if start + REC_HEADER + vlen + plen > self.len {
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

    /// The current entry for `vpath` (hash `h = key_hash(vpath)`) and the
    /// path as the record spells it.
    #[inline]
    pub fn get_record(&self, vpath: &[u8], h: u64) -> Option<(Entry<'_>, &[u8])> {
        let mut i = h as usize;
        for _ in 0..SLOTS {
            let v = self.slot(i).load(Ordering::Acquire);
            if v == 0 {
                return None;
            }
            if let Some((rh, r)) = self.record(((v - 1) as u64) * 8)
                && rh == h
                && self.same_key(r.vpath, vpath)
            {
                return Some((r.entry, r.vpath));
            }
            i = i.wrapping_add(1);
        }
        None
    }

    /// Records an entry for `vpath` (replacing the previous one).
    pub fn put(&self, vpath: &[u8], entry: Entry<'_>) -> std::io::Result<()> {
        let h = self.key_hash(vpath);
        let parent = match vpath.iter().rposition(|&c| c == b'/') {
            Some(0) | None => b"/".as_slice(),
            Some(i) => &vpath[..i],
        };
        let (op, kind, phys) = match entry {
            Entry::Whiteout => (OP_WHITEOUT, 0u8, &b""[..]),
            Entry::Physical { phys, kind } => (OP_PHYSICAL, kind, phys),
        };
        if vpath.len() > u16::MAX as usize || phys.len() > u16::MAX as usize {
            return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        // Signals stay blocked while this thread holds the lock: a handler
        // that records a change itself (a hooked call from a signal handler)
        // would otherwise wait for its own thread forever.
        let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: both sets are writable sigset_t; sigfillset initializes `all`
        // and pthread_sigmask fills `old` in.
        let masked = unsafe {
            libc::sigfillset(all.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr()) == 0
        };
        let me = self.lock();
        let r = self.put_locked(vpath, h, self.key_hash(parent), op, kind, phys);
        let _ = self
            .header()
            .lock
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed);
        if masked {
            // SAFETY: `old` was filled in by the successful call above.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut()) };
        }
        r
    }

    /// Takes the writer lock; a holder that died is replaced.
    fn lock(&self) -> u32 {
        // SAFETY: gettid cannot fail.
        let me = unsafe { libc::gettid() } as u32;
        let lock = &self.header().lock;
        let mut spins = 0u32;
        loop {
            match lock.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return me,
                Err(holder) => {
                    spins += 1;
                    if spins.is_multiple_of(64) {
                        // SAFETY: probing whether the holder still exists.
                        let gone = unsafe { libc::kill(holder as libc::pid_t, 0) } != 0
                            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
                        if gone
                            && lock
                                .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                                .is_ok()
                        {
                            return me;
                        }
                    }
                    // SAFETY: yielding the CPU.
                    unsafe { libc::sched_yield() };
                }
            }
        }
    }

    fn put_locked(
        &self,
        vpath: &[u8],
        h: u64,
        ph: u64,
        op: u8,
        kind: u8,
        phys: &[u8],
    ) -> std::io::Result<()> {
        let hdr = self.header();
        let off = hdr.used.load(Ordering::Acquire);
        let size = Self::record_size(vpath.len(), phys.len());
        if off + size > RECORDS_CAPACITY
            || hdr.count.load(Ordering::Relaxed) as usize >= SLOTS * 3 / 4
        {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        // SAFETY: the record area from `off` is unused and inside the mapping.
        unsafe {
            let p = self.base.add(RECORDS_OFF + off as usize);
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
        hdr.used.store(off + size, Ordering::Release);
        let value = (off / 8) as u32 + 1;
        let mut i = h as usize;
        loop {
            let s = self.slot(i);
            let v = s.load(Ordering::Acquire);
            if v == 0 {
                s.store(value, Ordering::Release);
                hdr.count.fetch_add(1, Ordering::AcqRel);
                return Ok(());
            }
            if let Some((rh, r)) = self.record(((v - 1) as u64) * 8)
                && rh == h
                && self.same_key(r.vpath, vpath)
            {
                s.store(value, Ordering::Release);
                // Count stays: the key already had a slot. Bump it anyway so
                // readers that cache "empty" notice a change.
                return Ok(());
            }
            i = i.wrapping_add(1);
        }
    }

    /// The current records (the latest per path), in the order they were made.
    /// A record is current when the table still points at it, so each path
    /// appears once.
    fn current(&self) -> impl Iterator<Item = Record<'_>> {
        let used = self.header().used.load(Ordering::Acquire);
        let mut off = 0u64;
        std::iter::from_fn(move || {
            while off < used {
                let (h, r) = self.record(off)?;
                let plen = match r.entry {
                    Entry::Whiteout => 0,
                    Entry::Physical { phys, .. } => phys.len(),
                };
                off += Self::record_size(r.vpath.len(), plen);
                // The table points at this very record (records are told
                // apart by where they live: two whiteouts look alike).
                if self
                    .get_record(r.vpath, h)
                    .is_some_and(|(_, v)| std::ptr::eq(v.as_ptr(), r.vpath.as_ptr()))
                {
                    return Some(r);
                }
            }
            None
        })
    }

    /// Every current record, sorted by path.
    pub fn records(&self) -> Vec<Record<'_>> {
        let mut out: Vec<Record<'_>> = self.current().collect();
        out.sort_by(|a, b| a.vpath.cmp(b.vpath));
        out
    }

    /// Current records of the entries of directory `parent`.
    pub fn children(&self, parent: &[u8]) -> Vec<Record<'_>> {
        let ph = self.key_hash(parent);
        self.current()
            .filter(|r| r.parent_hash == ph && self.same_key(parent_of(r.vpath), parent))
            .collect()
    }

    /// True if any current record lies strictly below `dir`.
    pub fn has_records_below(&self, dir: &[u8]) -> bool {
        self.current().any(|r| self.below(r.vpath, dir))
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

    #[test]
    fn incremental_hash_matches() {
        let h = fnv_extend(fnv_extend(FNV_OFFSET, b"/a"), b"/bc");
        assert_eq!(h, path_hash(b"/a/bc"));
    }
}
