//! Index build, priority and lookup, on real temporary directories.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use usvfs_control::index::OwnedSnapshot;
use usvfs_control::path::PathBuffer;
use usvfs_control::resolve::resolve;
use usvfs_control::view::SysFs as LibcFs;
use usvfs_control::{LinkFlags, Mapping, NodeKind, build_snapshot};

fn write(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

struct Fixture {
    _t: tempfile::TempDir,
    root: std::path::PathBuf,
    snap: OwnedSnapshot,
}

fn fixture() -> Fixture {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    write(&root.join("base/base.txt"), "base");
    write(&root.join("base/shared.txt"), "base");
    write(&root.join("base/hidden/below.txt"), "base");
    write(&root.join("m1/shared.txt"), "m1");
    write(&root.join("m1/only1/deep/f.txt"), "m1");
    write(&root.join("m1/x.bak"), "skip me");
    write(&root.join("m2/shared.txt"), "m2");
    write(&root.join("m2/hidden"), "a file over base's directory");
    write(&root.join("m2/target/t.txt"), "m2");
    std::os::unix::fs::symlink("../target/t.txt", root.join("m1/only1/link")).unwrap();
    write(&root.join("single.txt"), "single");
    let mut m = Mapping::new();
    m.skip_suffixes.push(".BAK".into());
    let rec = LinkFlags(LinkFlags::RECURSIVE);
    m.link_directory(&root.join("m1"), &root.join("base"), rec)
        .unwrap();
    m.link_directory(&root.join("m2"), &root.join("base"), rec)
        .unwrap();
    m.link_file(
        &root.join("single.txt"),
        &root.join("base/only1/single.txt"),
        LinkFlags(0),
    )
    .unwrap();
    let bytes = build_snapshot(&m, 1).unwrap();
    Fixture {
        _t: t,
        root,
        snap: OwnedSnapshot::new(&bytes).unwrap(),
    }
}

fn res(f: &Fixture, rel: &str, follow: bool) -> Result<(Option<u32>, Vec<u8>), i32> {
    let input = format!("{}/{}", f.root.display(), rel);
    let (mut v, mut p) = (PathBuffer::new(), PathBuffer::new());
    let r = resolve(
        &f.snap.snapshot(),
        &LibcFs,
        input.as_bytes(),
        follow,
        &mut v,
        &mut p,
    )?;
    Ok((r.node, p.as_bytes().to_vec()))
}

fn phys(f: &Fixture, rel: &str) -> String {
    String::from_utf8(res(f, rel, true).unwrap().1)
        .unwrap()
        .strip_prefix(&format!("{}/", f.root.display()))
        .unwrap()
        .to_string()
}

#[test]
fn later_layer_wins() {
    let f = fixture();
    assert_eq!(phys(&f, "base/shared.txt"), "m2/shared.txt");
    assert_eq!(phys(&f, "base/only1/deep/f.txt"), "m1/only1/deep/f.txt");
    assert_eq!(phys(&f, "base/only1/single.txt"), "single.txt");
}

#[test]
fn real_directory_is_the_lowest_layer() {
    let f = fixture();
    let (node, p) = res(&f, "base/base.txt", true).unwrap();
    assert_eq!(node, None);
    assert_eq!(p, format!("{}/base/base.txt", f.root.display()).as_bytes());
}

#[test]
fn a_file_hides_the_base_directory_below_it() {
    let f = fixture();
    assert_eq!(res(&f, "base/hidden/below.txt", true), Err(libc::ENOTDIR));
    assert_eq!(phys(&f, "base/hidden"), "m2/hidden");
}

#[test]
fn skipped_suffix_is_not_linked() {
    let f = fixture();
    assert_eq!(res(&f, "base/x.bak", true).unwrap().0, None);
}

#[test]
fn relative_symlink_in_a_layer_resolves_in_the_view() {
    let f = fixture();
    // m1/only1/link -> ../target/t.txt; target/ exists only in m2.
    assert_eq!(phys(&f, "base/only1/link"), "m2/target/t.txt");
    // Not followed: the link itself.
    let (node, p) = res(&f, "base/only1/link", false).unwrap();
    assert!(node.is_some());
    assert!(p.ends_with(b"m1/only1/link"));
}

#[test]
fn files_are_not_directories() {
    let f = fixture();
    assert_eq!(res(&f, "base/shared.txt/x", true), Err(libc::ENOTDIR));
}

#[test]
fn paths_outside_pass_through_unchanged() {
    let f = fixture();
    let (mut v, mut p) = (PathBuffer::new(), PathBuffer::new());
    let r = resolve(
        &f.snap.snapshot(),
        &LibcFs,
        b"/usr/bin/env",
        true,
        &mut v,
        &mut p,
    )
    .unwrap();
    assert_eq!(r.node, None);
    assert!(!r.redirected);
}

#[test]
fn symlinked_prefix_hits_the_mapping() {
    let f = fixture();
    let alias = f.root.join("alias");
    std::os::unix::fs::symlink("/", &alias).unwrap();
    let via = format!("{}{}/base/shared.txt", alias.display(), f.root.display());
    let (mut v, mut p) = (PathBuffer::new(), PathBuffer::new());
    let r = resolve(
        &f.snap.snapshot(),
        &LibcFs,
        via.as_bytes(),
        true,
        &mut v,
        &mut p,
    )
    .unwrap();
    assert!(r.redirected);
    assert!(p.as_bytes().ends_with(b"m2/shared.txt"));
}

#[test]
fn children_are_sorted_and_typed() {
    let f = fixture();
    let s = f.snap.snapshot();
    let mut n = s.root();
    for c in usvfs_control::path::components(f.root.join("base").as_os_str().as_bytes()) {
        n = s.child(n, c).unwrap();
    }
    let names: Vec<&[u8]> = s.children(n).map(|c| s.name(c)).collect();
    assert_eq!(names, [&b"hidden"[..], b"only1", b"shared.txt", b"target"]);
    assert_eq!(s.kind(s.child(n, b"hidden").unwrap()), NodeKind::File);
    assert_eq!(s.kind(s.child(n, b"target").unwrap()), NodeKind::Dir);
}

#[test]
fn dump_lists_every_node_with_its_source() {
    let f = fixture();
    let d = String::from_utf8(usvfs_control::index::dump::dump(&f.snap.snapshot())).unwrap();
    assert!(
        d.contains(&format!(
            "    shared.txt -> {}/m2/shared.txt\n",
            f.root.display()
        )),
        "{d}"
    );
    assert!(d.contains("only1/ -> "), "{d}");
}

/// One `Scratch` kept across resolutions (as the preload engine keeps one
/// per thread, with the directory its last resolution went through) gives
/// exactly what a fresh one gives, in any order: through symlinks, misses,
/// files used as directories, a file over a directory, paths outside.
#[test]
fn a_reused_scratch_resolves_as_a_fresh_one() {
    use usvfs_control::resolve::{Scratch, resolve_in};
    let f = fixture();
    let rels = [
        "base.txt",
        "shared.txt",
        "only1/deep/f.txt",
        "only1/deep",
        "only1/link",
        "only1/link/x",
        "only1/deep/missing",
        "only1/single.txt",
        "only1/single.txt/x",
        "hidden",
        "hidden/below.txt",
        "target/t.txt",
        "target/missing",
        "x.bak",
        "only1",
        "only1/deep/f.txt/",
        "nothere/at/all",
        "only1/nothere/x",
        "only1/deep/gone/y",
        "hidden/sub/z",
        "target/gone/t.txt",
        "../outside.txt",
    ];
    let snap = f.snap.snapshot();
    let run = |input: &[u8], follow: bool, scratch: &mut Scratch| {
        let (mut v, mut p) = (PathBuffer::new(), PathBuffer::new());
        resolve_in(&snap, None, &LibcFs, input, follow, &mut v, &mut p, scratch)
            .map(|r| (r, v.as_bytes().to_vec(), p.as_bytes().to_vec()))
    };
    let inputs: Vec<Vec<u8>> = rels
        .iter()
        .map(|r| {
            let joined = f.root.join("base").join(r);
            let mut out = PathBuffer::new();
            usvfs_control::path::normalize_into(joined.as_os_str().as_bytes(), b"/", &mut out)
                .unwrap();
            out.as_bytes().to_vec()
        })
        .collect();
    let mut shared = Scratch::new();
    // Forward, backward and interleaved: each path after every other one.
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.extend((0..inputs.len()).rev());
    for i in 0..inputs.len() {
        for j in 0..inputs.len() {
            order.push(i);
            order.push(j);
        }
    }
    for &i in &order {
        for follow in [true, false] {
            let fresh = run(&inputs[i], follow, &mut Scratch::new());
            let reused = run(&inputs[i], follow, &mut shared);
            assert_eq!(fresh, reused, "{}", String::from_utf8_lossy(&inputs[i]));
        }
    }
}

/// With a journal, a reused `Scratch` starts from the deepest directory its
/// last walk went through only while no change was published since: after
/// each change (a file made, a directory removed, a directory placed
/// elsewhere, a folder made where the index has none, then the base itself
/// removed) every path resolves as a fresh `Scratch` resolves it, in any
/// order.
#[test]
fn a_reused_scratch_follows_every_journal_change() {
    use usvfs_control::journal::{Entry, Journal};
    use usvfs_control::resolve::{Scratch, resolve_in};
    const KIND_FILE: u8 = usvfs_control::view::index::format::KIND_FILE;
    const KIND_DIR: u8 = usvfs_control::view::index::format::KIND_DIR;
    let f = fixture();
    let jp = f.root.join("journal");
    Journal::create(&jp, 1).unwrap();
    let j = Journal::open(&jp).unwrap();
    write(&f.root.join("elsewhere/deep/f.txt"), "moved");
    write(&f.root.join("elsewhere/made/g.txt"), "made");
    let rels = [
        "base.txt",
        "only1/deep/f.txt",
        "only1/deep/missing",
        "only1/deep",
        "only1/new.txt",
        "only1/single.txt",
        "only1/made/g.txt",
        "only1/link/x",
        "hidden/below.txt",
        "target/t.txt",
    ];
    let abs = |r: &str| {
        let mut out = PathBuffer::new();
        let joined = f.root.join("base").join(r);
        usvfs_control::path::normalize_into(joined.as_os_str().as_bytes(), b"/", &mut out).unwrap();
        out.as_bytes().to_vec()
    };
    let inputs: Vec<Vec<u8>> = rels.iter().map(|r| abs(r)).collect();
    let snap = f.snap.snapshot();
    let run = |input: &[u8], scratch: &mut Scratch| {
        let (mut v, mut p) = (PathBuffer::new(), PathBuffer::new());
        resolve_in(
            &snap,
            Some(&j),
            &LibcFs,
            input,
            true,
            &mut v,
            &mut p,
            scratch,
        )
        .map(|r| (r, v.as_bytes().to_vec(), p.as_bytes().to_vec()))
    };
    let elsewhere = |r: &str| f.root.join(r).as_os_str().as_bytes().to_vec();
    let (deep_to, made_to, new_to) = (
        elsewhere("elsewhere/deep"),
        elsewhere("elsewhere/made"),
        elsewhere("base/only1/new.txt"),
    );
    // Each change, and a path whose resolution it changes (physical path
    // relative to the fixture's root, or the error).
    let steps: [(&str, Entry<'_>, &str, Result<&str, i32>); 5] = [
        (
            "only1/new.txt",
            Entry::Physical {
                phys: &new_to,
                kind: KIND_FILE,
            },
            "only1/new.txt",
            Ok("base/only1/new.txt"),
        ),
        (
            "only1/deep",
            Entry::Whiteout,
            "only1/deep/f.txt",
            Err(libc::ENOENT),
        ),
        (
            "only1/deep",
            Entry::Physical {
                phys: &deep_to,
                kind: KIND_DIR,
            },
            "only1/deep/f.txt",
            Ok("elsewhere/deep/f.txt"),
        ),
        (
            "only1/made",
            Entry::Physical {
                phys: &made_to,
                kind: KIND_DIR,
            },
            "only1/made/g.txt",
            Ok("elsewhere/made/g.txt"),
        ),
        ("", Entry::Whiteout, "only1/deep/f.txt", Err(libc::ENOENT)),
    ];
    let mut shared = Scratch::new();
    let root = format!("{}/", f.root.display());
    for (at, entry, probe, expected) in steps {
        // Fill the cache with every path's directories, the probe's last,
        // then change.
        for input in &inputs {
            run(input, &mut shared).ok();
        }
        run(&abs(probe), &mut shared).ok();
        j.put(&abs(at), entry).unwrap();
        let got = run(&abs(probe), &mut shared).map(|r| {
            String::from_utf8(r.2)
                .unwrap()
                .strip_prefix(&root)
                .unwrap()
                .to_string()
        });
        assert_eq!(
            got.as_deref().map_err(|e| *e),
            expected,
            "after {at}: {probe}"
        );
        for i in 0..inputs.len() {
            for k in [i, (i + 3) % inputs.len(), i] {
                let fresh = run(&inputs[k], &mut Scratch::new());
                let reused = run(&inputs[k], &mut shared);
                assert_eq!(
                    fresh,
                    reused,
                    "after {at}: {}",
                    String::from_utf8_lossy(&inputs[k])
                );
            }
        }
    }
}

/// A large directory's children are found through its hash table, exactly as
/// the binary search finds them: names of every length around the 8-byte
/// steps of the hash, non-UTF-8 bytes, names that differ only in case or in
/// their last byte; and missing names are missing both ways.
#[test]
fn hash_tables_find_what_the_sorted_search_finds() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let mut names: Vec<Vec<u8>> = Vec::new();
    for len in 1..=25 {
        names.push(vec![b'a'; len]);
        let mut n = vec![b'a'; len];
        *n.last_mut().unwrap() = b'b';
        names.push(n);
    }
    for i in 0..600 {
        names.push(format!("f{i:05}.dat").into_bytes());
        names.push(format!("F{i:05}.DAT").into_bytes());
    }
    names.push(b"caf\xc3\xa9".to_vec());
    names.push(b"raw\xff\xfe".to_vec());
    for (i, n) in names.iter().enumerate() {
        let dir = if i % 2 == 0 { "m1" } else { "m2" };
        let p = root
            .join(dir)
            .join("big")
            .join(std::ffi::OsStr::from_bytes(n));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "x").unwrap();
    }
    fs::create_dir_all(root.join("base")).unwrap();
    let mut m = Mapping::new();
    let rec = LinkFlags(LinkFlags::RECURSIVE);
    m.link_directory(&root.join("m1"), &root.join("base"), rec)
        .unwrap();
    m.link_directory(&root.join("m2"), &root.join("base"), rec)
        .unwrap();
    let owned = OwnedSnapshot::new(&build_snapshot(&m, 1).unwrap()).unwrap();
    let snap = owned.snapshot();
    assert!(snap.verify());
    let mut n = snap.root();
    for c in root.join("base/big").iter().skip(1) {
        n = snap
            .child(n, c.as_bytes())
            .unwrap_or_else(|| panic!("{c:?} missing"));
    }
    assert_eq!(snap.children(n).len(), names.len());
    for name in &names {
        let c = snap.child(n, name);
        assert!(c.is_some(), "{:?} not found", String::from_utf8_lossy(name));
        assert_eq!(c, snap.child_sorted(n, name));
        assert_eq!(snap.name(c.unwrap()), &name[..]);
    }
    for missing in [
        &b"f00600.dat"[..],
        b"f00000.da",
        b"f00000.datx",
        b"",
        b"A",
        b"aaaaaaaaaaaaaaaaaaaaaaaaaa",
        b"raw\xff",
    ] {
        assert_eq!(
            snap.child(n, missing),
            None,
            "{:?}",
            String::from_utf8_lossy(missing)
        );
        assert_eq!(snap.child_sorted(n, missing), None);
    }
}
