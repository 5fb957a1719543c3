//! Builds a snapshot from a mapping: walks every source once (in parallel, one
//! layer per worker), merges the layers in priority order into a tree, and
//! serializes the tree breadth-first so each node's children are contiguous.
//!
//! A case-insensitive mapping also walks the real contents of each outermost
//! directory destination, as its lowest layer (the *base*), and merges names
//! by their folded form (`usvfs_view::fold`) at and below directory
//! destinations: one node per folded name, spelled as the highest-priority
//! layer that provides it spells it. Two names in one layer that differ only
//! in case (which an NTFS folder cannot hold) are merged when both are
//! directories, as extracting such an archive on Windows would; otherwise the
//! first in byte order shows (`README.txt` before `readme.txt`) and the build
//! logs a warning naming both.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use walkdir::DirEntryExt;

use super::format::*;
use crate::error::{Error, Result};
use crate::mapping::{LinkFlags, LinkKind, Mapping, Rule};
use crate::path;
use usvfs_view::fold;

/// One entry of a walked layer, in pre-order.
pub(crate) struct WalkEntry {
    pub(crate) depth: u32,
    pub(crate) name: Box<[u8]>,
    pub(crate) kind: u8,
    ino: u64,
}

/// No physical parent recorded (the top of a layer, a file link, or a
/// case-sensitive build).
const NO_PDIR: u32 = u32::MAX;

#[derive(Default)]
struct BuildNode {
    /// Keyed by name, or by folded name in a directory that folds.
    children: BTreeMap<Box<[u8]>, u32>,
    kind: u8,
    flags: u8,
    layer: u32,
    ino: u64,
    /// Case-insensitive builds: the name as the winning layer spells it
    /// (empty otherwise: the parent's key is the name).
    name: Box<[u8]>,
    /// Case-insensitive builds: the winning entry's physical parent
    /// directory, relative to its layer's source (index into `Tree::pdirs`).
    pdir: u32,
}

struct Tree {
    nodes: Vec<BuildNode>,
    ci: bool,
    /// Case-insensitive builds: directories walked, relative to their
    /// layer's source (`pdirs[0]` is the source itself).
    pdirs: Vec<Box<[u8]>>,
}

/// A name to place: borrowed, or walked and handed over.
enum Name<'a> {
    Borrowed(&'a [u8]),
    Owned(Box<[u8]>),
}

impl Name<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Name::Borrowed(b) => b,
            Name::Owned(b) => b,
        }
    }

    fn into_box(self) -> Box<[u8]> {
        match self {
            Name::Borrowed(b) => b.into(),
            Name::Owned(b) => b,
        }
    }
}

/// How a placement went.
enum Placed {
    At(u32),
    /// A case-insensitive build: the layer already put a name that differs
    /// only in case here (node id), and this entry does not show.
    Shadowed(u32),
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
    fn new(ci: bool, root_folds: bool) -> Self {
        let root = BuildNode {
            kind: KIND_DIR,
            layer: NO_LAYER,
            flags: if root_folds { FLAG_FOLD } else { 0 },
            pdir: NO_PDIR,
            ..Default::default()
        };
        Tree {
            nodes: vec![root],
            ci,
            pdirs: vec![Box::from(&b""[..])],
        }
    }

    fn key(&self, parent: u32, name: &[u8]) -> Box<[u8]> {
        if self.nodes[parent as usize].flags & FLAG_FOLD != 0 {
            fold::fold_vec(name).into()
        } else {
            name.into()
        }
    }

    /// Places an entry of `layer` named `name` below `parent`, applying priority:
    /// the later layer wins; a non-directory drops what lower layers had below it.
    fn place(
        &mut self,
        parent: u32,
        name: &[u8],
        kind: u8,
        layer: u32,
        ino: u64,
        pdir: u32,
    ) -> Placed {
        self.place_name(parent, Name::Borrowed(name), kind, layer, ino, pdir)
    }

    /// [`Tree::place`] of a borrowed name, or of a walked one it takes
    /// over: a new child of a parent that does not fold keeps that as its
    /// key (no copy).
    fn place_name(
        &mut self,
        parent: u32,
        name: Name<'_>,
        kind: u8,
        layer: u32,
        ino: u64,
        pdir: u32,
    ) -> Placed {
        let pflags = self.nodes[parent as usize].flags;
        let folded = (pflags & FLAG_FOLD != 0).then(|| self.key(parent, name.bytes()));
        let found = self.nodes[parent as usize]
            .children
            .get(folded.as_deref().unwrap_or(name.bytes()))
            .copied();
        if let Some(id) = found {
            let ci = self.ci;
            let n = &mut self.nodes[id as usize];
            if pflags & FLAG_FOLD != 0 && n.layer == layer && layer != NO_LAYER {
                // The same layer again, in another spelling.
                return if n.kind == KIND_DIR && kind == KIND_DIR {
                    Placed::At(id)
                } else {
                    Placed::Shadowed(id)
                };
            }
            if kind != KIND_DIR {
                n.children.clear();
                n.flags |= FLAG_HIDES_BASE;
            }
            n.kind = kind;
            n.layer = layer;
            n.ino = ino;
            if ci {
                n.name = name.bytes().into();
                n.pdir = pdir;
            }
            return Placed::At(id);
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(BuildNode {
            children: BTreeMap::new(),
            kind,
            flags: (pflags & (FLAG_HIDES_BASE | FLAG_FOLD))
                | if kind != KIND_DIR { FLAG_HIDES_BASE } else { 0 },
            layer,
            ino,
            name: if self.ci {
                name.bytes().into()
            } else {
                Box::default()
            },
            pdir,
        });
        let key = folded.unwrap_or_else(|| name.into_box());
        self.nodes[parent as usize].children.insert(key, id);
        Placed::At(id)
    }

    /// Ensures the directory nodes of an absolute path exist; returns the last.
    /// Directories created here have no layer: the real disk provides them.
    /// A directory whose path is in `folding` (an outermost destination of a
    /// case-insensitive mapping) folds its children's names.
    fn ensure_dirs(&mut self, abs: &[u8], folding: &HashSet<Vec<u8>>) -> u32 {
        let mut cur = 0u32;
        let mut at = Vec::with_capacity(abs.len());
        for c in path::components(abs) {
            at.push(b'/');
            at.extend_from_slice(c);
            let key = self.key(cur, c);
            cur = match self.nodes[cur as usize].children.get(&key) {
                Some(&id) if self.nodes[id as usize].kind == KIND_DIR => id,
                _ => match self.place(cur, c, KIND_DIR, NO_LAYER, 0, NO_PDIR) {
                    Placed::At(id) | Placed::Shadowed(id) => id,
                },
            };
            if folding.contains(&at) {
                self.nodes[cur as usize].flags |= FLAG_FOLD;
            }
        }
        cur
    }

    /// The physical path of a walked entry (for messages).
    fn entry_path(&self, source: &[u8], pdir: u32, name: &[u8]) -> String {
        let mut p = source.to_vec();
        if let Some(d) = self.pdirs.get(pdir as usize).filter(|d| !d.is_empty()) {
            p.push(b'/');
            p.extend_from_slice(d);
        }
        p.push(b'/');
        p.extend_from_slice(name);
        String::from_utf8_lossy(&p).into_owned()
    }
}

/// What one worker walks: a rule's source, or a destination's real contents.
struct Job<'a> {
    source: &'a Path,
    recursive: bool,
    /// The rule whose skip lists apply; `None` for a destination's base.
    rule: Option<&'a Rule>,
    /// Sorted by name (case-insensitive builds: which of two names that
    /// differ only in case shows must not depend on the directory's order).
    sorted: bool,
}

fn walk_layer(job: &Job<'_>) -> Result<Vec<WalkEntry>> {
    let source = job.source;
    let mut out = Vec::new();
    let mut walker = walkdir::WalkDir::new(source)
        .min_depth(1)
        .follow_links(false);
    if !job.recursive {
        walker = walker.max_depth(1);
    }
    if job.sorted {
        walker = walker.sort_by(|a, b| a.file_name().cmp(b.file_name()));
    }
    let rule = job.rule;
    let iter = walker.into_iter().filter_entry(|e| {
        rule.is_none_or(|rule| {
            !(e.file_type().is_dir() && rule.is_skipped_dir(e.file_name()))
                && (e.file_type().is_dir() || !rule.is_skipped_file(e.file_name()))
        })
    });
    for entry in iter {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if rule.is_none() => {
                // A destination's own contents: what cannot be read stays
                // out of the index, as the program could not read it either.
                tracing::warn!(error = %e, "case-insensitive index: skipping an unreadable part of a destination");
                continue;
            }
            Err(e) => {
                let p = e.path().unwrap_or(source).to_path_buf();
                let io = e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("filesystem loop"));
                return Err(Error::SourceUnreadable { path: p, cause: io });
            }
        };
        let kind = kind_of(entry.file_type());
        if !job.recursive && kind == KIND_DIR {
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

/// Walks every job's source, `threads` at a time, keeping job order.
fn walk_all(jobs: &[Job<'_>]) -> Result<Vec<Vec<WalkEntry>>> {
    let n = jobs.len();
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
                    let r = walk_layer(&jobs[i]);
                    *results[i].lock().unwrap() = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap().unwrap_or_else(|| Ok(Vec::new())))
        .collect()
}

/// One walk job per directory rule (`sorted`: entries in name order), and
/// each rule's job (`None` for a file rule).
fn rule_jobs(mapping: &Mapping, sorted: bool) -> (Vec<Job<'_>>, Vec<Option<usize>>) {
    let mut jobs = Vec::new();
    let mut job_of_rule = Vec::new();
    for rule in &mapping.rules {
        if rule.kind == LinkKind::Directory {
            job_of_rule.push(Some(jobs.len()));
            jobs.push(Job {
                source: &rule.source,
                recursive: rule.flags.has(LinkFlags::RECURSIVE),
                rule: Some(rule),
                sorted,
            });
        } else {
            job_of_rule.push(None);
        }
    }
    (jobs, job_of_rule)
}

/// Walks every directory rule's source as the build does (skip lists,
/// recursion, name order): per rule, its entries in pre-order; `None` for a
/// file rule. For reports on a mapping (conflicts) that must agree with the
/// index.
pub(crate) fn walk_rules(mapping: &Mapping) -> Result<Vec<Option<Vec<WalkEntry>>>> {
    let (jobs, job_of_rule) = rule_jobs(mapping, true);
    let mut walks: Vec<Option<Vec<WalkEntry>>> = walk_all(&jobs)?.into_iter().map(Some).collect();
    Ok(job_of_rule
        .into_iter()
        .map(|j| j.and_then(|j| walks[j].take()))
        .collect())
}

/// The directory destinations not inside another one (case-insensitive
/// builds: their real contents are the base layers, and folding starts at
/// them), sorted.
fn outermost_dir_destinations(mapping: &Mapping) -> Vec<Vec<u8>> {
    let dirs: Vec<&[u8]> = mapping
        .rules
        .iter()
        .filter(|r| r.kind == LinkKind::Directory)
        .map(|r| r.destination.as_os_str().as_bytes())
        .collect();
    let mut out: Vec<Vec<u8>> = dirs
        .iter()
        .filter(|d| {
            !dirs
                .iter()
                .any(|o| o != *d && path::strip_prefix(d, o).is_some())
        })
        .map(|d| d.to_vec())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A base layer: the real contents of destination `dest`.
struct Base {
    dest: Vec<u8>,
    ino: u64,
}

/// Builds the tree from a mapping and serializes it into a snapshot image.
pub fn build_snapshot(mapping: &Mapping, generation: u64) -> Result<Vec<u8>> {
    let ci = mapping.case_insensitive;
    let outer = if ci {
        outermost_dir_destinations(mapping)
    } else {
        Vec::new()
    };
    let bases: Vec<Base> = outer
        .iter()
        .filter_map(|d| {
            let m = std::fs::metadata(OsStr::from_bytes(d)).ok()?;
            m.is_dir().then(|| Base {
                dest: d.clone(),
                ino: m.ino(),
            })
        })
        .collect();
    let folding: HashSet<Vec<u8>> = outer.iter().cloned().collect();
    let (mut jobs, job_of_rule) = rule_jobs(mapping, ci);
    let base_jobs = jobs.len();
    for b in &bases {
        jobs.push(Job {
            source: Path::new(OsStr::from_bytes(&b.dest)),
            recursive: true,
            rule: None,
            sorted: true,
        });
    }
    let mut walks: Vec<Option<Vec<WalkEntry>>> = walk_all(&jobs)?.into_iter().map(Some).collect();
    let mut tree = Tree::new(ci, folding.contains(&b"/"[..]));
    let mut anchors: Vec<Vec<u8>> = Vec::new();
    // The layers in priority order: the bases (after the rules in the layer
    // table), then the rules.
    let rules = mapping.rules.len() as u32;
    let mut dest_node: Vec<Option<u32>> = vec![None; mapping.rules.len() + bases.len()];
    let order = (0..bases.len()).map(|b| (rules + b as u32, None)).chain(
        mapping
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u32, Some(r))),
    );
    for (layer, rule) in order {
        let (dest, kind, ino, walk, source): (&[u8], LinkKind, u64, _, &[u8]) = match rule {
            None => {
                let b = &bases[(layer - rules) as usize];
                let walk = walks[base_jobs + (layer - rules) as usize].take();
                (&b.dest, LinkKind::Directory, b.ino, walk, &b.dest)
            }
            Some(rule) => {
                let walk = job_of_rule[layer as usize].and_then(|j| walks[j].take());
                let ino = if rule.kind == LinkKind::Directory {
                    std::fs::metadata(&rule.source)
                        .map(|m| m.ino())
                        .unwrap_or(0)
                } else {
                    0
                };
                (
                    rule.destination.as_os_str().as_bytes(),
                    rule.kind,
                    ino,
                    walk,
                    rule.source.as_os_str().as_bytes(),
                )
            }
        };
        match kind {
            LinkKind::Directory => {
                let parent = tree.ensure_dirs(parent_of(dest), &folding);
                let name = path::file_name(dest);
                let top = if name.is_empty() {
                    0
                } else {
                    match tree.place(parent, name, KIND_DIR, layer, ino, NO_PDIR) {
                        Placed::At(id) | Placed::Shadowed(id) => id,
                    }
                };
                if top == 0 {
                    tree.nodes[0].layer = layer;
                }
                if folding.contains(dest) {
                    tree.nodes[top as usize].flags |= FLAG_FOLD;
                }
                dest_node[layer as usize] = Some(top);
                if rule.is_some() {
                    anchors.push(dest.to_vec());
                }
                // (node, its physical directory) per depth; None below an
                // entry that does not show.
                let mut stack: Vec<Option<(u32, u32)>> = vec![Some((top, 0))];
                for mut e in walk.unwrap_or_default() {
                    let d = e.depth as usize;
                    stack.truncate(d);
                    let Some((parent, pdir)) = stack[d - 1] else {
                        stack.push(None);
                        continue;
                    };
                    // A case-sensitive build hands the walked name over as
                    // the key; a case-insensitive one still needs it below.
                    let placed = if ci {
                        tree.place(parent, &e.name, e.kind, layer, e.ino, pdir)
                    } else {
                        let name = std::mem::take(&mut e.name);
                        tree.place_name(parent, Name::Owned(name), e.kind, layer, e.ino, NO_PDIR)
                    };
                    let id = match placed {
                        Placed::At(id) => id,
                        Placed::Shadowed(kept) => {
                            let k = &tree.nodes[kept as usize];
                            tracing::warn!(
                                shown = %tree.entry_path(source, k.pdir, &k.name),
                                hidden = %tree.entry_path(source, pdir, &e.name),
                                "case-insensitive view: one layer holds two names that differ only in case; the first in byte order shows"
                            );
                            stack.push(None);
                            continue;
                        }
                    };
                    let own = if ci && e.kind == KIND_DIR {
                        let mut rel = tree.pdirs[pdir as usize].to_vec();
                        if !rel.is_empty() {
                            rel.push(b'/');
                        }
                        rel.extend_from_slice(&e.name);
                        tree.pdirs.push(rel.into());
                        (tree.pdirs.len() - 1) as u32
                    } else {
                        NO_PDIR
                    };
                    stack.push(Some((id, own)));
                }
            }
            LinkKind::File => {
                let Some(rule) = rule else { continue };
                let parent = tree.ensure_dirs(parent_of(dest), &folding);
                let meta = std::fs::symlink_metadata(&rule.source)
                    .map_err(|e| Error::io("reading link source", &rule.source, e))?;
                let id = match tree.place(
                    parent,
                    path::file_name(dest),
                    kind_of(meta.file_type()),
                    layer,
                    meta.ino(),
                    NO_PDIR,
                ) {
                    Placed::At(id) | Placed::Shadowed(id) => id,
                };
                dest_node[layer as usize] = Some(id);
                anchors.push(parent_of(dest).to_vec());
            }
        }
    }
    Ok(serialize(
        &tree, mapping, &bases, &dest_node, &anchors, generation,
    ))
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

fn serialize(
    tree: &Tree,
    mapping: &Mapping,
    bases: &[Base],
    dest_node: &[Option<u32>],
    anchors: &[Vec<u8>],
    generation: u64,
) -> Vec<u8> {
    let ci = tree.ci;
    let mut strings = Strings { bytes: Vec::new() };
    // Breadth-first renumbering: children of each node become contiguous,
    // sorted by name (the exact binary search); `new_id[old]`.
    let mut order: Vec<u32> = vec![0];
    let mut new_id: Vec<u32> = vec![u32::MAX; tree.nodes.len()];
    new_id[0] = 0;
    let mut recs: Vec<NodeRec> = Vec::with_capacity(tree.nodes.len());
    let mut parents: Vec<u32> = vec![0];
    let mut names: Vec<&[u8]> = vec![b""];
    let mut i = 0;
    while i < order.len() {
        let old = &tree.nodes[order[i] as usize];
        let first = order.len() as u32;
        if ci {
            let mut kids: Vec<(&[u8], u32)> = old
                .children
                .values()
                .map(|&c| (&*tree.nodes[c as usize].name, c))
                .collect();
            kids.sort_unstable();
            for (name, child) in kids {
                new_id[child as usize] = order.len() as u32;
                order.push(child);
                parents.push(i as u32);
                names.push(name);
            }
        } else {
            for (name, &child) in &old.children {
                new_id[child as usize] = order.len() as u32;
                order.push(child);
                parents.push(i as u32);
                names.push(name);
            }
        }
        let (name_off, name_len) = strings.add(names[i]);
        recs.push(NodeRec {
            name_off,
            name_len: name_len as u16,
            kind: old.kind,
            flags: old.flags & !FLAG_RESPELL,
            parent: parents[i],
            first_child: first,
            child_count: old.children.len() as u32,
            layer: old.layer,
            ino: old.ino,
        });
        i += 1;
    }
    // The virtual path of a node, as the view spells it.
    let vpath = |mut n: u32| -> Vec<u8> {
        path::from_leaf_up(std::iter::from_fn(|| {
            (n != 0).then(|| {
                let name = names[n as usize];
                n = parents[n as usize];
                name
            })
        }))
    };
    // Layers: the rules, then the bases. A destination is stored as the
    // view spells it (a case-insensitive view may spell a nested destination
    // as a higher layer does).
    let mut layer_dests: Vec<Vec<u8>> = Vec::new();
    let mut layers: Vec<LayerRec> = Vec::new();
    let sources = mapping
        .rules
        .iter()
        .map(|r| {
            (
                r.source.as_os_str().as_bytes(),
                r.destination.as_os_str().as_bytes(),
                r.flags.0,
                r.kind == LinkKind::File,
            )
        })
        .chain(
            bases
                .iter()
                .map(|b| (&b.dest[..], &b.dest[..], LAYER_BASE, false)),
        );
    for (l, (source, dest, flags, is_file)) in sources.enumerate() {
        let dest = match dest_node.get(l).copied().flatten() {
            Some(old) if ci && new_id[old as usize] != u32::MAX => vpath(new_id[old as usize]),
            _ => dest.to_vec(),
        };
        let (source_off, source_len) = strings.add(source);
        let (dest_off, dest_len) = strings.add(&dest);
        layer_dests.push(dest);
        layers.push(LayerRec {
            source_off,
            source_len,
            dest_off,
            dest_len,
            flags,
            is_file: is_file as u32,
        });
    }
    // Case-insensitive: the fold order of every directory's children, and
    // the physical directory of each node whose layer spells a parent
    // differently than the view does.
    let mut fold_recs: Vec<FoldRec> = Vec::new();
    let mut respell: Vec<RespellRec> = Vec::new();
    if ci {
        fold_recs = vec![FoldRec::default(); recs.len()];
        for (n, &old) in order.iter().enumerate() {
            let first = recs[n].first_child as usize;
            for (j, (key, &child)) in tree.nodes[old as usize].children.iter().enumerate() {
                let c = new_id[child as usize];
                let r = &recs[c as usize];
                let (key_off, key_len) = if **key == *names[c as usize] {
                    (r.name_off, r.name_len as u32)
                } else {
                    strings.add(key)
                };
                fold_recs[first + j] = FoldRec {
                    node: c,
                    key_off,
                    key_len,
                };
            }
        }
        let mut dirs: HashMap<(u32, u32), (u32, u32)> = HashMap::new();
        let mut dir_vpaths: HashMap<u32, Vec<u8>> = HashMap::new();
        for (n, &old) in order.iter().enumerate().skip(1) {
            let node = &tree.nodes[old as usize];
            if node.layer == NO_LAYER || node.pdir == NO_PDIR {
                continue;
            }
            let l = node.layer as usize;
            let parent = parents[n];
            let pv = dir_vpaths.entry(parent).or_insert_with(|| vpath(parent));
            let actual: &[u8] = &tree.pdirs[node.pdir as usize];
            if path::strip_prefix(pv, &layer_dests[l]) == Some(actual) {
                continue;
            }
            let (dir_off, dir_len) = *dirs.entry((node.layer, node.pdir)).or_insert_with(|| {
                let mut d = layer_sources(mapping, bases, l).to_vec();
                if !actual.is_empty() {
                    d.push(b'/');
                    d.extend_from_slice(actual);
                }
                strings.add(&d)
            });
            recs[n].flags |= FLAG_RESPELL;
            respell.push(RespellRec {
                node: n as u32,
                dir_off,
                dir_len,
            });
        }
    }
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
        flags: if ci { HEADER_CASE_INSENSITIVE } else { 0 },
        generation,
        fold_count: fold_recs.len() as u32,
        respell_count: respell.len() as u32,
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
    h.fold_off = out.len() as u64;
    fold_recs.iter().for_each(|r| push_pod(&mut out, r));
    h.respell_off = out.len() as u64;
    respell.iter().for_each(|r| push_pod(&mut out, r));
    let dirhash = children_tables(&recs, &strings.bytes);
    align8(&mut out);
    h.dirhash_off = out.len() as u64;
    h.dirhash_words = dirhash.len() as u32;
    dirhash
        .iter()
        .for_each(|w| out.extend_from_slice(&w.to_ne_bytes()));
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

/// The `dirhash` area (see [`DIRHASH_MIN_CHILDREN`]): a word per node, then
/// a hash table of the children of every directory with enough of them.
fn children_tables(recs: &[NodeRec], strings: &[u8]) -> Vec<u32> {
    let mut area = vec![0u32; recs.len()];
    for (n, r) in recs.iter().enumerate() {
        if !(DIRHASH_MIN_CHILDREN..=DIRHASH_MAX_CHILDREN).contains(&r.child_count) {
            continue;
        }
        let slots = dirhash_slots(r.child_count) as usize;
        let at = area.len();
        area.resize(at + slots, 0);
        let table = &mut area[at..];
        for k in 0..r.child_count {
            let c = &recs[(r.first_child + k) as usize];
            let name = &strings[c.name_off as usize..c.name_off as usize + c.name_len as usize];
            let h = name_hash(name);
            let mut i = h as usize & (slots - 1);
            while table[i] != 0 {
                i = (i + 1) & (slots - 1);
            }
            table[i] = dirhash_slot(k, h);
        }
        area[n] = at as u32;
    }
    area
}

/// The source of layer `l` (the rules, then the bases).
fn layer_sources<'a>(mapping: &'a Mapping, bases: &'a [Base], l: usize) -> &'a [u8] {
    match mapping.rules.get(l) {
        Some(r) => r.source.as_os_str().as_bytes(),
        None => &bases[l - mapping.rules.len()].dest,
    }
}
