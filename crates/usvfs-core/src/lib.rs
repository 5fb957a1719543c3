//! usvfs-core: the mapping model, the layer index and path resolution of the
//! Linux user-space virtual file system. No libc interposition and no Python
//! here: the preload library, the CLI and the Python binding all build on it.

pub mod create;
pub mod error;
pub mod index;
pub mod instance;
pub mod journal;
pub mod mapping;
pub mod path;
pub mod profile;
pub mod program;
pub mod resolve;

pub use error::{Error, Result};
pub use index::{NodeId, NodeKind, Snapshot, build_snapshot};
pub use instance::Instance;
pub use mapping::{LinkFlags, LinkKind, Mapping, Rule};
