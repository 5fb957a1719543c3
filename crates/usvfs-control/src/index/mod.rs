//! The layer index: built once from a mapping (here), stored as a snapshot
//! file that hooked processes map read-only (`usvfs_view::index`).

pub mod build;
pub mod dump;

pub use build::build_snapshot;
pub use usvfs_view::index::{
    MappedSnapshot, NodeId, NodeKind, OwnedSnapshot, Snapshot, format, snapshot,
};

/// A generation number for a new snapshot (its creation time, in ns).
pub fn new_generation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
