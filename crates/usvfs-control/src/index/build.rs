//! Builds a snapshot from a mapping: walks every source once (in parallel, one
//! layer per worker), merges the layers in priority order into a tree, and
//! serializes the tree breadth-first so each node's children are contiguous.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use walkdir::DirEntryExt;

use super::format::*;
use crate::error::{Error, Result};
use crate::mapping::{LinkFlags, LinkKind, Mapping};
use crate::path;

/// One entry of a walked layer, in pre-order.
struct WalkEntry {
    depth: u32,
    name: Box<[u8]>,
    kind: u8,
    ino: u64,
}

#[derive(Default)]
struct BuildNode {
    children: BTreeMap<Box<[u8]>, u32>,
    kind: u8,
    flags: u8,
    layer: u32,
    ino: u64,
}

struct Tree {
    nodes: Vec<BuildNode>,
}

fn kind_of(ft: std::fs::FileType) -> u8 {
    if ft.is_dir() {
        KIND_DIR
    } else if ft.is_symlink() {
        KIND_SYMLINK
    } else if ft.is_file() {
        KIND_FILE
    } else {
        KIND_OTHER
    }
}

impl Tree {
    fn new() -> Self {
        let root = BuildNode {
            kind: KIND_DIR,
            layer: NO_LAYER,
            ..Default::default()
        };
        Tree { nodes: vec![root] }
    }

    /// Places an entry of `layer` named `name` below `parent`, applying priority:
    /// the later layer wins; a non-directory drops what lower layers had below it.
    fn place(&mut self, parent: u32, name: &[u8], kind: u8, layer: u32, ino: u64) -> u32 {
        let inherited = self.nodes[parent as usize].flags & FLAG_HIDES_BASE;
        if let Some(&id) = self.nodes[parent as usize].children.get(name) {
            let n = &mut self.nodes[id as usize];
            if kind != KIND_DIR {
                n.children.clear();
                n.flags |= FLAG_HIDES_BASE;
            }
            n.kind = kind;
            n.layer = layer;
            n.ino = ino;
            return id;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(BuildNode {
            children: BTreeMap::new(),
            kind,
            flags: inherited | if kind != KIND_DIR { FLAG_HIDES_BASE } else { 0 },
            layer,
            ino,
        });
        self.nodes[parent as usize].children.insert(name.into(), id);
        id
    }

    /// Ensures the directory nodes of an absolute path exist; returns the last.
    /// Directories created here have no layer: the real disk provides them.
    fn ensure_dirs(&mut self, abs: &[u8]) -> u32 {
        let mut cur = 0u32;
        for c in path::components(abs) {
            cur = match self.nodes[cur as usize].children.get(c) {
                Some(&id) if self.nodes[id as usize].kind == KIND_DIR => id,
                _ => self.place(cur, c, KIND_DIR, NO_LAYER, 0),
            };
        }
        cur
    }
}

fn walk_layer(
    source: &Path,
    recursive: bool,
    rule: &crate::mapping::Rule,
) -> Result<Vec<WalkEntry>> {
    let mut out = Vec::new();
    let mut walker = walkdir::WalkDir::new(source)
        .min_depth(1)
        .follow_links(false);
    if !recursive {
        walker = walker.max_depth(1);
    }
    let iter = walker.into_iter().filter_entry(|e| {
        !(e.file_type().is_dir() && rule.is_skipped_dir(e.file_name()))
            && (e.file_type().is_dir() || !rule.is_skipped_file(e.file_name()))
    });
    for entry in iter {
        let entry = entry.map_err(|e| {
            let p = e.path().unwrap_or(source).to_path_buf();
            let io = e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("filesystem loop"));
            Error::SourceUnreadable { path: p, cause: io }
        })?;
        let kind = kind_of(entry.file_type());
        if !recursive && kind == KIND_DIR {
            // Non-recursive links carry only the source's direct files.
            continue;
        }
        out.push(WalkEntry {
            depth: entry.depth() as u32,
            name: entry.file_name().as_bytes().into(),
            kind,
            ino: entry.ino(),
        });
    }
    Ok(out)
}

/// Walks all directory sources, `threads` at a time, keeping rule order.
fn walk_all(mapping: &Mapping) -> Result<Vec<Option<Vec<WalkEntry>>>> {
    let n = mapping.rules.len();
    let results: Vec<Mutex<Option<Result<Vec<WalkEntry>>>>> =
        (0..n).map(|_| Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 16)
        .min(n.max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let rule = &mapping.rules[i];
                    if rule.kind == LinkKind::Directory {
                        let r =
                            walk_layer(&rule.source, rule.flags.has(LinkFlags::RECURSIVE), rule);
                        *results[i].lock().unwrap() = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap().transpose())
        .collect()
}

/// Builds the tree from a mapping and serializes it into a snapshot image.
pub fn build_snapshot(mapping: &Mapping, generation: u64) -> Result<Vec<u8>> {
    let walks = walk_all(mapping)?;
    let mut tree = Tree::new();
    let mut anchors: Vec<Vec<u8>> = Vec::new();
    for (layer, (rule, walk)) in mapping.rules.iter().zip(walks).enumerate() {
        let layer = layer as u32;
        let dest = rule.destination.as_os_str().as_bytes();
        match rule.kind {
            LinkKind::Directory => {
                let parent_path = parent_of(dest);
                let parent = tree.ensure_dirs(parent_path);
                let name = path::file_name(dest);
                let top = if name.is_empty() {
                    0
                } else {
                    let ino = std::fs::metadata(&rule.source)
                        .map(|m| m.ino())
                        .unwrap_or(0);
                    tree.place(parent, name, KIND_DIR, layer, ino)
                };
                if top == 0 {
                    tree.nodes[0].layer = layer;
                }
                anchors.push(dest.to_vec());
                let mut stack: Vec<u32> = vec![top];
                for e in walk.unwrap_or_default() {
                    let d = e.depth as usize;
                    stack.truncate(d);
                    let parent = stack[d - 1];
                    let id = tree.place(parent, &e.name, e.kind, layer, e.ino);
                    stack.push(id);
                }
            }
            LinkKind::File => {
                let parent = tree.ensure_dirs(parent_of(dest));
                let meta = std::fs::symlink_metadata(&rule.source)
                    .map_err(|e| Error::io("reading link source", &rule.source, e))?;
                tree.place(
                    parent,
                    path::file_name(dest),
                    kind_of(meta.file_type()),
                    layer,
                    meta.ino(),
                );
                anchors.push(parent_of(dest).to_vec());
            }
        }
    }
    Ok(serialize(&tree, mapping, &anchors, generation))
}

fn parent_of(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&c| c == b'/') {
        Some(0) | None => b"/",
        Some(i) => &p[..i],
    }
}

struct Strings {
    bytes: Vec<u8>,
}

impl Strings {
    fn add(&mut self, s: &[u8]) -> (u32, u32) {
        let off = self.bytes.len() as u32;
        self.bytes.extend_from_slice(s);
        (off, s.len() as u32)
    }
}

fn push_pod<T: Copy>(out: &mut Vec<u8>, v: &T) {
    // SAFETY: T is a plain #[repr(C)] record without padding-sensitive invariants.
    let bytes = unsafe {
        std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
    };
    out.extend_from_slice(bytes);
}

fn align8(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}

fn serialize(tree: &Tree, mapping: &Mapping, anchors: &[Vec<u8>], generation: u64) -> Vec<u8> {
    let mut strings = Strings { bytes: Vec::new() };
    // Breadth-first renumbering: children of each node become contiguous.
    let mut order: Vec<u32> = vec![0];
    let mut recs: Vec<NodeRec> = Vec::with_capacity(tree.nodes.len());
    let mut parents: Vec<u32> = vec![0];
    let mut names: Vec<&[u8]> = vec![b""];
    let mut i = 0;
    while i < order.len() {
        let old = &tree.nodes[order[i] as usize];
        let first = order.len() as u32;
        for (name, &child) in &old.children {
            order.push(child);
            parents.push(i as u32);
            names.push(name);
        }
        let (name_off, name_len) = strings.add(names[i]);
        recs.push(NodeRec {
            name_off,
            name_len: name_len as u16,
            kind: old.kind,
            flags: old.flags,
            parent: parents[i],
            first_child: first,
            child_count: old.children.len() as u32,
            layer: old.layer,
            ino: old.ino,
        });
        i += 1;
    }
    let layers: Vec<LayerRec> = mapping
        .rules
        .iter()
        .map(|r| {
            let (source_off, source_len) = strings.add(r.source.as_os_str().as_bytes());
            let (dest_off, dest_len) = strings.add(r.destination.as_os_str().as_bytes());
            LayerRec {
                source_off,
                source_len,
                dest_off,
                dest_len,
                flags: r.flags.0,
                is_file: (r.kind == LinkKind::File) as u32,
            }
        })
        .collect();
    let mut anchor_names: Vec<&[u8]> = anchors
        .iter()
        .map(|a| path::file_name(a))
        .filter(|n| !n.is_empty())
        .collect();
    anchor_names.sort();
    anchor_names.dedup();
    let anchor_recs: Vec<StrRec> = anchor_names
        .iter()
        .map(|a| {
            let (off, len) = strings.add(a);
            StrRec { off, len }
        })
        .collect();
    let black_recs: Vec<StrRec> = mapping
        .blacklist
        .iter()
        .map(|b| {
            let (off, len) = strings.add(OsStr::as_bytes(b));
            StrRec { off, len }
        })
        .collect();

    let mut out = vec![0u8; HEADER_SIZE];
    let mut h = Header {
        magic: MAGIC,
        version: VERSION,
        node_count: recs.len() as u32,
        layer_count: layers.len() as u32,
        anchor_count: anchor_recs.len() as u32,
        blacklist_count: black_recs.len() as u32,
        generation,
        ..Default::default()
    };
    h.nodes_off = out.len() as u64;
    recs.iter().for_each(|r| push_pod(&mut out, r));
    h.layers_off = out.len() as u64;
    layers.iter().for_each(|r| push_pod(&mut out, r));
    h.anchors_off = out.len() as u64;
    anchor_recs.iter().for_each(|r| push_pod(&mut out, r));
    h.blacklist_off = out.len() as u64;
    black_recs.iter().for_each(|r| push_pod(&mut out, r));
    align8(&mut out);
    h.strings_off = out.len() as u64;
    h.strings_len = strings.bytes.len() as u64;
    out.extend_from_slice(&strings.bytes);
    align8(&mut out);
    h.total_len = out.len() as u64;
    let mut head = Vec::with_capacity(HEADER_SIZE);
    push_pod(&mut head, &h);
    out[..HEADER_SIZE].copy_from_slice(&head);
    out
}
