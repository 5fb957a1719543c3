//! Text dump of the virtual tree: one line per node, indented two spaces per
//! level, `name -> physical source` for entries a layer provides. The chain of
//! plain directories above the destinations is collapsed into the first line.
//! Bytes, not UTF-8: names are written as they are. A case-insensitive index
//! says so on a first `#` line; its entries that only the real destination
//! provides (its base layer) show without a source, as real directories do.

use super::{NodeKind, Snapshot};
use crate::path::PathBuffer;

pub fn dump(snap: &Snapshot<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    if snap.case_insensitive() {
        out.extend_from_slice(
            b"# case-insensitive: names merge by Unicode simple case folding below the destinations\n",
        );
    }
    let mut phys = PathBuffer::new();
    let from_layer = |n: u32| snap.layer(n).is_some_and(|l| !snap.is_base_layer(l));
    // Collapse the real directories leading to the destinations.
    let mut top = snap.root();
    while !from_layer(top) && snap.children(top).len() == 1 {
        let only = snap.children(top).next().unwrap_or(top);
        if from_layer(only) || snap.kind(only) != NodeKind::Dir {
            break;
        }
        top = only;
    }
    let mut vpath = snap.virtual_path(top);
    out.extend_from_slice(&vpath);
    if vpath != b"/" {
        out.push(b'/');
    }
    if from_layer(top) && snap.physical_path(top, &vpath, &mut phys).is_ok() {
        out.extend_from_slice(b" -> ");
        out.extend_from_slice(phys.as_bytes());
    }
    out.push(b'\n');
    // Iterative DFS: (node, depth).
    let mut stack: Vec<(u32, usize)> = snap.children(top).rev().map(|c| (c, 1)).collect();
    let mut lens: Vec<usize> = vec![vpath.len()];
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
        if from_layer(n) && snap.physical_path(n, &vpath, &mut phys).is_ok() {
            out.extend_from_slice(b" -> ");
            out.extend_from_slice(phys.as_bytes());
        }
        out.push(b'\n');
        stack.extend(snap.children(n).rev().map(|c| (c, depth + 1)));
    }
    out
}

/// The changes hooked processes made since the mapping was set, as they stand
/// now, one line each: `+ virtual -> physical` for a path that now lives
/// somewhere, `- virtual` for a deleted path of the index. A path created and
/// deleted again since is not a change. Empty when nothing changed.
pub fn dump_changes(journal: &crate::journal::Journal, snap: &Snapshot<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let in_index = |v: &[u8]| {
        let mut n = snap.root();
        for c in crate::path::components(v) {
            match snap.lookup(n, c) {
                Some(x) => n = x,
                None => return false,
            }
        }
        true
    };
    let mut records = journal.records();
    records.retain(|r| r.entry != crate::journal::Entry::Whiteout || in_index(r.vpath));
    if records.is_empty() {
        return out;
    }
    out.extend_from_slice(b"# changes since the mapping was set\n");
    for r in records {
        match r.entry {
            crate::journal::Entry::Whiteout => {
                out.extend_from_slice(b"- ");
                out.extend_from_slice(r.vpath);
            }
            crate::journal::Entry::Physical { phys, .. } => {
                out.extend_from_slice(b"+ ");
                out.extend_from_slice(r.vpath);
                out.extend_from_slice(b" -> ");
                out.extend_from_slice(phys);
            }
        }
        out.push(b'\n');
    }
    out
}
