//! Changes (DESIGN.md section 4): existing files change in place; new files and
//! directories go to the innermost create target at the same relative path
//! (parents created there), else into the parent's physical directory; deletes
//! remove the winning physical file and leave a whiteout so no lower copy shows
//! through; renames move the physical file to where a new file at the target
//! would go, or onto the replaced file's own location. Every change is recorded
//! in the instance's journal, so all hooked processes agree at once.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, c_char, c_int, c_uint, mode_t};
use std::panic::{AssertUnwindSafe, catch_unwind};

use usvfs_core::index::format::{KIND_DIR, KIND_FILE, KIND_OTHER, KIND_SYMLINK};
use usvfs_core::journal::{Entry, path_hash};
use usvfs_core::path::{self, PathBuffer};

use crate::guard::{self, errno, set_errno};
use crate::lookup::{Lookup, LookupBox, Outcome, bytes, lookup, virtual_path};
use crate::state::{self, State};
use crate::{fdtable, listing, real};

fn lstat_phys(p: &mut PathBuffer) -> Option<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: NUL-terminated path, valid buffer.
    if unsafe { real::lstat(p.as_c_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: lstat succeeded.
    Some(unsafe { st.assume_init() })
}

fn stat_phys(p: &mut PathBuffer) -> Result<libc::stat, i32> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: NUL-terminated path, valid buffer.
    if unsafe { real::stat(p.as_c_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    // SAFETY: stat succeeded.
    Ok(unsafe { st.assume_init() })
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn kind_of(st: &libc::stat) -> u8 {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => KIND_DIR,
        libc::S_IFLNK => KIND_SYMLINK,
        libc::S_IFREG => KIND_FILE,
        _ => KIND_OTHER,
    }
}

/// A path of the view that exists.
struct Found {
    lk: crate::lookup::LookupBox,
    st: libc::stat,
}

enum Probe {
    /// Outside the view: the original call does the job.
    Pass,
    Fail(i32),
    Exists(Found),
    /// Does not exist; a new entry goes to `loc`.
    New(Box<NewPlace>),
}

/// Where a new entry goes, and the directories made to hold it.
struct NewPlace {
    virt: PathBuffer,
    loc: PathBuffer,
    made: Vec<Vec<u8>>,
}

impl NewPlace {
    /// Undoes the parent directories we made, after a failed create.
    fn undo(&self) {
        for d in self.made.iter().rev() {
            let mut p = PathBuffer::new();
            if p.set(d).is_ok() {
                // SAFETY: NUL-terminated path.
                unsafe { real::unlinkat(AT_FDCWD, p.as_c_ptr(), AT_REMOVEDIR) };
            }
        }
    }

    /// Publishes the new entry to every process of the instance.
    fn record(&self, st: &State, kind: u8) {
        if let Some(j) = st.journal.as_ref() {
            let _ = j.put(
                self.virt.as_bytes(),
                Entry::Physical {
                    phys: self.loc.as_bytes(),
                    kind,
                },
            );
        }
    }
}

/// Creates the missing directories between `root` (exists) and `dir`.
fn make_parents(root: &[u8], dir: &[u8], made: &mut Vec<Vec<u8>>) -> Result<(), i32> {
    let rest = path::strip_prefix(dir, root).ok_or(libc::EXDEV)?;
    let mut cur = PathBuffer::new();
    cur.set(root).map_err(|_| libc::ENAMETOOLONG)?;
    for c in path::components(rest) {
        cur.push_component(c).map_err(|_| libc::ENAMETOOLONG)?;
        match lstat_phys(&mut cur) {
            Some(s) if is_dir(&s) => {}
            Some(_) => return Err(libc::ENOTDIR),
            None => {
                // SAFETY: NUL-terminated path.
                if unsafe { real::mkdirat(AT_FDCWD, cur.as_c_ptr(), 0o777) } != 0 {
                    let e = errno();
                    if e != libc::EEXIST {
                        return Err(e);
                    }
                } else {
                    made.push(cur.as_bytes().to_vec());
                }
            }
        }
    }
    Ok(())
}

/// Looks up the parent directory of `virt`; on return `plk.phys` is where
/// the parent physically is. The bool: the view changes what the parent holds
/// (its entries come from layers or the journal).
fn parent_lookup(st: &State, virt: &PathBuffer) -> (Outcome, LookupBox) {
    let mut parent = virt.clone();
    parent.pop_component();
    let mut plk = Lookup::new();
    let outcome = lookup(st, AT_FDCWD, parent.as_bytes(), true, &mut plk);
    if matches!(outcome, Outcome::Pass) {
        plk.phys.set(parent.as_bytes()).ok();
    }
    (outcome, plk)
}

fn in_view(st: &State, outcome: &Outcome, lk: &Lookup) -> bool {
    matches!(outcome, Outcome::Redirect)
        && (lk.node.is_some_and(|n| st.snap.layer(n).is_some()) || lk.from_journal)
}

/// Looks `(dirfd, p)` up for an operation that may create it.
fn probe(st: &State, dirfd: c_int, p: &[u8], follow: bool) -> Probe {
    let mut virt = PathBuffer::new();
    if !virtual_path(dirfd, p, &mut virt) {
        return Probe::Pass;
    }
    let ct = usvfs_core::create::create_target(&st.snap, virt.as_bytes());
    let mut parent: Option<(Outcome, LookupBox)> = None;
    let mut lk = Lookup::new();
    match lookup(st, dirfd, p, follow, &mut lk) {
        Outcome::Pass => {
            // Neither a create target nor a layered parent: the original call
            // does the job (decided before any system call: the common case).
            if ct.is_none() {
                let (o, plk) = parent_lookup(st, &virt);
                if !in_view(st, &o, &plk) {
                    return Probe::Pass;
                }
                parent = Some((o, plk));
            }
            // The real disk at the virtual path (the lowest layer).
            lk.phys.set(virt.as_bytes()).ok();
            lk.virt.set(virt.as_bytes()).ok();
            if let Some(s) = lstat_phys(&mut lk.phys) {
                return Probe::Exists(Found { lk, st: s });
            }
        }
        Outcome::Redirect => {
            if let Some(s) = lstat_phys(&mut lk.phys) {
                return Probe::Exists(Found { lk, st: s });
            }
            virt.set(lk.virt.as_bytes()).ok();
        }
        Outcome::Fail(libc::ENOENT) => {}
        Outcome::Fail(e) => return Probe::Fail(e),
    }
    // Not in the view: its parent must be a directory of the view.
    let name = path::file_name(virt.as_bytes()).to_vec();
    if name.is_empty() || name == b"." || name == b".." {
        return Probe::Fail(libc::EEXIST);
    }
    let (outcome, mut plk) = parent.unwrap_or_else(|| parent_lookup(st, &virt));
    if let Outcome::Fail(e) = outcome {
        return Probe::Fail(e);
    }
    match stat_phys(&mut plk.phys) {
        Err(e) => return Probe::Fail(e),
        Ok(s) if !is_dir(&s) => return Probe::Fail(libc::ENOTDIR),
        Ok(_) => {}
    }
    let mut place = Box::new(NewPlace {
        virt,
        loc: PathBuffer::new(),
        made: Vec::new(),
    });
    match ct {
        Some(layer) => {
            if usvfs_core::create::location(&st.snap, layer, place.virt.as_bytes(), &mut place.loc)
                .is_err()
            {
                return Probe::Fail(libc::ENAMETOOLONG);
            }
            let mut dir = place.loc.clone();
            dir.pop_component();
            if let Err(e) =
                make_parents(st.snap.layer_source(layer), dir.as_bytes(), &mut place.made)
            {
                place.undo();
                return Probe::Fail(e);
            }
        }
        None => {
            place.loc.set(plk.phys.as_bytes()).ok();
            if place.loc.push_component(&name).is_err() {
                return Probe::Fail(libc::ENAMETOOLONG);
            }
        }
    }
    Probe::New(place)
}

/// Runs a hook body with the guard held and panics contained; `None` means
/// "not ours": call the original.
fn guarded<R>(f: impl FnOnce(&'static State) -> Option<R>) -> Option<R> {
    let st = state::get()?;
    let _g = guard::enter()?;
    let saved = errno();
    match catch_unwind(AssertUnwindSafe(|| f(st))) {
        Ok(r) => r,
        Err(_) => {
            set_errno(saved);
            None
        }
    }
}

fn fail<R: From<i8>>(e: i32) -> R {
    set_errno(e);
    R::from(-1)
}

// ---------------------------------------------------------------- open + create

/// `open` with `O_CREAT`: opens the view's file, or creates it where creates go.
pub(crate) fn open_create(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> Option<c_int> {
    guarded(|st| {
        let p = unsafe { bytes(path) }?;
        let excl = flags & libc::O_EXCL != 0;
        match probe(st, dirfd, p, !excl && flags & libc::O_NOFOLLOW == 0) {
            Probe::Pass => None,
            Probe::Fail(e) => Some(fail(e)),
            Probe::Exists(mut f) => {
                if excl {
                    return Some(fail(libc::EEXIST));
                }
                let fd = unsafe { real::openat(AT_FDCWD, f.lk.phys.as_c_ptr(), flags, mode) };
                if fd >= 0 {
                    fdtable::insert(fd, f.lk.virt.as_bytes());
                }
                Some(fd)
            }
            Probe::New(mut place) => {
                let fd = unsafe { real::openat(AT_FDCWD, place.loc.as_c_ptr(), flags, mode) };
                if fd < 0 {
                    let e = errno();
                    place.undo();
                    return Some(fail(e));
                }
                place.record(st, KIND_FILE);
                fdtable::insert(fd, place.virt.as_bytes());
                Some(fd)
            }
        }
    })
}

/// `O_TMPFILE`: the unnamed file is made where a new file in that directory
/// would go, so a later `linkat` can name it there.
pub(crate) fn open_tmpfile(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> Option<c_int> {
    guarded(|st| {
        let p = unsafe { bytes(path) }?;
        let mut lk = Lookup::new();
        match lookup(st, dirfd, p, true, &mut lk) {
            Outcome::Pass => None,
            Outcome::Fail(e) => Some(fail(e)),
            Outcome::Redirect => {
                let mut probe_path = lk.virt.clone();
                probe_path.push_component(b".usvfs-tmpfile").ok()?;
                let mut dir = lk.phys.clone();
                if let Some(layer) =
                    usvfs_core::create::create_target(&st.snap, probe_path.as_bytes())
                {
                    let mut loc = PathBuffer::new();
                    usvfs_core::create::location(&st.snap, layer, probe_path.as_bytes(), &mut loc)
                        .ok()?;
                    loc.pop_component();
                    let mut made = Vec::new();
                    if let Err(e) =
                        make_parents(st.snap.layer_source(layer), loc.as_bytes(), &mut made)
                    {
                        return Some(fail(e));
                    }
                    dir = loc;
                }
                let fd = unsafe { real::openat(AT_FDCWD, dir.as_c_ptr(), flags, mode) };
                if fd >= 0 {
                    fdtable::insert(fd, lk.virt.as_bytes());
                }
                Some(fd)
            }
        }
    })
}

// ---------------------------------------------------------------- mkdir, symlink, link, mknod

fn create_with(
    dirfd: c_int,
    path: *const c_char,
    kind: u8,
    op: impl FnOnce(&mut PathBuffer) -> c_int,
) -> Option<c_int> {
    guarded(|st| {
        let p = unsafe { bytes(path) }?;
        match probe(st, dirfd, p, false) {
            Probe::Pass => None,
            Probe::Fail(e) => Some(fail(e)),
            Probe::Exists(_) => Some(fail(libc::EEXIST)),
            Probe::New(mut place) => {
                let r = op(&mut place.loc);
                if r != 0 {
                    let e = errno();
                    place.undo();
                    return Some(fail(e));
                }
                place.record(st, kind);
                Some(0)
            }
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    create_with(dirfd, path, KIND_DIR, |loc| unsafe {
        real::mkdirat(AT_FDCWD, loc.as_c_ptr(), mode)
    })
    .unwrap_or_else(|| unsafe { real::mkdirat(dirfd, path, mode) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdir(path: *const c_char, mode: mode_t) -> c_int {
    unsafe { mkdirat(AT_FDCWD, path, mode) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlinkat(
    target: *const c_char,
    dirfd: c_int,
    path: *const c_char,
) -> c_int {
    create_with(dirfd, path, KIND_SYMLINK, |loc| unsafe {
        real::symlinkat(target, AT_FDCWD, loc.as_c_ptr())
    })
    .unwrap_or_else(|| unsafe { real::symlinkat(target, dirfd, path) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlink(target: *const c_char, path: *const c_char) -> c_int {
    unsafe { symlinkat(target, AT_FDCWD, path) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mknodat(
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    dev: libc::dev_t,
) -> c_int {
    create_with(dirfd, path, KIND_OTHER, |loc| unsafe {
        real::mknodat(AT_FDCWD, loc.as_c_ptr(), mode, dev)
    })
    .unwrap_or_else(|| unsafe { real::mknodat(dirfd, path, mode, dev) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mknod(path: *const c_char, mode: mode_t, dev: libc::dev_t) -> c_int {
    unsafe { mknodat(AT_FDCWD, path, mode, dev) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xmknodat(
    _ver: c_int,
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    dev: *const libc::dev_t,
) -> c_int {
    unsafe { mknodat(dirfd, path, mode, if dev.is_null() { 0 } else { *dev }) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xmknod(
    _ver: c_int,
    path: *const c_char,
    mode: mode_t,
    dev: *const libc::dev_t,
) -> c_int {
    unsafe { mknodat(AT_FDCWD, path, mode, if dev.is_null() { 0 } else { *dev }) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkfifoat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    unsafe { mknodat(dirfd, path, (mode & 0o7777) | libc::S_IFIFO, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkfifo(path: *const c_char, mode: mode_t) -> c_int {
    unsafe { mkfifoat(AT_FDCWD, path, mode) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn linkat(
    olddirfd: c_int,
    old: *const c_char,
    newdirfd: c_int,
    new: *const c_char,
    flags: c_int,
) -> c_int {
    let r = guarded(|st| {
        let o = unsafe { bytes(old) }?;
        let mut olk = Lookup::new();
        // The existing side: its winning physical file (unless given by fd).
        let (odirfd, opath): (c_int, Option<PathBuffer>) = if o.is_empty() {
            (olddirfd, None)
        } else {
            match lookup(st, olddirfd, o, flags & AT_SYMLINK_FOLLOW != 0, &mut olk) {
                Outcome::Fail(e) => return Some(fail(e)),
                Outcome::Pass => (olddirfd, None),
                Outcome::Redirect => (AT_FDCWD, Some(olk.phys.clone())),
            }
        };
        let n = unsafe { bytes(new) }?;
        match probe(st, newdirfd, n, false) {
            Probe::Fail(e) => Some(fail(e)),
            Probe::Exists(_) => Some(fail(libc::EEXIST)),
            Probe::Pass if opath.is_none() => None,
            Probe::Pass => {
                let mut op = opath?;
                Some(unsafe { real::linkat(odirfd, op.as_c_ptr(), newdirfd, new, flags) })
            }
            Probe::New(mut place) => {
                let r = match opath {
                    Some(mut op) => unsafe {
                        real::linkat(odirfd, op.as_c_ptr(), AT_FDCWD, place.loc.as_c_ptr(), flags)
                    },
                    None => unsafe {
                        real::linkat(odirfd, old, AT_FDCWD, place.loc.as_c_ptr(), flags)
                    },
                };
                if r != 0 {
                    let e = errno();
                    place.undo();
                    return Some(fail(e));
                }
                let kind = lstat_phys(&mut place.loc)
                    .map(|s| kind_of(&s))
                    .unwrap_or(KIND_FILE);
                place.record(st, kind);
                Some(0)
            }
        }
    });
    r.unwrap_or_else(|| unsafe { real::linkat(olddirfd, old, newdirfd, new, flags) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn link(old: *const c_char, new: *const c_char) -> c_int {
    unsafe { linkat(AT_FDCWD, old, AT_FDCWD, new, 0) }
}

// ---------------------------------------------------------------- delete

/// A path needs a whiteout after its physical delete when something else
/// could show through: a lower layer in the index, or a journal record.
fn needs_whiteout(st: &State, lk: &Lookup) -> bool {
    lk.node.is_some()
        || st.journal.as_ref().is_some_and(|j| {
            j.get(lk.virt.as_bytes(), path_hash(lk.virt.as_bytes()))
                .is_some()
        })
}

fn whiteout(st: &State, virt: &[u8]) {
    if let Some(j) = st.journal.as_ref() {
        let _ = j.put(virt, Entry::Whiteout);
    }
}

/// Entries of a virtual directory besides `.` and `..`.
fn view_is_empty(st: &State, lk: &Lookup) -> bool {
    match lk.node {
        Some(n) => listing::build(st, n, lk.virt.as_bytes(), 0).entries.len() <= 2,
        None => true,
    }
}

fn delete(dirfd: c_int, path: *const c_char, remove_dir: Option<bool>) -> Option<c_int> {
    guarded(|st| {
        let p = unsafe { bytes(path) }?;
        let mut lk = Lookup::new();
        match lookup(st, dirfd, p, false, &mut lk) {
            Outcome::Pass => None,
            Outcome::Fail(e) => Some(fail(e)),
            Outcome::Redirect => {
                let Some(s) = lstat_phys(&mut lk.phys) else {
                    return Some(fail(errno()));
                };
                let dir = is_dir(&s);
                let want_dir = remove_dir.unwrap_or(dir);
                if want_dir && !dir {
                    return Some(fail(libc::ENOTDIR));
                }
                if !want_dir && dir {
                    return Some(fail(libc::EISDIR));
                }
                if want_dir {
                    if !view_is_empty(st, &lk) {
                        return Some(fail(libc::ENOTEMPTY));
                    }
                    let r = unsafe { real::unlinkat(AT_FDCWD, lk.phys.as_c_ptr(), AT_REMOVEDIR) };
                    if r != 0 {
                        let e = errno();
                        // An index directory whose view is empty may still hold
                        // files that whiteouts hide: keep them, nothing is lost.
                        if lk.node.is_none() || (e != libc::ENOTEMPTY && e != libc::EEXIST) {
                            return Some(fail(e));
                        }
                    }
                } else if unsafe { real::unlinkat(AT_FDCWD, lk.phys.as_c_ptr(), 0) } != 0 {
                    return Some(fail(errno()));
                }
                if needs_whiteout(st, &lk) {
                    whiteout(st, lk.virt.as_bytes());
                }
                Some(0)
            }
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    delete(dirfd, path, Some(flags & AT_REMOVEDIR != 0))
        .unwrap_or_else(|| unsafe { real::unlinkat(dirfd, path, flags) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    delete(AT_FDCWD, path, Some(false))
        .unwrap_or_else(|| unsafe { real::unlinkat(AT_FDCWD, path, 0) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
    delete(AT_FDCWD, path, Some(true))
        .unwrap_or_else(|| unsafe { real::unlinkat(AT_FDCWD, path, AT_REMOVEDIR) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn remove(path: *const c_char) -> c_int {
    delete(AT_FDCWD, path, None).unwrap_or_else(|| unsafe { real::remove(path) })
}

// ---------------------------------------------------------------- rename

fn rename_impl(
    olddirfd: c_int,
    old: *const c_char,
    newdirfd: c_int,
    new: *const c_char,
    flags: c_uint,
) -> Option<c_int> {
    guarded(|st| {
        let o = unsafe { bytes(old) }?;
        let n = unsafe { bytes(new) }?;
        let mut olk = Lookup::new();
        let old_in_view = match lookup(st, olddirfd, o, false, &mut olk) {
            Outcome::Fail(e) => return Some(fail(e)),
            Outcome::Pass => false,
            Outcome::Redirect => true,
        };
        let target = probe(st, newdirfd, n, false);
        if !old_in_view && matches!(target, Probe::Pass) {
            return None;
        }
        let mut ophys = if old_in_view {
            olk.phys.clone()
        } else {
            let mut v = PathBuffer::new();
            if !virtual_path(olddirfd, o, &mut v) {
                return None;
            }
            v
        };
        let Some(ost) = lstat_phys(&mut ophys) else {
            return Some(fail(errno()));
        };
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let (mut dest, place) = match target {
            Probe::Fail(e) => return Some(fail(e)),
            Probe::Pass => {
                let mut v = PathBuffer::new();
                if !virtual_path(newdirfd, n, &mut v) {
                    return None;
                }
                (v, None)
            }
            Probe::Exists(f) => {
                if flags & libc::RENAME_NOREPLACE != 0 {
                    return Some(fail(libc::EEXIST));
                }
                if old_in_view && olk.virt.as_bytes() == f.lk.virt.as_bytes() {
                    return Some(0);
                }
                if !exchange {
                    if is_dir(&ost) && !is_dir(&f.st) {
                        return Some(fail(libc::ENOTDIR));
                    }
                    if !is_dir(&ost) && is_dir(&f.st) {
                        return Some(fail(libc::EISDIR));
                    }
                    if is_dir(&f.st) && !view_is_empty(st, &f.lk) {
                        return Some(fail(libc::ENOTEMPTY));
                    }
                }
                // Replacing keeps the result at the replaced file's location.
                let mut nv = Box::new(NewPlace {
                    virt: f.lk.virt.clone(),
                    loc: f.lk.phys.clone(),
                    made: Vec::new(),
                });
                nv.virt.set(f.lk.virt.as_bytes()).ok();
                (f.lk.phys.clone(), Some(nv))
            }
            Probe::New(place) => {
                if exchange {
                    place.undo();
                    return Some(fail(libc::ENOENT));
                }
                (place.loc.clone(), Some(place))
            }
        };
        // A directory merged from layers cannot move as one physical directory.
        if old_in_view
            && is_dir(&ost)
            && !exchange
            && (olk.node.is_some()
                || st
                    .journal
                    .as_ref()
                    .is_some_and(|j| j.has_records_below(olk.virt.as_bytes())))
        {
            if let Some(p) = &place {
                p.undo();
            }
            return Some(fail(libc::EXDEV));
        }
        let mut r = unsafe {
            real::renameat2(AT_FDCWD, ophys.as_c_ptr(), AT_FDCWD, dest.as_c_ptr(), flags)
        };
        if r != 0 && errno() == libc::EXDEV && !exchange && !is_dir(&ost) {
            // The layers sit on different file systems, which a merged
            // directory would hide: move the file by copy, atomically at the
            // destination, then remove the source.
            r = match move_across(&mut ophys, &mut dest, &ost) {
                Ok(()) => 0,
                Err(e) => {
                    set_errno(e);
                    -1
                }
            };
        }
        if r != 0 {
            let e = errno();
            if let Some(p) = &place {
                p.undo();
            }
            return Some(fail(e));
        }
        if exchange {
            return Some(0);
        }
        if old_in_view && needs_whiteout(st, &olk) {
            whiteout(st, olk.virt.as_bytes());
        }
        if let Some(p) = &place {
            p.record(st, kind_of(&ost));
        }
        Some(0)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn renameat2(
    olddirfd: c_int,
    old: *const c_char,
    newdirfd: c_int,
    new: *const c_char,
    flags: c_uint,
) -> c_int {
    rename_impl(olddirfd, old, newdirfd, new, flags)
        .unwrap_or_else(|| unsafe { real::renameat2(olddirfd, old, newdirfd, new, flags) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn renameat(
    olddirfd: c_int,
    old: *const c_char,
    newdirfd: c_int,
    new: *const c_char,
) -> c_int {
    unsafe { renameat2(olddirfd, old, newdirfd, new, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
    unsafe { renameat2(AT_FDCWD, old, AT_FDCWD, new, 0) }
}

/// Moves a file or symlink between file systems: copy into a temporary name
/// beside the destination, rename it over the destination (atomic), remove the
/// source. On failure nothing changes but a removed temporary.
fn move_across(src: &mut PathBuffer, dest: &mut PathBuffer, st: &libc::stat) -> Result<(), i32> {
    let mut tmp = dest.clone();
    tmp.push_bytes(format!(".usvfs-move.{}", unsafe { libc::getpid() }).as_bytes())
        .map_err(|_| libc::ENAMETOOLONG)?;
    let result = (|| -> Result<(), i32> {
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            let mut buf = [0u8; path::PATH_MAX + 1];
            let n = unsafe {
                real::readlinkat(
                    AT_FDCWD,
                    src.as_c_ptr(),
                    buf.as_mut_ptr().cast(),
                    path::PATH_MAX,
                )
            };
            if n < 0 {
                return Err(errno());
            }
            buf[n as usize] = 0;
            if unsafe { real::symlinkat(buf.as_ptr().cast(), AT_FDCWD, tmp.as_c_ptr()) } != 0 {
                return Err(errno());
            }
        } else {
            copy_file(src, &mut tmp, st)?;
        }
        if unsafe { real::renameat2(AT_FDCWD, tmp.as_c_ptr(), AT_FDCWD, dest.as_c_ptr(), 0) } != 0 {
            return Err(errno());
        }
        Ok(())
    })();
    if let Err(e) = result {
        unsafe { real::unlinkat(AT_FDCWD, tmp.as_c_ptr(), 0) };
        return Err(e);
    }
    if unsafe { real::unlinkat(AT_FDCWD, src.as_c_ptr(), 0) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// Copies data, permissions and times of a regular file.
fn copy_file(src: &mut PathBuffer, to: &mut PathBuffer, st: &libc::stat) -> Result<(), i32> {
    let ifd = unsafe {
        real::openat(
            AT_FDCWD,
            src.as_c_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
            0,
        )
    };
    if ifd < 0 {
        return Err(errno());
    }
    let ofd = unsafe {
        real::openat(
            AT_FDCWD,
            to.as_c_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            (st.st_mode & 0o7777) as c_uint,
        )
    };
    if ofd < 0 {
        let e = errno();
        unsafe { real::close(ifd) };
        return Err(e);
    }
    let mut buf = vec![0u8; 1 << 16];
    let r = loop {
        let n = unsafe { libc::read(ifd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            break Err(errno());
        }
        if n == 0 {
            break Ok(());
        }
        let mut off = 0usize;
        while off < n as usize {
            let w = unsafe { libc::write(ofd, buf.as_ptr().add(off).cast(), n as usize - off) };
            if w < 0 {
                return Err(errno());
            }
            off += w as usize;
        }
    };
    let times = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    unsafe {
        libc::futimens(ofd, times.as_ptr());
        libc::fchmod(ofd, st.st_mode & 0o7777);
        if libc::fsync(ofd) != 0 && r.is_ok() {
            let e = errno();
            real::close(ifd);
            real::close(ofd);
            return Err(e);
        }
        real::close(ifd);
        real::close(ofd);
    }
    r
}

// ---------------------------------------------------------------- temporary files

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// glibc's mkstemp family opens through internal calls: fill the X's here and
/// create through the hooks, so temporary files in the view land where creates go.
unsafe fn make_temp(
    template: *mut c_char,
    suffix: c_int,
    mut create: impl FnMut(*const c_char) -> c_int,
) -> c_int {
    let Some(t) = (unsafe { bytes(template) }) else {
        set_errno(libc::EINVAL);
        return -1;
    };
    let len = t.len();
    let suffix = suffix.max(0) as usize;
    if len < 6 + suffix || &t[len - 6 - suffix..len - suffix] != b"XXXXXX" {
        set_errno(libc::EINVAL);
        return -1;
    }
    let start = len - 6 - suffix;
    for _ in 0..1000 {
        let mut rnd = [0u8; 6];
        unsafe { libc::getrandom(rnd.as_mut_ptr().cast(), 6, 0) };
        for (i, r) in rnd.iter().enumerate() {
            unsafe { *template.add(start + i) = LETTERS[*r as usize % LETTERS.len()] as c_char };
        }
        let r = create(template);
        if r >= 0 || errno() != libc::EEXIST {
            return r;
        }
    }
    set_errno(libc::EEXIST);
    -1
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemps(template: *mut c_char, suffixlen: c_int, flags: c_int) -> c_int {
    let flags = (flags & !libc::O_ACCMODE) | libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
    unsafe {
        make_temp(template, suffixlen, |p| {
            crate::hooks::open::usvfs_openat(AT_FDCWD, p, flags, 0o600)
        })
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemp(template: *mut c_char) -> c_int {
    unsafe { mkostemps(template, 0, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemp64(template: *mut c_char) -> c_int {
    unsafe { mkostemps(template, 0, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemp(template: *mut c_char, flags: c_int) -> c_int {
    unsafe { mkostemps(template, 0, flags) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemp64(template: *mut c_char, flags: c_int) -> c_int {
    unsafe { mkostemps(template, 0, flags) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemps(template: *mut c_char, suffixlen: c_int) -> c_int {
    unsafe { mkostemps(template, suffixlen, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkstemps64(template: *mut c_char, suffixlen: c_int) -> c_int {
    unsafe { mkostemps(template, suffixlen, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkostemps64(
    template: *mut c_char,
    suffixlen: c_int,
    flags: c_int,
) -> c_int {
    unsafe { mkostemps(template, suffixlen, flags) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdtemp(template: *mut c_char) -> *mut c_char {
    let r = unsafe { make_temp(template, 0, |p| mkdir(p, 0o700)) };
    if r == 0 {
        template
    } else {
        std::ptr::null_mut()
    }
}
