//! usvfs-view: the hot path of the Linux user-space virtual file system and
//! the semantics every engine enforces.
//!
//! * [`index`]: the layer index snapshot, mapped read-only by every process;
//! * [`resolve`]: a virtual path to its physical path, without allocating;
//! * [`journal`]: the shared record of changes made after the snapshot;
//! * [`semantics`]: listings, where writes land, errno of every case, exec;
//! * [`fs`]: the physical file system behind a trait (real and [`fake`]);
//! * [`program`]: programs a preload engine cannot follow (static, set-id, Go);
//! * [`source_events`]: source changes the monitor applied, for view caches.
//!
//! No serde, toml or walkdir here: engines link this crate; controllers use
//! `usvfs-control` on top of it.

pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod flags;
pub mod fold;
mod fold_table;
pub mod fs;
pub mod index;
pub mod instance_dir;
pub mod journal;
pub mod launch_env;
pub mod path;
pub mod program;
pub mod resolve;
pub mod semantics;
pub mod source_events;

pub use error::{Error, Result};
pub use flags::LinkFlags;
pub use fs::{Errno, FileKind, Fs, Meta, SysFs};
pub use index::{NodeId, NodeKind, Snapshot};
pub use semantics::View;
