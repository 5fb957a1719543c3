//! usvfs-control: the control side of the Linux user-space virtual file
//! system — the mapping model, profiles, building the index, instances (their
//! directories, registry and publication), and program inspection. Front ends
//! (the CLI, the Python binding) build on it; engines link only `usvfs-view`,
//! which this crate re-exports.

pub mod conflicts;
pub mod engine;
pub mod error;
pub mod index;
pub mod instance;
pub mod mapping;
pub mod mo2;
pub mod monitor;
pub mod mount_ns;
pub mod profile;
pub mod program;
pub mod wine;

pub use usvfs_view as view;
pub use usvfs_view::{journal, launch_env, path, resolve, semantics};

pub use error::{Error, Result};
pub use index::{NodeId, NodeKind, Snapshot, build_snapshot};
pub use instance::Instance;
pub use mapping::{LinkFlags, LinkKind, Mapping, Rule};
