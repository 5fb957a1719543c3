"""The mount engine's caching: stateless opens (one descriptor per inode,
no OPEN/RELEASE, pages kept across opens) give programs what a physically
merged copy gives them in the cases where a descriptor per inode differs
from one per open; the kernel's cached entries and attributes (kept a
minute) are dropped as soon as the source monitor reports a change made
outside the view."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Layout, build_layout, nobody_with_fuse, snapshot_tree
from test_mount_engine import mount_works, nobody_layout  # noqa: F401 (fixtures)
import test_monitor

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse: the mount engine needs FUSE")

# Cases where one descriptor per inode could differ from one per open. Runs
# in the data directory; prints what it sees. Every file it touches is read
# first, so the kernel holds its pages and attributes.
EDGES = r"""
import mmap, os, stat, sys

def show(what, v):
    print(f"{what}: {v!r}", flush=True)

def read(p):
    with open(p, "rb") as f:
        return f.read()

# A read-only file, read, then written by its owner (root may; a normal
# user gets EACCES, on the merged copy too).
with open("ro.txt", "w") as f:
    f.write("read only\n")
os.chmod("ro.txt", 0o444)
show("ro read", read("ro.txt"))
try:
    with open("ro.txt", "a") as f:
        f.write("written\n")
    show("ro write", "ok")
except OSError as e:
    show("ro write", e.errno)
show("ro after", read("ro.txt"))

# Open for reading and writing, then deleted: the open file still reads and
# writes its own data; the name is free.
with open("gone.txt", "w") as f:
    f.write("gone\n")
show("gone read", read("gone.txt"))
f = open("gone.txt", "r+b")
os.unlink("gone.txt")
f.seek(0, 2)
f.write(b"more\n")
f.flush()
f.seek(0)
show("gone open", (f.read(), os.fstat(f.fileno()).st_size, os.path.exists("gone.txt")))
f.close()

# Truncation by open (O_TRUNC) and by path, after the pages were cached.
show("shared before", read("shared.txt"))
with open("shared.txt", "w") as f:
    f.write("new\n")
show("O_TRUNC", read("shared.txt"))
os.truncate("shared.txt", 2)
show("truncate", (read("shared.txt"), os.stat("shared.txt").st_size))

# Two descriptors appending in turn: each write lands at the end.
a = os.open("base_only.txt", os.O_WRONLY | os.O_APPEND)
b = os.open("base_only.txt", os.O_WRONLY | os.O_APPEND)
os.write(a, b"1")
os.write(b, b"2")
os.write(a, b"3\n")
os.close(a)
os.close(b)
show("append", read("base_only.txt"))
s = os.open("base_only.txt", os.O_WRONLY | os.O_APPEND | os.O_SYNC)
os.write(s, b"synced\n")
os.close(s)
show("O_SYNC", read("base_only.txt"))

# mmap: read a file mapped, then change it through a shared writable map and
# see the change through a new open.
p = "textures/m1_tex.dds"
show("mmap before", read(p))
with open(p, "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    show("mmap read", m[:])
    m[0:2] = b"MM"
    m.flush()
    m.close()
show("mmap after", read(p))

# A mod's file renamed into another directory (the view may move it by
# copying), then written under its new name; and a file held open while
# another is renamed over its name.
show("rename src", read("meshes/a/m2.nif"))
os.rename("meshes/a/m2.nif", "textures/moved.nif")
with open("textures/moved.nif", "a") as f:
    f.write("appended\n")
show("renamed", (read("textures/moved.nif"), os.path.exists("meshes/a/m2.nif")))
held = open("only_m2/readme.txt", "rb")
show("held first", held.read(4))
os.rename("name with spaces.txt", "only_m2/readme.txt")
show("renamed over", (held.read(), read("only_m2/readme.txt")))
held.close()

# More files than the server keeps descriptors for (256): the first ones'
# descriptors are closed on the way and reopened when used again; a deleted
# file held open keeps its own through it all.
os.mkdir("many")
for i in range(600):
    with open(f"many/{i}.txt", "w") as f:
        f.write(f"{i}\n")
held = open("many/0.txt", "rb")
os.unlink("many/0.txt")
total = sum(len(read(f"many/{i}.txt")) for i in range(1, 600))
with open("many/1.txt", "a") as f:
    f.write("again\n")
show("many", (total, read("many/1.txt"), held.read(), sorted(os.listdir("many"))[:3]))
held.close()

# A file written, read back through a second open, then overwritten in
# place by a third (same size): every open sees the latest data.
with open("w.txt", "w") as f:
    f.write("one\n")
show("w 1", read("w.txt"))
with open("w.txt", "r+") as f:
    f.write("two\n")
show("w 2", read("w.txt"))
"""


def run_edges(cmd_prefix: list, cwd: Path, env: dict | None = None, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd_prefix, python, "-c", EDGES], cwd=cwd, capture_output=True, timeout=120, env=env)


@pytest.mark.parametrize("opens", ["stateless", "per-open", "passthrough"])
def test_stateless_open_edges_match_merged_copy(mount_works, usvfs: Path, layout: Layout, tmp_path: Path, opens: str) -> None:
    merged = layout.merged_copy(tmp_path / "merged" / "data")
    real = run_edges([], merged)
    assert real.returncode == 0, real.stderr
    env = dict(os.environ, USVFS_MOUNT_OPENS=opens)
    view = run_edges([str(usvfs), "run", "--engine", "mount", *layout.mapping_args(), "--"], layout.base, env)
    assert view.returncode == 0, view.stderr
    assert view.stdout == real.stdout
    assert view.stderr == b""
    # And the disk holds what the merged copy holds.
    merged_after = snapshot_tree(merged)
    fresh = layout.merged_copy(tmp_path / "after" / "data")
    assert snapshot_tree(fresh) == merged_after


def test_stateless_open_edges_as_a_normal_user(mount_works, usvfs: Path, nobody_layout, tmp_path: Path) -> None:  # noqa: F811
    """Unprivileged, the data goes through the server (no passthrough), and
    a read-only file cannot be written: as on the merged copy."""
    layout, rt = nobody_layout
    prefix = nobody_with_fuse(layout.root)
    if prefix is None:
        pytest.skip("needs root (to become another user), setpriv, and unshare where /dev/fuse is 0600")
    # The test's own Python may live where nobody cannot read (root's home).
    python = "/usr/bin/python3"
    if not os.path.exists(python) or not os.stat(python).st_mode & 0o001:
        pytest.skip("no Python that other users may run (/usr/bin/python3)")
    merged = layout.merged_copy(layout.root / "merged" / "data")
    for d, dirs, files in os.walk(layout.root / "merged"):
        os.chown(d, 65534, 65534)
        for f in dirs + files:
            os.chown(os.path.join(d, f), 65534, 65534, follow_symlinks=False)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", f"XDG_RUNTIME_DIR={rt}"]
    real = run_edges(nobody, merged, python=python)
    assert real.returncode == 0, real.stderr
    view = run_edges([*prefix, "env", f"XDG_RUNTIME_DIR={rt}", str(usvfs), "run", "--engine", "mount", *layout.mapping_args(), "--"], layout.base,
                     python=python)
    if view.returncode == 125 and b"user namespace" in view.stderr:
        pytest.skip(f"unprivileged user namespaces are not allowed here: {view.stderr!r}")
    assert view.returncode == 0, view.stderr
    assert b"ro write: 13" in view.stdout
    assert view.stdout == real.stdout


def test_monitored_changes_show_at_once(mount_works, usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    """With --monitor, files added to and removed from a mod outside the view
    show in the mount engine's view within the script's 10 s bound, though
    the kernel keeps entries, misses and attributes for a minute: the
    monitor's changes invalidate them. Same steps as the preload engine's
    test (test_monitor.py)."""
    m1, m2, m3 = (str(m) for m in layout.mods)
    r = subprocess.run(
        [str(usvfs), "run", "--engine", "mount", "--monitor", "--instance", "mon", *layout.mapping_args(), "--",
         sys.executable, "-c", test_monitor.SCRIPT, str(layout.base), m1, m2, m3],
        cwd=layout.root, capture_output=True, timeout=120,
    )
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    steps = [line.split()[1] for line in out.splitlines() if line.startswith("ok ")]
    assert steps == ["file-added", "override-removed", "file-removed", "tree-added", "still-monitoring"], out


# Contents edited in place in a monitored mod: the kernel drops the pages
# and attributes it held (the monitor reports the close after writing).
EDIT = r"""
import os, sys, time
data, m1 = sys.argv[1:3]
p = os.path.join(data, "meshes/a/b/m1.nif")
print(open(p).read(), end="", flush=True)
os.stat(p)
with open(os.path.join(m1, "meshes/a/b/m1.nif"), "w") as f:
    f.write("edited mesh, longer\n")
t0 = time.monotonic()
while open(p).read() != "edited mesh, longer\n":
    if time.monotonic() - t0 > 10:
        print("TIMEOUT", open(p).read(), flush=True)
        sys.exit(1)
    time.sleep(0.01)
print(open(p).read(), end="", flush=True)
print(os.stat(p).st_size, flush=True)
"""


def test_monitored_contents_edit_shows_at_once(mount_works, usvfs: Path, layout: Layout) -> None:
    r = subprocess.run(
        [str(usvfs), "run", "--engine", "mount", "--monitor", "--instance", "edit", *layout.mapping_args(), "--",
         sys.executable, "-c", EDIT, str(layout.base), str(layout.mods[0])],
        cwd=layout.root, capture_output=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == b"m1 mesh\nedited mesh, longer\n20\n"


def test_without_monitor_cached_misses_stay_for_the_ttl(mount_works, usvfs: Path, layout: Layout) -> None:
    """Without --monitor the mapping shows its sources as they were (the
    index is the snapshot): a file added to a mod outside stays absent."""
    script = (
        "import os, sys, time\n"
        "data, m1 = sys.argv[1:3]\n"
        "print(os.path.exists(os.path.join(data, 'late.txt')))\n"
        "open(os.path.join(m1, 'late.txt'), 'w').write('late\\n')\n"
        "time.sleep(0.5)\n"
        "print(os.path.exists(os.path.join(data, 'late.txt')), 'late.txt' in os.listdir(data))\n"
    )
    r = subprocess.run(
        [str(usvfs), "run", "--engine", "mount", *layout.mapping_args(), "--",
         sys.executable, "-c", script, str(layout.base), str(layout.mods[0])],
        cwd=layout.root, capture_output=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"False\nFalse False\n"
