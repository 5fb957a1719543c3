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
    if snap.hides_base(node) {
        return l;
    }
    // The real directory at the virtual path is the lowest layer.
    let Ok(mut p) = PathBuffer::from_bytes(vpath) else {
        return l;
    };
    // SAFETY: NUL-terminated path; the stream is closed below.
    let d = unsafe { real::opendir(p.as_c_ptr()) };
    if d.is_null() {
        return l;
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
    l
}

/// A position in a listing (for `getdents64` on a descriptor).
pub struct Cursor {
    pub listing: Listing,
    pub pos: usize,
}
