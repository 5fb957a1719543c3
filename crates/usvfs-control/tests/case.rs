//! A case-insensitive view (`Mapping::case_insensitive`), over the in-memory
//! `FakeFs` like `semantics.rs` (the same `common::Scene` fixture): a real
//! temporary layout with mixed spellings across three mods, the
//! destination's own contents (the base) and an overwrite create target is
//! indexed, mirrored into a fake, and the semantics act on the fake.
//! Lookups, listings, creates, deletes, renames and the journal are checked
//! in several spellings, with Unicode and non-UTF-8 names; a case-sensitive
//! instance of the same layout is checked to be unchanged.

mod common;

use std::fs;
use std::path::Path;

use common::{CT, REC, Scene, fake_path, s, write};
use usvfs_control::Mapping;
use usvfs_control::index::dump::dump;
use usvfs_view::Fs;
use usvfs_view::semantics::{Change, Resolved};

// ------------------------------------------------------------------ fixture

/// Three mods spelling `Textures` three ways, the base (the destination's
/// real contents) with its own spellings, Unicode and non-UTF-8 names.
fn layout(r: &Path) {
    write(r, "base/Data.txt", "base data\n");
    write(r, "base/Textures/base.dds", "base\n");
    write(r, "base/Textures/Armor.dds", "base armor\n");
    write(r, "base/Meshes/readme.txt", "base readme\n");
    write(r, "m1/textures/armor.dds", "m1 armor\n");
    write(r, "m1/textures/m1only.dds", "m1 only\n");
    write(r, "m1/Ärger.txt", "m1 ärger\n");
    write(r, "m2/TEXTURES/ARMOR.DDS", "m2 armor\n");
    write(r, "m2/TEXTURES/Sub/deep.dds", "m2 deep\n");
    write(r, "m2/ärger.TXT", "m2 ärger\n");
    write(r, "m3/Textures/m3.dds", "m3\n");
    write(r, "m3/MESHES/new.nif", "m3 nif\n");
    write(r, b"m3/caf\xe9.TXT", "m3 latin-1\n");
    fs::create_dir_all(r.join("overwrite")).unwrap();
}

/// m1..m3 onto `base` in order, `overwrite` last as create target.
fn mapping(r: &Path, m: &mut Mapping) {
    for i in 1..=3 {
        m.link_directory(&r.join(format!("m{i}")), &r.join("base"), REC)
            .unwrap();
    }
    m.link_directory(&r.join("overwrite"), &r.join("base"), CT)
        .unwrap();
}

impl Scene {
    /// The case-insensitive scene of `layout` and `mapping`.
    fn new() -> Scene {
        Scene::build(true, layout, mapping)
    }

    /// `rel` below `base/`, absolute, as bytes (names may not be UTF-8).
    fn b(&self, rel: impl AsRef<[u8]>) -> Vec<u8> {
        let rel = rel.as_ref();
        let mut v = format!("{}/base", self.root).into_bytes();
        if !rel.is_empty() {
            v.push(b'/');
            v.extend_from_slice(rel);
        }
        v
    }

    fn resolve(&self, rel: impl AsRef<[u8]>, follow: bool) -> Result<Box<Resolved>, i32> {
        self.v().resolve_boxed(&self.b(rel), follow)
    }

    /// Where `base/<rel>` leads, relative to the root; ENOENT when it does
    /// not exist.
    fn phys(&self, rel: impl AsRef<[u8]>) -> Result<String, i32> {
        let r = self.resolve(rel, true)?;
        self.fake.lstat(r.phys.as_bytes())?;
        Ok(self.rel(r.phys.as_bytes()))
    }

    /// The virtual path `base/<rel>` resolves to, as the view spells it.
    fn virt(&self, rel: impl AsRef<[u8]>) -> String {
        self.rel(self.resolve(rel, true).unwrap().virt.as_bytes())
    }

    /// The content of the file `base/<rel>` resolves to.
    fn read(&self, rel: impl AsRef<[u8]>) -> Option<String> {
        let r = self.resolve(rel, true).ok()?;
        self.fake.read(&fake_path(r.phys.as_bytes()))
    }

    /// The merged listing of `base/<rel>`, without `.` and `..`.
    fn ls(&self, rel: impl AsRef<[u8]>) -> Vec<String> {
        self.listing(self.b(rel)).split_off(2)
    }

    fn create(&self, rel: impl AsRef<[u8]>, data: &str) -> Result<String, i32> {
        self.create_at(self.b(rel), data)
    }

    fn mkdir(&self, rel: impl AsRef<[u8]>) -> Result<String, i32> {
        self.mkdir_at(self.b(rel))
    }

    fn delete(&self, rel: impl AsRef<[u8]>, remove_dir: Option<bool>) -> Change<()> {
        self.v().delete(&self.b(rel), remove_dir)
    }

    fn rename(&self, old: impl AsRef<[u8]>, new: impl AsRef<[u8]>) -> Change<()> {
        self.v().rename(&self.b(old), &self.b(new), 0)
    }

    /// The journal's current records: (virtual path below the root, entry).
    fn records(&self) -> Vec<(String, String)> {
        self.journal_records(false)
    }
}

/// Each `(rel, phys)`: `base/<rel>` leads to `phys` (below the root).
#[track_caller]
fn assert_phys(sc: &Scene, cases: &[(&str, &str)]) {
    for (rel, phys) in cases {
        assert_eq!(sc.phys(rel).unwrap(), *phys, "{rel}");
    }
}

/// Every spelling of `spellings` leads to `phys` (below the root) and is
/// spelled `virt` by the view.
#[track_caller]
fn assert_spellings(sc: &Scene, spellings: &[&str], phys: &str, virt: &str) {
    for spelling in spellings {
        assert_eq!(sc.phys(spelling).unwrap(), phys, "{spelling}");
        assert_eq!(sc.virt(spelling), virt);
    }
}

// ------------------------------------------------------------------ lookups

#[test]
fn one_entry_per_folded_name_spelled_by_the_highest_layer() {
    let sc = Scene::new();
    // m3 is the highest layer with Textures and MESHES; m2 has ärger.TXT.
    assert_eq!(
        sc.ls(""),
        s(&[
            "Data.txt",
            "MESHES",
            "Textures",
            "caf\u{fffd}.TXT",
            "ärger.TXT"
        ])
    );
    // The base's, m1's and m2's spellings of the directory are one.
    assert_eq!(
        sc.ls("textures"),
        s(&["ARMOR.DDS", "Sub", "base.dds", "m1only.dds", "m3.dds"])
    );
    assert_eq!(sc.ls("TEXTURES"), sc.ls("Textures"));
    // A directory only the base spells (Meshes) merged with m3's MESHES.
    assert_eq!(sc.ls("meshes"), s(&["new.nif", "readme.txt"]));
}

#[test]
fn any_spelling_finds_the_winner_by_priority() {
    let sc = Scene::new();
    for spelling in [
        "Textures/ARMOR.DDS",
        "textures/armor.dds",
        "TEXTURES/Armor.dds",
        "tExTuReS/aRmOr.DdS",
    ] {
        assert_eq!(
            sc.phys(spelling).unwrap(),
            "m2/TEXTURES/ARMOR.DDS",
            "{spelling}"
        );
        assert_eq!(sc.read(spelling).unwrap(), "m2 armor\n");
        // The view's spelling, whatever the caller's.
        assert_eq!(sc.virt(spelling), "base/Textures/ARMOR.DDS");
    }
    // Each file's physical path is spelled as its own layer spells every
    // directory on the way.
    assert_phys(
        &sc,
        &[
            ("TEXTURES/M1ONLY.DDS", "m1/textures/m1only.dds"),
            ("textures/BASE.dds", "base/Textures/base.dds"),
            ("textures/sub/DEEP.dds", "m2/TEXTURES/Sub/deep.dds"),
        ],
    );
    assert_eq!(
        sc.virt("textures/sub/DEEP.dds"),
        "base/Textures/Sub/deep.dds"
    );
    // The directory itself is its winner's (m3's) directory.
    assert_eq!(sc.phys("textures").unwrap(), "m3/Textures");
    // The destination's real contents (the base) answer in any spelling too.
    assert_eq!(
        sc.phys("meshes/README.TXT").unwrap(),
        "base/Meshes/readme.txt"
    );
    assert_eq!(sc.phys("DATA.TXT").unwrap(), "base/Data.txt");
    // Exact spellings take the fast path and give the same answers.
    assert_eq!(
        sc.phys("Textures/ARMOR.DDS").unwrap(),
        "m2/TEXTURES/ARMOR.DDS"
    );
    assert_eq!(sc.phys("Data.txt").unwrap(), "base/Data.txt");
}

#[test]
fn unicode_names_fold_by_simple_case_folding() {
    let sc = Scene::new();
    assert_spellings(
        &sc,
        &["Ärger.txt", "ärger.TXT", "ÄRGER.TXT", "äRgEr.tXt"],
        "m2/ärger.TXT",
        "base/ärger.TXT",
    );
    // Simple folding keeps ß and SS apart, as NTFS does.
    let sc = Scene::build(
        true,
        |r| {
            write(r, "base/Straße.txt", "ß\n");
            write(r, "m1/x", "x\n");
        },
        |r, m| {
            m.link_directory(&r.join("m1"), &r.join("base"), REC)
                .unwrap()
        },
    );
    assert_eq!(sc.phys("STRAẞE.TXT").unwrap(), "base/Straße.txt");
    assert_eq!(sc.phys("strasse.txt"), Err(libc::ENOENT));
}

#[test]
fn non_utf8_names_fold_as_ascii() {
    let sc = Scene::new();
    // The fake holds UTF-8 paths only: resolve against the index.
    let r = sc.resolve(b"CAF\xe9.txt", true).unwrap();
    assert_eq!(sc.rel(r.phys.as_bytes()), "m3/caf\u{fffd}.TXT");
    assert!(r.phys.as_bytes().ends_with(b"m3/caf\xe9.TXT"));
    assert_eq!(r.virt.as_bytes(), sc.b(b"caf\xe9.TXT"));
    // Only ASCII letters fold: \xc9 is not \xe9.
    let r = sc.resolve(b"caf\xc9.txt", true).unwrap();
    assert_eq!(r.res.node, None);
}

#[test]
fn paths_outside_the_destinations_keep_their_case() {
    let sc = Scene::new();
    // The destination itself is a real Linux path: `BASE` is not `base`.
    let other = format!("{}/BASE/Data.txt", sc.root);
    let r = sc.v().resolve_boxed(other.as_bytes(), true).unwrap();
    assert_eq!(r.res.node, None);
    assert!(!r.res.redirected);
}

// ------------------------------------------------------------------ changes

#[test]
fn a_new_file_lands_below_the_views_spelling_and_opens_in_any() {
    let sc = Scene::new();
    assert_eq!(
        sc.create("textures/New.dds", "new\n").unwrap(),
        "overwrite/Textures/New.dds"
    );
    assert_spellings(
        &sc,
        &["Textures/New.dds", "TEXTURES/NEW.DDS", "textures/new.dds"],
        "overwrite/Textures/New.dds",
        "base/Textures/New.dds",
    );
    assert_eq!(sc.create("TEXTURES/new.DDS", "again\n"), Err(libc::EEXIST));
    assert_eq!(sc.create("ÄRGER.txt", "again\n"), Err(libc::EEXIST));
    assert_eq!(
        sc.ls("Textures"),
        s(&[
            "ARMOR.DDS",
            "Sub",
            "base.dds",
            "m1only.dds",
            "m3.dds",
            "New.dds"
        ])
    );
    // Deep below a directory m2 spells TEXTURES/Sub: the overwrite gets the
    // view's spelling of every parent.
    assert_eq!(
        sc.create("textures/SUB/Added.dds", "added\n").unwrap(),
        "overwrite/Textures/Sub/Added.dds"
    );
    assert_eq!(
        sc.phys("TEXTURES/sub/added.DDS").unwrap(),
        "overwrite/Textures/Sub/Added.dds"
    );
    assert_eq!(
        sc.tree("overwrite"),
        s(&[
            "Textures/",
            "Textures/New.dds",
            "Textures/Sub/",
            "Textures/Sub/Added.dds"
        ])
    );
    assert_eq!(
        sc.records(),
        vec![
            (
                "base/Textures/New.dds".into(),
                "overwrite/Textures/New.dds".into()
            ),
            (
                "base/Textures/Sub/Added.dds".into(),
                "overwrite/Textures/Sub/Added.dds".into()
            ),
        ]
    );
}

#[test]
fn a_new_directory_and_its_files_keep_their_spellings() {
    let sc = Scene::new();
    assert_eq!(sc.mkdir("NewDir").unwrap(), "overwrite/NewDir");
    assert_eq!(sc.mkdir("newdir"), Err(libc::EEXIST));
    assert_eq!(
        sc.create("NEWDIR/File.txt", "f\n").unwrap(),
        "overwrite/NewDir/File.txt"
    );
    assert_eq!(sc.mkdir("newdir/Inner").unwrap(), "overwrite/NewDir/Inner");
    assert_eq!(
        sc.create("newdir/INNER/Deep.txt", "d\n").unwrap(),
        "overwrite/NewDir/Inner/Deep.txt"
    );
    assert_spellings(
        &sc,
        &["newdir/file.txt", "NEWDIR/FILE.TXT", "NewDir/File.txt"],
        "overwrite/NewDir/File.txt",
        "base/NewDir/File.txt",
    );
    assert_eq!(
        sc.phys("NEWDIR/inner/DEEP.TXT").unwrap(),
        "overwrite/NewDir/Inner/Deep.txt"
    );
    assert!(sc.ls("").contains(&"NewDir".to_string()));
    assert_eq!(
        sc.tree("overwrite"),
        s(&[
            "NewDir/",
            "NewDir/File.txt",
            "NewDir/Inner/",
            "NewDir/Inner/Deep.txt"
        ])
    );
}

#[test]
fn a_delete_in_one_spelling_hides_every_spelling_and_layer() {
    let sc = Scene::new();
    assert_eq!(
        sc.delete("textures/armor.dds", Some(false)),
        Change::Done(())
    );
    // m2's winner is gone from disk; m1's and the base's copies stay on disk
    // but do not show through, in any spelling.
    assert!(!sc.fake.exists(&sc.p("m2/TEXTURES/ARMOR.DDS")));
    assert!(sc.fake.exists(&sc.p("m1/textures/armor.dds")));
    assert!(sc.fake.exists(&sc.p("base/Textures/Armor.dds")));
    for spelling in [
        "Textures/ARMOR.DDS",
        "textures/Armor.dds",
        "TEXTURES/armor.DDS",
    ] {
        assert_eq!(sc.phys(spelling), Err(libc::ENOENT), "{spelling}");
    }
    assert_eq!(
        sc.ls("Textures"),
        s(&["Sub", "base.dds", "m1only.dds", "m3.dds"])
    );
    assert_eq!(
        sc.records(),
        vec![("base/Textures/ARMOR.DDS".into(), "whiteout".into())]
    );
    // Created again in another spelling: shown as created, in the overwrite.
    assert_eq!(
        sc.create("TEXTURES/Armor.DDS", "new armor\n").unwrap(),
        "overwrite/Textures/Armor.DDS"
    );
    assert_eq!(sc.read("textures/ARMOR.dds").unwrap(), "new armor\n");
    assert_eq!(sc.virt("textures/ARMOR.dds"), "base/Textures/Armor.DDS");
    assert_eq!(
        sc.ls("Textures"),
        s(&["Armor.DDS", "Sub", "base.dds", "m1only.dds", "m3.dds"])
    );
    // A created directory removed in another spelling.
    sc.mkdir("Gone").unwrap();
    assert_eq!(sc.delete("GONE", Some(true)), Change::Done(()));
    assert_eq!(sc.phys("gone"), Err(libc::ENOENT));
    assert!(!sc.ls("").iter().any(|n| n.eq_ignore_ascii_case("gone")));
}

#[test]
fn renames_in_any_spelling() {
    let sc = Scene::new();
    // To a new name: the file moves to where a new file would go.
    assert_eq!(
        sc.rename("TEXTURES/M1ONLY.DDS", "textures/Renamed.dds"),
        Change::Done(())
    );
    assert_eq!(
        sc.phys("Textures/renamed.DDS").unwrap(),
        "overwrite/Textures/Renamed.dds"
    );
    assert_eq!(sc.read("TEXTURES/RENAMED.DDS").unwrap(), "m1 only\n");
    assert_eq!(sc.phys("textures/m1only.dds"), Err(libc::ENOENT));
    assert!(!sc.fake.exists(&sc.p("m1/textures/m1only.dds")));
    // Over an existing file spelled differently: the result keeps the
    // replaced file's place and spelling.
    assert_eq!(
        sc.rename("textures/M3.dds", "TEXTURES/BASE.DDS"),
        Change::Done(())
    );
    assert_eq!(
        sc.phys("textures/base.dds").unwrap(),
        "base/Textures/base.dds"
    );
    assert_eq!(sc.read("Textures/Base.dds").unwrap(), "m3\n");
    assert_eq!(sc.phys("textures/m3.dds"), Err(libc::ENOENT));
    assert_eq!(
        sc.ls("Textures"),
        s(&["ARMOR.DDS", "Sub", "base.dds", "Renamed.dds"])
    );
    // A directory merged from several layers (and spellings) cannot move.
    assert_eq!(
        sc.rename("TEXTURES", "Textures2"),
        Change::Fail(libc::EXDEV)
    );
    // A rename that changes only the case is the same entry: nothing moves.
    assert_eq!(sc.rename("Data.txt", "DATA.TXT"), Change::Done(()));
    assert_eq!(sc.phys("data.txt").unwrap(), "base/Data.txt");
    assert!(sc.ls("").contains(&"Data.txt".to_string()));
}

// --------------------------------------------------- one layer, two spellings

#[test]
fn one_layer_with_two_spellings_merges_directories_and_keeps_the_first_file() {
    let sc = Scene::build(
        true,
        |r| {
            write(r, "base/Saves/one.sav", "1\n");
            write(r, "base/saves/two.sav", "2\n");
            write(r, "m1/Dup/a.txt", "a\n");
            write(r, "m1/dup/b.txt", "b\n");
            write(r, "m1/README.txt", "upper\n");
            write(r, "m1/readme.txt", "lower\n");
            write(r, "m1/X/y.txt", "y\n");
            write(r, "m1/x", "file x\n");
        },
        |r, m| {
            m.link_directory(&r.join("m1"), &r.join("base"), REC)
                .unwrap()
        },
    );
    // Directories merge (as extracting both onto NTFS would), spelled as the
    // first in byte order; of files (or a file and a directory) the first in
    // byte order shows.
    assert_eq!(sc.ls(""), s(&["Dup", "README.txt", "Saves", "X"]));
    assert_eq!(sc.ls("DUP"), s(&["a.txt", "b.txt"]));
    assert_eq!(sc.phys("dup/A.TXT").unwrap(), "m1/Dup/a.txt");
    assert_eq!(sc.phys("dup/B.TXT").unwrap(), "m1/dup/b.txt");
    assert_eq!(sc.read("readme.TXT").unwrap(), "upper\n");
    assert_eq!(sc.phys("x/Y.txt").unwrap(), "m1/X/y.txt");
    // The base merges its own spellings too.
    assert_eq!(sc.ls("saves"), s(&["one.sav", "two.sav"]));
    assert_eq!(sc.phys("SAVES/TWO.SAV").unwrap(), "base/saves/two.sav");
}

// --------------------------------------------------------- nested targets

#[test]
fn a_nested_create_target_spelled_otherwise_still_covers_the_directory() {
    // ow2's destination spells TEXTURES; the view spells Textures (m1 is
    // the highest layer providing it): new files below it go to ow2.
    let sc = Scene::build(
        true,
        |r| {
            write(r, "m1/Textures/a.dds", "a\n");
            fs::create_dir_all(r.join("base")).unwrap();
            fs::create_dir_all(r.join("ow")).unwrap();
            fs::create_dir_all(r.join("ow2")).unwrap();
        },
        |r, m| {
            m.link_directory(&r.join("ow"), &r.join("base"), CT)
                .unwrap();
            m.link_directory(&r.join("ow2"), &r.join("base/TEXTURES"), CT)
                .unwrap();
            m.link_directory(&r.join("m1"), &r.join("base"), REC)
                .unwrap();
        },
    );
    assert_eq!(sc.ls(""), s(&["Textures"]));
    assert_eq!(sc.create("textures/new.dds", "n\n").unwrap(), "ow2/new.dds");
    assert_eq!(sc.create("other.txt", "o\n").unwrap(), "ow/other.txt");
    assert_eq!(sc.phys("TEXTURES/NEW.DDS").unwrap(), "ow2/new.dds");
}

// ------------------------------------------------------------- the index

#[test]
fn dump_says_the_index_is_case_insensitive() {
    let sc = Scene::new();
    let text = String::from_utf8_lossy(&dump(&sc.snap)).into_owned();
    assert!(text.starts_with("# case-insensitive"), "{text}");
    // Entries of layers show their source; the base's show none.
    assert!(
        text.contains(&format!("ARMOR.DDS -> {}/m2/TEXTURES/ARMOR.DDS", sc.root)),
        "{text}"
    );
    assert!(
        text.contains(&format!("m1only.dds -> {}/m1/textures/m1only.dds", sc.root)),
        "{text}"
    );
    assert!(text.lines().any(|l| l.trim() == "base.dds"), "{text}");
    let cs = Scene::build(false, layout, mapping);
    assert!(!String::from_utf8_lossy(&dump(&cs.snap)).contains("case-insensitive"));
}

// ------------------------------------------------ case-sensitive: unchanged

#[test]
fn a_case_sensitive_instance_is_unchanged() {
    let sc = Scene::build(false, layout, mapping);
    // Three directories, two Ärger files; the base's own entries come from
    // the real directory after the index's.
    assert_eq!(
        sc.ls(""),
        s(&[
            "MESHES",
            "TEXTURES",
            "Textures",
            "caf\u{fffd}.TXT",
            "textures",
            "Ärger.txt",
            "ärger.TXT",
            "Data.txt",
            "Meshes",
        ])
    );
    assert_phys(
        &sc,
        &[
            ("textures/armor.dds", "m1/textures/armor.dds"),
            ("TEXTURES/ARMOR.DDS", "m2/TEXTURES/ARMOR.DDS"),
            ("Textures/Armor.dds", "base/Textures/Armor.dds"),
        ],
    );
    assert_eq!(sc.phys("Textures/ARMOR.DDS"), Err(libc::ENOENT));
    assert_eq!(sc.phys("DATA.TXT"), Err(libc::ENOENT));
    // The journal keeps spellings apart.
    assert_eq!(sc.create("new.txt", "n\n").unwrap(), "overwrite/new.txt");
    assert_eq!(sc.phys("NEW.TXT"), Err(libc::ENOENT));
    assert_eq!(sc.create("NEW.TXT", "N\n").unwrap(), "overwrite/NEW.TXT");
    assert_eq!(sc.delete("new.txt", Some(false)), Change::Done(()));
    assert_eq!(sc.read("NEW.TXT").unwrap(), "N\n");
}
