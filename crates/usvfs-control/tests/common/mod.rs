//! The fixture the view tests share (`semantics.rs`, `case.rs`).
//!
//! A layout is laid out in a real temporary directory (the index builder
//! walks the real disk), indexed, then mirrored into a `FakeFs` at the same
//! absolute paths; the semantics then act on the fake only, so the real
//! directory keeps the layout as it was built. Paths handed back are
//! relative to the layout root (`base/…`, `m1/…`, `overwrite/…`).
//!
//! Each test file adds its own helpers (`b`, `resolve`, `phys`, `ls`, …) in
//! an `impl Scene` block of its own: they differ in how they take paths.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use usvfs_control::index::OwnedSnapshot;
use usvfs_control::{LinkFlags, Mapping, build_snapshot};
use usvfs_view::fake::FakeFs;
use usvfs_view::journal::{Entry, Journal};
use usvfs_view::semantics::{Probe, View};
use usvfs_view::{FileKind, Fs, Snapshot};

pub const REC: LinkFlags = LinkFlags(LinkFlags::RECURSIVE);
pub const CT: LinkFlags = LinkFlags(LinkFlags::RECURSIVE | LinkFlags::CREATE_TARGET);

/// A layout indexed from the real disk, mirrored into a fake, with a journal.
pub struct Scene {
    _tmp: tempfile::TempDir,
    /// The layout root (absolute, canonical).
    pub root: String,
    pub journal_path: PathBuf,
    pub snap: Snapshot<'static>,
    pub journal: Journal,
    pub fake: FakeFs,
}

/// Writes file `rel` (below `root`, any bytes), parents included.
pub fn write(root: &Path, rel: impl AsRef<[u8]>, data: &str) {
    let p = root.join(std::ffi::OsStr::from_bytes(rel.as_ref()));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// Makes symlink `rel -> target` (below `root`), parents included.
pub fn symlink(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}

/// Copies the real tree below `dir` into the fake at the same paths. The
/// fake holds UTF-8 paths only: a name that is not UTF-8 stays out of it
/// (the tests that need one check the index's answer instead).
pub fn mirror(fake: &FakeFs, dir: &Path) {
    fake.add_dir(dir.to_str().unwrap());
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let Some(s) = p.to_str() else {
            continue;
        };
        let t = fs::symlink_metadata(&p).unwrap().file_type();
        if t.is_symlink() {
            fake.add_symlink(s, fs::read_link(&p).unwrap().to_str().unwrap());
        } else if t.is_dir() {
            mirror(fake, &p);
        } else {
            fake.add_file(s, &fs::read_to_string(&p).unwrap());
        }
    }
}

/// A physical path as the fake's `&str` API takes it.
pub fn fake_path(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => panic!("non-UTF-8 path {b:?}: the fake holds UTF-8 paths only"),
    }
}

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

impl Scene {
    /// Lays out with `layout`, maps with `map` (both given the root),
    /// case-insensitive when `ci`.
    pub fn build(
        ci: bool,
        layout: impl FnOnce(&Path),
        map: impl FnOnce(&Path, &mut Mapping),
    ) -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().canonicalize().unwrap();
        let r = top.join("fs");
        fs::create_dir(&r).unwrap();
        layout(&r);
        let mut m = Mapping::new();
        m.case_insensitive = ci;
        map(&r, &mut m);
        let bytes = build_snapshot(&m, 7).unwrap();
        let owned: &'static OwnedSnapshot =
            Box::leak(Box::new(OwnedSnapshot::new(&bytes).unwrap()));
        let snap = owned.snapshot();
        assert_eq!(snap.case_insensitive(), ci);
        let journal_path = top.join("journal");
        Journal::create_with(&journal_path, snap.generation(), snap.case_insensitive()).unwrap();
        let journal = Journal::open(&journal_path).unwrap();
        assert_eq!(journal.generation(), 7);
        assert_eq!(journal.folds(), ci);
        let fake = FakeFs::new();
        mirror(&fake, &r);
        Scene {
            _tmp: tmp,
            root: r.to_str().unwrap().to_string(),
            journal_path,
            snap,
            journal,
            fake,
        }
    }

    pub fn v(&self) -> View<'_> {
        View {
            snap: &self.snap,
            journal: Some(&self.journal),
            fs: &self.fake,
        }
    }

    /// The absolute path of `rel` (below the layout root).
    pub fn p(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.root.clone()
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    /// A physical path relative to the layout root (absolute when outside).
    pub fn rel(&self, phys: &[u8]) -> String {
        let s = String::from_utf8_lossy(phys).into_owned();
        match s.strip_prefix(&format!("{}/", self.root)) {
            Some(r) => r.to_string(),
            None => s,
        }
    }

    /// The physical tree below `rel` (see `FakeFs::tree`).
    pub fn tree(&self, rel: &str) -> Vec<String> {
        self.fake.tree(&self.p(rel))
    }

    /// The merged listing of index directory `virt`, `.` and `..` included.
    pub fn listing(&self, virt: impl AsRef<[u8]>) -> Vec<String> {
        let virt = virt.as_ref();
        let r = self.v().resolve_boxed(virt, true).unwrap();
        assert!(
            self.v().is_merged_dir(r.res.node),
            "{} is not merged",
            String::from_utf8_lossy(virt)
        );
        let l = self.v().list(r.res.node.unwrap(), r.virt.as_bytes(), 0);
        l.names()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    /// `open(O_CREAT | O_EXCL)` + write of virtual path `virt`, as an engine
    /// does it: the new file's place relative to the root.
    pub fn create_at(&self, virt: impl AsRef<[u8]>, data: &str) -> Result<String, i32> {
        let virt = virt.as_ref();
        let v = self.v();
        match v.probe(virt, true, FileKind::File) {
            Probe::New(place) => {
                let loc = fake_path(place.loc.as_bytes());
                let parent = &loc[..loc.rfind('/').unwrap()];
                assert!(self.fake.stat(parent.as_bytes()).unwrap().is_dir());
                assert!(!self.fake.exists(&loc));
                self.fake.add_file(&loc, data);
                place.commit(&v, FileKind::File);
                Ok(self.rel(loc.as_bytes()))
            }
            Probe::Exists(f) => {
                assert!(self.fake.lstat(f.r.phys.as_bytes()).is_ok());
                Err(libc::EEXIST)
            }
            Probe::Fail(e) => Err(e),
            Probe::Outside => panic!("{} is outside the view", String::from_utf8_lossy(virt)),
        }
    }

    /// `mkdir` of virtual path `virt`, as an engine does it.
    pub fn mkdir_at(&self, virt: impl AsRef<[u8]>) -> Result<String, i32> {
        let virt = virt.as_ref();
        let v = self.v();
        match v.probe(virt, false, FileKind::Dir) {
            Probe::New(place) => {
                if let Err(e) = self.fake.mkdir(place.loc.as_bytes(), 0o755) {
                    place.abort(&v);
                    return Err(e);
                }
                place.commit(&v, FileKind::Dir);
                Ok(self.rel(place.loc.as_bytes()))
            }
            Probe::Exists(_) => Err(libc::EEXIST),
            Probe::Fail(e) => Err(e),
            Probe::Outside => panic!("{} is outside the view", String::from_utf8_lossy(virt)),
        }
    }

    /// The journal's current records: (virtual path below the root, entry),
    /// a physical entry followed by its kind when `with_kind`.
    pub fn journal_records(&self, with_kind: bool) -> Vec<(String, String)> {
        self.journal
            .records()
            .iter()
            .map(|r| {
                let e = match r.entry {
                    Entry::Whiteout => "whiteout".to_string(),
                    Entry::Physical { phys, kind } if with_kind => {
                        format!("{} ({kind})", self.rel(phys))
                    }
                    Entry::Physical { phys, .. } => self.rel(phys),
                };
                (self.rel(r.vpath), e)
            })
            .collect()
    }
}
