"""Real programs inside the view print exactly what they print on a physically
merged copy of the same layers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import Layout, run_view, snapshot_tree

import subprocess

PY_WALK = r"""
import os, stat, sys
out = []
for dirpath, dirnames, filenames in os.walk(b"data"):
    for n in sorted(dirnames + filenames):
        p = os.path.join(dirpath, n)
        st = os.lstat(p)
        kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
        size = st.st_size if kind != "d" else 0
        out.append(p + b" " + kind.encode() + b" " + str(size).encode())
sys.stdout.buffer.write(b"\n".join(sorted(out)) + b"\n")
"""

SH_CD = 'cd "data/meshes/a/b" && pwd && /bin/pwd && cat m1.nif ../m2.nif && cd ../../../only_m2 && pwd && /bin/pwd && cat readme.txt'

# (name, argv, sort output lines) — argv paths are relative to the parent of "data".
PROGRAMS = [
    ("ls", ["ls", "-1AR", "data"], False),
    ("ls-long-names", ["ls", "-1AlR", "--time-style=+", "data/textures", "data/links"], False),
    ("find", ["find", "data", "-printf", "%p %y %l\\n"], True),
    ("find-sizes", ["find", "data", "-type", "f", "-printf", "%p %s\\n"], True),
    ("find-follow", ["find", "-L", "data/links", "-type", "f", "-printf", "%p %s\\n"], True),
    ("cat", ["sh", "-c", "find data -type f | LC_ALL=C sort | while read -r f; do echo \"== $f\"; cat \"$f\"; done"], False),
    ("cat-links", ["cat", "data/links/to_m2", "data/links/to_shared", "data/meshes/single.txt"], False),
    ("stat", ["sh", "-c", "find data -type f -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %s %F %a'"], False),
    ("stat-links", ["stat", "-c", "%n %F %N", "data/links/to_m2", "data/links/to_shared"], False),
    ("du", ["du", "-ab", "--exclude=.", "data/textures", "data/only_m2", "data/meshes/a/b"], True),
    ("tar", ["sh", "-c", "tar cf - --sort=name data | tar tf -"], False),
    ("tar-contents", ["sh", "-c", "tar cf - --sort=name --owner=0 --group=0 --mtime=@0 data | tar xOf - data/shared.txt data/links/keep.txt"], False),
    ("sh-cd", ["sh", "-c", SH_CD], False),
    ("python-walk", [sys.executable, "-c", PY_WALK], False),
    ("conflict-kind", ["sh", "-c", "cat data/conflict_kind; ls data/conflict_kind/inner.txt 2>&1 | sed 's/^.*: //'"], False),
]


@pytest.fixture
def merged(layout: Layout) -> Path:
    dest = layout.root / "merged" / "data"
    dest.parent.mkdir()
    layout.merged_copy(dest)
    return dest


def compare(usvfs: Path, layout: Layout, merged: Path, argv: list, sort: bool) -> bytes:
    view = run_view(usvfs, layout, argv, cwd=layout.base.parent)
    real = subprocess.run(argv, cwd=merged.parent, capture_output=True, timeout=60)
    v_out = view.stdout.replace(bytes(layout.base.parent), bytes(merged.parent))
    if sort:
        v_out = b"\n".join(sorted(v_out.splitlines()))
        r_out = b"\n".join(sorted(real.stdout.splitlines()))
    else:
        r_out = real.stdout
    assert view.returncode == real.returncode, (view.stderr, real.stderr)
    assert v_out == r_out, f"view stderr: {view.stderr!r}"
    assert real.stdout.strip(), "the oracle printed nothing: the test would prove nothing"
    return v_out


@pytest.mark.parametrize("name,argv,sort", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_program_matches_merged_copy(usvfs: Path, layout: Layout, merged: Path, name: str, argv: list, sort: bool) -> None:
    before = {p: snapshot_tree(p) for p in [layout.base, *layout.mods, layout.overwrite]}
    compare(usvfs, layout, merged, argv, sort)
    after = {p: snapshot_tree(p) for p in [layout.base, *layout.mods, layout.overwrite]}
    assert before == after, "a read-only program changed the disk"


def test_c_walkers_match_merged_copy(usvfs: Path, layout: Layout, merged: Path, cbin: dict) -> None:
    out = compare(usvfs, layout, merged, [str(cbin["walk"]), "data", "data/textures", "data/links"], sort=True)
    # The three walkers all ran and saw mod-only entries.
    for api in (b"nftw ", b"fts ", b"scandir "):
        assert out.count(api) > 10
    assert b"data/only_m2/readme.txt" in out


def test_getdents64_readdir_r_and_seekdir_match_merged_copy(usvfs: Path, layout: Layout, merged: Path, cbin: dict) -> None:
    dirs = ["data", "data/textures", "data/links", "data/meshes", "data/only_m2"]
    out = compare(usvfs, layout, merged, [str(cbin["dents"]), *dirs], sort=True)
    assert b"getdents64 data/only_m2/readme.txt type=8" in out
    assert out.count(b"seek ") == len(dirs)


def test_view_shows_expected_tree(usvfs: Path, layout: Layout) -> None:
    """The exact virtual tree, independently of the oracle."""
    r = run_view(usvfs, layout, ["find", ".", "-printf", "%p\\n"], cwd=layout.base)
    assert r.returncode == 0, r.stderr
    got = sorted(r.stdout.splitlines())
    expected = sorted(
        b"./" + p
        for p in [
            b"base_only.txt", b"shared.txt", b"textures", b"textures/base_tex.dds", b"textures/m1_tex.dds",
            b"textures/m2_tex.dds", b"dir with space", b"dir with space/base file.txt",
            b"dir with space/m3 file.txt", b"conflict_kind", b"meshes", b"meshes/a", b"meshes/a/b",
            b"meshes/a/b/m1.nif", b"meshes/a/m2.nif", b"meshes/single.txt", b"name with spaces.txt",
            b"caf\xe9 latin1.txt", b"links", b"links/keep.txt", b"links/to_m2", b"links/to_shared",
            b"only_m2", b"only_m2/readme.txt", b"ow_existing.txt",
        ]
    ) + [b"."]
    assert got == sorted(expected)
    r = run_view(usvfs, layout, ["cat", "shared.txt", "textures/m1_tex.dds", "caf\xe9 latin1.txt".encode("latin-1")], cwd=layout.base)
    assert r.stdout == b"from m3\nm3 overrides m1\nnot utf-8\n"
