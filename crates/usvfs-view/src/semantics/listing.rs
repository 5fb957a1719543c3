//! Merged directory listings: `.` and `..`, then the index's entries (each
//! name's winner), then the real directory's own entries that no layer
//! shadows, then the journal's changes.
//!
//! In a case-insensitive index a directory at or below a destination lists
//! from the index alone (the destination's real contents are indexed as its
//! lowest layer, so each folded name is there once, spelled as the
//! highest-priority layer that provides it), and the journal's records match
//! entries in any spelling: a deleted name goes whatever its spelling, and a
//! re-created one shows as it was created.

use super::View;
use crate::index::NodeId;
use crate::journal;

#[derive(Clone, Copy)]
pub struct Entry {
    pub name_off: u32,
    pub name_len: u16,
    pub d_type: u8,
    pub ino: u64,
}

#[derive(Default)]
pub struct Listing {
    pub names: Vec<u8>,
    pub entries: Vec<Entry>,
}

impl Listing {
    fn push(&mut self, name: &[u8], d_type: u8, ino: u64) {
        self.entries.push(Entry {
            name_off: self.names.len() as u32,
            name_len: name.len() as u16,
            d_type,
            ino,
        });
        self.names.extend_from_slice(name);
    }

    pub fn name(&self, e: &Entry) -> &[u8] {
        &self.names[e.name_off as usize..e.name_off as usize + e.name_len as usize]
    }

    /// Every name, in listing order (`.` and `..` first).
    pub fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().map(|e| self.name(e))
    }
}

impl View<'_> {
    /// Lists virtual directory `node` at virtual path `vpath`: `.` and `..`
    /// (inode `self_ino`), the index's entries (each name's winner), the real
    /// directory's own entries that no layer shadows, then the journal's
    /// changes (deleted names go, created ones come).
    pub fn list(&self, node: NodeId, vpath: &[u8], self_ino: u64) -> Listing {
        let snap = self.snap;
        let mut l = Listing::default();
        l.push(b".", libc::DT_DIR, self_ino);
        l.push(b"..", libc::DT_DIR, self_ino);
        for c in snap.children(node) {
            l.push(snap.name(c), snap.d_type(c), snap.ino(c));
        }
        if !snap.hides_base(node) && !snap.folds(node) {
            // The real directory at the virtual path is the lowest layer; a
            // missing one adds nothing.
            let _ = self.fs.read_dir(vpath, &mut |name, d_type, ino| {
                if snap.child(node, name).is_none() {
                    l.push(name, d_type, ino);
                }
            });
        }
        self.apply_journal(vpath, &mut l);
        l
    }

    /// Lists the directory resolved to `node` (merged when it is an index
    /// directory) at virtual `vpath`, physical `phys`.
    pub fn listing(
        &self,
        node: Option<NodeId>,
        vpath: &[u8],
        phys: &[u8],
        self_ino: u64,
    ) -> Listing {
        match node.filter(|_| self.is_merged_dir(node)) {
            Some(n) => self.list(n, vpath, self_ino),
            None => self.list_physical(vpath, phys, self_ino),
        }
    }

    /// Lists a directory outside the index that the journal adds entries to
    /// (see [`View::lists_with_journal`]): the physical directory `phys`,
    /// then the journal's changes below virtual path `vpath`.
    pub fn list_physical(&self, vpath: &[u8], phys: &[u8], self_ino: u64) -> Listing {
        let mut l = Listing::default();
        l.push(b".", libc::DT_DIR, self_ino);
        l.push(b"..", libc::DT_DIR, self_ino);
        let _ = self
            .fs
            .read_dir(phys, &mut |name, d_type, ino| l.push(name, d_type, ino));
        self.apply_journal(vpath, &mut l);
        l
    }

    /// A directory outside the index whose listing needs the journal: it
    /// may hold entries created in it that landed elsewhere (the create
    /// target), or hide deleted ones. Costs one bit test for the many
    /// directories no change touched.
    #[inline]
    pub fn lists_with_journal(&self, vpath: &[u8]) -> bool {
        self.journal.is_some_and(|j| j.may_have_children(vpath))
    }

    fn apply_journal(&self, vpath: &[u8], l: &mut Listing) {
        let Some(j) = self.journal.filter(|j| j.may_have_children(vpath)) else {
            return;
        };
        let fold = j.folds();
        for r in j.children(vpath) {
            let name = crate::path::file_name(r.vpath);
            let pos = l.entries.iter().position(|e| {
                let n = l.name(e);
                n == name || (fold && crate::fold::eq(n, name))
            });
            let present = match r.entry {
                journal::Entry::Whiteout => None,
                journal::Entry::Physical { phys, .. } => {
                    self.fs.lstat(phys).ok().map(|m| (m.d_type, m.ino))
                }
            };
            match (pos, present) {
                (Some(i), None) => {
                    l.entries.remove(i);
                }
                (Some(i), Some((d_type, ino))) => {
                    if l.name(&l.entries[i]) != name {
                        // Re-created in another spelling: shown as created.
                        l.entries[i].name_off = l.names.len() as u32;
                        l.entries[i].name_len = name.len() as u16;
                        l.names.extend_from_slice(name);
                    }
                    l.entries[i].d_type = d_type;
                    l.entries[i].ino = ino;
                }
                (None, Some((d_type, ino))) => l.push(name, d_type, ino),
                (None, None) => {}
            }
        }
    }
}

/// A position in a listing (for `getdents64` on a descriptor).
pub struct Cursor {
    pub listing: Listing,
    pub pos: usize,
}
