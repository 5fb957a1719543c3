//! The index directories the previous resolution walked through, so the next
//! one starts from the deepest of them that its path shares instead of the
//! root: a game's files sit ten or more components deep, and a walk, a read
//! or a run of failed lookups goes from folder to sibling folder.
//!
//! A cached directory stands for "this path prefix, as given, is this index
//! directory, with no journal record on it or above it". That holds for one
//! snapshot and for the journal as it was: every change a writer publishes
//! bumps the journal's change count ([`Journal::changes`]), and a count that
//! moved empties the cache. Small inline buffers (a longer or deeper
//! directory is not cached): a process's first lookup touches every page of
//! its buffers, a page fault each.

use std::mem::MaybeUninit;

use crate::index::{NodeId, Snapshot};
use crate::journal::Journal;

/// The longest directory path the cache holds, as given and as spelled.
const MAX_BYTES: usize = 480;
/// The deepest directory the cache holds.
const MAX_LEVELS: usize = 32;

/// One cached directory: the input prefix `key[..key_end]` is index node
/// `node`, which the view spells `virt[..virt_end]`; `hash` is the journal's
/// key hash of that spelled path (unused while the journal is empty).
#[derive(Clone, Copy)]
struct Level {
    key_end: u16,
    virt_end: u16,
    node: NodeId,
    hash: u64,
}

/// What a cached walk is valid for: a snapshot (`Snapshot::identity`;
/// generation 0: nothing cached) and the journal's mapping and change count
/// (0, 0: the journal was empty, and the walk consulted none).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    snap: (u64, usize),
    journal: (usize, u64),
}

impl Stamp {
    /// Taken before a walk: a change published after it moves the count, so
    /// what the walk cached is not used again.
    #[inline(always)]
    pub(super) fn now(snap: &Snapshot<'_>, journal: Option<&Journal>) -> Stamp {
        Stamp {
            snap: snap.identity(),
            journal: journal.map_or((0, 0), |j| (j.identity(), j.changes())),
        }
    }
}

/// Where a walk may start: the directory's node, the input position right
/// after it, its spelled path's length in [`PrefixCache::virt`] and its hash.
pub(super) struct Start {
    pub node: NodeId,
    pub pos: usize,
    pub virt_len: usize,
    pub hash: u64,
}

pub(super) struct PrefixCache {
    stamp: Stamp,
    /// Levels `0..depth` are valid, each deeper than the one before.
    depth: u16,
    levels: [MaybeUninit<Level>; MAX_LEVELS],
    /// The input bytes up to the deepest level's end.
    key: [MaybeUninit<u8>; MAX_BYTES],
    /// The view's spelling of the same directories.
    virt: [MaybeUninit<u8>; MAX_BYTES],
}

/// The first `len` bytes of `b`, which were written.
#[inline(always)]
fn written(b: &[MaybeUninit<u8>], len: usize) -> &[u8] {
    let len = len.min(b.len());
    // SAFETY: callers pass lengths `record` wrote (bounded by the array).
    unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<u8>(), len) }
}

/// Writes `src` over the start of `dst`.
#[inline(always)]
fn write_into(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = MaybeUninit::new(s);
    }
}

/// How many leading bytes `a` and `b` share.
#[inline]
fn common_len(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (mut i, mut k) = (0, 8);
    while k <= n && a[i..k] == b[i..k] {
        (i, k) = (k, k + 8);
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

impl PrefixCache {
    pub(super) const fn new() -> Self {
        PrefixCache {
            stamp: Stamp {
                snap: (0, 0),
                journal: (0, 0),
            },
            depth: 0,
            levels: [MaybeUninit::uninit(); MAX_LEVELS],
            key: [MaybeUninit::uninit(); MAX_BYTES],
            virt: [MaybeUninit::uninit(); MAX_BYTES],
        }
    }

    /// Makes the cache at `p` valid and empty without touching its buffers.
    ///
    /// # Safety
    /// `p` must point to writable memory for a `PrefixCache`.
    pub(super) unsafe fn init_at(p: *mut PrefixCache) {
        // SAFETY: per the contract; only the stamp and depth are read before
        // `record` writes the rest.
        unsafe {
            std::ptr::addr_of_mut!((*p).stamp).write(Stamp {
                snap: (0, 0),
                journal: (0, 0),
            });
            std::ptr::addr_of_mut!((*p).depth).write(0);
        }
    }

    #[inline(always)]
    fn level(&self, d: usize) -> Level {
        // SAFETY: callers pass d < depth; `record` wrote levels below depth.
        unsafe { self.levels[d].assume_init() }
    }

    /// The spelled path of a start's directory.
    #[inline(always)]
    pub(super) fn virt(&self, len: usize) -> &[u8] {
        written(&self.virt, len)
    }

    /// Begins a walk of `bytes` (normalized, absolute) under `stamp`: the
    /// deepest cached directory `bytes` continues with a component, if any.
    /// Deeper levels are dropped (the walk records its own from there); a
    /// stamp that moved drops them all.
    #[inline]
    pub(super) fn start(&mut self, stamp: Stamp, bytes: &[u8]) -> Option<Start> {
        if self.stamp != stamp {
            self.stamp = stamp;
            self.depth = 0;
            return None;
        }
        let depth = self.depth as usize;
        if depth == 0 || stamp.snap.0 == 0 {
            return None;
        }
        // A path in the deepest directory (the usual case) is one compare.
        let deepest = self.level(depth - 1).key_end as usize;
        let key = written(&self.key, deepest);
        let common = if bytes.starts_with(key) {
            deepest
        } else {
            common_len(bytes, key)
        };
        for d in (0..depth).rev() {
            let l = self.level(d);
            let end = l.key_end as usize;
            // The prefix must end at a separator followed by a component.
            if end <= common
                && bytes.get(end) == Some(&b'/')
                && bytes.get(end + 1).is_some_and(|&c| c != b'/')
            {
                self.depth = (d + 1) as u16;
                return Some(Start {
                    node: l.node,
                    pos: end,
                    virt_len: l.virt_end as usize,
                    hash: l.hash,
                });
            }
        }
        self.depth = 0;
        None
    }

    /// The walk of `bytes` reached index directory `node` at `bytes[..end]`,
    /// spelled `virt`, with no journal record on it or above: the next level.
    #[inline]
    pub(super) fn record(
        &mut self,
        bytes: &[u8],
        end: usize,
        virt: &[u8],
        node: NodeId,
        hash: u64,
    ) {
        let d = self.depth as usize;
        if d >= MAX_LEVELS || end > MAX_BYTES || virt.len() > MAX_BYTES || self.stamp.snap.0 == 0 {
            return;
        }
        let (k0, v0) = match d.checked_sub(1) {
            Some(p) => {
                let l = self.level(p);
                (l.key_end as usize, l.virt_end as usize)
            }
            None => (0, 0),
        };
        if end <= k0 || virt.len() < v0 {
            return;
        }
        write_into(&mut self.key[k0..end], &bytes[k0..end]);
        write_into(&mut self.virt[v0..virt.len()], &virt[v0..]);
        self.levels[d] = MaybeUninit::new(Level {
            key_end: end as u16,
            virt_end: virt.len() as u16,
            node,
            hash,
        });
        self.depth += 1;
    }
}
