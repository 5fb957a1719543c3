//! On-disk layout of an index snapshot. The file is mapped read-only by every
//! hooked process, so records are fixed-size, 8-byte aligned and native-endian
//! (a snapshot never leaves the machine that wrote it).

pub const MAGIC: [u8; 8] = *b"USVFSIX1";
pub const VERSION: u32 = 1;
pub const NO_LAYER: u32 = u32::MAX;

/// Node kinds, as stored.
pub const KIND_DIR: u8 = 1;
pub const KIND_FILE: u8 = 2;
pub const KIND_SYMLINK: u8 = 3;
pub const KIND_OTHER: u8 = 4;

/// Node flag: a layer put a non-directory here, so the real (base) directory's
/// contents below this node are hidden.
pub const FLAG_HIDES_BASE: u8 = 0x1;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    pub node_count: u32,
    pub layer_count: u32,
    pub anchor_count: u32,
    pub blacklist_count: u32,
    pub _pad: u32,
    pub generation: u64,
    pub nodes_off: u64,
    pub layers_off: u64,
    pub anchors_off: u64,
    pub blacklist_off: u64,
    pub strings_off: u64,
    pub strings_len: u64,
    pub total_len: u64,
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

pub const HEADER_SIZE: usize = std::mem::size_of::<Header>();
const _: () = assert!(std::mem::size_of::<NodeRec>() == 32);
const _: () = assert!(std::mem::size_of::<LayerRec>() == 24);
