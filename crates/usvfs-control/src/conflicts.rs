//! Conflicts of a mapping: every virtual file that more than one layer
//! provides, which layer wins it (the highest priority) and which it hides,
//! and per layer how many files it provides, wins over a lower layer
//! ("overwrites") and loses to a higher one ("overwritten"). The sources are
//! walked exactly as the index build walks them (skip lists, recursion).
//!
//! Directories are never conflicts (they merge); only files, symlinks and
//! other non-directories count. In a case-insensitive mapping paths compare
//! by their folded form and show in the winner's spelling.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::Result;
use crate::mapping::{LinkFlags, LinkKind, Mapping};
use usvfs_view::index::format::KIND_DIR;

/// One layer (rule) of the mapping and its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCounts {
    /// Index of the rule in the mapping.
    pub rule: usize,
    pub source: PathBuf,
    pub destination: PathBuf,
    pub create_target: bool,
    /// Files (non-directories) the layer provides.
    pub files: usize,
    /// Its files that win over a lower layer's copy.
    pub overwrites: usize,
    /// Its files that a higher layer's copy hides.
    pub overwritten: usize,
}

/// A virtual file provided by several layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The directory the layers were linked onto (a file link: its parent).
    pub destination: Vec<u8>,
    /// The path below `destination`, as the winner spells it.
    pub file: Vec<u8>,
    /// The winning rule.
    pub winner: usize,
    /// The hidden rules, highest priority first.
    pub hidden: Vec<usize>,
}

impl Conflict {
    /// The full virtual path.
    pub fn path(&self) -> Vec<u8> {
        let mut p = self.destination.clone();
        if p.last() != Some(&b'/') {
            p.push(b'/');
        }
        p.extend_from_slice(&self.file);
        p
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts {
    /// Every rule, lowest priority first.
    pub layers: Vec<LayerCounts>,
    /// Sorted by full virtual path.
    pub conflicts: Vec<Conflict>,
}

fn parent(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&c| c == b'/') {
        Some(0) | None => b"/",
        Some(i) => &p[..i],
    }
}

/// Computes the conflicts of `mapping`.
pub fn conflicts(mapping: &Mapping) -> Result<Conflicts> {
    conflicts_ignoring(mapping, |_, _| false)
}

/// Computes the conflicts of `mapping`, leaving out the files for which
/// `ignore(rule, path below the destination)` holds (MO2's own bookkeeping
/// files in its mods, which its conflict lists leave out too).
pub fn conflicts_ignoring(
    mapping: &Mapping,
    ignore: impl Fn(usize, &[u8]) -> bool,
) -> Result<Conflicts> {
    let walks = crate::index::build::walk_rules(mapping)?;
    let ci = mapping.case_insensitive;
    // key -> (destination, file as spelled, providing rules lowest first)
    type Providers = (Vec<u8>, Vec<u8>, Vec<usize>);
    let mut by_key: HashMap<Vec<u8>, Providers> = HashMap::new();
    let mut layers: Vec<LayerCounts> = Vec::with_capacity(mapping.rules.len());
    let mut add = |dest: &[u8], file: Vec<u8>, rule: usize| {
        let mut full = dest.to_vec();
        if full.last() != Some(&b'/') {
            full.push(b'/');
        }
        full.extend_from_slice(&file);
        let key = if ci {
            usvfs_view::fold::fold_vec(&full)
        } else {
            full
        };
        let e = by_key
            .entry(key)
            .or_insert_with(|| (dest.to_vec(), Vec::new(), Vec::new()));
        // The winner's spelling (rules come in priority order).
        e.1 = file;
        if e.2.last() != Some(&rule) {
            e.2.push(rule);
        }
    };
    let mut files = vec![0usize; mapping.rules.len()];
    for (i, (rule, walk)) in mapping.rules.iter().zip(walks).enumerate() {
        let dest = rule.destination.as_os_str().as_bytes();
        match rule.kind {
            LinkKind::File => {
                files[i] += 1;
                add(parent(dest), usvfs_view::path::file_name(dest).to_vec(), i);
            }
            LinkKind::Directory => {
                // Pre-order entries: rebuild each one's path from the
                // names of its ancestors.
                let mut stack: Vec<Vec<u8>> = Vec::new();
                for e in walk.unwrap_or_default() {
                    let d = e.depth as usize;
                    stack.truncate(d - 1);
                    let mut rel = stack.last().cloned().unwrap_or_default();
                    if !rel.is_empty() {
                        rel.push(b'/');
                    }
                    rel.extend_from_slice(&e.name);
                    if e.kind != KIND_DIR && !ignore(i, &rel) {
                        files[i] += 1;
                        add(dest, rel.clone(), i);
                    }
                    stack.push(rel);
                }
            }
        }
    }
    for (i, rule) in mapping.rules.iter().enumerate() {
        layers.push(LayerCounts {
            rule: i,
            source: rule.source.clone(),
            destination: rule.destination.clone(),
            create_target: rule.flags.has(LinkFlags::CREATE_TARGET),
            files: files[i],
            overwrites: 0,
            overwritten: 0,
        });
    }
    let mut out: Vec<Conflict> = Vec::new();
    for (_, (destination, file, rules)) in by_key {
        if rules.len() < 2 {
            continue;
        }
        for (k, &r) in rules.iter().enumerate() {
            if k > 0 {
                layers[r].overwrites += 1;
            }
            if k + 1 < rules.len() {
                layers[r].overwritten += 1;
            }
        }
        let mut hidden = rules;
        let winner = hidden.pop().unwrap_or_default();
        hidden.reverse();
        out.push(Conflict {
            destination,
            file,
            winner,
            hidden,
        });
    }
    if ci {
        out.sort_by_cached_key(|c| usvfs_view::fold::fold_vec(&c.path()));
    } else {
        out.sort_by_key(|c| c.path());
    }
    Ok(Conflicts {
        layers,
        conflicts: out,
    })
}

/// Display width of a byte string (its characters, invalid bytes one each).
fn width(b: &[u8]) -> usize {
    String::from_utf8_lossy(b).chars().count()
}

fn pad(out: &mut Vec<u8>, cell: &[u8], w: usize) {
    out.extend_from_slice(cell);
    out.extend(std::iter::repeat_n(b' ', w.saturating_sub(width(cell))));
}

impl Conflicts {
    /// The name of rule `i`: `names[i]` when given, else its source.
    fn name<'a>(&'a self, names: &'a [Option<String>], i: usize) -> Vec<u8> {
        match names.get(i).and_then(|n| n.as_deref()) {
            Some(n) => n.as_bytes().to_vec(),
            None => self.layers[i].source.as_os_str().as_bytes().to_vec(),
        }
    }

    /// A text report: the conflicting files grouped by destination (path,
    /// winner, hidden layers highest first), then one line per layer with
    /// its counts. Paths are written as bytes.
    pub fn table(&self, names: &[Option<String>]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.conflicts.is_empty() {
            out.extend_from_slice(b"No conflicts: every file comes from one layer.\n");
        } else {
            let _ = writeln!(
                out,
                "{} file{} provided by more than one layer:",
                self.conflicts.len(),
                if self.conflicts.len() == 1 { "" } else { "s" }
            );
            let mut start = 0;
            while start < self.conflicts.len() {
                let dest = &self.conflicts[start].destination;
                let end = start
                    + self.conflicts[start..]
                        .iter()
                        .take_while(|c| &c.destination == dest)
                        .count();
                let group = &self.conflicts[start..end];
                let rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = group
                    .iter()
                    .map(|c| {
                        let hidden: Vec<Vec<u8>> =
                            c.hidden.iter().map(|&h| self.name(names, h)).collect();
                        (
                            c.file.clone(),
                            self.name(names, c.winner),
                            hidden.join(&b", "[..]),
                        )
                    })
                    .collect();
                let w0 = rows.iter().map(|r| width(&r.0)).max().unwrap_or(0).max(4);
                let w1 = rows.iter().map(|r| width(&r.1)).max().unwrap_or(0).max(6);
                out.push(b'\n');
                out.extend_from_slice(dest);
                out.extend_from_slice(b"\n  ");
                pad(&mut out, b"FILE", w0 + 2);
                pad(&mut out, b"WINNER", w1 + 2);
                out.extend_from_slice(b"HIDDEN\n");
                for (f, w, h) in rows {
                    out.extend_from_slice(b"  ");
                    pad(&mut out, &f, w0 + 2);
                    pad(&mut out, &w, w1 + 2);
                    out.extend_from_slice(&h);
                    out.push(b'\n');
                }
                start = end;
            }
        }
        let names_b: Vec<Vec<u8>> = (0..self.layers.len())
            .map(|i| self.name(names, i))
            .collect();
        let w = names_b.iter().map(|n| width(n)).max().unwrap_or(0).max(5);
        out.extend_from_slice(b"\nLayers, lowest priority first:\n");
        pad(&mut out, b"LAYER", w + 2);
        out.extend_from_slice(b"FILES  OVERWRITES  OVERWRITTEN\n");
        for (l, n) in self.layers.iter().zip(&names_b) {
            pad(&mut out, n, w + 2);
            let _ = writeln!(
                out,
                "{:>5}  {:>10}  {:>11}",
                l.files, l.overwrites, l.overwritten
            );
        }
        out
    }

    /// The same as JSON: `{"layers": [{"name", "source", "destination",
    /// "create_target", "files", "overwrites", "overwritten"}, ...],
    /// "conflicts": [{"path", "destination", "file", "winner", "hidden":
    /// [...]}, ...]}`. Paths that are not UTF-8 are written with U+FFFD.
    pub fn json(&self, names: &[Option<String>]) -> String {
        let s = |b: &[u8]| json_str(&String::from_utf8_lossy(b));
        let mut out = String::from("{\"layers\": [");
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!(
                "{{\"name\": {}, \"source\": {}, \"destination\": {}, \"create_target\": {}, \
                 \"files\": {}, \"overwrites\": {}, \"overwritten\": {}}}",
                s(&self.name(names, i)),
                s(l.source.as_os_str().as_bytes()),
                s(l.destination.as_os_str().as_bytes()),
                l.create_target,
                l.files,
                l.overwrites,
                l.overwritten
            ));
        }
        out.push_str("], \"conflicts\": [");
        for (i, c) in self.conflicts.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let hidden: Vec<String> = c.hidden.iter().map(|&h| s(&self.name(names, h))).collect();
            out.push_str(&format!(
                "{{\"path\": {}, \"destination\": {}, \"file\": {}, \"winner\": {}, \"hidden\": [{}]}}",
                s(&c.path()),
                s(&c.destination),
                s(&c.file),
                s(&self.name(names, c.winner)),
                hidden.join(", ")
            ));
        }
        out.push_str("]}\n");
        out
    }
}

fn json_str(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn conflicts_name_winner_hidden_and_counts() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, c, d) = (
            t.path().join("a"),
            t.path().join("b"),
            t.path().join("c"),
            t.path().join("data"),
        );
        write(&a.join("x.txt"), "a");
        write(&a.join("sub/y.txt"), "a");
        write(&a.join("only_a.txt"), "a");
        write(&b.join("x.txt"), "b");
        write(&b.join("skip.bak"), "b");
        write(&c.join("x.txt"), "c");
        write(&c.join("sub/y.txt"), "c");
        write(&c.join("skip.bak"), "c");
        std::fs::create_dir_all(&d).unwrap();
        let mut m = Mapping::new();
        let rec = LinkFlags(LinkFlags::RECURSIVE);
        m.link_directory(&a, &d, rec).unwrap();
        m.skip_suffixes.push(".bak".into());
        m.link_directory(&b, &d, rec).unwrap();
        m.link_directory(&c, &d, rec).unwrap();
        let r = conflicts(&m).unwrap();
        let got: Vec<(String, usize, Vec<usize>)> = r
            .conflicts
            .iter()
            .map(|c| {
                (
                    String::from_utf8(c.file.clone()).unwrap(),
                    c.winner,
                    c.hidden.clone(),
                )
            })
            .collect();
        // skip.bak is skipped in b and c (the skip list applies to them).
        assert_eq!(
            got,
            vec![
                ("sub/y.txt".into(), 2, vec![0]),
                ("x.txt".into(), 2, vec![1, 0])
            ]
        );
        let counts: Vec<(usize, usize, usize)> = r
            .layers
            .iter()
            .map(|l| (l.files, l.overwrites, l.overwritten))
            .collect();
        assert_eq!(counts, vec![(3, 0, 2), (1, 1, 1), (2, 2, 0)]);
        let names = vec![Some("A".to_string()), Some("B".into()), Some("C".into())];
        let table = String::from_utf8(r.table(&names)).unwrap();
        assert_eq!(
            table,
            format!(
                "2 files provided by more than one layer:\n\n{}\n  \
                 FILE       WINNER  HIDDEN\n  \
                 sub/y.txt  C       A\n  \
                 x.txt      C       B, A\n\n\
                 Layers, lowest priority first:\n\
                 LAYER  FILES  OVERWRITES  OVERWRITTEN\n\
                 A          3           0            2\n\
                 B          1           1            1\n\
                 C          2           2            0\n",
                d.display()
            )
        );
        // Case-insensitive: X.TXT in c is x.txt.
        std::fs::rename(c.join("x.txt"), c.join("X.TXT")).unwrap();
        m.case_insensitive = true;
        let r = conflicts(&m).unwrap();
        assert_eq!(r.conflicts[1].file, b"X.TXT");
        assert_eq!(r.conflicts[1].hidden, vec![1, 0]);
    }
}
