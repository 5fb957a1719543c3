//! Text dump of the virtual tree: one line per node, indented two spaces per
//! level, `name -> physical source` for entries a layer provides. Bytes, not
//! UTF-8: names are written as they are.

use super::view::{NodeKind, Snapshot};
use crate::path::PathBuffer;

pub fn dump(snap: &Snapshot<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut vpath = Vec::from(&b"/"[..]);
    let mut phys = PathBuffer::new();
    out.extend_from_slice(b"/\n");
    // Iterative DFS: (node, depth, vpath length before this node).
    let mut stack: Vec<(u32, usize)> = snap.children(snap.root()).rev().map(|c| (c, 1)).collect();
    let mut lens: Vec<usize> = vec![1];
    while let Some((n, depth)) = stack.pop() {
        lens.truncate(depth);
        vpath.truncate(*lens.last().unwrap());
        if vpath.last() != Some(&b'/') {
            vpath.push(b'/');
        }
        vpath.extend_from_slice(snap.name(n));
        lens.push(vpath.len());
        out.extend(std::iter::repeat_n(b' ', depth * 2));
        out.extend_from_slice(snap.name(n));
        if snap.kind(n) == NodeKind::Dir {
            out.push(b'/');
        }
        if snap.layer(n).is_some() && snap.physical_path(n, &vpath, &mut phys).is_ok() {
            out.extend_from_slice(b" -> ");
            out.extend_from_slice(phys.as_bytes());
        }
        out.push(b'\n');
        stack.extend(snap.children(n).rev().map(|c| (c, depth + 1)));
    }
    out
}
