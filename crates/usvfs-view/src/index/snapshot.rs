//! Read-only, allocation-free access to a snapshot image (mapped or in memory).

use std::path::Path;

use super::format::*;
use crate::error::{Error, Result};
use crate::path::{self, PathBuffer, TooLong};

pub type NodeId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// A validated view over snapshot bytes.
#[derive(Clone, Copy)]
pub struct Snapshot<'a> {
    header: &'a Header,
    nodes: &'a [NodeRec],
    layers: &'a [LayerRec],
    anchors: &'a [StrRec],
    blacklist: &'a [StrRec],
    fold: &'a [FoldRec],
    respell: &'a [RespellRec],
    dirhash: &'a [u32],
    strings: &'a [u8],
}

fn slice_of<T>(bytes: &[u8], off: u64, count: u32) -> Option<&[T]> {
    let off = usize::try_from(off).ok()?;
    let size = std::mem::size_of::<T>().checked_mul(count as usize)?;
    let end = off.checked_add(size)?;
    if end > bytes.len()
        || !(bytes.as_ptr() as usize + off).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: bounds and alignment checked; T is a plain repr(C) record.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().add(off).cast::<T>(), count as usize) })
}

impl<'a> Snapshot<'a> {
    /// Validates the header and every table's bounds. The bytes must be 8-aligned
    /// (a mapping or a `Vec<u64>`-backed buffer is).
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let header: &Header = slice_of::<Header>(bytes, 0, 1)?.first()?;
        if header.magic != MAGIC
            || header.version != VERSION
            || header.total_len as usize > bytes.len()
        {
            return None;
        }
        let strings_off = usize::try_from(header.strings_off).ok()?;
        let strings_end = strings_off.checked_add(usize::try_from(header.strings_len).ok()?)?;
        let strings = bytes.get(strings_off..strings_end)?;
        let snap = Snapshot {
            header,
            nodes: slice_of(bytes, header.nodes_off, header.node_count)?,
            layers: slice_of(bytes, header.layers_off, header.layer_count)?,
            anchors: slice_of(bytes, header.anchors_off, header.anchor_count)?,
            blacklist: slice_of(bytes, header.blacklist_off, header.blacklist_count)?,
            fold: slice_of(bytes, header.fold_off, header.fold_count)?,
            respell: slice_of(bytes, header.respell_off, header.respell_count)?,
            dirhash: slice_of(bytes, header.dirhash_off, header.dirhash_words)?,
            strings,
        };
        if snap.nodes.is_empty()
            || !(snap.fold.is_empty() || snap.fold.len() == snap.nodes.len())
            || !(snap.dirhash.is_empty() || snap.dirhash.len() >= snap.nodes.len())
        {
            return None;
        }
        Some(snap)
    }

    /// Checks every reference of every record (O(n); `parse` is O(1) so that a
    /// process start does not pay for it). Accessors index with bounds checks,
    /// so even an unverified corrupt snapshot cannot read out of bounds.
    pub fn verify(&self) -> bool {
        let n = self.nodes.len() as u64;
        let s = self.strings.len() as u64;
        let nodes_ok = self.nodes.iter().all(|r| {
            r.name_off as u64 + r.name_len as u64 <= s
                && r.first_child as u64 + r.child_count as u64 <= n
                && (r.layer == NO_LAYER || (r.layer as usize) < self.layers.len())
                && (r.parent as u64) < n
        });
        let layers_ok = self.layers.iter().all(|l| {
            l.source_off as u64 + l.source_len as u64 <= s
                && l.dest_off as u64 + l.dest_len as u64 <= s
        });
        let fold_ok = self
            .fold
            .iter()
            .all(|f| (f.node as u64) < n && f.key_off as u64 + f.key_len as u64 <= s);
        let respell_ok = self
            .respell
            .iter()
            .all(|r| (r.node as u64) < n && r.dir_off as u64 + r.dir_len as u64 <= s)
            && self.respell.windows(2).all(|w| w[0].node < w[1].node);
        let dirhash_ok = self.dirhash.is_empty()
            || self
                .nodes
                .iter()
                .enumerate()
                .all(|(i, r)| match self.dirhash[i] {
                    0 => true,
                    at => self.hash_table(r, at).is_some_and(|t| {
                        t.iter()
                            .all(|&v| v == 0 || (1..=r.child_count).contains(&dirhash_position(v)))
                    }),
                });
        nodes_ok
            && layers_ok
            && fold_ok
            && respell_ok
            && dirhash_ok
            && self
                .anchors
                .iter()
                .chain(self.blacklist)
                .all(|a| a.off as u64 + a.len as u64 <= s)
    }

    pub fn generation(&self) -> u64 {
        self.header.generation
    }

    /// Tells this snapshot from any other in the process while it is mapped:
    /// its generation and where its node table lives.
    pub fn identity(&self) -> (u64, usize) {
        (self.header.generation, self.nodes.as_ptr() as usize)
    }

    /// Names compare case-insensitively at and below directory destinations
    /// (see [`crate::fold`]); the journal keys paths by folded name.
    pub fn case_insensitive(&self) -> bool {
        self.header.flags & HEADER_CASE_INSENSITIVE != 0
    }

    /// This directory's children also match by folded name.
    #[inline]
    pub fn folds(&self, n: NodeId) -> bool {
        self.nodes[n as usize].flags & FLAG_FOLD != 0
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn root(&self) -> NodeId {
        0
    }

    fn str(&self, off: u32, len: u32) -> &'a [u8] {
        &self.strings[off as usize..off as usize + len as usize]
    }

    pub fn name(&self, n: NodeId) -> &'a [u8] {
        let r = &self.nodes[n as usize];
        self.str(r.name_off, r.name_len as u32)
    }

    pub fn kind(&self, n: NodeId) -> NodeKind {
        match self.nodes[n as usize].kind {
            KIND_DIR => NodeKind::Dir,
            KIND_FILE => NodeKind::File,
            KIND_SYMLINK => NodeKind::Symlink,
            _ => NodeKind::Other,
        }
    }

    /// The `d_type` a directory listing reports for this node.
    pub fn d_type(&self, n: NodeId) -> u8 {
        match self.kind(n) {
            NodeKind::Dir => libc::DT_DIR,
            NodeKind::File => libc::DT_REG,
            NodeKind::Symlink => libc::DT_LNK,
            NodeKind::Other => libc::DT_UNKNOWN,
        }
    }

    pub fn ino(&self, n: NodeId) -> u64 {
        self.nodes[n as usize].ino
    }

    pub fn parent(&self, n: NodeId) -> NodeId {
        self.nodes[n as usize].parent
    }

    /// The winning layer, or `None` when only the real disk provides this directory.
    pub fn layer(&self, n: NodeId) -> Option<u32> {
        let l = self.nodes[n as usize].layer;
        (l != NO_LAYER).then_some(l)
    }

    /// A layer above the real disk put a non-directory on this path or an
    /// ancestor, so the real directory's entries below it do not show.
    pub fn hides_base(&self, n: NodeId) -> bool {
        self.nodes[n as usize].flags & FLAG_HIDES_BASE != 0
    }

    pub fn children(
        &self,
        n: NodeId,
    ) -> impl DoubleEndedIterator<Item = NodeId> + ExactSizeIterator + use<'a> {
        let r = &self.nodes[n as usize];
        r.first_child..r.first_child + r.child_count
    }

    /// The child named exactly `name`: from the directory's hash table when
    /// it has one, else by a binary search among the sorted children.
    #[inline]
    pub fn child(&self, n: NodeId, name: &[u8]) -> Option<NodeId> {
        let r = &self.nodes[n as usize];
        if r.child_count >= DIRHASH_MIN_CHILDREN
            && let Some(&at) = self.dirhash.get(n as usize)
            && let Some(table) = self.hash_table(r, at)
        {
            let mask = table.len() - 1;
            let h = name_hash(name);
            let mut i = h as usize & mask;
            // A full table (only a corrupt one) ends after one round.
            for _ in 0..table.len() {
                let v = table[i];
                if v == 0 {
                    return None;
                }
                if dirhash_tag_matches(v, h) {
                    let p = dirhash_position(v);
                    if p > r.child_count {
                        return None;
                    }
                    let c = r.first_child + (p - 1);
                    if self.name(c) == name {
                        return Some(c);
                    }
                }
                i = (i + 1) & mask;
            }
            return None;
        }
        self.child_sorted(n, name)
    }

    /// The hash table of directory `r` starting at word `at` of the
    /// `dirhash` area (None: it has none, or it does not fit).
    #[inline(always)]
    fn hash_table(&self, r: &NodeRec, at: u32) -> Option<&'a [u32]> {
        if at == 0 {
            return None;
        }
        let at = at as usize;
        self.dirhash
            .get(at..at + dirhash_slots(r.child_count) as usize)
    }

    /// Binary search among the sorted children.
    pub fn child_sorted(&self, n: NodeId, name: &[u8]) -> Option<NodeId> {
        let r = &self.nodes[n as usize];
        let (mut lo, mut hi) = (r.first_child, r.first_child + r.child_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match cmp_names(self.name(mid), name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The child named `name`: the exact name first (a binary search), then,
    /// in a directory that folds, the name in any spelling.
    #[inline]
    pub fn lookup(&self, n: NodeId, name: &[u8]) -> Option<NodeId> {
        match self.child(n, name) {
            Some(c) => Some(c),
            None if self.folds(n) => self.child_folded(n, name),
            None => None,
        }
    }

    /// The child whose name folds like `name` (a binary search in the fold
    /// order; the key is folded into a stack buffer, nothing allocates).
    pub fn child_folded(&self, n: NodeId, name: &[u8]) -> Option<NodeId> {
        if name.len() > crate::fold::KEY_MAX {
            return None;
        }
        let mut buf = [0u8; crate::fold::KEY_MAX];
        let len = crate::fold::fold_into(name, &mut buf)?;
        let key = &buf[..len];
        let r = &self.nodes[n as usize];
        let first = r.first_child as usize;
        let fold = self.fold.get(first..first + r.child_count as usize)?;
        let (mut lo, mut hi) = (0, fold.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let f = &fold[mid];
            let k = self
                .strings
                .get(f.key_off as usize..f.key_off as usize + f.key_len as usize)?;
            match k.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(f.node),
            }
        }
        None
    }

    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    pub fn layer_source(&self, l: u32) -> &'a [u8] {
        let r = &self.layers[l as usize];
        self.str(r.source_off, r.source_len)
    }

    pub fn layer_dest(&self, l: u32) -> &'a [u8] {
        let r = &self.layers[l as usize];
        self.str(r.dest_off, r.dest_len)
    }

    pub fn layer_flags(&self, l: u32) -> u32 {
        self.layers[l as usize].flags
    }

    /// The layer is the real contents of a destination (case-insensitive
    /// index), not a rule.
    pub fn is_base_layer(&self, l: u32) -> bool {
        self.layers[l as usize].flags & LAYER_BASE != 0
    }

    /// The physical directory holding a `FLAG_RESPELL` node.
    fn respelled_dir(&self, n: NodeId) -> Option<&'a [u8]> {
        let i = self.respell.binary_search_by_key(&n, |r| r.node).ok()?;
        let r = &self.respell[i];
        self.strings
            .get(r.dir_off as usize..r.dir_off as usize + r.dir_len as usize)
    }

    /// Last components of every destination: a path that spells one of them may
    /// reach a destination through a symlink.
    pub fn anchors(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let s = *self;
        self.anchors.iter().map(move |a| s.str(a.off, a.len))
    }

    pub fn blacklist(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let s = *self;
        self.blacklist.iter().map(move |a| s.str(a.off, a.len))
    }

    /// True when an executable path is blacklisted (by base name or full path).
    pub fn is_blacklisted(&self, exe: &[u8]) -> bool {
        let base = path::file_name(exe);
        self.blacklist().any(|b| b == exe || b == base)
    }

    /// The physical path of node `n` reached at virtual path `vpath` (spelled
    /// as the view spells it): its winning layer's source plus the path
    /// below the layer's destination, or, for a node whose layer spells a
    /// parent differently, the physical directory the index recorded.
    pub fn physical_path(
        &self,
        n: NodeId,
        vpath: &[u8],
        out: &mut PathBuffer,
    ) -> Result<(), TooLong> {
        out.clear();
        match self.layer(n) {
            None => out.push_bytes(vpath),
            Some(_) if self.nodes[n as usize].flags & FLAG_RESPELL != 0 => {
                // The winning layer spells a parent directory differently.
                out.push_bytes(self.respelled_dir(n).unwrap_or(b"/"))?;
                out.push_component(self.name(n))
            }
            Some(l) => {
                let rest = path::strip_prefix(vpath, self.layer_dest(l)).unwrap_or(b"");
                out.push_bytes(self.layer_source(l))?;
                if !rest.is_empty() {
                    out.push_component(rest)?;
                }
                Ok(())
            }
        }
    }

    /// The absolute virtual path of a node (for dumps; allocates).
    pub fn virtual_path(&self, mut n: NodeId) -> Vec<u8> {
        crate::path::from_leaf_up(std::iter::from_fn(|| {
            (n != 0).then(|| {
                let name = self.name(n);
                n = self.parent(n);
                name
            })
        }))
    }
}

/// A snapshot file mapped read-only: every process shares the same pages.
/// Why the index at `path` cannot be used: written by another version of
/// usvfs (an instance started before an upgrade), or not an index at all.
fn invalid(bytes: &[u8], path: &Path) -> Error {
    let version = (bytes.len() >= 12 && bytes[..8] == MAGIC)
        .then(|| u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]))
        .filter(|&v| v != VERSION);
    let message = match version {
        Some(v) => format!(
            "written by another version of usvfs (index format {v}; this one reads {VERSION}): \
             end that instance and start the program again with this version's `usvfs run`"
        ),
        None => "not a valid usvfs index (rebuild it by setting the mapping again)".into(),
    };
    Error::Index {
        path: path.into(),
        message,
    }
}

pub struct MappedSnapshot {
    map: memmap2::Mmap,
}

impl MappedSnapshot {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("opening index", path, e))?;
        // SAFETY: snapshots are written to a temporary name and renamed into place,
        // never modified after publication.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::io("mapping index", path, e))?;
        if !Snapshot::parse(&map).is_some_and(|s| s.verify()) {
            return Err(invalid(&map, path));
        }
        Ok(Self { map })
    }

    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot::parse(&self.map).expect("validated at open")
    }

    /// Maps without the O(n) check (hooked processes: the snapshot lives in a
    /// private directory and was verified by the controller that wrote it).
    pub fn open_trusted(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("opening index", path, e))?;
        // SAFETY: see `open`.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::io("mapping index", path, e))?;
        if Snapshot::parse(&map).is_none() {
            return Err(invalid(&map, path));
        }
        Ok(Self { map })
    }

    /// Leaks the mapping for the life of the process.
    pub fn leak(self) -> Snapshot<'static> {
        let map: &'static memmap2::Mmap = Box::leak(Box::new(self.map));
        Snapshot::parse(map).expect("validated at open")
    }
}

/// An owned, aligned in-memory snapshot (tests, dumps).
pub struct OwnedSnapshot {
    words: Vec<u64>,
    len: usize,
}

impl OwnedSnapshot {
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: the u64 buffer is at least bytes.len() long.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                words.as_mut_ptr().cast::<u8>(),
                bytes.len(),
            )
        };
        let s = Self {
            words,
            len: bytes.len(),
        };
        if !Snapshot::parse(s.bytes())?.verify() {
            return None;
        }
        Some(s)
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the buffer holds len initialized bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot::parse(self.bytes()).expect("validated at construction")
    }
}

/// `a.cmp(b)` for names, inline: eight bytes at a time, most names differ
/// in the first eight. A binary search compares a dozen names per lookup, and
/// a call into the C library's `memcmp` for each cost more than the compare.
#[inline(always)]
fn cmp_names(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    let (mut ca, mut cb) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        let (x, y) = (
            u64::from_be_bytes(x.try_into().unwrap_or_default()),
            u64::from_be_bytes(y.try_into().unwrap_or_default()),
        );
        if x != y {
            return x.cmp(&y);
        }
    }
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod cmp_tests {
    #[test]
    fn names_compare_as_byte_strings() {
        let names: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"ab",
            b"abcdefgh",
            b"abcdefghi",
            b"abcdefgg",
            b"abcdefgh\xff",
            b"file0001.dat",
            b"file0010.dat",
            b"file001.dat",
            b"\xff",
            b"\x00",
            b"A",
            b"Z",
            b"missing_1234.dat",
            b"missing_1234.da",
            b"missing_1234.dat\x00",
            "caf\u{e9}".as_bytes(),
            b"base_12.dat",
            b"d9",
            b"d10",
        ];
        for a in &names {
            for b in &names {
                assert_eq!(super::cmp_names(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }
}
