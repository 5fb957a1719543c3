//! Merged directory listings: `.` and `..`, then the index's entries (each
//! name's winner), then the real directory's own entries that no layer shadows.

use std::ffi::CStr;

use usvfs_core::NodeId;
use usvfs_core::path::PathBuffer;

use crate::real;
use crate::state::State;

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
}

/// Lists virtual directory `node` at virtual path `vpath`; `self_ino` is the
/// inode reported for `.` and `..`.
pub fn build(st: &State, node: NodeId, vpath: &[u8], self_ino: u64) -> Listing {
    let snap = &st.snap;
    let mut l = Listing::default();
    l.push(b".", libc::DT_DIR, self_ino);
    l.push(b"..", libc::DT_DIR, self_ino);
    for c in snap.children(node) {
        l.push(snap.name(c), snap.d_type(c), snap.ino(c));
    }
    if !snap.hides_base(node) {
        add_base(st, node, vpath, &mut l);
    }
    apply_journal(st, vpath, &mut l);
    l
}

/// The real directory at the virtual path is the lowest layer.
fn add_base(st: &State, node: NodeId, vpath: &[u8], l: &mut Listing) {
    let snap = &st.snap;
    let mut p = PathBuffer::new();
    if p.set(vpath).is_err() {
        return;
    }
    // SAFETY: NUL-terminated path; the stream is closed below.
    let d = unsafe { real::opendir(p.as_c_ptr()) };
    if d.is_null() {
        return;
    }
    loop {
        // SAFETY: d is an open real stream.
        let e = unsafe { real::readdir64(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: readdir returns a valid entry with a NUL-terminated name.
        let (name, d_type, ino) = unsafe {
            let e = &*e;
            (
                CStr::from_ptr(e.d_name.as_ptr()).to_bytes(),
                e.d_type,
                e.d_ino,
            )
        };
        if name == b"." || name == b".." || snap.child(node, name).is_some() {
            continue;
        }
        l.push(name, d_type, ino);
    }
    // SAFETY: d is open.
    unsafe { real::closedir(d) };
}

/// Changes recorded after the snapshot: deleted names go, created ones come.
fn apply_journal(st: &State, vpath: &[u8], l: &mut Listing) {
    let Some(j) = st.journal.as_ref().filter(|j| !j.is_empty()) else {
        return;
    };
    for r in j.children(vpath) {
        let name = usvfs_core::path::file_name(r.vpath);
        let pos = l.entries.iter().position(|e| l.name(e) == name);
        let present = match r.entry {
            usvfs_core::journal::Entry::Whiteout => None,
            usvfs_core::journal::Entry::Physical { phys, .. } => lstat_entry(phys),
        };
        match (pos, present) {
            (Some(i), None) => {
                l.entries.remove(i);
            }
            (Some(i), Some((d_type, ino))) => {
                l.entries[i].d_type = d_type;
                l.entries[i].ino = ino;
            }
            (None, Some((d_type, ino))) => l.push(name, d_type, ino),
            (None, None) => {}
        }
    }
}

/// Type and inode of a physical entry, for a listing.
pub fn lstat_entry(phys: &[u8]) -> Option<(u8, u64)> {
    let mut p = PathBuffer::new();
    p.set(phys).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: NUL-terminated path, valid buffer.
    if unsafe { real::lstat(p.as_c_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: lstat succeeded.
    let st = unsafe { st.assume_init() };
    let t = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFREG => libc::DT_REG,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        _ => libc::DT_UNKNOWN,
    };
    Some((t, st.st_ino))
}

/// A position in a listing (for `getdents64` on a descriptor).
pub struct Cursor {
    pub listing: Listing,
    pub pos: usize,
}
