#!/usr/bin/env python3
"""Seeded generator of a synthetic mod setup: LAYERS mod folders of FILES files
each, with overlapping paths across layers, several directory depths, and one
directory (`shared/`) that every layer feeds."""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path


def generate(root: Path, layers: int, files: int, seed: int = 42) -> list[Path]:
    rng = random.Random(seed)
    # A pool of directories at depths 1..4; layers draw from it so paths overlap.
    dirs = [""]
    for i in range(max(8, files // 40)):
        parent = rng.choice(dirs) if len(dirs) > 1 and rng.random() < 0.7 else ""
        if parent.count("/") >= 3:
            parent = ""
        dirs.append(f"{parent}/d{i}".lstrip("/"))
    pool = max(files * 2, 10)  # file-name pool: about half of each layer overlaps others
    noise = os.urandom(8192)
    out = []
    for layer in range(layers):
        base = root / f"mod{layer:04d}"
        made: set[str] = set()
        # One file per layer in the directory every layer feeds.
        entries = [f"shared/from_layer_{layer:04d}.txt"]
        while len(entries) < files:
            d = rng.choice(dirs)
            name = f"f{rng.randrange(pool)}.dat"
            rel = f"{d}/{name}".lstrip("/")
            if rel not in made:
                made.add(rel)
                entries.append(rel)
        for rel in entries:
            p = base / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            size = rng.choice((0, 16, 100, 1000, 4000))
            start = rng.randrange(0, len(noise) - size + 1)
            p.write_bytes(noise[start : start + size])
        out.append(base)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", type=Path)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    generate(a.root, a.layers, a.files, a.seed)


if __name__ == "__main__":
    main()
