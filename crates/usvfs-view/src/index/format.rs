//! On-disk layout of an index snapshot. The file is mapped read-only by every
//! hooked process, so records are fixed-size, 8-byte aligned and native-endian
//! (a snapshot never leaves the machine that wrote it).

pub const MAGIC: [u8; 8] = *b"USVFSIX1";
/// 2: header flags (case-insensitive), the fold and respell tables, the
/// base layers of a case-insensitive index. 3: the children hash tables
/// (`dirhash`). 4: their slots carry a tag of the name's hash.
pub const VERSION: u32 = 4;
pub const NO_LAYER: u32 = u32::MAX;

/// Node kinds, as stored.
pub const KIND_DIR: u8 = 1;
pub const KIND_FILE: u8 = 2;
pub const KIND_SYMLINK: u8 = 3;
pub const KIND_OTHER: u8 = 4;

/// Node flag: a layer put a non-directory here, so the real (base) directory's
/// contents below this node are hidden.
pub const FLAG_HIDES_BASE: u8 = 0x1;
/// Node flag (case-insensitive index): this directory is at or below a
/// directory destination, so its children also match by their folded name
/// (`fold` table) after an exact miss.
pub const FLAG_FOLD: u8 = 0x2;
/// Node flag (case-insensitive index): the node's physical parent directory
/// is not its winning layer's source plus the view's spelling of the virtual
/// parent (a layer spells a directory differently than the view does, or
/// holds two directories whose names differ only in case); the `respell`
/// table has the physical directory.
pub const FLAG_RESPELL: u8 = 0x4;

/// Header flag: names compare case-insensitively (see `crate::fold`) at and
/// below directory destinations, and the journal keys paths by folded name.
pub const HEADER_CASE_INSENSITIVE: u32 = 0x1;

/// Layer flag (beside the link flags): the real contents of a destination,
/// indexed as its lowest layer in a case-insensitive index (source = the
/// destination itself).
pub const LAYER_BASE: u32 = 0x8000_0000;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    pub node_count: u32,
    pub layer_count: u32,
    pub anchor_count: u32,
    pub blacklist_count: u32,
    /// `HEADER_*` flags.
    pub flags: u32,
    pub generation: u64,
    pub nodes_off: u64,
    pub layers_off: u64,
    pub anchors_off: u64,
    pub blacklist_off: u64,
    pub strings_off: u64,
    pub strings_len: u64,
    pub total_len: u64,
    /// `FoldRec`s, one per node (`fold_count` is `node_count` in a
    /// case-insensitive index, else 0).
    pub fold_off: u64,
    /// `RespellRec`s sorted by node.
    pub respell_off: u64,
    pub fold_count: u32,
    pub respell_count: u32,
    /// The children hash tables: `dirhash_words` u32 words (see
    /// [`DIRHASH_MIN_CHILDREN`]).
    pub dirhash_off: u64,
    pub dirhash_words: u32,
    pub _reserved: u32,
}

/// A directory with at least this many children gets a hash table of them,
/// so a lookup reads one or two names instead of a binary search's dozen.
///
/// The `dirhash` area is u32 words: first one per node, the word index in
/// the area where that node's table starts (0: none, since the per-node
/// words come first); then the tables, each [`dirhash_slots`] words of
/// open addressing (linear probing from [`name_hash`]). A slot is 0 when
/// empty, else [`dirhash_slot`]: `1 +` the child's position among its
/// siblings in the low [`DIRHASH_INDEX_BITS`] bits and the top bits of the
/// name's hash above them, so a probe of another name (and a miss) reads no
/// name: every name read is a cache miss of its own.
pub const DIRHASH_MIN_CHILDREN: u32 = 8;

/// Bits of a slot that hold the child's position (plus one).
pub const DIRHASH_INDEX_BITS: u32 = 20;
/// A directory with more children than this has no table (binary search).
pub const DIRHASH_MAX_CHILDREN: u32 = (1 << DIRHASH_INDEX_BITS) - 2;

/// The slot of the child at `position` among its siblings whose name hashes
/// to `hash`.
#[inline(always)]
pub fn dirhash_slot(position: u32, hash: u32) -> u32 {
    (hash & !((1 << DIRHASH_INDEX_BITS) - 1)) | (position + 1)
}

/// The child position (plus one) a slot holds (0: empty).
#[inline(always)]
pub fn dirhash_position(slot: u32) -> u32 {
    slot & ((1 << DIRHASH_INDEX_BITS) - 1)
}

/// A slot's tag matches a name of hash `hash`.
#[inline(always)]
pub fn dirhash_tag_matches(slot: u32, hash: u32) -> bool {
    (slot ^ hash) >> DIRHASH_INDEX_BITS == 0
}

/// Slots of the hash table of a directory with `children` children: a
/// power of two, at most three quarters full.
#[inline(always)]
pub fn dirhash_slots(children: u32) -> u32 {
    (children + children / 3 + 1).next_power_of_two()
}

/// Hash of a name for the children hash tables: eight bytes at a time
/// (names are short), multiply and fold.
#[inline(always)]
pub fn name_hash(name: &[u8]) -> u32 {
    const K: u64 = 0xff51_afd7_ed55_8ccd;
    let mut h = 0x9e37_79b9_7f4a_7c15u64 ^ name.len() as u64;
    let mut chunks = name.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
        h ^= h >> 32;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
        h ^= h >> 32;
    }
    (h ^ (h >> 29)) as u32
}

/// One virtual node. Children of a node are contiguous and sorted by name.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeRec {
    pub name_off: u32,
    pub name_len: u16,
    pub kind: u8,
    pub flags: u8,
    pub parent: u32,
    pub first_child: u32,
    pub child_count: u32,
    /// Winning layer, or [`NO_LAYER`] for a directory only the real disk provides.
    pub layer: u32,
    pub ino: u64,
}

/// One rule as stored: physical = source + (virtual path relative to dest).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerRec {
    pub source_off: u32,
    pub source_len: u32,
    pub dest_off: u32,
    pub dest_len: u32,
    pub flags: u32,
    pub is_file: u32,
}

/// A string in the string table.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct StrRec {
    pub off: u32,
    pub len: u32,
}

/// The fold order of a directory's children: for node `n`, entries
/// `first_child .. first_child + child_count` list its children sorted by
/// their folded name (`key`), which is unique among siblings.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FoldRec {
    pub node: u32,
    pub key_off: u32,
    pub key_len: u32,
}

/// The physical directory holding a `FLAG_RESPELL` node.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RespellRec {
    pub node: u32,
    pub dir_off: u32,
    pub dir_len: u32,
}

pub const HEADER_SIZE: usize = std::mem::size_of::<Header>();
const _: () = assert!(std::mem::size_of::<NodeRec>() == 32);
const _: () = assert!(std::mem::size_of::<LayerRec>() == 24);
const _: () = assert!(std::mem::size_of::<FoldRec>() == 12);
const _: () = assert!(std::mem::size_of::<RespellRec>() == 12);
const _: () = assert!(HEADER_SIZE.is_multiple_of(8));
