//! Micro-benchmark of the resolver, the preload engine's hot path: builds an
//! index of 20 layers x 2,000 files (overlapping names, several depths) onto
//! one destination and times `resolve` per path, exact spellings and misses;
//! with a case-insensitive index also other spellings and folded misses; and
//! both again with a journal of 100 changes (a game that wrote its saves).
//!
//!     cargo run --release -p usvfs-control --example resolve_bench
//!
//! Timings on a shared machine are noisy; instruction counts are not. With
//! `RESOLVE_BENCH_ONLY=<workload>` (cs-exact, cs-miss, ci-exact, ci-upper,
//! ci-miss) it resolves that workload's paths once, for a count of the
//! instructions `resolve_all` executes:
//!
//!     RESOLVE_BENCH_ONLY=cs-exact valgrind --tool=callgrind \
//!         --toggle-collect='*resolve_all*' target/release/examples/resolve_bench

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

use usvfs_control::index::OwnedSnapshot;
use usvfs_control::journal::{Entry, Journal};
use usvfs_control::path::PathBuffer;
use usvfs_control::resolve::{Scratch, resolve_in};
use usvfs_control::{LinkFlags, Mapping, build_snapshot};
use usvfs_view::SysFs;

const LAYERS: usize = 20;
const FILES: usize = 2000;

fn layout(root: &Path) -> Vec<Vec<u8>> {
    let mut rels = Vec::new();
    for l in 0..LAYERS {
        for i in 0..FILES {
            // Files spread over 2 levels of directories; half the names are
            // shared with other layers (conflicts), half are the layer's own.
            let name = if i % 2 == 0 {
                format!("Meshes/Armor{}/Part{}/file{}.nif", i % 7, i % 13, i)
            } else {
                format!("Textures/Set{}/tex_{}_{}.dds", i % 11, l, i)
            };
            let p = root.join(format!("mod{l}")).join(&name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"x").unwrap();
            rels.push(name.into_bytes());
        }
    }
    std::fs::create_dir_all(root.join("game/Data")).unwrap();
    rels.sort();
    rels.dedup();
    rels
}

/// Resolves every path once; returns how many named an index node.
#[inline(never)]
fn resolve_all(
    paths: &[Vec<u8>],
    snap: &usvfs_control::Snapshot<'_>,
    journal: Option<&Journal>,
    scratch: &mut Scratch,
) -> usize {
    let mut virt = PathBuffer::new();
    let mut phys = PathBuffer::new();
    let mut found = 0;
    for p in paths {
        if let Ok(r) = resolve_in(
            snap, journal, &SysFs, p, true, &mut virt, &mut phys, scratch,
        ) {
            found += r.node.is_some() as usize;
        }
    }
    found
}

fn time_per(
    paths: &[Vec<u8>],
    snap: &usvfs_control::Snapshot<'_>,
    journal: Option<&Journal>,
    rounds: usize,
) -> (f64, usize) {
    let mut scratch = Scratch::new();
    let mut found = 0;
    // Warm up, then the best of a few timed runs.
    let mut best = f64::MAX;
    for round in 0..rounds + 1 {
        let t = Instant::now();
        found = resolve_all(paths, snap, journal, &mut scratch);
        let ns = t.elapsed().as_nanos() as f64 / paths.len() as f64;
        if round > 0 {
            best = best.min(ns);
        }
    }
    (best, found)
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let rels = layout(&root);
    let dest = root.join("game/Data");
    let exact: Vec<Vec<u8>> = rels
        .iter()
        .map(|r| [dest.as_os_str().as_bytes(), b"/", r].concat())
        .collect();
    let misses: Vec<Vec<u8>> = rels
        .iter()
        .map(|r| [dest.as_os_str().as_bytes(), b"/", r, b".missing"].concat())
        .collect();
    let build = |ci: bool| {
        let mut m = Mapping::new();
        for l in 0..LAYERS {
            m.link_directory(
                &root.join(format!("mod{l}")),
                &dest,
                LinkFlags(LinkFlags::RECURSIVE),
            )
            .unwrap();
        }
        let _ = ci;
        // @case-insensitive
        m.case_insensitive = ci;
        // @end
        let t = Instant::now();
        let bytes = build_snapshot(&m, 1).unwrap();
        println!(
            "index (case-insensitive: {ci}): {} bytes, built in {:.1} ms",
            bytes.len(),
            t.elapsed().as_secs_f64() * 1e3
        );
        OwnedSnapshot::new(&bytes).unwrap()
    };
    // Both indexes first, then their timings interleaved (best of each),
    // so machine noise and cache warmth hit both alike.
    let cs = build(false);
    // @case-insensitive
    let ci = build(true);
    let upper: Vec<Vec<u8>> = rels
        .iter()
        .map(|r| [dest.as_os_str().as_bytes(), b"/", &r.to_ascii_uppercase()].concat())
        .collect();
    // @end
    // A journal of 100 changes in one folder of the destination.
    let jpath = root.join("journal");
    Journal::create(&jpath, 1).unwrap();
    let journal = Journal::open(&jpath).unwrap();
    for i in 0..100 {
        let v = [
            dest.as_os_str().as_bytes(),
            format!("/Saves/save{i}.ess").as_bytes(),
        ]
        .concat();
        let p = [
            root.as_os_str().as_bytes(),
            format!("/overwrite/Saves/save{i}.ess").as_bytes(),
        ]
        .concat();
        journal
            .put(&v, Entry::Physical { phys: &p, kind: 2 })
            .unwrap();
    }
    let j = Some(&journal);
    if let Ok(only) = std::env::var("RESOLVE_BENCH_ONLY") {
        let mut scratch = Scratch::new();
        let n = match only.as_str() {
            "cs-exact" => resolve_all(&exact, &cs.snapshot(), None, &mut scratch),
            "cs-miss" => resolve_all(&misses, &cs.snapshot(), None, &mut scratch),
            "cs-exact-journal" => resolve_all(&exact, &cs.snapshot(), j, &mut scratch),
            "cs-miss-journal" => resolve_all(&misses, &cs.snapshot(), j, &mut scratch),
            // @case-insensitive
            "ci-exact" => resolve_all(&exact, &ci.snapshot(), None, &mut scratch),
            "ci-upper" => resolve_all(&upper, &ci.snapshot(), None, &mut scratch),
            "ci-miss" => resolve_all(&misses, &ci.snapshot(), None, &mut scratch),
            // @end
            w => panic!("unknown workload {w}"),
        };
        println!("{only}: {} paths resolved once, {n} found", exact.len());
        return;
    }
    let mut best = [f64::MAX; 7];
    let mut found = [0usize; 7];
    for _ in 0..5 {
        let mut k = 0;
        let mut run = |paths: &[Vec<u8>], snap: &usvfs_control::Snapshot<'_>| {
            let (t, n) = time_per(paths, snap, None, 3);
            best[k] = best[k].min(t);
            found[k] = n;
            k += 1;
        };
        run(&exact, &cs.snapshot());
        run(&misses, &cs.snapshot());
        // @case-insensitive
        run(&exact, &ci.snapshot());
        run(&upper, &ci.snapshot());
        run(&misses, &ci.snapshot());
        // @end
        for (k, paths) in [(5, &exact), (6, &misses)] {
            let (t, n) = time_per(paths, &cs.snapshot(), j, 3);
            best[k] = best[k].min(t);
            found[k] = n;
        }
    }
    let n = exact.len();
    println!(
        "case-sensitive index:   exact hits   {:7.1} ns/resolve ({} of {n} found)",
        best[0], found[0]
    );
    println!(
        "case-sensitive index:   misses       {:7.1} ns/resolve",
        best[1]
    );
    // @case-insensitive
    println!(
        "case-insensitive index: exact hits   {:7.1} ns/resolve ({} of {n} found)",
        best[2], found[2]
    );
    println!(
        "case-insensitive index: UPPER hits   {:7.1} ns/resolve ({} of {n} found)",
        best[3], found[3]
    );
    println!(
        "case-insensitive index: misses       {:7.1} ns/resolve",
        best[4]
    );
    // @end
    println!(
        "with 100 journal records: exact hits {:7.1} ns/resolve ({} of {n} found)",
        best[5], found[5]
    );
    println!(
        "with 100 journal records: misses     {:7.1} ns/resolve",
        best[6]
    );
}
