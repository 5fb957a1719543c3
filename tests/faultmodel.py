"""A model of a directory tree under file operations, for the fault-injection
suite: it generates seeded operation lists for `tests/c/oploop.c`, predicts
each operation's result, applies the results a program reported, and lists
the states a tree may be in when the program was killed during an operation.

A tree is a dict: relative path (str) -> "d" for a directory, or the file's
content (str)."""

from __future__ import annotations

import errno
import os
import random
import stat

Tree = dict[str, str]

TOP_FILES = [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(6)] + ["base0", "base1"]
DIRS = ["d0", "d1", "sub"]
IN_DIRS = [f"{d}/x{i}" for d in DIRS for i in range(3)]


def parent(p: str) -> str:
    return p.rsplit("/", 1)[0] if "/" in p else ""


def generate(rng: random.Random, count: int, tag: str) -> list[str]:
    """`count` operations on the names above; file contents name the op."""
    files = TOP_FILES + IN_DIRS
    ops = []
    for i in range(count):
        r = rng.random()
        if r < 0.35:
            ops.append(f"c {rng.choice(files)} {tag}{i}")
        elif r < 0.55:
            ops.append(f"u {rng.choice(files)}")
        elif r < 0.78:
            ops.append(f"r {rng.choice(files)} {rng.choice(files)}")
        elif r < 0.82:
            ops.append(f"r {rng.choice(DIRS)} {rng.choice(DIRS)}")
        elif r < 0.91:
            ops.append(f"m {rng.choice(DIRS)}")
        else:
            ops.append(f"d {rng.choice(DIRS)}")
    return ops


def is_dir(t: Tree, p: str) -> bool:
    return p == "" or t.get(p) == "d"


def predict(t: Tree, op: str) -> set[int] | None:
    """The results the operation may have on tree `t` (None: any)."""
    kind, a, *rest = op.split(" ")
    b = rest[0] if rest else ""
    if not is_dir(t, parent(a)):
        return {errno.ENOENT} if parent(a) not in t else {errno.ENOTDIR}
    if kind == "c":
        return {errno.EISDIR} if is_dir(t, a) else {0}
    if kind == "u":
        return {errno.ENOENT} if a not in t else {errno.EISDIR} if is_dir(t, a) else {0}
    if kind == "m":
        return {errno.EEXIST} if a in t else {0}
    if kind == "d":
        if a not in t:
            return {errno.ENOENT}
        if not is_dir(t, a):
            return {errno.ENOTDIR}
        return {errno.ENOTEMPTY, errno.EEXIST} if children(t, a) else {0}
    if kind == "r":
        if a not in t:
            return {errno.ENOENT}
        if not is_dir(t, parent(b)):
            return {errno.ENOENT} if parent(b) not in t else {errno.ENOTDIR}
        if a == b:
            return {0}
        if is_dir(t, a):
            # A directory merged from several places cannot move: EXDEV,
            # reported first, as the kernel does for a move across mounts.
            if b == a or b.startswith(a + "/"):
                return {errno.EINVAL, errno.EXDEV}
            if b in t and not is_dir(t, b):
                return {errno.ENOTDIR, errno.EXDEV}
            if b in t and children(t, b):
                return {errno.ENOTEMPTY, errno.EEXIST, errno.EXDEV}
            return {0, errno.EXDEV}
        if is_dir(t, b):
            return {errno.EISDIR}
        return {0}
    raise ValueError(op)


def children(t: Tree, d: str) -> list[str]:
    return [p for p in t if parent(p) == d]


def apply(t: Tree, op: str, data_seen: str | None = None) -> Tree:
    """The tree after `op` succeeded (`data_seen`: a create's content, when
    it was cut short)."""
    kind, a, *rest = op.split(" ")
    t = dict(t)
    if kind == "c":
        t[a] = rest[0] if data_seen is None else data_seen
    elif kind in "ud":
        del t[a]
    elif kind == "m":
        t[a] = "d"
    elif kind == "r":
        b = rest[0]
        if a == b:
            return t
        moved = {p: v for p, v in t.items() if p == a or p.startswith(a + "/")}
        for p in moved:
            del t[p]
        for p in [p for p in t if p == b or p.startswith(b + "/")]:
            del t[p]
        for p, v in moved.items():
            t[b + p[len(a) :]] = v
    return t


def candidates(t: Tree, op: str) -> list[Tree]:
    """The trees a program killed during `op` may leave."""
    out = [t]
    ok = predict(t, op)
    if ok is None or 0 in ok:
        out.append(apply(t, op))
        if op.startswith("c "):
            out.append(apply(t, op, ""))  # created, killed before the write
    return out


def read_tree(root: str) -> Tree:
    """Every entry below `root` (files with their content)."""
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = "d"
            else:
                with open(full, encoding="utf-8", errors="replace") as f:
                    out[rel] = f.read()
    return out


def merge(layers: list[str]) -> Tree:
    """The layers (lowest first) physically merged, as a fresh view shows them."""
    out: Tree = {}
    for layer in layers:
        if not os.path.isdir(layer):
            continue
        for p, v in read_tree(layer).items():
            if v != "d":
                for q in [q for q in out if q.startswith(p + "/")]:
                    del out[q]
            elif out.get(p, "d") != "d":
                del out[p]
            out[p] = v
    return out


def agrees_with_disk(view: Tree, disk: Tree) -> str:
    """Where the view differs from the disk merged, beyond what deletes of
    the running instance hide: a deleted directory's empty copy in a lower
    layer (a delete removes the winning copy; a new mapping shows the rest).
    Empty string: they agree."""
    bad = {k: v for k, v in view.items() if disk.get(k) != v}
    hidden = {k: v for k, v in disk.items() if k not in view}
    bad.update({k: v for k, v in hidden.items() if v != "d"})
    return diff({k: view.get(k) for k in bad}, {k: disk.get(k) for k in bad}) if bad else ""


def diff(a: Tree, b: Tree) -> str:
    keys = sorted(set(a) | set(b))
    return "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k))
