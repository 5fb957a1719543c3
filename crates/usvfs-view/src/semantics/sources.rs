//! Sources that change underneath a running instance (monitored links): a
//! file added to or removed from a layer outside the view is applied to the
//! journal, one path at a time, so running processes see it without a new
//! index. Changes made through the view are already recorded; applying
//! their events again changes nothing, and a path the view deleted stays
//! deleted when its files vanish (a whiteout is kept until something new
//! appears there).

use super::View;
use crate::fs::{Errno, FileKind};
use crate::journal::{Entry, OP_PHYSICAL, OP_WHITEOUT};

impl View<'_> {
    /// A source changed at virtual path `virt`. `candidates` are the
    /// physical paths that may provide it, highest priority first (each
    /// monitored layer's path, then the real path); `appeared` says whether
    /// the event was an entry appearing (created or moved in).
    pub fn source_changed(
        &self,
        virt: &[u8],
        candidates: &[Vec<u8>],
        appeared: bool,
    ) -> Result<(), Errno> {
        let Some(j) = self.journal else {
            return Ok(());
        };
        let winner = candidates
            .iter()
            .enumerate()
            .find_map(|(i, c)| self.fs.lstat(c).ok().map(|m| (i, c.as_slice(), m.kind)));
        let rank = |p: &[u8]| candidates.iter().position(|c| c.as_slice() == p);
        let physical = |p: &[u8], kind: FileKind| Some((OP_PHYSICAL, kind.code(), p.to_vec()));
        j.update(virt, |cur| match (cur, winner) {
            // Deleted in the view: its files vanishing changes nothing.
            (Some(Entry::Whiteout), None) => None,
            (Some(Entry::Whiteout), Some(_)) if !appeared => None,
            (Some(Entry::Whiteout), Some((_, w, kind))) => physical(w, kind),
            (Some(Entry::Physical { phys, .. }), w) => {
                let exists = self.fs.lstat(phys).is_ok();
                match (w, rank(phys)) {
                    (Some((_, w, _)), _) if w == phys => None,
                    // Placed outside the layers (a create with no target):
                    // it stays while it exists.
                    (_, None) if exists => None,
                    (Some((wi, w, kind)), Some(pi)) if !exists || wi < pi => physical(w, kind),
                    (Some(_), Some(_)) => None,
                    (Some((_, w, kind)), None) => physical(w, kind),
                    (None, _) => Some((OP_WHITEOUT, 0, Vec::new())),
                }
            }
            (None, w) => {
                let now = self.resolve_boxed(virt, false).ok();
                let shown = now
                    .as_ref()
                    .and_then(|r| self.fs.lstat(r.phys.as_bytes()).ok().map(|m| (r, m)));
                match (w, shown) {
                    (None, None) if now.as_ref().is_some_and(|r| r.res.node.is_some()) => {
                        Some((OP_WHITEOUT, 0, Vec::new()))
                    }
                    (None, _) => None,
                    (Some((_, w, _)), Some((r, _))) if r.phys.as_bytes() == w => None,
                    // A directory the index merges: its entries follow one by one.
                    (Some((_, _, FileKind::Dir)), Some((_, m))) if m.is_dir() => None,
                    (Some((_, w, kind)), _) => physical(w, kind),
                }
            }
        })
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
    }
}
