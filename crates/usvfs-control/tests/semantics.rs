//! The semantics of the view (`usvfs_view::semantics`) over the in-memory
//! `FakeFs`: listings, where creates land, deletes, renames and their errno,
//! the journal, exec plans and injected faults. No `LD_PRELOAD`, no system
//! call on the layers: each test runs in milliseconds.
//!
//! Each fixture is a `common::Scene`: laid out in a real temporary directory,
//! indexed, then mirrored into a `FakeFs` at the same absolute paths; the
//! semantics then act on the fake only. Expected paths are written relative
//! to the layout root (`base/…`, `m1/…`, `overwrite/…`).

mod common;

use std::fs;
use std::path::Path;

use common::{CT, REC, Scene, s, symlink, write};
use usvfs_control::{LinkFlags, Mapping};
use usvfs_view::journal::{Entry, Journal};
use usvfs_view::semantics::exec::{self, ExecRules, Located};
use usvfs_view::semantics::{Change, Probe, Resolved, View};
use usvfs_view::{FileKind, Fs};

const KIND_FILE: u8 = usvfs_view::index::format::KIND_FILE;
const KIND_DIR: u8 = usvfs_view::index::format::KIND_DIR;

// ------------------------------------------------------------------ fixture

/// DESIGN.md section 4's layout: `base/` with its own files, mods `m1`..`m4`
/// with `.skip` files skipped, `overwrite/`, a single file to link.
fn reference_layout(r: &Path) {
    write(r, "base/basefile.txt", "base\n");
    write(r, "base/bfolder/bfile.txt", "base b\n");
    write(r, "m1/mfolder1/mfile1.txt", "m1\n");
    write(r, "m1/mfile.txt", "from m1\n");
    write(r, "m1/hidden.skip", "skipped\n");
    write(r, "m2/mfolder2/mfile2.txt", "m2\n");
    write(r, "m2/mfile.txt", "from m2\n");
    write(r, "m3/mfolder3/mfile3.txt", "m3\n");
    write(r, "m4/mfolder4/mfile4.txt", "m4\n");
    fs::create_dir_all(r.join("overwrite")).unwrap();
    write(r, "single/linked.txt", "linked\n");
}

/// The reference mapping: `m1`..`m4` onto `base` in order, `overwrite` last
/// as create target, `single/linked.txt` at `base/linked.txt`.
fn reference_mapping(r: &Path, m: &mut Mapping) {
    m.skip_suffixes.push(".skip".into());
    for i in 1..=4 {
        m.link_directory(&r.join(format!("m{i}")), &r.join("base"), REC)
            .unwrap();
    }
    m.link_directory(&r.join("overwrite"), &r.join("base"), CT)
        .unwrap();
    m.link_file(
        &r.join("single/linked.txt"),
        &r.join("base/linked.txt"),
        LinkFlags(0),
    )
    .unwrap();
}

/// What a probe found, with paths relative to the layout root.
#[derive(Debug, PartialEq, Eq)]
enum P {
    Outside,
    Fail(i32),
    Exists(String),
    New(String),
}

impl Scene {
    /// A case-sensitive scene: lays out with `layout`, maps with `map` (both
    /// given the root).
    fn custom(layout: impl FnOnce(&Path), map: impl FnOnce(&Path, &mut Mapping)) -> Scene {
        Scene::build(false, layout, map)
    }

    /// The reference scene.
    fn new() -> Scene {
        Scene::with(|_| {})
    }

    /// The reference scene with `extra` files laid out before indexing.
    fn with(extra: impl FnOnce(&Path)) -> Scene {
        Scene::custom(
            |r| {
                reference_layout(r);
                extra(r);
            },
            reference_mapping,
        )
    }

    /// `rel` below `base/`, absolute.
    fn b(&self, rel: &str) -> String {
        self.p(&format!("base/{rel}"))
    }

    fn resolve(&self, virt: &str, follow: bool) -> Result<Box<Resolved>, i32> {
        self.v().resolve_boxed(virt.as_bytes(), follow)
    }

    /// Where `base/<rel>` leads (symlinks followed), relative to the root.
    fn phys(&self, rel: &str) -> Result<String, i32> {
        self.resolve(&self.b(rel), true)
            .map(|r| self.rel(r.phys.as_bytes()))
    }

    /// `base/<rel>` exists in the view.
    fn exists(&self, rel: &str) -> bool {
        self.resolve(&self.b(rel), false)
            .is_ok_and(|r| self.fake.lstat(r.phys.as_bytes()).is_ok())
    }

    /// The merged listing of index directory `base/<rel>`, `.` and `..` included.
    fn ls(&self, rel: &str) -> Vec<String> {
        self.listing(self.b(rel))
    }

    /// The names of virtual directory `virt` as an engine lists it: merged
    /// for an index directory, else the physical directory it resolves to
    /// with the journal's changes.
    fn names(&self, virt: &str) -> Vec<String> {
        let r = self.resolve(virt, true).unwrap();
        let l = self
            .v()
            .listing(r.res.node, r.virt.as_bytes(), r.phys.as_bytes(), 0);
        l.names()
            .skip(2)
            .map(|n| String::from_utf8(n.to_vec()).unwrap())
            .collect()
    }

    /// Every path below virtual `base/<rel>`, sorted, relative to it.
    fn walk(&self, rel: &str) -> Vec<String> {
        fn go(sc: &Scene, virt: &str, prefix: &str, out: &mut Vec<String>) {
            for n in sc.names(virt) {
                let child = format!("{virt}/{n}");
                let shown = if prefix.is_empty() {
                    n.clone()
                } else {
                    format!("{prefix}/{n}")
                };
                out.push(shown.clone());
                let r = sc.resolve(&child, true).unwrap();
                if sc.fake.stat(r.phys.as_bytes()).unwrap().is_dir() {
                    go(sc, &child, &shown, out);
                }
            }
        }
        let mut out = Vec::new();
        go(self, self.b(rel).trim_end_matches('/'), "", &mut out);
        out.sort();
        out
    }

    /// The content of physical file `rel` (below the layout root).
    fn read(&self, rel: &str) -> Option<String> {
        self.fake.read(&self.p(rel))
    }

    fn show(&self, p: &Probe) -> P {
        match p {
            Probe::Outside => P::Outside,
            Probe::Fail(e) => P::Fail(*e),
            Probe::Exists(f) => P::Exists(self.rel(f.r.phys.as_bytes())),
            Probe::New(pl) => P::New(self.rel(pl.loc.as_bytes())),
        }
    }

    /// Probes `base/<rel>` (the parents a new entry needs are made).
    fn probe(&self, rel: &str, follow: bool) -> P {
        self.show(
            &self
                .v()
                .probe(self.b(rel).as_bytes(), follow, FileKind::File),
        )
    }

    /// `open(O_CREAT | O_EXCL)` + write of `base/<rel>`, as an engine does
    /// it: the new file's place relative to the root.
    fn create(&self, rel: &str, data: &str) -> Result<String, i32> {
        self.create_at(self.b(rel), data)
    }

    /// `mkdir` of `base/<rel>`, as an engine does it.
    fn mkdir(&self, rel: &str) -> Result<String, i32> {
        self.mkdir_at(self.b(rel))
    }

    /// `mkdir -p`.
    fn mkdir_p(&self, rel: &str) {
        let mut cur = String::new();
        for c in rel.split('/') {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(c);
            match self.mkdir(&cur) {
                Ok(_) => {}
                Err(libc::EEXIST) => {
                    let at = self.p(&self.phys(&cur).unwrap());
                    assert!(self.fake.stat(at.as_bytes()).unwrap().is_dir(), "{cur}");
                }
                Err(e) => panic!("mkdir {cur}: errno {e}"),
            }
        }
    }

    fn delete(&self, rel: &str, remove_dir: Option<bool>) -> Change<()> {
        self.v().delete(self.b(rel).as_bytes(), remove_dir)
    }

    fn rename(&self, old: &str, new: &str, flags: u32) -> Change<()> {
        self.v()
            .rename(self.b(old).as_bytes(), self.b(new).as_bytes(), flags)
    }

    /// The journal's current records: (path below the root, entry with its
    /// kind).
    fn records(&self) -> Vec<(String, String)> {
        self.journal_records(true)
    }

    /// Every physical tree of the layout root.
    fn all(&self) -> Vec<String> {
        self.tree("")
    }

    /// The journal holds no whiteout and names no place other than where
    /// its path already is: only intent records of a call that failed
    /// (places never created, or a path pinned where it lives).
    fn journal_is_inert(&self) -> bool {
        self.journal.records().iter().all(|r| match r.entry {
            Entry::Physical { phys, .. } => {
                self.fake.lstat(phys).is_err()
                    || self
                        .v()
                        .resolve_boxed(r.vpath, false)
                        .is_ok_and(|now| now.phys.as_bytes() == phys)
            }
            Entry::Whiteout => false,
        })
    }
}

/// Mod m1's physical tree is as the scene laid it out.
fn assert_m1_untouched(sc: &Scene) {
    assert_eq!(
        sc.tree("m1"),
        s(&[
            "hidden.skip",
            "mfile.txt",
            "mfolder1/",
            "mfolder1/mfile1.txt"
        ])
    );
}

// ------------------------------------------------------ reference scenarios

#[test]
fn s01_listing_is_the_union_each_name_once() {
    // base also has its own mfile.txt and mfolder1: still one entry each.
    let sc = Scene::with(|r| {
        write(r, "base/mfile.txt", "base copy\n");
        write(r, "base/mfolder1/fromdisk.txt", "base\n");
    });
    assert_eq!(
        sc.ls(""),
        s(&[
            ".",
            "..",
            "linked.txt",
            "mfile.txt",
            "mfolder1",
            "mfolder2",
            "mfolder3",
            "mfolder4",
            "basefile.txt",
            "bfolder",
        ])
    );
    assert_eq!(
        sc.ls("mfolder1"),
        s(&[".", "..", "mfile1.txt", "fromdisk.txt"])
    );
    assert_eq!(sc.phys("mfile.txt").unwrap(), "m2/mfile.txt");
    assert_eq!(
        sc.phys("mfolder1/fromdisk.txt").unwrap(),
        "base/mfolder1/fromdisk.txt"
    );
}

#[test]
fn s02_create_in_a_mod_only_directory_lands_in_overwrite() {
    let sc = Scene::new();
    let before = sc.all();
    // The directory must exist first, as on any file system.
    assert_eq!(
        sc.probe("mfolder1/newfolder1/newfile1.txt", true),
        P::Fail(libc::ENOENT)
    );
    assert_eq!(sc.all(), before);
    assert_eq!(
        sc.probe("mfolder1/newfolder1", false),
        P::New("overwrite/mfolder1/newfolder1".into())
    );
    // The probe made the parent in overwrite; mkdir makes the rest.
    assert_eq!(sc.tree("overwrite"), s(&["mfolder1/"]));
    assert_eq!(
        sc.mkdir("mfolder1/newfolder1"),
        Ok("overwrite/mfolder1/newfolder1".into())
    );
    let v = sc.v();
    let Probe::New(place) = v.probe(
        sc.b("mfolder1/newfolder1/newfile1.txt").as_bytes(),
        true,
        FileKind::File,
    ) else {
        panic!("not new")
    };
    assert_eq!(
        sc.rel(place.loc.as_bytes()),
        "overwrite/mfolder1/newfolder1/newfile1.txt"
    );
    assert_eq!(
        place.virt.as_bytes(),
        sc.b("mfolder1/newfolder1/newfile1.txt").as_bytes()
    );
    sc.fake
        .add_file(&sc.p("overwrite/mfolder1/newfolder1/newfile1.txt"), "new\n");
    place.commit(&v, FileKind::File);
    let r = sc
        .resolve(&sc.b("mfolder1/newfolder1/newfile1.txt"), true)
        .unwrap();
    assert!(r.res.from_journal);
    assert_eq!(
        sc.rel(r.phys.as_bytes()),
        "overwrite/mfolder1/newfolder1/newfile1.txt"
    );
    assert_eq!(
        sc.tree("overwrite"),
        s(&[
            "mfolder1/",
            "mfolder1/newfolder1/",
            "mfolder1/newfolder1/newfile1.txt"
        ])
    );
    assert_eq!(
        sc.read("overwrite/mfolder1/newfolder1/newfile1.txt")
            .as_deref(),
        Some("new\n")
    );
    assert_eq!(
        sc.ls("mfolder1"),
        s(&[".", "..", "mfile1.txt", "newfolder1"])
    );
    assert_eq!(sc.names(&sc.b("mfolder1/newfolder1")), s(&["newfile1.txt"]));
    // Nothing else changed.
    assert_m1_untouched(&sc);
}

#[test]
fn s03_deep_create_twice() {
    let sc = Scene::new();
    let deep = "mfolder4/newfolder4/d/e/e/p";
    sc.mkdir_p(deep);
    assert_eq!(
        sc.create(&format!("{deep}/newfile4.txt"), "one\n"),
        Ok(format!("overwrite/{deep}/newfile4.txt"))
    );
    sc.mkdir_p(deep);
    assert_eq!(
        sc.create(&format!("{deep}/newfile4b.txt"), "two\n"),
        Ok(format!("overwrite/{deep}/newfile4b.txt"))
    );
    assert_eq!(
        sc.tree("overwrite"),
        s(&[
            "mfolder4/",
            "mfolder4/newfolder4/",
            "mfolder4/newfolder4/d/",
            "mfolder4/newfolder4/d/e/",
            "mfolder4/newfolder4/d/e/e/",
            "mfolder4/newfolder4/d/e/e/p/",
            "mfolder4/newfolder4/d/e/e/p/newfile4.txt",
            "mfolder4/newfolder4/d/e/e/p/newfile4b.txt",
        ])
    );
    assert_eq!(sc.names(&sc.b(deep)), s(&["newfile4.txt", "newfile4b.txt"]));
    assert_eq!(
        sc.phys(&format!("{deep}/newfile4b.txt")).unwrap(),
        format!("overwrite/{deep}/newfile4b.txt")
    );
    assert_eq!(sc.tree("m4"), s(&["mfolder4/", "mfolder4/mfile4.txt"]));
}

#[test]
fn s04_create_below_a_file_fails_and_creates_nothing() {
    let sc = Scene::new();
    let before = sc.all();
    assert_eq!(sc.probe("mfile.txt/sub.txt", true), P::Fail(libc::ENOTDIR));
    assert_eq!(sc.create("mfile.txt/sub.txt", "x"), Err(libc::ENOTDIR));
    assert_eq!(sc.mkdir("mfile.txt/a"), Err(libc::ENOTDIR));
    assert_eq!(sc.mkdir("basefile.txt/a"), Err(libc::ENOTDIR));
    assert_eq!(sc.mkdir("mfolder1/mfile1.txt/a"), Err(libc::ENOTDIR));
    assert_eq!(sc.all(), before);
    assert!(sc.journal.is_empty());
}

#[test]
fn s06_opening_existing_files_changes_nothing() {
    let sc = Scene::new();
    let before = sc.all();
    assert_eq!(
        sc.probe("mfile.txt", true),
        P::Exists("m2/mfile.txt".into())
    );
    assert_eq!(
        sc.probe("basefile.txt", true),
        P::Exists("base/basefile.txt".into())
    );
    assert_eq!(
        sc.probe("mfolder1/mfile1.txt", true),
        P::Exists("m1/mfolder1/mfile1.txt".into())
    );
    assert_eq!(
        sc.probe("linked.txt", true),
        P::Exists("single/linked.txt".into())
    );
    assert_eq!(sc.tree("overwrite"), Vec::<String>::new());
    assert_eq!(sc.all(), before);
    assert!(sc.journal.is_empty());
}

#[test]
fn s08_rename_temp_over_a_mod_file_keeps_it_in_the_mod() {
    let sc = Scene::new();
    assert_eq!(
        sc.create("mfolder2/tmp.txt", "saved\n"),
        Ok("overwrite/mfolder2/tmp.txt".into())
    );
    assert_eq!(
        sc.rename("mfolder2/tmp.txt", "mfolder2/mfile2.txt", 0),
        Change::Done(())
    );
    assert_eq!(
        sc.read("m2/mfolder2/mfile2.txt").as_deref(),
        Some("saved\n")
    );
    assert_eq!(
        sc.tree("m2"),
        s(&["mfile.txt", "mfolder2/", "mfolder2/mfile2.txt"])
    );
    // The temp is gone; only the directory made to hold it remains.
    assert_eq!(sc.tree("overwrite"), s(&["mfolder2/"]));
    assert!(!sc.exists("mfolder2/tmp.txt"));
    assert_eq!(
        sc.resolve(&sc.b("mfolder2/tmp.txt"), true).err(),
        Some(libc::ENOENT)
    );
    assert_eq!(
        sc.phys("mfolder2/mfile2.txt").unwrap(),
        "m2/mfolder2/mfile2.txt"
    );
    assert_eq!(sc.ls("mfolder2"), s(&[".", "..", "mfile2.txt"]));
}

#[test]
fn s09_delete_a_mod_file_then_create_it_again() {
    let sc = Scene::new();
    assert_eq!(sc.delete("mfile.txt", Some(false)), Change::Done(()));
    // Absent, though m1 still has a copy.
    assert_eq!(sc.read("m1/mfile.txt").as_deref(), Some("from m1\n"));
    assert_eq!(
        sc.resolve(&sc.b("mfile.txt"), true).err(),
        Some(libc::ENOENT)
    );
    assert!(!sc.exists("mfile.txt"));
    assert!(!sc.ls("").contains(&"mfile.txt".to_string()));
    assert_eq!(
        sc.create("mfile.txt", "again\n"),
        Ok("overwrite/mfile.txt".into())
    );
    assert_eq!(sc.phys("mfile.txt").unwrap(), "overwrite/mfile.txt");
    assert_eq!(sc.ls("").iter().filter(|n| *n == "mfile.txt").count(), 1);
    assert_eq!(sc.tree("m2"), s(&["mfolder2/", "mfolder2/mfile2.txt"]));
    assert_eq!(sc.tree("overwrite"), s(&["mfile.txt"]));
    assert_eq!(sc.read("overwrite/mfile.txt").as_deref(), Some("again\n"));
}

#[test]
fn s11_deleting_a_base_file_really_deletes_it() {
    let sc = Scene::new();
    // Only the real disk has it: the engine's own unlink does the job.
    assert_eq!(sc.delete("basefile.txt", Some(false)), Change::Outside);
    sc.fake.unlink(sc.b("basefile.txt").as_bytes()).unwrap();
    assert!(!sc.exists("basefile.txt"));
    assert!(!sc.ls("").contains(&"basefile.txt".to_string()));
    assert_eq!(sc.tree("base"), s(&["bfolder/", "bfolder/bfile.txt"]));
    assert!(sc.journal.is_empty());
}

#[test]
fn s12_renaming_a_base_file_moves_it_to_overwrite() {
    let sc = Scene::new();
    assert_eq!(
        sc.rename("basefile.txt", "renamed.txt", 0),
        Change::Done(())
    );
    assert_eq!(sc.tree("base"), s(&["bfolder/", "bfolder/bfile.txt"]));
    assert_eq!(sc.tree("overwrite"), s(&["renamed.txt"]));
    assert_eq!(sc.read("overwrite/renamed.txt").as_deref(), Some("base\n"));
    assert_eq!(sc.phys("renamed.txt").unwrap(), "overwrite/renamed.txt");
    assert!(!sc.exists("basefile.txt"));
    let ls = sc.ls("");
    assert!(ls.contains(&"renamed.txt".to_string()) && !ls.contains(&"basefile.txt".to_string()));
}

#[test]
fn s14_recursive_walk_is_the_virtual_tree() {
    let sc = Scene::new();
    assert_eq!(
        sc.walk(""),
        s(&[
            "basefile.txt",
            "bfolder",
            "bfolder/bfile.txt",
            "linked.txt",
            "mfile.txt",
            "mfolder1",
            "mfolder1/mfile1.txt",
            "mfolder2",
            "mfolder2/mfile2.txt",
            "mfolder3",
            "mfolder3/mfile3.txt",
            "mfolder4",
            "mfolder4/mfile4.txt",
        ])
    );
}

#[test]
fn s15_missing_virtual_path_stays_virtual_and_creates_in_overwrite() {
    let sc = Scene::new();
    let r = sc.resolve(&sc.b("mfolder1/missing.txt"), true).unwrap();
    assert_eq!(r.virt.as_bytes(), sc.b("mfolder1/missing.txt").as_bytes());
    assert_eq!(
        sc.create("mfolder1/missing.txt", "made\n"),
        Ok("overwrite/mfolder1/missing.txt".into())
    );
    assert_eq!(
        sc.tree("overwrite"),
        s(&["mfolder1/", "mfolder1/missing.txt"])
    );
    assert_eq!(
        sc.read("overwrite/mfolder1/missing.txt").as_deref(),
        Some("made\n")
    );
}

#[test]
fn s16_skipped_file_is_invisible_and_creates_in_overwrite() {
    let sc = Scene::new();
    assert!(!sc.exists("hidden.skip"));
    assert!(!sc.ls("").contains(&"hidden.skip".to_string()));
    assert_eq!(
        sc.create("hidden.skip", "new\n"),
        Ok("overwrite/hidden.skip".into())
    );
    assert_eq!(sc.phys("hidden.skip").unwrap(), "overwrite/hidden.skip");
    assert_eq!(sc.read("m1/hidden.skip").as_deref(), Some("skipped\n"));
    assert_eq!(sc.tree("overwrite"), s(&["hidden.skip"]));
}

// ------------------------------------------------------------------- errno

#[test]
fn enoent_delete_or_rename_of_a_missing_path() {
    let sc = Scene::new();
    // Not in any layer: the engine's own call answers, from the real disk.
    assert_eq!(sc.delete("nope", Some(false)), Change::Outside);
    assert_eq!(sc.fake.unlink(sc.b("nope").as_bytes()), Err(libc::ENOENT));
    // Deleted in the view (a lower copy exists): the view answers.
    assert_eq!(sc.delete("mfile.txt", Some(false)), Change::Done(()));
    assert_eq!(
        sc.delete("mfile.txt", Some(false)),
        Change::Fail(libc::ENOENT)
    );
    assert_eq!(sc.delete("mfile.txt", None), Change::Fail(libc::ENOENT));
    assert_eq!(
        sc.rename("mfile.txt", "x.txt", 0),
        Change::Fail(libc::ENOENT)
    );
    assert_eq!(sc.rename("nope", "x.txt", 0), Change::Fail(libc::ENOENT));
    assert_eq!(sc.mkdir("nope/sub"), Err(libc::ENOENT));
    assert_eq!(sc.tree("overwrite"), Vec::<String>::new());
    assert_eq!(sc.read("m1/mfile.txt").as_deref(), Some("from m1\n"));
}

#[test]
fn enotdir_rmdir_of_a_file_create_under_a_file_dir_over_file() {
    let sc = Scene::new();
    let before = sc.all();
    assert_eq!(
        sc.delete("mfile.txt", Some(true)),
        Change::Fail(libc::ENOTDIR)
    );
    assert_eq!(sc.probe("mfile.txt/x", false), P::Fail(libc::ENOTDIR));
    assert_eq!(
        sc.rename("mfolder3", "mfile.txt", 0),
        Change::Fail(libc::ENOTDIR)
    );
    assert_eq!(sc.all(), before);
    assert!(sc.journal.is_empty());
}

#[test]
fn eisdir_unlink_of_a_dir_and_file_over_dir() {
    let sc = Scene::new();
    let before = sc.all();
    assert_eq!(
        sc.delete("mfolder3", Some(false)),
        Change::Fail(libc::EISDIR)
    );
    assert_eq!(sc.delete("bfolder", Some(false)), Change::Outside);
    assert_eq!(
        sc.rename("mfile.txt", "mfolder3", 0),
        Change::Fail(libc::EISDIR)
    );
    assert_eq!(sc.all(), before);
    assert!(sc.journal.is_empty());
}

#[test]
fn enotempty_rmdir_of_a_merged_dir_with_empty_top_layer() {
    // overwrite/mfolder1 wins but is empty; m1's mfile1.txt shows below it.
    let sc = Scene::with(|r| fs::create_dir_all(r.join("overwrite/mfolder1")).unwrap());
    assert_eq!(sc.phys("mfolder1").unwrap(), "overwrite/mfolder1");
    assert_eq!(
        sc.delete("mfolder1", Some(true)),
        Change::Fail(libc::ENOTEMPTY)
    );
    assert_eq!(sc.delete("mfolder1", None), Change::Fail(libc::ENOTEMPTY));
    assert!(sc.fake.exists(&sc.p("overwrite/mfolder1")));
    // Once the view is empty, rmdir works and the path stays absent.
    assert_eq!(
        sc.delete("mfolder1/mfile1.txt", Some(false)),
        Change::Done(())
    );
    assert_eq!(sc.ls("mfolder1"), s(&[".", ".."]));
    assert_eq!(sc.delete("mfolder1", Some(true)), Change::Done(()));
    assert!(!sc.exists("mfolder1"));
    assert_eq!(
        sc.resolve(&sc.b("mfolder1/mfile1.txt"), true).err(),
        Some(libc::ENOENT)
    );
    assert!(!sc.ls("").contains(&"mfolder1".to_string()));
    assert_eq!(sc.tree("overwrite"), Vec::<String>::new());
}

#[test]
fn enotempty_rename_dir_over_a_non_empty_dir() {
    let sc = Scene::new();
    assert_eq!(sc.mkdir("newdir"), Ok("overwrite/newdir".into()));
    let before = sc.all();
    assert_eq!(
        sc.rename("newdir", "mfolder2", 0),
        Change::Fail(libc::ENOTEMPTY)
    );
    assert_eq!(
        sc.rename("mfolder3", "mfolder2", 0),
        Change::Fail(libc::ENOTEMPTY)
    );
    assert_eq!(sc.all(), before);
}

#[test]
fn eexist_noreplace_and_dot_names() {
    let sc = Scene::new();
    let before = sc.all();
    assert_eq!(
        sc.rename(
            "mfolder1/mfile1.txt",
            "mfolder2/mfile2.txt",
            libc::RENAME_NOREPLACE
        ),
        Change::Fail(libc::EEXIST)
    );
    assert_eq!(sc.probe("mfolder1/.", false), P::Fail(libc::EEXIST));
    assert_eq!(sc.probe("mfolder1/..", false), P::Fail(libc::EEXIST));
    assert_eq!(sc.mkdir("mfolder1"), Err(libc::EEXIST));
    assert_eq!(sc.create("mfile.txt", "x"), Err(libc::EEXIST));
    assert_eq!(sc.all(), before);
    assert!(sc.journal.is_empty());
    // A free target: the rename happens, to where creates go.
    assert_eq!(
        sc.rename(
            "mfolder1/mfile1.txt",
            "mfolder1/fresh.txt",
            libc::RENAME_NOREPLACE
        ),
        Change::Done(())
    );
    assert_eq!(
        sc.read("overwrite/mfolder1/fresh.txt").as_deref(),
        Some("m1\n")
    );
    assert!(!sc.fake.exists(&sc.p("m1/mfolder1/mfile1.txt")));
}

#[test]
fn exdev_renaming_a_directory_merged_from_several_layers() {
    let sc = Scene::with(|r| write(r, "overwrite/mfolder1/ow.txt", "ow\n"));
    let before = sc.all();
    assert_eq!(sc.ls("mfolder1"), s(&[".", "..", "mfile1.txt", "ow.txt"]));
    assert_eq!(
        sc.rename("mfolder1", "moved1", 0),
        Change::Fail(libc::EXDEV)
    );
    // The parent made for the target (overwrite/mfolder2) is removed again.
    assert_eq!(
        sc.rename("mfolder1", "mfolder2/moved1", 0),
        Change::Fail(libc::EXDEV)
    );
    assert_eq!(sc.all(), before);
    assert!(sc.journal_is_inert());
    // A directory that lives in one physical place renames as usual.
    assert_eq!(sc.mkdir("newdir"), Ok("overwrite/newdir".into()));
    assert_eq!(
        sc.create("newdir/f.txt", "f"),
        Ok("overwrite/newdir/f.txt".into())
    );
    assert_eq!(sc.rename("newdir", "newdir2", 0), Change::Done(()));
    assert_eq!(sc.phys("newdir2").unwrap(), "overwrite/newdir2");
    assert_eq!(sc.phys("newdir2/f.txt").unwrap(), "overwrite/newdir2/f.txt");
    assert!(!sc.exists("newdir"));
    assert!(!sc.exists("newdir/f.txt"));
}

#[test]
fn renaming_a_directory_one_mod_provides_moves_it_where_creates_go() {
    let sc = Scene::with(|r| write(r, "m4/mfolder4/sub/deep.txt", "deep\n"));
    assert_eq!(sc.rename("mfolder4", "moved4", 0), Change::Done(()));
    assert_eq!(
        sc.tree("overwrite"),
        s(&[
            "moved4/",
            "moved4/mfile4.txt",
            "moved4/sub/",
            "moved4/sub/deep.txt"
        ])
    );
    assert_eq!(sc.names(&sc.b("moved4")), s(&["mfile4.txt", "sub"]));
    assert_eq!(
        sc.read("overwrite/moved4/sub/deep.txt").as_deref(),
        Some("deep\n")
    );
    assert!(!sc.exists("mfolder4"));
    assert!(!sc.exists("mfolder4/mfile4.txt"));
    // It now lives in overwrite alone: deletes and creates inside it keep
    // it one physical place.
    assert_eq!(
        sc.delete("moved4/mfile4.txt", Some(false)),
        Change::Done(())
    );
    assert_eq!(sc.mkdir("moved4/new"), Ok("overwrite/moved4/new".into()));
    assert_eq!(sc.rename("moved4", "again", 0), Change::Done(()));
}

#[test]
fn renaming_a_mod_directory_that_the_real_disk_also_has_is_exdev() {
    // base/bfolder exists for real; a mod adding to it makes it merged.
    let sc = Scene::with(|r| write(r, "m1/bfolder/m1.txt", "m1\n"));
    assert_eq!(sc.rename("bfolder", "b2", 0), Change::Fail(libc::EXDEV));
    // A mod directory with a same-named lower copy in another mod that adds
    // a file is merged too.
    let sc = Scene::with(|r| {
        write(r, "m1/shared/a.txt", "a\n");
        write(r, "m2/shared/b.txt", "b\n");
    });
    assert_eq!(sc.rename("shared", "s2", 0), Change::Fail(libc::EXDEV));
}

#[test]
fn rename_onto_itself_is_a_no_op() {
    let sc = Scene::new();
    let before = sc.all();
    assert_eq!(sc.rename("mfile.txt", "mfile.txt", 0), Change::Done(()));
    assert_eq!(sc.rename("mfolder1", "mfolder1", 0), Change::Done(()));
    assert_eq!(sc.all(), before);
    assert!(sc.journal.is_empty());
    assert_eq!(sc.phys("mfile.txt").unwrap(), "m2/mfile.txt");
}

#[test]
fn rename_exchange() {
    let sc = Scene::new();
    let before = sc.all();
    // To a missing target: ENOENT, and the parent made for it is removed.
    assert_eq!(
        sc.rename(
            "mfolder3/mfile3.txt",
            "mfolder3/none.txt",
            libc::RENAME_EXCHANGE
        ),
        Change::Fail(libc::ENOENT)
    );
    assert_eq!(sc.all(), before);
    assert_eq!(
        sc.rename(
            "mfolder3/mfile3.txt",
            "mfolder4/mfile4.txt",
            libc::RENAME_EXCHANGE
        ),
        Change::Done(())
    );
    assert_eq!(sc.read("m3/mfolder3/mfile3.txt").as_deref(), Some("m4\n"));
    assert_eq!(sc.read("m4/mfolder4/mfile4.txt").as_deref(), Some("m3\n"));
    assert!(sc.journal.is_empty());
}

// ------------------------------------------------------- create targets

#[test]
fn innermost_create_target_wins() {
    let sc = Scene::custom(
        |r| {
            write(r, "m1/sub/a.txt", "a\n");
            write(r, "m1/sub/deeper/b.txt", "b\n");
            fs::create_dir_all(r.join("base")).unwrap();
            fs::create_dir_all(r.join("ow")).unwrap();
            fs::create_dir_all(r.join("inner")).unwrap();
        },
        |r, m| {
            m.link_directory(&r.join("m1"), &r.join("base"), REC)
                .unwrap();
            // The inner target comes first: depth decides, not order.
            m.link_directory(&r.join("inner"), &r.join("base/sub"), CT)
                .unwrap();
            m.link_directory(&r.join("ow"), &r.join("base"), CT)
                .unwrap();
        },
    );
    assert_eq!(sc.create("top.txt", "t"), Ok("ow/top.txt".into()));
    assert_eq!(sc.create("sub/new.txt", "n"), Ok("inner/new.txt".into()));
    assert_eq!(
        sc.create("sub/deeper/new.txt", "n"),
        Ok("inner/deeper/new.txt".into())
    );
    assert_eq!(sc.tree("ow"), s(&["top.txt"]));
    assert_eq!(
        sc.tree("inner"),
        s(&["deeper/", "deeper/new.txt", "new.txt"])
    );
    assert_eq!(sc.ls("sub"), s(&[".", "..", "a.txt", "deeper", "new.txt"]));
}

#[test]
fn equal_create_target_destinations_later_rule_wins() {
    for (first, second) in [("ow1", "ow2"), ("ow2", "ow1")] {
        let sc = Scene::custom(
            |r| {
                write(r, "m1/sub/a.txt", "a\n");
                for d in ["base", "ow1", "ow2"] {
                    fs::create_dir_all(r.join(d)).unwrap();
                }
            },
            |r, m| {
                m.link_directory(&r.join("m1"), &r.join("base"), REC)
                    .unwrap();
                m.link_directory(&r.join(first), &r.join("base"), CT)
                    .unwrap();
                m.link_directory(&r.join(second), &r.join("base"), CT)
                    .unwrap();
            },
        );
        assert_eq!(sc.create("new.txt", "n"), Ok(format!("{second}/new.txt")));
        assert_eq!(
            sc.create("sub/new.txt", "n"),
            Ok(format!("{second}/sub/new.txt"))
        );
        assert_eq!(sc.tree(first), Vec::<String>::new());
    }
}

#[test]
fn without_a_create_target_new_entries_go_to_the_parents_layer() {
    let sc = Scene::custom(
        |r| {
            write(r, "m1/sub/a.txt", "a\n");
            write(r, "m2/sub/b.txt", "b\n");
            write(r, "base/own/c.txt", "c\n");
            fs::create_dir_all(r.join("elsewhere")).unwrap();
        },
        |r, m| {
            m.link_directory(&r.join("m1"), &r.join("base"), REC)
                .unwrap();
            m.link_directory(&r.join("m2"), &r.join("base"), REC)
                .unwrap();
        },
    );
    // base/sub resolves to m2/sub (the later layer wins).
    assert_eq!(sc.create("sub/new.txt", "n"), Ok("m2/sub/new.txt".into()));
    assert_eq!(sc.phys("sub/new.txt").unwrap(), "m2/sub/new.txt");
    // A directory only the real disk has: the original call does it.
    assert_eq!(sc.probe("own/new.txt", true), P::Outside);
    // Outside every destination: untouched.
    assert_eq!(
        sc.show(
            &sc.v()
                .probe(sc.p("elsewhere/new.txt").as_bytes(), true, FileKind::File)
        ),
        P::Outside
    );
}

// ------------------------------------------------------ symlinked prefixes

fn alias_scene() -> (Scene, String) {
    let sc = Scene::with(|r| symlink(r, "prefix/z:", "/"));
    let alias = format!("{}/prefix/z:", sc.root);
    (sc, alias)
}

#[test]
fn symlinked_prefix_resolves_like_the_destination() {
    let (sc, z) = alias_scene();
    let r = sc
        .resolve(&format!("{z}{}", sc.b("mfile.txt")), true)
        .unwrap();
    assert_eq!(sc.rel(r.phys.as_bytes()), "m2/mfile.txt");
    assert_eq!(r.virt.as_bytes(), sc.b("mfile.txt").as_bytes());
    assert!(r.res.redirected && r.res.node.is_some());
    let r = sc
        .resolve(&format!("{z}{}", sc.b("mfolder1")), true)
        .unwrap();
    let l = sc.v().list(r.res.node.unwrap(), r.virt.as_bytes(), 0);
    let names: Vec<&[u8]> = l.names().collect();
    assert_eq!(names, [&b"."[..], b"..", b"mfile1.txt"]);
    // Files of the real directory too.
    let r = sc
        .resolve(&format!("{z}{}", sc.b("basefile.txt")), true)
        .unwrap();
    assert_eq!(sc.rel(r.phys.as_bytes()), "base/basefile.txt");
    let p = sc.v().probe(
        format!("{z}{}", sc.b("mfolder2/mfile2.txt")).as_bytes(),
        true,
        FileKind::File,
    );
    assert_eq!(sc.show(&p), P::Exists("m2/mfolder2/mfile2.txt".into()));
}

#[test]
fn symlinked_prefix_creates_in_the_create_target() {
    let (sc, z) = alias_scene();
    let virt = format!("{z}{}", sc.b("mfolder1/new.txt"));
    assert_eq!(
        sc.create_at(&virt, "n"),
        Ok("overwrite/mfolder1/new.txt".into())
    );
    assert_m1_untouched(&sc);
}

#[test]
fn dangling_link_in_a_layer_creates_what_it_names() {
    let sc = Scene::with(|r| {
        fs::create_dir_all(r.join("elsewhere")).unwrap();
        symlink(r, "m1/out", r.join("elsewhere/new.txt").to_str().unwrap());
    });
    assert_eq!(sc.create("out", "n"), Ok("elsewhere/new.txt".into()));
}

#[test]
fn dangling_link_in_a_layer_inside_the_view_creates_in_overwrite() {
    let sc = Scene::with(|r| symlink(r, "m1/later", "mfolder2/made.txt"));
    assert_eq!(
        sc.create("later", "n"),
        Ok("overwrite/mfolder2/made.txt".into())
    );
    assert_eq!(sc.phys("later").unwrap(), "overwrite/mfolder2/made.txt");
}

#[test]
fn a_directory_above_a_destination_is_outside_the_view() {
    let sc = Scene::new();
    let log = sc.p("game.log");
    // A hooked process creates and deletes a log beside the destination.
    match sc.v().probe(log.as_bytes(), true, FileKind::File) {
        Probe::New(place) => {
            sc.fake.add_file(&log, "1");
            place.commit(&sc.v(), FileKind::File);
        }
        Probe::Outside => sc.fake.add_file(&log, "1"),
        _ => panic!("unexpected probe"),
    }
    match sc.v().delete(log.as_bytes(), Some(false)) {
        Change::Done(()) => {}
        Change::Outside => sc.fake.unlink(log.as_bytes()).unwrap(),
        Change::Fail(e) => panic!("delete: errno {e}"),
    }
    // Another process (outside the instance) writes it again.
    sc.fake.add_file(&log, "2");
    let r = sc.resolve(&log, true);
    assert_eq!(r.map(|r| sc.rel(r.phys.as_bytes())), Ok("game.log".into()));
    assert_eq!(
        sc.show(
            &sc.v()
                .probe(sc.p("other.log").as_bytes(), true, FileKind::File)
        ),
        P::Outside
    );
}

// ------------------------------------------------------------------ ELOOP

#[test]
fn symlink_loop_in_a_layer_is_eloop() {
    let sc = Scene::with(|r| {
        symlink(r, "m3/loop1", "loop2");
        symlink(r, "m3/loop2", "loop1");
        symlink(r, "m3/mfolder3/self", "self");
    });
    assert_eq!(sc.resolve(&sc.b("loop1"), true).err(), Some(libc::ELOOP));
    assert_eq!(sc.resolve(&sc.b("loop1/x"), false).err(), Some(libc::ELOOP));
    assert_eq!(
        sc.resolve(&sc.b("mfolder3/self"), true).err(),
        Some(libc::ELOOP)
    );
    // Not followed: the link itself.
    assert_eq!(
        sc.resolve(&sc.b("loop1"), false)
            .map(|r| sc.rel(r.phys.as_bytes())),
        Ok("m3/loop1".into())
    );
    assert_eq!(sc.probe("loop1", true), P::Fail(libc::ELOOP));
    assert_eq!(sc.probe("loop1", false), P::Exists("m3/loop1".into()));
}

// ---------------------------------------------------------------- journal

#[test]
fn journal_whiteouts_and_creations_drive_resolve_and_list() {
    let sc = Scene::new();
    assert_eq!(
        sc.delete("mfolder1/mfile1.txt", Some(false)),
        Change::Done(())
    );
    assert_eq!(
        sc.create("mfolder1/new.txt", "n"),
        Ok("overwrite/mfolder1/new.txt".into())
    );
    assert_eq!(
        sc.resolve(&sc.b("mfolder1/mfile1.txt"), true).err(),
        Some(libc::ENOENT)
    );
    let r = sc.resolve(&sc.b("mfolder1/new.txt"), true).unwrap();
    assert!(r.res.from_journal && r.res.redirected && r.res.node.is_none());
    assert_eq!(sc.rel(r.phys.as_bytes()), "overwrite/mfolder1/new.txt");
    assert_eq!(sc.ls("mfolder1"), s(&[".", "..", "new.txt"]));
    assert_eq!(
        sc.records(),
        vec![
            (
                "base/mfolder1/mfile1.txt".to_string(),
                "whiteout".to_string()
            ),
            (
                "base/mfolder1/new.txt".to_string(),
                format!("overwrite/mfolder1/new.txt ({KIND_FILE})")
            ),
        ]
    );
    // Another process maps the same journal and sees the same view.
    let j2 = Journal::open(&sc.journal_path).unwrap();
    let v2 = View {
        snap: &sc.snap,
        journal: Some(&j2),
        fs: &sc.fake,
    };
    assert_eq!(
        v2.resolve_boxed(sc.b("mfolder1/mfile1.txt").as_bytes(), true)
            .err(),
        Some(libc::ENOENT)
    );
    let r = v2
        .resolve_boxed(sc.b("mfolder1/new.txt").as_bytes(), true)
        .unwrap();
    assert!(r.res.from_journal);
    // A directory made by a process is recorded as one.
    assert_eq!(
        sc.mkdir("mfolder3/made"),
        Ok("overwrite/mfolder3/made".into())
    );
    assert!(sc.records().contains(&(
        "base/mfolder3/made".to_string(),
        format!("overwrite/mfolder3/made ({KIND_DIR})")
    )));
    // Without the journal (a fresh mapping), the disk as it is now shows.
    let fresh = View {
        snap: &sc.snap,
        journal: None,
        fs: &sc.fake,
    };
    let r = fresh
        .resolve_boxed(sc.b("mfolder1/new.txt").as_bytes(), true)
        .unwrap();
    assert!(!r.res.from_journal);
}

#[test]
fn moving_files_into_and_out_of_the_view() {
    let sc = Scene::with(|r| write(r, "elsewhere/in.txt", "in\n"));
    let (inside, outside) = (sc.p("elsewhere/in.txt"), sc.p("elsewhere/out.txt"));
    // In: lands where a new file would go.
    assert_eq!(
        sc.v()
            .rename(inside.as_bytes(), sc.b("mfolder3/in.txt").as_bytes(), 0),
        Change::Done(())
    );
    assert_eq!(sc.tree("overwrite"), s(&["mfolder3/", "mfolder3/in.txt"]));
    assert_eq!(
        sc.phys("mfolder3/in.txt").unwrap(),
        "overwrite/mfolder3/in.txt"
    );
    // Out: the path as given; the view forgets it.
    assert_eq!(
        sc.v()
            .rename(sc.b("mfolder3/in.txt").as_bytes(), outside.as_bytes(), 0),
        Change::Done(())
    );
    assert_eq!(sc.tree("elsewhere"), s(&["out.txt"]));
    assert_eq!(sc.tree("overwrite"), s(&["mfolder3/"]));
    assert!(!sc.exists("mfolder3/in.txt"));
    assert_eq!(sc.ls("mfolder3"), s(&[".", "..", "mfile3.txt"]));
    // A mod file moved out: gone from the mod and from the view.
    assert_eq!(
        sc.v().rename(
            sc.b("mfolder3/mfile3.txt").as_bytes(),
            outside.as_bytes(),
            0
        ),
        Change::Done(())
    );
    assert_eq!(sc.read("elsewhere/out.txt").as_deref(), Some("m3\n"));
    assert_eq!(sc.tree("m3"), s(&["mfolder3/"]));
    assert_eq!(sc.ls("mfolder3"), s(&[".", ".."]));
}

#[test]
fn rmdir_of_a_real_dir_with_created_entries_is_enotempty() {
    let sc = Scene::new();
    assert_eq!(
        sc.create("bfolder/new.txt", "n"),
        Ok("overwrite/bfolder/new.txt".into())
    );
    assert_eq!(sc.delete("bfolder/bfile.txt", Some(false)), Change::Outside);
    sc.fake
        .unlink(sc.b("bfolder/bfile.txt").as_bytes())
        .unwrap();
    assert!(sc.exists("bfolder/new.txt"));
    assert_eq!(
        sc.delete("bfolder", Some(true)),
        Change::Fail(libc::ENOTEMPTY)
    );
}

// ------------------------------------------------------------------- exec

#[test]
fn shebang_parsing() {
    let sh = |h: &[u8]| {
        exec::shebang(h).map(|(i, a)| {
            (
                String::from_utf8(i).unwrap(),
                a.map(|a| String::from_utf8(a).unwrap()),
            )
        })
    };
    assert_eq!(sh(b"#!/bin/sh\necho hi\n"), Some(("/bin/sh".into(), None)));
    assert_eq!(
        sh(b"#!/bin/sh -e\n"),
        Some(("/bin/sh".into(), Some("-e".into())))
    );
    assert_eq!(
        sh(b"#!  /usr/bin/env   python3 -u  \n"),
        Some(("/usr/bin/env".into(), Some("python3 -u".into())))
    );
    assert_eq!(sh(b"#!/bin/sh"), Some(("/bin/sh".into(), None)));
    assert_eq!(
        sh(b"#!/bin/sh\t-x\n"),
        Some(("/bin/sh".into(), Some("-x".into())))
    );
    assert_eq!(sh(b"#!\n/bin/sh"), None);
    assert_eq!(sh(b"#!   \n"), None);
    assert_eq!(sh(b"\x7fELF\x02\x01"), None);
    assert_eq!(sh(b""), None);
}

#[test]
fn search_path_like_execvp() {
    let tried = std::cell::RefCell::new(Vec::new());
    let attempt = |errs: &'static [(&'static str, i32)]| {
        let tried = &tried;
        move |c: &[u8]| -> Result<String, i32> {
            let c = String::from_utf8(c.to_vec()).unwrap();
            tried.borrow_mut().push(c.clone());
            match errs.iter().find(|(p, _)| *p == c) {
                Some((_, 0)) => Ok(c),
                Some((_, e)) => Err(*e),
                None => Err(libc::ENOENT),
            }
        }
    };
    // EACCES is remembered while the search goes on.
    assert_eq!(
        exec::search_path(b"prog", b"/a:/b:/c", attempt(&[("/a/prog", libc::EACCES)])),
        Err(libc::EACCES)
    );
    assert_eq!(*tried.borrow(), s(&["/a/prog", "/b/prog", "/c/prog"]));
    tried.borrow_mut().clear();
    assert_eq!(
        exec::search_path(b"prog", b"/a:/b", attempt(&[])),
        Err(libc::ENOENT)
    );
    assert_eq!(
        exec::search_path(b"prog", b"/a:/b", attempt(&[("/a/prog", libc::ENOTDIR)])),
        Err(libc::ENOENT)
    );
    tried.borrow_mut().clear();
    // The first success wins, after an EACCES.
    assert_eq!(
        exec::search_path(
            b"prog",
            b"/a::/c",
            attempt(&[("/a/prog", libc::EACCES), ("./prog", 0)])
        ),
        Ok("./prog".into())
    );
    assert_eq!(*tried.borrow(), s(&["/a/prog", "./prog"]));
    tried.borrow_mut().clear();
    // Other errors stop the search.
    assert_eq!(
        exec::search_path(
            b"prog",
            b"/a:/b",
            attempt(&[("/a/prog", libc::ENOEXEC), ("/b/prog", 0)])
        ),
        Err(libc::ENOEXEC)
    );
    assert_eq!(*tried.borrow(), s(&["/a/prog"]));
}

/// Where a program path leads in the scene's view.
fn locate(sc: &Scene, p: &[u8]) -> Result<Located, i32> {
    let r = sc.v().resolve_boxed(p, true)?;
    if r.res.in_view() && sc.fake.lstat(r.phys.as_bytes()).is_ok() {
        Ok(Located::Physical {
            phys: r.phys.as_bytes().to_vec(),
            virt: r.virt.as_bytes().to_vec(),
        })
    } else {
        Ok(Located::AsGiven)
    }
}

fn exec_scene() -> Scene {
    Scene::custom(
        |r| {
            reference_layout(r);
            write(r, "m1/bin/tool", "\x7fELF tool");
            write(r, "m1/bin/game", "\x7fELF game");
            write(r, "m1/run.sh", "#!/bin/sh -e\necho hi\n");
            write(r, "m2/tools/interp", "\x7fELF interp");
        },
        |r, m| {
            reference_mapping(r, m);
            m.blacklist.push("indexed-out".into());
        },
    )
}

fn plan(sc: &Scene, path: &str, argv: &[&str], rules: &ExecRules) -> exec::ExecPlan {
    let located = locate(sc, path.as_bytes()).unwrap();
    let argv = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    exec::plan(
        path.as_bytes(),
        located,
        argv,
        rules,
        &|p| sc.snap.is_blacklisted(p),
        &mut |p| locate(sc, p),
        &mut |p| {
            sc.fake
                .read(std::str::from_utf8(p).unwrap())
                .map(|s| s.into_bytes())
        },
    )
    .unwrap()
}

fn strs(v: &[Vec<u8>]) -> Vec<String> {
    v.iter()
        .map(|a| String::from_utf8(a.clone()).unwrap())
        .collect()
}

#[test]
fn exec_plan_blacklisted_program_starts_outside_as_given() {
    let sc = exec_scene();
    let rules = ExecRules {
        blacklist: vec![b"tool".to_vec()],
        force_loads: vec![],
        strict: false,
    };
    let tool = sc.b("bin/tool");
    let p = plan(&sc, &tool, &["tool", "-v"], &rules);
    assert!(!p.join);
    assert_eq!(p.program, tool.as_bytes());
    assert_eq!(strs(&p.argv), s(&["tool", "-v"]));
    assert!(p.extra_libs.is_empty());
    // The index's own blacklist (from the mapping) counts too.
    let p = plan(
        &sc,
        "/usr/bin/indexed-out",
        &["indexed-out"],
        &ExecRules::default(),
    );
    assert!(!p.join);
    assert_eq!(p.program, b"/usr/bin/indexed-out");
    // Not blacklisted: the physical file, in the view.
    let p = plan(&sc, &tool, &["tool"], &ExecRules::default());
    assert!(p.join);
    assert_eq!(sc.rel(&p.program), "m1/bin/tool");
}

#[test]
fn exec_plan_script_in_the_view_runs_with_its_virtual_path() {
    let sc = exec_scene();
    let script = sc.b("run.sh");
    let p = plan(
        &sc,
        &script,
        &["run.sh", "one", "two"],
        &ExecRules::default(),
    );
    assert!(p.join);
    assert_eq!(p.program, b"/bin/sh");
    assert_eq!(
        strs(&p.argv),
        vec![
            "/bin/sh".to_string(),
            "-e".into(),
            script.clone(),
            "one".into(),
            "two".into()
        ]
    );
    // An interpreter in the view starts from its physical file.
    assert_eq!(
        sc.create("run2.sh", &format!("#!{}\nbody\n", sc.b("tools/interp"))),
        Ok("overwrite/run2.sh".into())
    );
    let p = plan(&sc, &sc.b("run2.sh"), &["run2.sh"], &ExecRules::default());
    assert_eq!(sc.rel(&p.program), "m2/tools/interp");
    assert_eq!(strs(&p.argv), vec![sc.b("tools/interp"), sc.b("run2.sh")]);
}

#[test]
fn exec_plan_forced_libraries() {
    let sc = exec_scene();
    let rules = ExecRules {
        blacklist: vec![],
        force_loads: vec![
            (b"game".to_vec(), b"/opt/fix.so".to_vec()),
            (b"game".to_vec(), b"/opt/fps.so".to_vec()),
            (b"other".to_vec(), b"/opt/no.so".to_vec()),
        ],
        strict: false,
    };
    assert_eq!(ExecRules::decode(&rules.encode()), rules);
    let p = plan(&sc, &sc.b("bin/game"), &["game"], &rules);
    assert!(p.join);
    assert_eq!(sc.rel(&p.program), "m1/bin/game");
    assert_eq!(strs(&p.extra_libs), s(&["/opt/fix.so", "/opt/fps.so"]));
    let p = plan(&sc, &sc.b("bin/tool"), &["tool"], &rules);
    assert!(p.extra_libs.is_empty());
}

// ------------------------------------------------------------------ faults

#[test]
fn failed_parent_mkdir_fails_the_probe_and_leaves_nothing() {
    let sc = Scene::with(|r| write(r, "m1/mfolder1/sub/f.txt", "f\n"));
    let before = sc.all();
    // The second parent fails: the first, already made, is removed.
    sc.fake
        .fail_next_call("mkdir", &sc.p("overwrite/mfolder1/sub"), libc::EACCES);
    assert_eq!(
        sc.probe("mfolder1/sub/new.txt", true),
        P::Fail(libc::EACCES)
    );
    assert_eq!(sc.all(), before);
    sc.fake
        .fail_next_call("mkdir", &sc.p("overwrite/mfolder1"), libc::ENOSPC);
    assert_eq!(sc.create("mfolder1/sub/new.txt", "n"), Err(libc::ENOSPC));
    assert_eq!(sc.all(), before);
    assert!(sc.journal.is_empty());
}

#[test]
fn failed_create_aborts_the_place() {
    let sc = Scene::with(|r| write(r, "m1/mfolder1/sub/f.txt", "f\n"));
    let before = sc.all();
    sc.fake.fail_next_call(
        "mkdir",
        &sc.p("overwrite/mfolder1/sub/newdir"),
        libc::EDQUOT,
    );
    assert_eq!(sc.mkdir("mfolder1/sub/newdir"), Err(libc::EDQUOT));
    assert_eq!(sc.all(), before);
    assert!(sc.journal_is_inert());
    assert!(!sc.exists("mfolder1/sub/newdir"));
}

#[test]
fn failed_rename_removes_the_parents_made_for_it() {
    let sc = Scene::new();
    let before = sc.all();
    let view = sc.walk("");
    sc.fake
        .fail_next_call("rename", &sc.p("m1/mfolder1/mfile1.txt"), libc::EIO);
    assert_eq!(
        sc.rename("mfolder1/mfile1.txt", "mfolder2/moved.txt", 0),
        Change::Fail(libc::EIO)
    );
    assert_eq!(sc.all(), before);
    assert_eq!(sc.walk(""), view);
    assert!(sc.journal_is_inert());
    assert_eq!(
        sc.phys("mfolder1/mfile1.txt").unwrap(),
        "m1/mfolder1/mfile1.txt"
    );
}

#[test]
fn rename_across_file_systems_copies_then_removes() {
    let sc = Scene::new();
    sc.fake
        .fail_next_call("rename", &sc.p("m1/mfolder1/mfile1.txt"), libc::EXDEV);
    assert_eq!(
        sc.rename("mfolder1/mfile1.txt", "mfolder1/moved.txt", 0),
        Change::Done(())
    );
    assert_eq!(
        sc.tree("overwrite"),
        s(&["mfolder1/", "mfolder1/moved.txt"])
    );
    assert_eq!(
        sc.read("overwrite/mfolder1/moved.txt").as_deref(),
        Some("m1\n")
    );
    assert_eq!(sc.tree("m1"), s(&["hidden.skip", "mfile.txt", "mfolder1/"]));
    assert_eq!(
        sc.phys("mfolder1/moved.txt").unwrap(),
        "overwrite/mfolder1/moved.txt"
    );
    assert!(!sc.exists("mfolder1/mfile1.txt"));
}

#[test]
fn a_change_the_journal_has_no_room_for_fails_with_enospc_before_the_disk_changes() {
    let sc = Scene::new();
    // The journal may not grow (a full runtime file system): fill it.
    sc.journal.set_size_limit(sc.journal.file_len());
    let mut i = 0;
    while sc.journal.reserve(1).is_ok() {
        let v = format!("{}/fill/f{i}", sc.root);
        sc.journal.put(v.as_bytes(), Entry::Whiteout).unwrap();
        i += 1;
    }
    let before = sc.all();
    assert_eq!(sc.create("mfolder2/new.txt", "x\n"), Err(libc::ENOSPC));
    assert_eq!(sc.mkdir("newdir"), Err(libc::ENOSPC));
    assert_eq!(
        sc.delete("mfile.txt", Some(false)),
        Change::Fail(libc::ENOSPC)
    );
    assert_eq!(
        sc.rename("mfolder2/mfile2.txt", "mfolder2/moved.txt", 0),
        Change::Fail(libc::ENOSPC)
    );
    // Nothing changed on disk, not even a parent directory.
    assert_eq!(sc.all(), before);
    assert_eq!(sc.journal.len(), i);
}

// ------------------------------------------------------- monitored sources

#[test]
fn source_changes_follow_the_disk_and_keep_what_the_view_deleted() {
    let sc = Scene::new();
    // The monitor's candidates for a path: each mod's copy (highest first),
    // then the real path.
    let cands = |rel: &str| -> Vec<Vec<u8>> {
        ["overwrite", "m4", "m3", "m2", "m1", "base"]
            .iter()
            .map(|l| sc.p(&format!("{l}/{rel}")).into_bytes())
            .collect()
    };
    let changed = |rel: &str, appeared: bool| {
        sc.v()
            .source_changed(sc.b(rel).as_bytes(), &cands(rel), appeared)
            .unwrap()
    };
    // A file added to a mod appears; nothing on disk changes.
    let before = sc.all();
    sc.fake.add_file(&sc.p("m3/added.txt"), "added\n");
    changed("added.txt", true);
    assert_eq!(sc.phys("added.txt").unwrap(), "m3/added.txt");
    assert!(sc.ls("").contains(&"added.txt".to_string()));
    // m2's copy wins over m1's; removing it outside shows m1's.
    assert_eq!(sc.phys("mfile.txt").unwrap(), "m2/mfile.txt");
    sc.fake.unlink(sc.p("m2/mfile.txt").as_bytes()).unwrap();
    changed("mfile.txt", false);
    assert_eq!(sc.phys("mfile.txt").unwrap(), "m1/mfile.txt");
    // Repeating an event changes nothing.
    let n = sc.journal.len();
    changed("mfile.txt", false);
    changed("added.txt", true);
    assert_eq!(sc.journal.len(), n);
    // Deleted in the view: the lower copy's source vanishing keeps it
    // deleted; a new file appearing there shows.
    assert_eq!(sc.delete("mfile.txt", Some(false)), Change::Done(()));
    sc.fake.add_file(&sc.p("m1/mfile.txt"), "again\n");
    changed("mfile.txt", false);
    assert!(!sc.exists("mfile.txt"));
    changed("mfile.txt", true);
    assert_eq!(sc.phys("mfile.txt").unwrap(), "m1/mfile.txt");
    // A file removed from its only source leaves the listing.
    sc.fake
        .unlink(sc.p("m3/mfolder3/mfile3.txt").as_bytes())
        .unwrap();
    changed("mfolder3/mfile3.txt", false);
    assert_eq!(sc.ls("mfolder3"), s(&[".", ".."]));
    // A new directory tree shows with its contents.
    sc.fake.add_dir(&sc.p("m4/newdir"));
    sc.fake.add_file(&sc.p("m4/newdir/f.txt"), "f\n");
    changed("newdir", true);
    assert_eq!(sc.phys("newdir/f.txt").unwrap(), "m4/newdir/f.txt");
    // A merged directory gaining a copy in another mod stays merged.
    sc.fake.add_dir(&sc.p("m4/mfolder1"));
    changed("mfolder1", true);
    assert!(sc.ls("mfolder1").contains(&"mfile1.txt".to_string()));
    let mut after = before;
    after.retain(|p| p != "m2/mfile.txt" && p != "m3/mfolder3/mfile3.txt" && p != "m1/mfile.txt");
    after.extend(
        [
            "m1/mfile.txt",
            "m3/added.txt",
            "m4/mfolder1/",
            "m4/newdir/",
            "m4/newdir/f.txt",
        ]
        .map(String::from),
    );
    after.sort();
    assert_eq!(sc.all(), after);
}

#[test]
fn a_directory_moved_over_an_emptied_one_shows_its_files_and_keeps_what_lands_elsewhere() {
    let sc = Scene::new();
    // mfolder3 (only in m3) is emptied: its file's delete leaves a record.
    assert_eq!(
        sc.delete("mfolder3/mfile3.txt", Some(false)),
        Change::Done(())
    );
    assert_eq!(sc.mkdir("newdir"), Ok("overwrite/newdir".into()));
    assert_eq!(
        sc.create("newdir/mfile3.txt", "new\n"),
        Ok("overwrite/newdir/mfile3.txt".into())
    );
    // Replacing the empty directory keeps the result at its place (m3), and
    // the old record below it does not hide the file that moved in.
    assert_eq!(sc.rename("newdir", "mfolder3", 0), Change::Done(()));
    assert_eq!(
        sc.phys("mfolder3/mfile3.txt").unwrap(),
        "m3/mfolder3/mfile3.txt"
    );
    assert_eq!(sc.names(&sc.b("mfolder3")), s(&["mfile3.txt"]));
    // A file created in it lands in the create target; the directory's
    // record does not hide it, and it keeps the directory from being removed.
    assert_eq!(
        sc.create("mfolder3/more.txt", "more\n"),
        Ok("overwrite/mfolder3/more.txt".into())
    );
    assert_eq!(
        sc.phys("mfolder3/more.txt").unwrap(),
        "overwrite/mfolder3/more.txt"
    );
    assert_eq!(
        sc.delete("mfolder3/mfile3.txt", Some(false)),
        Change::Done(())
    );
    assert_eq!(
        sc.delete("mfolder3", Some(true)),
        Change::Fail(libc::ENOTEMPTY)
    );
    assert_eq!(sc.names(&sc.b("mfolder3")), s(&["more.txt"]));
}

#[test]
fn a_path_renamed_away_or_deleted_and_made_again_comes_back_to_its_place() {
    let sc = Scene::new();
    // One process (an editor) does each edit.
    sc.fake.set_caller(7);
    // vim, patch -b: the original becomes the backup, a new file is written.
    assert_eq!(
        sc.rename("mfolder1/mfile1.txt", "mfolder1/mfile1.txt~", 0),
        Change::Done(())
    );
    assert_eq!(
        sc.phys("mfolder1/mfile1.txt~").unwrap(),
        "overwrite/mfolder1/mfile1.txt~"
    );
    assert_eq!(
        sc.create("mfolder1/mfile1.txt", "edited\n"),
        Ok("m1/mfolder1/mfile1.txt".into())
    );
    assert_eq!(
        sc.read("m1/mfolder1/mfile1.txt").as_deref(),
        Some("edited\n")
    );
    // Deleted, then written again.
    assert_eq!(
        sc.delete("mfolder2/mfile2.txt", Some(false)),
        Change::Done(())
    );
    assert_eq!(
        sc.create("mfolder2/mfile2.txt", "new\n"),
        Ok("m2/mfolder2/mfile2.txt".into())
    );
    // A directory removed and made again.
    assert_eq!(
        sc.delete("mfolder3/mfile3.txt", Some(false)),
        Change::Done(())
    );
    assert_eq!(sc.delete("mfolder3", Some(true)), Change::Done(()));
    assert_eq!(sc.mkdir("mfolder3"), Ok("m3/mfolder3".into()));
    // Its place taken meanwhile (by a process outside the view): the new
    // file goes to the create target, and nothing is overwritten.
    assert_eq!(sc.rename("mfile.txt", "moved.txt", 0), Change::Done(()));
    sc.fake.add_file(&sc.p("m2/mfile.txt"), "outside\n");
    assert_eq!(
        sc.create("mfile.txt", "mine\n"),
        Ok("overwrite/mfile.txt".into())
    );
    assert_eq!(sc.read("m2/mfile.txt").as_deref(), Some("outside\n"));
    // A new path with no history goes to the create target as always.
    assert_eq!(
        sc.create("mfolder1/fresh.txt", "f\n"),
        Ok("overwrite/mfolder1/fresh.txt".into())
    );
    // Deleted by one process, created by another: where creates go.
    assert_eq!(
        sc.delete("mfolder2/mfile2.txt", Some(false)),
        Change::Done(())
    );
    sc.fake.set_caller(8);
    assert_eq!(
        sc.create("mfolder2/mfile2.txt", "other\n"),
        Ok("overwrite/mfolder2/mfile2.txt".into())
    );
}
