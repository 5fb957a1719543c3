//! The semantics every engine enforces: what a path of the view is, what a
//! merged directory lists, where a create lands, what a delete or rename does
//! and records, which errno each case returns, and how a program is started.
//! Engines translate intercepted calls into calls of [`View`]; nothing here
//! knows about `LD_PRELOAD` or FUSE.
//!
//! All paths given to [`View`] are absolute, normalized virtual paths (the
//! engine turns `(dirfd, path)` into one); physical effects go through the
//! [`Fs`] trait.

pub mod change;
pub mod create;
pub mod exec;
pub mod listing;
pub mod origin;
pub mod sources;

use crate::fs::{Errno, Fs, Meta};
use crate::index::{NodeId, NodeKind, Snapshot};
use crate::journal::{Entry, Journal};
use crate::path::PathBuffer;
use crate::resolve::{Resolution, Scratch, resolve_in};

pub use change::{Change, Found, Place, Probe};
pub use listing::Listing;

/// One instance's view: its index snapshot, its journal of changes, and the
/// physical file system. Three pointers: engines build one per call.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub snap: &'a Snapshot<'a>,
    pub journal: Option<&'a Journal>,
    pub fs: &'a dyn Fs,
}

/// The buffers and result of resolving one path (about 20 KiB: engines keep
/// them on the heap so hooked calls need little stack).
pub struct Resolved {
    pub scratch: Scratch,
    /// Normalized absolute virtual path, symlinks in layers expanded.
    pub virt: PathBuffer,
    /// Where the call must go.
    pub phys: PathBuffer,
    pub res: Resolution,
}

impl Resolved {
    /// Heap-allocated, ready for use.
    pub fn boxed() -> Box<Resolved> {
        Box::new(Resolved {
            scratch: Scratch::new(),
            virt: PathBuffer::new(),
            phys: PathBuffer::new(),
            res: Resolution::NONE,
        })
    }

    /// Makes the `Resolved` at `p` valid without touching its buffers.
    ///
    /// # Safety
    /// `p` must point to writable memory for a `Resolved`.
    pub unsafe fn init_at(p: *mut Resolved) {
        // SAFETY: per the contract; the buffers only need their lengths set
        // and the result a value.
        unsafe {
            Scratch::init_at(std::ptr::addr_of_mut!((*p).scratch));
            PathBuffer::init_at(std::ptr::addr_of_mut!((*p).virt));
            PathBuffer::init_at(std::ptr::addr_of_mut!((*p).phys));
            std::ptr::addr_of_mut!((*p).res).write(Resolution::NONE);
        }
    }

    /// Readies a `Resolved` that served an earlier lookup for the next one,
    /// as [`Resolved::init_at`] would, except that its scratch keeps the
    /// directories the last walk cached (valid by their own stamp), so the
    /// next walk starts from the deepest one its path shares.
    pub fn reuse(&mut self) {
        self.scratch.reuse();
        self.virt.clear();
        self.phys.clear();
        self.res = Resolution::NONE;
    }
}

impl Resolution {
    /// The view changes this path: it names an index entry, is placed by
    /// the journal, or goes to another physical path.
    pub fn in_view(&self) -> bool {
        self.redirected || self.node.is_some() || self.from_journal
    }
}

impl<'a> View<'a> {
    /// Resolves `virt` (absolute, normalized). `follow`: follow a symlink in
    /// the last component.
    #[inline]
    pub fn resolve(&self, virt: &[u8], follow: bool, out: &mut Resolved) -> Result<(), Errno> {
        let Resolved {
            scratch,
            virt: v,
            phys,
            res,
        } = out;
        *res = resolve_in(
            self.snap,
            self.journal,
            self.fs,
            virt,
            follow,
            v,
            phys,
            scratch,
        )?;
        if let Some(n) = res.node
            && !res.from_journal
            && self.snap.kind(n) == NodeKind::Dir
            && self.snap.layer(n).is_some()
            && !self.fs.lstat(phys.as_bytes()).is_ok_and(|m| m.is_dir())
        {
            self.other_provider(v.as_bytes(), phys);
        }
        Ok(())
    }

    /// The winning layer's directory at `virt` disappeared from its source
    /// after the mapping was set (e.g. an empty folder removed from a mod):
    /// the merged directory still stands on the next layer that provides it,
    /// or on the real directory. Leaves `phys` as it is when none does.
    #[cold]
    fn other_provider(&self, virt: &[u8], phys: &mut PathBuffer) {
        let mut cand = PathBuffer::new();
        for l in (0..self.snap.layer_count() as u32).rev() {
            let (src, dest) = (self.snap.layer_source(l), self.snap.layer_dest(l));
            // The real directory (a case-insensitive index's base layer) is
            // the lowest layer: tried last, below.
            let Some(rest) = crate::path::strip_prefix(virt, dest).filter(|_| src != dest) else {
                continue;
            };
            if cand.set(src).is_err() || (!rest.is_empty() && cand.push_component(rest).is_err()) {
                continue;
            }
            if cand.as_bytes() != phys.as_bytes()
                && self.fs.lstat(cand.as_bytes()).is_ok_and(|m| m.is_dir())
            {
                let _ = phys.set(cand.as_bytes());
                return;
            }
        }
        if self.fs.lstat(virt).is_ok_and(|m| m.is_dir()) {
            let _ = phys.set(virt);
        }
    }

    /// Like [`View::resolve`] into a new heap buffer.
    pub fn resolve_boxed(&self, virt: &[u8], follow: bool) -> Result<Box<Resolved>, Errno> {
        let mut r = Resolved::boxed();
        self.resolve(virt, follow, &mut r)?;
        Ok(r)
    }

    /// The node is a directory of the index (its listing is merged).
    pub fn is_merged_dir(&self, node: Option<NodeId>) -> bool {
        node.is_some_and(|n| self.snap.kind(n) == NodeKind::Dir)
    }

    /// True when a directory of the view lists nothing but `.` and `..`.
    pub fn dir_is_empty(&self, node: Option<NodeId>, vpath: &[u8]) -> bool {
        match node {
            Some(n) => self.list(n, vpath, 0).entries.len() <= 2,
            // One physical directory: the kernel checks it, but entries the
            // journal placed elsewhere (created in it) count too.
            None => !self.holds_placed_entries(vpath),
        }
    }

    /// Physical attributes of a resolved path.
    pub fn lstat(&self, phys: &[u8]) -> Result<Meta, Errno> {
        self.fs.lstat(phys)
    }

    /// Makes room in the journal for `records` records before a physical
    /// change that will record them: ENOSPC when there is none, so the call
    /// fails before anything on disk changes.
    pub fn reserve(&self, records: usize) -> Result<(), Errno> {
        match self.journal {
            Some(j) => j.reserve(records).map_err(|e| {
                tracing::error!(error = %e, "journal: no room for a change; refusing it");
                e.raw_os_error().unwrap_or(libc::ENOSPC)
            }),
            None => Ok(()),
        }
    }

    /// Records that `virt` now lives at `phys`. A failure to record (rare:
    /// [`View::reserve`] made room first) is logged: the disk already
    /// changed and must not be undone blindly.
    pub fn record(&self, virt: &[u8], phys: &[u8], kind: u8) {
        if let Some(j) = self.journal
            && let Err(e) = j.put(virt, Entry::Physical { phys, kind })
        {
            tracing::error!(
                path = %String::from_utf8_lossy(virt),
                error = %e,
                "journal: cannot record a created path; other processes may not see it"
            );
        }
    }

    /// Records, before a physical change, that `virt` lives at `phys` once
    /// `phys` exists (a record of a missing file reads as absent). Fails
    /// (ENOSPC) when the journal has no room, before anything changed.
    pub fn record_intent(&self, virt: &[u8], phys: &[u8], kind: u8) -> Result<(), Errno> {
        match self.journal {
            Some(j) => j.put(virt, Entry::Physical { phys, kind }).map_err(|e| {
                tracing::error!(
                    path = %String::from_utf8_lossy(virt),
                    error = %e,
                    "journal: no room to record a change; refusing it"
                );
                e.raw_os_error().unwrap_or(libc::ENOSPC)
            }),
            None => Ok(()),
        }
    }

    /// Records that `virt` is gone from physical place `origin` (no lower
    /// layer shows through; the same process creating `virt` again puts it
    /// back at `origin`).
    pub fn record_whiteout(&self, virt: &[u8], origin: &[u8]) {
        if let Some(j) = self.journal
            && let Err(e) = j.put_whiteout(virt, origin, self.fs.caller())
        {
            tracing::error!(
                path = %String::from_utf8_lossy(virt),
                error = %e,
                "journal: cannot record a delete; a lower layer's copy may show through"
            );
        }
    }

    /// A deleted path needs a whiteout when something else could show
    /// through: a lower layer in the index, or a journal record.
    pub fn needs_whiteout(&self, node: Option<NodeId>, virt: &[u8]) -> bool {
        node.is_some()
            || self
                .journal
                .is_some_and(|j| j.get(virt, j.key_hash(virt)).is_some())
    }
}
