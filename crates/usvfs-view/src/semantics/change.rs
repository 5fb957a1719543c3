//! Where writes land (usvfs semantics): existing files change in place; new
//! files and directories go to the innermost create target at the same
//! relative path (parents created there), else into the parent's physical
//! directory; deletes remove the winning physical file and leave a whiteout so
//! no lower copy shows through; renames move the physical file to where a new
//! file at the target would go, or onto the replaced file's own location.
//! Every change is recorded in the journal, so all processes agree at once.

use super::{Resolved, View, create};
use crate::fs::{Errno, FileKind, Meta};
use crate::index::NodeKind;
use crate::journal::Entry;
use crate::path::{self, PathBuffer};

/// The outcome of a complete operation.
#[derive(Debug, PartialEq, Eq)]
pub enum Change<T> {
    /// The view does not change this call: the engine does it unchanged.
    Outside,
    Done(T),
    Fail(Errno),
}

/// A path of the view that exists.
pub struct Found {
    pub r: Box<Resolved>,
    pub meta: Meta,
}

/// Where a new entry goes, and the directories made to hold it. The engine
/// creates the entry at `loc`, then calls [`Place::commit`] (or
/// [`Place::abort`] when that failed).
///
/// The journal already names `loc` for the path when the place is handed
/// out (an intent record): a record whose physical file does not exist
/// reads as absent, so a process killed before, during or after the create
/// leaves the view equal to the disk.
pub struct Place {
    pub virt: PathBuffer,
    pub loc: PathBuffer,
    made: Vec<Vec<u8>>,
    /// The kind the intent record was written with (a `FileKind` code).
    kind: u8,
}

/// What a path that may be created is.
pub enum Probe {
    /// Outside the view (no create target, no layered parent): the engine's
    /// original call does the job.
    Outside,
    Fail(Errno),
    Exists(Found),
    /// Does not exist; a new entry goes to the place.
    New(Box<Place>),
}

impl Place {
    /// Undoes the parent directories made for it, after a failed create.
    pub fn abort(&self, v: &View<'_>) {
        for d in self.made.iter().rev() {
            let _ = v.fs.rmdir(d);
        }
    }

    /// The entry was made, of `kind`: the intent record already publishes
    /// it; only a kind other than the one announced is recorded again.
    pub fn commit(&self, v: &View<'_>, kind: FileKind) {
        if kind.code() != self.kind {
            v.record(self.virt.as_bytes(), self.loc.as_bytes(), kind.code());
        }
    }

    /// Writes the intent record: the path lives at `loc` once it exists.
    fn announce(&self, v: &View<'_>) -> Result<(), Errno> {
        v.record_intent(self.virt.as_bytes(), self.loc.as_bytes(), self.kind)
    }
}

/// Creates the missing directories between `root` (exists) and `dir`.
fn make_parents(
    v: &View<'_>,
    root: &[u8],
    dir: &[u8],
    made: &mut Vec<Vec<u8>>,
) -> Result<(), Errno> {
    let rest = path::strip_prefix(dir, root).ok_or(libc::EXDEV)?;
    let mut cur = PathBuffer::new();
    cur.set(root).map_err(|_| libc::ENAMETOOLONG)?;
    for c in path::components(rest) {
        cur.push_component(c).map_err(|_| libc::ENAMETOOLONG)?;
        match v.fs.lstat(cur.as_bytes()) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(libc::ENOTDIR),
            Err(_) => match v.fs.mkdir(cur.as_bytes(), 0o777) {
                Ok(()) => made.push(cur.as_bytes().to_vec()),
                Err(libc::EEXIST) => {}
                Err(e) => return Err(e),
            },
        }
    }
    Ok(())
}

fn parent_of(virt: &[u8]) -> PathBuffer {
    let mut p = PathBuffer::from_bytes(virt).unwrap_or_default();
    p.pop_component();
    p
}

impl<'a> View<'a> {
    /// Resolves the parent directory of `virt`; `None` when it failed.
    fn parent(&self, virt: &[u8]) -> Result<Box<Resolved>, Errno> {
        let parent = parent_of(virt);
        self.resolve_boxed(parent.as_bytes(), true)
    }

    /// Layers provide directory `r` (or the journal placed it): a new entry
    /// in it belongs to the view. A directory above every destination (an
    /// index node only there to lead to one) is the real disk's.
    fn layered(&self, r: &Resolved) -> bool {
        r.res.redirected
            || r.res.from_journal
            || r.res.node.is_some_and(|n| {
                self.snap.layer(n).is_some()
                    || (0..self.snap.layer_count() as u32).any(|l| {
                        path::strip_prefix(r.virt.as_bytes(), self.snap.layer_dest(l)).is_some()
                    })
            })
    }

    /// Looks `virt` up for an operation that may create it (an entry of
    /// `kind`). Where a new entry goes is decided from the path the view
    /// resolves it to (its parent's resolved path plus its name, or what a
    /// dangling link names), so a symlinked prefix such as Wine's
    /// `dosdevices/z: -> /` creates exactly where the direct path would.
    /// A new place is recorded in the journal before it is returned.
    pub fn probe(&self, virt_in: &[u8], follow: bool, kind: FileKind) -> Probe {
        self.probe_as(virt_in, follow, Some(kind))
    }

    /// Like [`View::probe`] without recording a new place (for an exchange,
    /// which needs both paths to exist).
    fn probe_only(&self, virt: &[u8]) -> Probe {
        self.probe_as(virt, false, None)
    }

    fn probe_as(&self, virt_in: &[u8], follow: bool, kind: Option<FileKind>) -> Probe {
        let mut parent: Option<Box<Resolved>> = None;
        let mut r = Resolved::boxed();
        let virt = match self.resolve(virt_in, follow, &mut r) {
            Ok(()) => {
                if !r.res.in_view() && create::create_target(self.snap, virt_in).is_none() {
                    // Neither a create target nor a layered parent: the
                    // engine's original call does the job (decided before
                    // any system call).
                    match self.parent(virt_in) {
                        Ok(p) if self.layered(&p) => parent = Some(p),
                        _ => return Probe::Outside,
                    }
                }
                if let Ok(meta) = self.fs.lstat(r.phys.as_bytes()) {
                    return Probe::Exists(Found { r, meta });
                }
                // The resolved path: through a symlinked prefix or a
                // dangling link in a layer, it is what gets created.
                if r.virt.as_bytes() != virt_in {
                    parent = None;
                }
                r.virt.clone()
            }
            Err(libc::ENOENT) => match self.parent(virt_in) {
                // Absent (e.g. deleted): the parent's resolved path names it.
                Ok(p) => {
                    let mut v = p.virt.clone();
                    if v.push_component(path::file_name(virt_in)).is_err() {
                        return Probe::Fail(libc::ENAMETOOLONG);
                    }
                    parent = Some(p);
                    v
                }
                Err(e) => return Probe::Fail(e),
            },
            Err(e) => return Probe::Fail(e),
        };
        let ct = create::create_target(self.snap, virt.as_bytes());
        // Not in the view: its parent must be a directory of the view.
        let name = path::file_name(virt.as_bytes()).to_vec();
        if name.is_empty() || name == b"." || name == b".." {
            return Probe::Fail(libc::EEXIST);
        }
        let parent = match parent {
            Some(p) => p,
            None => match self.parent(virt.as_bytes()) {
                Ok(p) => p,
                Err(e) => return Probe::Fail(e),
            },
        };
        match self.fs.stat(parent.phys.as_bytes()) {
            Err(e) => return Probe::Fail(e),
            Ok(m) if !m.is_dir() => return Probe::Fail(libc::ENOTDIR),
            Ok(_) => {}
        }
        let mut place = Box::new(Place {
            virt,
            loc: PathBuffer::new(),
            made: Vec::new(),
            kind: kind.map_or(0, FileKind::code),
        });
        // Deleted or renamed away by this process, and its place is free: it
        // comes back there (an editor that renames the original to a backup,
        // or deletes it, and writes a new file keeps the file in its mod).
        let origin = ct.and_then(|_| self.free_origin(place.virt.as_bytes()));
        match ct {
            Some(_) if origin.is_some() => {
                place.loc = origin.unwrap_or_default();
            }
            Some(layer) => {
                if create::location(self.snap, layer, place.virt.as_bytes(), &mut place.loc)
                    .is_err()
                {
                    return Probe::Fail(libc::ENAMETOOLONG);
                }
                let mut dir = place.loc.clone();
                dir.pop_component();
                if let Err(e) = make_parents(
                    self,
                    self.snap.layer_source(layer),
                    dir.as_bytes(),
                    &mut place.made,
                ) {
                    place.abort(self);
                    return Probe::Fail(e);
                }
            }
            None => {
                place.loc = parent.phys.clone();
                if place.loc.push_component(&name).is_err() {
                    return Probe::Fail(libc::ENAMETOOLONG);
                }
            }
        }
        // An empty directory left hidden at the place (the create target's
        // copy of a deleted directory, e.g. after a kill between removing
        // two copies) gives way: nothing is lost, and the create works.
        if kind.is_some()
            && self
                .fs
                .lstat(place.loc.as_bytes())
                .is_ok_and(|m| m.is_dir())
        {
            let _ = self.fs.rmdir(place.loc.as_bytes());
        }
        // The record first: a create that cannot be recorded fails, and a
        // process killed after the create leaves it visible.
        if kind.is_some()
            && let Err(e) = self.reserve(1).and_then(|()| place.announce(self))
        {
            place.abort(self);
            return Probe::Fail(e);
        }
        Probe::New(place)
    }

    /// The physical directory where an unnamed new file (`O_TMPFILE`) in
    /// virtual directory `dir_virt` (resolved to `dir_phys`) goes: where a new
    /// file there would be created, so a later link can name it in place.
    pub fn new_entry_dir(&self, dir_virt: &[u8], dir_phys: &[u8]) -> Result<PathBuffer, Errno> {
        let mut probe = PathBuffer::from_bytes(dir_virt).map_err(|_| libc::ENAMETOOLONG)?;
        probe
            .push_component(b".usvfs-tmpfile")
            .map_err(|_| libc::ENAMETOOLONG)?;
        let Some(layer) = create::create_target(self.snap, probe.as_bytes()) else {
            return PathBuffer::from_bytes(dir_phys).map_err(|_| libc::ENAMETOOLONG);
        };
        let mut loc = PathBuffer::new();
        create::location(self.snap, layer, probe.as_bytes(), &mut loc)
            .map_err(|_| libc::ENAMETOOLONG)?;
        loc.pop_component();
        make_parents(
            self,
            self.snap.layer_source(layer),
            loc.as_bytes(),
            &mut Vec::new(),
        )?;
        Ok(loc)
    }

    /// Deletes `virt` (`remove_dir`: `Some(true)` rmdir, `Some(false)`
    /// unlink, `None` either, as `remove(3)`): removes the winning physical
    /// entry and records a whiteout when a lower copy could show through.
    pub fn delete(&self, virt: &[u8], remove_dir: Option<bool>) -> Change<()> {
        let r = match self.resolve_boxed(virt, false) {
            // A real directory that holds entries the view placed elsewhere
            // (created in it, landing in the create target) is not empty.
            Ok(r) if !r.res.in_view() => {
                if remove_dir != Some(false) && self.holds_placed_entries(r.virt.as_bytes()) {
                    return Change::Fail(libc::ENOTEMPTY);
                }
                return Change::Outside;
            }
            Ok(r) => r,
            Err(e) => return Change::Fail(e),
        };
        let meta = match self.fs.lstat(r.phys.as_bytes()) {
            Ok(m) => m,
            Err(e) => return Change::Fail(e),
        };
        let dir = meta.is_dir();
        let want_dir = remove_dir.unwrap_or(dir);
        if want_dir && !dir {
            return Change::Fail(libc::ENOTDIR);
        }
        if !want_dir && dir {
            return Change::Fail(libc::EISDIR);
        }
        let whiteout = self.needs_whiteout(r.res.node, r.virt.as_bytes());
        if whiteout && let Err(e) = self.reserve(2) {
            return Change::Fail(e);
        }
        if want_dir && !self.dir_is_empty(r.res.node, r.virt.as_bytes()) {
            return Change::Fail(libc::ENOTEMPTY);
        }
        // Pinned once nothing can refuse the delete: a merged directory
        // recorded at its winning place lists only that place.
        if whiteout && let Err(e) = self.pin(&r, meta.kind) {
            return Change::Fail(e);
        }
        if want_dir {
            if let Err(e) = self.fs.rmdir(r.phys.as_bytes()) {
                // An index directory whose view is empty may still hold
                // files that whiteouts hide: keep them, nothing is lost.
                if r.res.node.is_none() || (e != libc::ENOTEMPTY && e != libc::EEXIST) {
                    return Change::Fail(e);
                }
            }
            self.remove_create_target_copy(&r);
        } else if let Err(e) = self.fs.unlink(r.phys.as_bytes()) {
            return Change::Fail(e);
        }
        if whiteout {
            self.record_whiteout(r.virt.as_bytes(), r.phys.as_bytes());
        }
        Change::Done(())
    }

    /// The journal places an existing entry directly in directory `virt`.
    pub(super) fn holds_placed_entries(&self, virt: &[u8]) -> bool {
        let Some(j) = self.journal.filter(|j| j.may_have_children(virt)) else {
            return false;
        };
        j.children(virt).iter().any(|rec| match rec.entry {
            Entry::Physical { phys, .. } => self.fs.lstat(phys).is_ok(),
            Entry::Whiteout => false,
        })
    }

    /// The place a whiteout of `virt` remembers, when this process made it
    /// (an editor's rename-to-backup or delete, then its new file), nothing
    /// is there now and its directory still exists.
    fn free_origin(&self, virt: &[u8]) -> Option<PathBuffer> {
        let (origin, pid) = self.journal?.origin(virt)?;
        if pid != self.fs.caller() {
            return None;
        }
        if self.fs.lstat(origin).is_ok() {
            return None;
        }
        let mut dir = PathBuffer::from_bytes(origin).ok()?;
        dir.pop_component();
        self.fs
            .stat(dir.as_bytes())
            .is_ok_and(|m| m.is_dir())
            .then(|| PathBuffer::from_bytes(origin).ok())
            .flatten()
    }

    /// After directory `r` was removed: its copy in the create target (made
    /// to hold files created in it since) goes too when it is empty, so a
    /// new mapping does not show the deleted directory again.
    fn remove_create_target_copy(&self, r: &Resolved) {
        let Some(layer) = create::create_target(self.snap, r.virt.as_bytes()) else {
            return;
        };
        let mut loc = PathBuffer::new();
        if create::location(self.snap, layer, r.virt.as_bytes(), &mut loc).is_ok()
            && loc.as_bytes() != r.phys.as_bytes()
        {
            let _ = self.fs.rmdir(loc.as_bytes());
        }
    }

    /// Records that `r` lives at its current physical place (unless the
    /// journal says so already), before that place is removed or moved: a
    /// process that dies between the physical change and the record that
    /// follows it leaves a record of a missing file, which reads as absent.
    fn pin(&self, r: &Resolved, kind: FileKind) -> Result<(), Errno> {
        let virt = r.virt.as_bytes();
        if let Some(j) = self.journal
            && let Some(Entry::Physical { phys, .. }) = j.get(virt, j.key_hash(virt))
            && phys == r.phys.as_bytes()
        {
            return Ok(());
        }
        self.record_intent(virt, r.phys.as_bytes(), kind.code())
    }

    /// Renames `old` to `new` (`renameat2` flags). The result lives where a
    /// new file at `new` would be created, or at the replaced file's own
    /// location; `old` is then absent, as after a delete.
    pub fn rename(&self, old: &[u8], new: &[u8], flags: u32) -> Change<()> {
        let olk = match self.resolve_boxed(old, false) {
            Ok(r) => r,
            Err(e) => return Change::Fail(e),
        };
        let old_in_view = olk.res.in_view();
        let ophys = olk.phys.clone();
        let ost = self.fs.lstat(ophys.as_bytes());
        let okind = ost.as_ref().map_or(FileKind::File, |m| m.kind);
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let target = if exchange {
            self.probe_only(new)
        } else {
            self.probe(new, false, okind)
        };
        if !old_in_view && matches!(target, Probe::Outside) {
            return Change::Outside;
        }
        let ost = match ost {
            Ok(m) => m,
            Err(e) => {
                if let Probe::New(p) = &target {
                    p.abort(self);
                }
                return Change::Fail(e);
            }
        };
        let (dest, place, replacing) = match target {
            Probe::Fail(e) => return Change::Fail(e),
            Probe::Outside => (PathBuffer::from_bytes(new).unwrap_or_default(), None, false),
            Probe::Exists(f) => {
                if flags & libc::RENAME_NOREPLACE != 0 {
                    return Change::Fail(libc::EEXIST);
                }
                if olk.virt.as_bytes() == f.r.virt.as_bytes() {
                    return Change::Done(());
                }
                if !exchange {
                    if ost.is_dir() && !f.meta.is_dir() {
                        return Change::Fail(libc::ENOTDIR);
                    }
                    if !ost.is_dir() && f.meta.is_dir() {
                        return Change::Fail(libc::EISDIR);
                    }
                    if f.meta.is_dir() && !self.dir_is_empty(f.r.res.node, f.r.virt.as_bytes()) {
                        return Change::Fail(libc::ENOTEMPTY);
                    }
                }
                // Replacing keeps the result at the replaced file's location.
                let place = Box::new(Place {
                    virt: f.r.virt.clone(),
                    loc: f.r.phys.clone(),
                    made: Vec::new(),
                    kind: f.meta.kind.code(),
                });
                (f.r.phys.clone(), Some(place), true)
            }
            Probe::New(place) => {
                if exchange {
                    place.abort(self);
                    return Change::Fail(libc::ENOENT);
                }
                (place.loc.clone(), Some(place), false)
            }
        };
        let abort = |place: &Option<Box<Place>>| {
            if let Some(p) = place {
                p.abort(self);
            }
        };
        // A directory merged from layers cannot move as one physical directory.
        // (A real directory holding files created in the view is one too.)
        if ost.is_dir()
            && !exchange
            && (old_in_view
                || self
                    .journal
                    .is_some_and(|j| j.has_records_below(olk.virt.as_bytes())))
            && !self.lives_in_one_place(&olk)
        {
            abort(&place);
            return Change::Fail(libc::EXDEV);
        }
        // Both sides recorded at their current places first (see `pin`):
        // whenever this process dies, each reads as where its file is.
        let whiteout = old_in_view && self.needs_whiteout(olk.res.node, olk.virt.as_bytes());
        let pinned = self.reserve(3).and_then(|()| {
            if exchange {
                return Ok(());
            }
            if let Some(p) = place.as_ref().filter(|_| replacing) {
                p.announce(self)?;
            }
            if whiteout {
                self.pin(&olk, ost.kind)?;
            }
            if ost.is_dir()
                && let Some(p) = &place
            {
                self.carry_records(&olk, p.virt.as_bytes(), dest.as_bytes())?;
            }
            Ok(())
        });
        if let Err(e) = pinned {
            abort(&place);
            return Change::Fail(e);
        }
        let mut r = self.fs.rename(ophys.as_bytes(), dest.as_bytes(), flags);
        if r == Err(libc::EXDEV) && !exchange && !ost.is_dir() {
            // The layers sit on different file systems, which a merged
            // directory would hide: move the file by copy, atomically at the
            // destination, then remove the source.
            r = self.move_across(ophys.as_bytes(), dest.as_bytes(), &ost);
        }
        if let Err(e) = r {
            abort(&place);
            return Change::Fail(e);
        }
        if exchange {
            return Change::Done(());
        }
        if whiteout {
            self.record_whiteout(olk.virt.as_bytes(), ophys.as_bytes());
        }
        if let Some(p) = &place {
            p.commit(self, ost.kind);
        }
        Change::Done(())
    }

    /// Before directory `old` moves to `dest` (virtual `new`): every path
    /// the journal knows below either of them is recorded at its place below
    /// `dest`, so records of what `new` held before (whiteouts of an emptied
    /// directory) cannot hide what moves in, and what the journal had placed
    /// inside `old` follows it. Until the move each such place is missing
    /// (a record of a missing file reads as absent, as the path was).
    fn carry_records(&self, old: &Resolved, new: &[u8], dest: &[u8]) -> Result<(), Errno> {
        let Some(j) = self.journal.filter(|j| !j.is_empty()) else {
            return Ok(());
        };
        let mut rels: Vec<Vec<u8>> = Vec::new();
        for dir in [old.virt.as_bytes(), new] {
            let depth = path::components(dir).count();
            for rec in j.records().iter().filter(|r| j.below(r.vpath, dir)) {
                let mut rel = Vec::new();
                for c in path::components(rec.vpath).skip(depth) {
                    if !rel.is_empty() {
                        rel.push(b'/');
                    }
                    rel.extend_from_slice(c);
                }
                rels.push(rel);
            }
        }
        rels.sort();
        rels.dedup();
        self.reserve(rels.len())?;
        let (mut virt, mut at, mut now) = (PathBuffer::new(), PathBuffer::new(), PathBuffer::new());
        for rel in &rels {
            let too_long = |_| libc::ENAMETOOLONG;
            virt.set(new).map_err(too_long)?;
            virt.push_component(rel).map_err(too_long)?;
            at.set(dest).map_err(too_long)?;
            at.push_component(rel).map_err(too_long)?;
            now.set(old.phys.as_bytes()).map_err(too_long)?;
            now.push_component(rel).map_err(too_long)?;
            let kind = self
                .fs
                .lstat(now.as_bytes())
                .map_or(FileKind::File, |m| m.kind);
            self.record_intent(virt.as_bytes(), at.as_bytes(), kind.code())?;
        }
        Ok(())
    }

    /// The whole view of directory `r` is one physical directory: one layer
    /// provides it and everything below it, no other layer or the real disk
    /// adds to it, and nothing below it was deleted or placed elsewhere. Such
    /// a directory moves as that physical directory.
    fn lives_in_one_place(&self, r: &Resolved) -> bool {
        if let Some(n) = r.res.node {
            let Some(layer) = self.snap.layer(n) else {
                return false;
            };
            let mut todo = vec![n];
            while let Some(d) = todo.pop() {
                for c in self.snap.children(d) {
                    if self.snap.layer(c) != Some(layer) {
                        return false;
                    }
                    if self.snap.kind(c) == NodeKind::Dir {
                        todo.push(c);
                    }
                }
            }
            // The real directory at the same path would stay behind.
            if r.phys.as_bytes() != r.virt.as_bytes() && self.fs.lstat(r.virt.as_bytes()).is_ok() {
                return false;
            }
        }
        let Some(j) = self.journal else {
            return true;
        };
        let depth = path::components(r.virt.as_bytes()).count();
        j.records().iter().all(|rec| {
            if !j.below(rec.vpath, r.virt.as_bytes()) {
                return true;
            }
            match rec.entry {
                Entry::Whiteout => false,
                // Placed at the same relative path inside this directory.
                Entry::Physical { phys, .. } => path::strip_prefix(phys, r.phys.as_bytes())
                    .is_some_and(|prest| {
                        path::components(prest).eq(path::components(rec.vpath).skip(depth))
                    }),
            }
        })
    }

    /// Moves a file or symlink between file systems: copy into a temporary
    /// name beside the destination, rename it over the destination (atomic),
    /// remove the source. On failure nothing changes but a removed temporary.
    fn move_across(&self, src: &[u8], dest: &[u8], st: &Meta) -> Result<(), Errno> {
        let mut tmp = PathBuffer::from_bytes(dest).map_err(|_| libc::ENAMETOOLONG)?;
        tmp.push_bytes(format!(".usvfs-move.{}", std::process::id()).as_bytes())
            .map_err(|_| libc::ENAMETOOLONG)?;
        let result = (|| -> Result<(), Errno> {
            if st.kind == FileKind::Symlink {
                let mut buf = vec![0u8; path::PATH_MAX];
                let n = self.fs.readlink(src, &mut buf)?;
                self.fs.symlink(&buf[..n], tmp.as_bytes())?;
            } else {
                self.fs.copy_file(src, tmp.as_bytes())?;
            }
            self.fs.rename(tmp.as_bytes(), dest, 0)
        })();
        if let Err(e) = result {
            let _ = self.fs.unlink(tmp.as_bytes());
            return Err(e);
        }
        self.fs.unlink(src)
    }
}
