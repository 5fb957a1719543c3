//! The layer index: built once from a mapping, stored as a snapshot file that
//! hooked processes map read-only, and queried without allocating.

pub mod build;
pub mod dump;
pub mod format;
pub mod view;

pub use build::build_snapshot;
pub use view::{NodeId, NodeKind, Snapshot};
