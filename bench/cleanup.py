"""Removing a bench work tree safely: a run that was interrupted leaves its
peers' mounts (mergerfs, fuse-overlayfs, kernel overlayfs) under the work
directory, and deleting through one of them deletes the layers it serves.
Mounts under the tree are detached first, and the removal never crosses into
another file system: what it cannot detach stops it with an error naming it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (from mountinfo, where
    spaces and the like are octal escapes)."""
    prefix = str(root.resolve())
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = fields[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(set(found), key=len, reverse=True)


def detach(point: str) -> None:
    for argv in (["umount", "-l", point], ["fusermount3", "-uz", point], ["fusermount", "-uz", point]):
        try:
            if subprocess.run(argv, capture_output=True).returncode == 0:
                return
        except FileNotFoundError:
            continue


def remove_tree(root: Path) -> None:
    """Removes `root` like `rm -rf`, detaching mounts below it first and never
    deleting anything on another file system."""
    if not os.path.lexists(root):
        return
    for point in mounts_under(root):
        detach(point)
    left = mounts_under(root)
    if left:
        raise RuntimeError(f"cannot remove {root}: {left[0]} is still mounted there; unmount it first")
    dev = os.lstat(root).st_dev

    def check(path: str) -> None:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_dev != dev:
            raise RuntimeError(f"cannot remove {root}: {path} is another file system; unmount it first")

    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            check(os.path.join(dirpath, d))
    shutil.rmtree(root)
