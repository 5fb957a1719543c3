"""Real programs writing inside the view end with the same tree as the same
programs on a physically merged copy; two processes agree; concurrent
creators and deleters lose nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import Layout, run_view

DUMP = r"""
import hashlib, os, stat, sys
root = sys.argv[1]
skip = set(sys.argv[2:])
out = []
for d, ds, fs in os.walk(root):
    ds[:] = [x for x in ds if x not in skip]
    for n in ds + fs:
        p = os.path.join(d, n)
        rel = os.path.relpath(p, root)
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            out.append(f"{rel} l {os.readlink(p)}")
        elif stat.S_ISDIR(st.st_mode):
            out.append(f"{rel} d")
        else:
            out.append(f"{rel} f {st.st_size} {hashlib.sha256(open(p, 'rb').read()).hexdigest()[:16]}")
print("\n".join(sorted(out, key=os.fsencode)))
"""

EDITOR_SAVE = r"""
import os, sys
p = sys.argv[1]
old = open(p).read()
tmp = p + ".swp"
with open(tmp, "w") as f:
    f.write(old.upper())
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, p)
"""

PY_TREE_OPS = r"""
import os, shutil
shutil.copytree("data/meshes", "data/meshes_copy")
shutil.rmtree("data/textures")
os.replace("data/base_only.txt", "data/only_m2/base_moved.txt")
os.makedirs("data/brand/new/dir")
with open("data/brand/new/dir/f.txt", "w") as f: f.write("fresh\n")
"""

SCRIPTS = {
    "cp-r": "cp -r data/meshes data/meshes_copy && cp -a data/links data/links_copy",
    "mv": "mv data/textures data/textures2 && mv data/shared.txt data/only_m2/shared_moved.txt && mv data/name\\ with\\ spaces.txt data/renamed.txt",
    "rm-rf": "rm -rf data/meshes data/dir\\ with\\ space && rm -f data/links/to_m2",
    "mkdir-p": "mkdir -p data/a/b/c data/meshes/a/new/deeper data/textures/sub",
    "tar-x": "tar xf \"$TARBALL\" -C data && tar xf \"$TARBALL\" -C data/meshes",
    "sed-i": "sed -i s/from/FROM/ data/shared.txt data/links/keep.txt data/base_only.txt",
    "python-tree-ops": f"{sys.executable} -c '{PY_TREE_OPS}'",
    "editor-save": f"{sys.executable} -c '{EDITOR_SAVE}' data/shared.txt && {sys.executable} -c '{EDITOR_SAVE}' data/base_only.txt",
    "delete-recreate": "rm data/shared.txt && echo recreated > data/shared.txt && rm data/textures/m1_tex.dds && echo again > data/textures/m1_tex.dds",
    "ln-and-symlink": "ln data/shared.txt data/hard.txt && ln -s shared.txt data/soft.txt && cat data/soft.txt",
    "truncate-chmod-touch": "truncate -s 3 data/shared.txt && chmod 600 data/meshes/single.txt && touch data/touched.txt",
}


@pytest.fixture
def tarball(tmp_path: Path) -> Path:
    src = tmp_path / "tarsrc"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "pkg" / "a.txt").write_text("a\n")
    (src / "pkg" / "sub" / "b.txt").write_text("b\n")
    (src / "textures").mkdir()
    (src / "textures" / "from_tar.dds").write_text("tar tex\n")
    out = tmp_path / "t.tar"
    with tarfile.open(out, "w") as t:
        t.add(src / "pkg", "pkg")
        t.add(src / "textures", "textures")
    return out


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_program_writes_match_merged_copy(usvfs: Path, layout: Layout, tarball: Path, name: str) -> None:
    merged = layout.root / "merged" / "data"
    merged.parent.mkdir()
    layout.merged_copy(merged)
    env = dict(os.environ, TARBALL=str(tarball), DUMP=DUMP)
    # The tree is dumped by the same instance: a new `usvfs run` with rules
    # would set the mapping again (and reflect the disk as it is then).
    script = SCRIPTS[name] + f' && echo "== tree" && {sys.executable} -c "$DUMP" data'
    view = run_view(usvfs, layout, ["sh", "-c", script], cwd=layout.base.parent, env=env)
    real = subprocess.run(["sh", "-c", script], cwd=merged.parent, capture_output=True, env=env)
    assert real.returncode == 0, real.stderr
    assert view.returncode == 0, view.stderr
    got, want = view.stdout.decode("latin-1").splitlines(), real.stdout.decode("latin-1").splitlines()
    assert got == want
    # Nothing leaks outside the layers and the overwrite folder.
    assert sorted(os.listdir(layout.root)) == ["game", "merged", "mods", "overwrite", "runtime", "single", "t.tar", "tarsrc"]


def test_git_repository_in_the_view(usvfs: Path, layout: Layout) -> None:
    script = (
        "cd data && git init -q && git add -A && "
        "git -c user.email=a@b -c user.name=n commit -qm first && "
        "echo change >> shared.txt && git -c user.email=a@b -c user.name=n commit -qam second && "
        "git log --format=%s && git status --porcelain && git ls-files | head -5 && git fsck --no-progress 2>&1"
    )
    r = run_view(usvfs, layout, ["sh", "-c", script], cwd=layout.base.parent)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[:2] == ["second", "first"]
    assert "base_only.txt" in lines
    # The repository lives in overwrite; the edited file stayed in its mod.
    assert (layout.overwrite / ".git" / "HEAD").exists()
    assert (layout.mods[2] / "shared.txt").read_text() == "from m3\nchange\n"
    assert not (layout.base / ".git").exists()


def test_sqlite_database_in_the_view(usvfs: Path, layout: Layout) -> None:
    if not shutil.which("sqlite3"):
        pytest.skip("sqlite3 not installed")
    db = "data/only_m2/game.db"
    r = run_view(usvfs, layout, ["sh", "-c",
                 f"sqlite3 {db} 'create table t(x); insert into t values (1),(2),(3);' && sqlite3 {db} 'select sum(x) from t;'"],
                 cwd=layout.base.parent)
    assert (r.returncode, r.stdout) == (0, b"6\n"), r.stderr
    r = run_view(usvfs, layout, [sys.executable, "-c",
                 f"import sqlite3; c = sqlite3.connect('{db}'); c.execute('insert into t values (4)'); c.commit(); "
                 f"print(c.execute('select sum(x) from t').fetchone()[0])"], cwd=layout.base.parent)
    assert r.stdout == b"10\n", r.stderr
    assert (layout.overwrite / "only_m2" / "game.db").exists()
    assert sorted(os.listdir(layout.mods[1] / "only_m2")) == ["readme.txt"]


CONCURRENT = r"""
import os, sys, threading
proc = sys.argv[1]
errors = []
def work(t):
    try:
        for i in range(60):
            p = f"data/busy/p{proc}_t{t}_{i}.txt"
            with open(p, "w") as f:
                f.write(p)
            if i % 3 == 0:
                os.unlink(p)
    except Exception as e:
        errors.append(repr(e))
ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print("errors", errors)
"""


def test_concurrent_creators_and_deleters(usvfs: Path, layout: Layout) -> None:
    (layout.mods[0] / "busy").mkdir()
    (layout.mods[0] / "busy" / "keep.txt").write_text("keep\n")
    holder = subprocess.Popen([str(usvfs), "run", "--instance", "busy", *layout.mapping_args(), "--", "sleep", "60"])
    try:
        import time

        inst = Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs" / "busy" / "index"
        deadline = time.time() + 10
        while not inst.exists() and time.time() < deadline:
            time.sleep(0.05)
        procs = [
            subprocess.Popen([str(usvfs), "run", "--instance", "busy", "--", sys.executable, "-c", CONCURRENT, str(n)],
                             cwd=layout.base.parent, stdout=subprocess.PIPE)
            for n in range(4)
        ]
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert out == b"errors []\n"
        expected = sorted(
            [f"p{n}_t{t}_{i}.txt" for n in range(4) for t in range(4) for i in range(60) if i % 3 != 0] + ["keep.txt"]
        )
        r = subprocess.run([str(usvfs), "run", "--instance", "busy", "--", "ls", "-1", "data/busy"],
                           cwd=layout.base.parent, capture_output=True, check=True)
        assert r.stdout.decode().split() == expected
        physical = sorted(os.listdir(layout.overwrite / "busy")) + sorted(os.listdir(layout.mods[0] / "busy"))
        assert sorted(physical) == expected
    finally:
        holder.kill()
        holder.wait()


ALIAS_SCRIPT = (
    'echo new > "$D/textures/new.dds" && mkdir -p "$D/meshes/a/fresh/deeper" && echo f > "$D/meshes/a/fresh/f.nif"'
    ' && cp "$D/shared.txt" "$D/only_m2/copied.txt" && mv "$D/textures/m2_tex.dds" "$D/meshes/moved.dds"'
    ' && mv "$D/meshes/a/fresh" "$D/fresh_moved" && rm "$D/base_only.txt" && echo edit >> "$D/shared.txt"'
    ' && ls -R "$D"'
)


def test_writes_through_a_symlinked_prefix_land_where_direct_ones_do(usvfs: Path, tmp_path: Path) -> None:
    """Wine reaches every path through $WINEPREFIX/dosdevices/z: -> /: the same
    writes through that prefix and through the direct path leave the same
    physical trees (new files in overwrite, mods changed only in place)."""
    from conftest import build_layout, snapshot_tree

    trees, outputs = [], []
    for via_alias in (False, True):
        root = tmp_path / ("alias" if via_alias else "direct")
        layout = build_layout(root)
        z = root / "dosdevices" / "z:"
        z.parent.mkdir()
        os.symlink("/", z)
        d = f"{z}{layout.base}" if via_alias else str(layout.base)
        r = run_view(usvfs, layout, ["sh", "-c", ALIAS_SCRIPT], env=dict(os.environ, D=d))
        assert r.returncode == 0, r.stderr
        outputs.append(r.stdout.decode("latin-1").replace(d, "D"))
        trees.append({k: snapshot_tree(root / k) for k in ("game", "mods", "overwrite")})
    assert outputs[0] == outputs[1]
    assert trees[0] == trees[1]
    # And the writes did land in overwrite, not in a mod.
    assert (tmp_path / "alias" / "overwrite" / "textures" / "new.dds").read_text() == "new\n"
    assert (tmp_path / "alias" / "overwrite" / "fresh_moved" / "f.nif").read_text() == "f\n"


def test_files_created_in_a_real_only_directory_are_listed(usvfs: Path, layout: Layout) -> None:
    """A directory only the real destination has: a file created in it lands
    in the create target, and every way of listing the directory shows it
    (readdir, getdents64 on a descriptor, find), until it is deleted again."""
    (layout.base / "real_only").mkdir()
    (layout.base / "real_only" / "old.txt").write_text("old\n")
    script = r"""
set -e
cd "$1"
echo new > real_only/new.txt
ls real_only
python3 -c 'import os; print(sorted(os.listdir("real_only"))); print(sorted(e.name for e in os.scandir(os.open("real_only", os.O_RDONLY))))'
find real_only -type f | sort
rm real_only/new.txt
ls real_only
rmdir real_only 2>/dev/null && echo removed || echo kept
"""
    r = run_view(usvfs, layout, ["sh", "-c", script, "sh", str(layout.base)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "new.txt",
        "old.txt",
        "['new.txt', 'old.txt']",
        "['new.txt', 'old.txt']",
        "real_only/new.txt",
        "real_only/old.txt",
        "old.txt",
        "kept",
    ]
    assert not (layout.overwrite / "real_only" / "new.txt").exists()
    assert (layout.base / "real_only" / "old.txt").read_text() == "old\n"
