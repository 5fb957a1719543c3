"""Sources that change while the view runs: with `--monitor` (link flag
MONITOR_CHANGES, Python `VirtualDirectory.monitor_changes`), files added to
or removed from a mod outside the view appear or disappear for running
processes, applied path by path (the index is not rebuilt); a path deleted
through the view stays deleted when its files vanish."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, Layout, snapshot_tree, write

# Runs inside the view: performs the outside changes step by step (the mods
# are outside the destination, so the writes are physical) and waits (up to
# a hang guard) for each to show. Prints one line per step.
SCRIPT = r"""
import os, shutil, sys, time
data, m1, m2, m3 = sys.argv[1:5]

def wait(cond, what):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > 10:
            print(f"TIMEOUT {what}", flush=True)
            sys.exit(1)
        time.sleep(0.01)
    print(f"ok {what} {time.monotonic() - t0:.3f}", flush=True)

def read(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return None

assert "added.txt" not in os.listdir(data)
with open(os.path.join(m1, "added.txt"), "w") as f:
    f.write("added to m1\n")
wait(lambda: "added.txt" in os.listdir(data) and read(os.path.join(data, "added.txt")) == "added to m1\n", "file-added")

# m3 overrides m1's texture: removing m3's copy shows m1's again.
assert read(os.path.join(data, "textures/m1_tex.dds")) == "m3 overrides m1\n"
os.unlink(os.path.join(m3, "textures/m1_tex.dds"))
wait(lambda: read(os.path.join(data, "textures/m1_tex.dds")) == "m1 tex\n", "override-removed")

os.unlink(os.path.join(m2, "only_m2/readme.txt"))
wait(lambda: "readme.txt" not in os.listdir(os.path.join(data, "only_m2")), "file-removed")

# A whole new tree (written before its directory could be watched, too).
os.makedirs(os.path.join(m2, "newmod/deep"))
with open(os.path.join(m2, "newmod/deep/f.txt"), "w") as f:
    f.write("deep\n")
wait(lambda: read(os.path.join(data, "newmod/deep/f.txt")) == "deep\n", "tree-added")

# Deleted through the view, then its lower copy's source vanishes too: it
# stays deleted. Then a new file appears there: it shows.
os.unlink(os.path.join(data, "shared.txt"))
os.unlink(os.path.join(m2, "shared.txt"))
time.sleep(0.3)
assert not os.path.exists(os.path.join(data, "shared.txt")), "a deleted path came back"
with open(os.path.join(m1, "later.txt"), "w") as f:
    f.write("later\n")
wait(lambda: os.path.exists(os.path.join(data, "later.txt")), "still-monitoring")
print("done", flush=True)
"""


def test_sources_changed_while_running_show_in_the_view(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    m1, m2, m3 = (str(m) for m in layout.mods)
    r = subprocess.run(
        [str(usvfs), "run", "--monitor", "--instance", "mon", *layout.mapping_args(), "--",
         sys.executable, "-c", SCRIPT, str(layout.base), m1, m2, m3],
        cwd=layout.root, capture_output=True, timeout=120,
    )
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    steps = [line.split()[1] for line in out.splitlines() if line.startswith("ok ")]
    assert steps == ["file-added", "override-removed", "file-removed", "tree-added", "still-monitoring"], out
    assert out.splitlines()[-1] == "done"
    # A fresh run shows the disk as it is now: the same tree as a merged copy.
    lister = [
        sys.executable,
        "-c",
        "import os,sys; r=os.fsencode(sys.argv[1]); sys.stdout.buffer.write(b'\\n'.join(sorted("
        "os.path.relpath(os.path.join(d, n), r) for d, ds, fs in os.walk(r) for n in ds + fs)))",
        str(layout.base),
    ]
    fresh = subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--", *lister], cwd=layout.root, capture_output=True, timeout=60
    )
    merged = layout.merged_copy(tmp_path / "merged")
    assert fresh.stdout.split(b"\n") == sorted(snapshot_tree(merged))


def test_one_new_file_in_a_large_mapping_is_applied_without_a_new_index(
    usvfs: Path, layout: Layout, tmp_path: Path
) -> None:
    big = layout.mods[0] / "big"
    for d in range(100):
        (big / f"d{d}").mkdir(parents=True)
        for f in range(100):
            (big / f"d{d}" / f"f{f}").write_bytes(b"")
    script = r"""
import os, sys, time, glob
data, src, rt = sys.argv[1:4]
index = glob.glob(os.path.join(rt, "usvfs", "big", "index"))[0]
st = os.stat(index)
with open(os.path.join(src, "big", "d50", "new.txt"), "w") as f:
    f.write("new\n")
t0 = time.monotonic()
while not os.path.exists(os.path.join(data, "big", "d50", "new.txt")):
    assert time.monotonic() - t0 < 10, "never showed"
    time.sleep(0.01)
st2 = os.stat(index)
print("same index" if (st.st_ino, st.st_mtime_ns) == (st2.st_ino, st2.st_mtime_ns) else "index rebuilt")
print(len(os.listdir(os.path.join(data, "big", "d50"))))
"""
    r = subprocess.run(
        [str(usvfs), "run", "--monitor", "--instance", "big", *layout.mapping_args(), "--",
         sys.executable, "-c", script, str(layout.base), str(layout.mods[0]), os.environ["XDG_RUNTIME_DIR"]],
        cwd=layout.root, capture_output=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().split("\n")[:2] == ["same index", "101"]


def test_without_monitoring_a_mapping_shows_its_sources_as_they_were(usvfs: Path, layout: Layout) -> None:
    script = (
        "import os,sys,time; open(os.path.join(sys.argv[2], 'late.txt'), 'w').close(); time.sleep(0.5);"
        "print(os.path.exists(os.path.join(sys.argv[1], 'late.txt')))"
    )
    r = subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--", sys.executable, "-c", script, str(layout.base), str(layout.mods[0])],
        cwd=layout.root, capture_output=True, timeout=60,
    )
    assert r.stdout.decode().strip() == "False", r.stderr


def test_monitor_needs_a_new_mapping(usvfs: Path, layout: Layout) -> None:
    r = subprocess.run([str(usvfs), "run", "--monitor", "--instance", "nothing", "--", "true"], capture_output=True, timeout=60)
    assert r.returncode != 0
    assert b"--monitor applies to a new mapping" in r.stderr


def test_python_monitor_changes_flag(layout: Layout, tmp_path: Path) -> None:
    code = r"""
import os, sys, time
from usvfs import UserspaceVFS, Mapping, VirtualDirectory
base, m1, m2 = sys.argv[1:4]
mp = Mapping()
watched = VirtualDirectory(m1, base)
watched.monitor_changes = True
mp.link(watched)
mp.link(VirtualDirectory(m2, base))
with UserspaceVFS("pymon") as vfs:
    vfs.set_mapping(mp)
    open(os.path.join(m1, "py_new.txt"), "w").close()
    open(os.path.join(m2, "py_unwatched.txt"), "w").close()
    t0 = time.monotonic()
    while True:
        out = vfs.run(["ls", base], capture_output=True).stdout.split()
        if b"py_new.txt" in out or time.monotonic() - t0 > 10:
            break
        time.sleep(0.05)
    print(b"py_new.txt" in out, b"py_unwatched.txt" in out)
"""
    r = subprocess.run(
        [sys.executable, "-c", code, str(layout.base), str(layout.mods[0]), str(layout.mods[1])],
        capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO / "python")},
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().split() == ["True", "False"]


def test_monitored_files_change_nothing_on_disk(usvfs: Path, layout: Layout) -> None:
    """The monitor only records: the layers stay as the outside writer left them."""
    write(layout.mods[1] / "x.txt", "x")
    expected = {p: snapshot_tree(p) for p in [layout.base, *layout.mods, layout.overwrite]}
    r = subprocess.run(
        [str(usvfs), "run", "--monitor", *layout.mapping_args(), "--", "sh", "-c",
         f"rm {layout.mods[1]}/x.txt; sleep 0.3; ls {layout.base}"],
        cwd=layout.root, capture_output=True, timeout=60,
    )
    assert r.returncode == 0
    assert b"x.txt" not in r.stdout.split()
    expected_after = dict(expected)
    expected_after[layout.mods[1]] = {k: v for k, v in expected[layout.mods[1]].items() if k != b"x.txt"}
    assert {p: snapshot_tree(p) for p in expected} == expected_after


def test_profile_monitors_only_the_links_it_marks(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    m1, m2 = layout.mods[0], layout.mods[1]
    prof = tmp_path / "p.toml"
    prof.write_text(
        f'[[link]]\ndir = "{m1}"\nto = "{layout.base}"\nmonitor = true\n\n'
        f'[[link]]\ndir = "{m2}"\nto = "{layout.base}"\n'
    )
    script = (
        "import os,sys,time; b,m1,m2=sys.argv[1:4];"
        "open(os.path.join(m1,'p1.txt'),'w').close(); open(os.path.join(m2,'p2.txt'),'w').close();"
        "t0=time.monotonic()\n"
        "while not os.path.exists(os.path.join(b,'p1.txt')) and time.monotonic()-t0<10: time.sleep(0.01)\n"
        "time.sleep(0.2); print(os.path.exists(os.path.join(b,'p1.txt')), os.path.exists(os.path.join(b,'p2.txt')))"
    )
    r = subprocess.run(
        [str(usvfs), "run", "--profile", str(prof), "--", sys.executable, "-c", script, str(layout.base), str(m1), str(m2)],
        cwd=layout.root, capture_output=True, timeout=60,
    )
    assert r.stdout.decode().split() == ["True", "False"], r.stderr.decode()
