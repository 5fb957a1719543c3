//! The instance's index and journal as the server uses them: mapped once,
//! the journal opened again when it grew into a new file (the old one is
//! marked superseded).

use std::path::Path;
use std::sync::Mutex;

use usvfs_view::Snapshot;
use usvfs_view::instance_dir::InstanceDir;
use usvfs_view::journal::Journal;

use crate::Error;

pub struct Loaded {
    pub snap: Snapshot<'static>,
    pub journal: Option<Journal>,
}

/// The current [`Loaded`]; replaced, never mutated. Old ones are leaked on
/// purpose: a request being served may still read them (growth is rare).
pub struct Shared {
    inst: InstanceDir,
    cur: Mutex<&'static Loaded>,
}

fn load(inst: &InstanceDir) -> Result<Loaded, Error> {
    let (snap, journal) = inst
        .load_view(false)
        .map_err(|e| Error::Instance(e.to_string()))?;
    Ok(Loaded { snap, journal })
}

impl Shared {
    pub fn open(dir: &Path) -> Result<&'static Shared, Error> {
        let inst = InstanceDir::new(dir);
        let loaded: &'static Loaded = Box::leak(Box::new(load(&inst)?));
        Ok(Box::leak(Box::new(Shared {
            inst,
            cur: Mutex::new(loaded),
        })))
    }

    pub fn get(&self) -> &'static Loaded {
        let mut cur = self.cur.lock().unwrap_or_else(|e| e.into_inner());
        if cur.journal.as_ref().is_some_and(|j| j.is_superseded()) {
            match load(&self.inst) {
                Ok(l) => *cur = Box::leak(Box::new(l)),
                Err(e) => tracing::error!(error = %e, "mount engine: cannot reload the journal"),
            }
        }
        *cur
    }

    pub fn snapshot(&self) -> &'static Snapshot<'static> {
        &self.get().snap
    }
}
