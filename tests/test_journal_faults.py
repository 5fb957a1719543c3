"""The journal under load and faults, with real programs in the view: a C loop
churns creates, renames and deletes far past what one record area holds (the
journal compacts while the program runs) and creates more distinct paths than
the first journal has slots for (it moves to a larger file), and the view
still equals the disk; a runtime directory on a full file system fails at
start with a clear error (the journal is allocated up front, never a SIGBUS);
a journal that cannot grow refuses creates with ENOSPC before the disk
changes."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Layout

# Creates + deletes of one path (each cycle is two records), and distinct new
# files: a record area of a new journal holds ~28,000 such records and its
# table 49,152 paths. Override with USVFS_CHURN_CYCLES for a longer run (the
# fixed-size journal of old filled after ~1.6 million cycles).
CYCLES = int(os.environ.get("USVFS_CHURN_CYCLES", "300000"))
DISTINCT = int(os.environ.get("USVFS_CHURN_DISTINCT", "200000"))

NAMES = r"""
import os, stat, sys
root = sys.argv[1]
out = []
for d, ds, fs in os.walk(root):
    for n in ds + fs:
        p = os.path.join(d, n)
        st = os.lstat(p)
        kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
        out.append(f"{os.path.relpath(p, root)} {kind}")
print("\n".join(sorted(out)))
"""


def names(root: Path, view: tuple[Path, Layout] | None = None) -> bytes:
    cmd = [sys.executable, "-c", NAMES, str(root)]
    if view is None:
        return subprocess.run(cmd, capture_output=True, check=True, timeout=600).stdout
    usvfs, layout = view
    r = subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--", *cmd], cwd=layout.root, capture_output=True, timeout=600
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_churn_far_past_an_area_keeps_the_view_equal_to_the_disk(
    usvfs: Path, layout: Layout, cbin: dict[str, Path], tmp_path: Path
) -> None:
    start = time.monotonic()
    r = subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--", str(cbin["churn"]), str(layout.base), str(CYCLES), str(DISTINCT)],
        cwd=layout.root,
        capture_output=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    took = time.monotonic() - start
    # Nothing of the churned path is left anywhere.
    assert not (layout.overwrite / "churn.txt").exists()
    assert not (layout.overwrite / "churn_renamed.txt").exists()
    assert len(os.listdir(layout.overwrite / "fresh")) == DISTINCT
    view = names(layout.base, (usvfs, layout))
    oracle = names(layout.merged_copy(tmp_path / "merged"))
    assert view == oracle
    assert f"fresh/f{DISTINCT - 1} f".encode() in view
    # The journal stayed in proportion to the paths it holds.
    journals = list((Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs").glob("*/journal"))
    for j in journals:
        assert j.stat().st_size < 256 << 20, (j, j.stat().st_size)
    print(f"{CYCLES} cycles and {DISTINCT} distinct files in {took:.1f} s")


def test_dump_lists_only_current_changes(usvfs: Path, layout: Layout, cbin: dict[str, Path]) -> None:
    holder = subprocess.Popen([str(usvfs), "run", "--instance", "churn", *layout.mapping_args(), "--", "sleep", "60"])
    try:
        inst = Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs" / "churn" / "index"
        deadline = time.time() + 10
        while not inst.exists() and time.time() < deadline:
            time.sleep(0.05)
        r = subprocess.run(
            [str(usvfs), "run", "--instance", "churn", "--", str(cbin["churn"]), str(layout.base), "5000", "3"],
            capture_output=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr
        subprocess.run(
            [str(usvfs), "run", "--instance", "churn", "--", "rm", str(layout.base / "textures" / "m2_tex.dds")], check=True
        )
        d = subprocess.run([str(usvfs), "dump", "--instance", "churn"], capture_output=True, check=True).stdout
        changes = d.split(b"# changes since the mapping was set\n")[1].decode().splitlines()
        assert f"- {layout.base}/textures/m2_tex.dds" in changes
        assert not [c for c in changes if "churn" in c], changes
        assert sum(1 for c in changes if c.startswith("+ ")) == 2 + 3 + 1  # fresh, fresh_dir, f0..f2, d0
    finally:
        holder.kill()
        holder.wait()


def _unshare_mount_works() -> str | None:
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root (unshare -m)"
    if shutil.which("unshare") is None:
        return "unshare(1) is missing"
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
    if r.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace: {r.stderr.decode().strip()}"
    return None


def in_small_tmpfs(mountpoint: Path, size: str, cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Runs cmd in a private mount namespace with a tmpfs of `size` at mountpoint."""
    script = 'mount -t tmpfs -o size="$1",mode=0700 tmpfs "$2" && shift 2 && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", size, str(mountpoint), *cmd], **kw)


def test_full_runtime_directory_fails_at_start(usvfs: Path, layout: Layout) -> None:
    why = _unshare_mount_works()
    if why:
        pytest.skip(why)
    rt = Path(os.environ["XDG_RUNTIME_DIR"])
    r = in_small_tmpfs(
        rt, "1m", [str(usvfs), "run", *layout.mapping_args(), "--", "true"], capture_output=True, timeout=120
    )
    err = r.stderr.decode()
    assert r.returncode == 125, (r.returncode, err)
    assert str(rt) in err and "journal" in err, err
    assert "free space" in err, err


def test_a_journal_that_cannot_grow_refuses_creates_before_the_disk_changes(
    usvfs: Path, layout: Layout, cbin: dict[str, Path]
) -> None:
    why = _unshare_mount_works()
    if why:
        pytest.skip(why)
    rt = Path(os.environ["XDG_RUNTIME_DIR"])
    # Room for the first journal (8.5 MiB), not for a larger one.
    r = in_small_tmpfs(
        rt,
        "12m",
        [str(usvfs), "run", *layout.mapping_args(), "--", str(cbin["churn"]), str(layout.base), "0", "0", "--until-fail"],
        capture_output=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    word, n, err = r.stdout.decode().split()
    n = int(n)
    assert word == "fail" and int(err) == errno.ENOSPC, r.stdout
    assert n > 10_000
    fill = layout.overwrite / "fill"
    # Every create that succeeded is on disk; the refused one is not.
    assert len(os.listdir(fill)) == n
    assert not (fill / f"f{n}").exists()
