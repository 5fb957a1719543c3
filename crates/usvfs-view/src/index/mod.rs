//! The layer index as hooked processes see it: a snapshot file built by the
//! controller, mapped read-only and queried without allocating.

pub mod format;
pub mod snapshot;

pub use snapshot::{MappedSnapshot, NodeId, NodeKind, OwnedSnapshot, Snapshot};
