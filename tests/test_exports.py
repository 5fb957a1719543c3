"""The preload library exports only C library functions (each interposes one
that exists in libc, which its hook calls through the table of originals),
plus its own `usvfs_*` entry points for the variadic C shims."""

from __future__ import annotations

import ctypes
import re
import subprocess

from conftest import PRELOAD, REPO


def exported_functions() -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(PRELOAD)], capture_output=True, text=True, check=True)
    names = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("T", "W"):
            names.add(parts[2].split("@")[0])
    return names


def test_every_export_interposes_a_libc_function(usvfs) -> None:
    libc = ctypes.CDLL("libc.so.6")
    exports = exported_functions()
    ours = {n for n in exports if n.startswith("usvfs_")}
    unknown = sorted(n for n in exports - ours if not hasattr(libc, n))
    assert exports - ours, "no hooks exported"
    assert unknown == [], f"exports that are not C library functions: {unknown}"


def test_table_of_originals_covers_the_hooked_functions(usvfs) -> None:
    table = (REPO / "crates/usvfs-preload/src/real.rs").read_text()
    start = table.index("originals! {")
    body = table[start : table.index("\n}\n", start)]
    originals = set(re.findall(r"^\s+(\w+)\(", body, re.M))
    exports = exported_functions()
    # Every original the table lists is interposed (or deliberately reached
    # through a sibling, like execve for the exec family).
    not_exported = sorted(originals - exports)
    assert not_exported == [], f"originals without an export: {not_exported}"
