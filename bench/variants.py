"""Workload variants beyond the warm, read-only ones in run.py: the same walk
and read on a view set up anew for each run (how a game meets its view), a
build of many small C files inside the view (process start and creates), and
a `perf` summary of where the time goes when a target is missed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from statistics import median
from pathlib import Path
from typing import Callable, Dict, List, Optional

from wine import perf_top

PROJECT = "buildproj"
SOURCES = 300

# Systems whose view can be torn down and set up again per run.
FRESH_SYSTEMS = {"usvfs (preload)", "usvfs (mount)", "kernel overlayfs", "fuse-overlayfs", "mergerfs"}
# Systems whose view takes writes (the overlay peers are mounted read-only,
# with lower layers only, so they cannot build).
BUILD_SYSTEMS = {"merged copy", "usvfs (preload)", "usvfs (mount)", "mergerfs"}


def ensure_project(layer: Path, merged: Path) -> None:
    """A C project of SOURCES files and a Makefile in the first mod layer
    (and in the merged copy), so `make` in the view reads a mod and writes
    its objects and program through the view."""
    for root in (layer, merged):
        proj = root / PROJECT
        # Outputs an interrupted run left (in the layer, where a view without
        # a create target puts them) would change the other workloads' checks.
        for leftover in [*proj.glob("*.o"), proj / "prog"]:
            leftover.unlink(missing_ok=True)
        if (proj / "Makefile").exists():
            continue
        proj.mkdir(parents=True, exist_ok=True)
        for i in range(SOURCES):
            (proj / f"f{i:03d}.c").write_text(f"int f{i:03d}(int x) {{ return x * {i + 1} + {i % 7}; }}\n")
        calls = " + ".join(f"f{i:03d}(1)" for i in range(SOURCES))
        decls = "".join(f"int f{i:03d}(int);\n" for i in range(SOURCES))
        (proj / "main.c").write_text(f'#include <stdio.h>\n{decls}int main(void) {{ printf("%d\\n", {calls}); return 0; }}\n')
        (proj / "Makefile").write_text(
            "SRCS := $(wildcard *.c)\nOBJS := $(SRCS:.c=.o)\n\nprog: $(OBJS)\n\tcc -o $@ $(OBJS)\n\n"
            "%.o: %.c\n\tcc -O0 -c $< -o $@\n\nclean:\n\trm -f $(OBJS) prog\n"
        )


def expected_output() -> str:
    return str(sum(1 * (i + 1) + i % 7 for i in range(SOURCES)))


def stats(times: List[float]) -> dict:
    return {"median": median(times), "min": min(times), "max": max(times), "runs": len(times)}


def build_once(sh: Callable[[str], subprocess.CompletedProcess], proj: str) -> tuple:
    """One `make -j4` from clean; (seconds, the check from the program's output)."""
    r = sh(f'make -s -C "{proj}" clean')
    if r.returncode != 0:
        raise RuntimeError(f"build clean: {r.stderr.strip()[-300:]}")
    t = time.perf_counter()
    r = sh(f'make -s -j4 -C "{proj}"')
    secs = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"build: {r.stderr.strip()[-300:]}")
    out = sh(f'"{proj}/prog"')
    if out.stdout.strip() != expected_output():
        raise RuntimeError(f"build: the program printed {out.stdout.strip()!r}, not {expected_output()}")
    return secs, f"entries={SOURCES + 1} bytes={out.stdout.strip()}"


def merged_build(merged: Path) -> Callable[[], float]:
    """One build on the merged copy, for pairing (see `run_build`)."""
    proj = f"{merged}/{PROJECT}"

    def once() -> float:
        def sh(script: str) -> subprocess.CompletedProcess:
            return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=1800)
        secs = build_once(sh, proj)[0]
        sh(f'make -s -C "{proj}" clean')
        return secs
    return once


def run_build(sysobj, runs: int, ref: Optional[Callable[[], float]] = None) -> dict:
    """`make -j4` of the project inside the system, from clean each time;
    the check is the built program's output. With `ref`, the merged copy's
    build runs right before each of the system's (its median becomes
    `ref_median`, as for the warm workloads)."""
    proj = f"{sysobj.root}/{PROJECT}"
    env = sysobj.env()

    def sh(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(sysobj.wrap(["sh", "-c", script]), env=env, capture_output=True, text=True, timeout=1800)

    samples, ref_samples = [], []
    check = ""
    for i in range(runs + 1):
        if ref is not None:
            rs = ref()
            if i > 0:
                ref_samples.append(rs)
        secs, check = build_once(sh, proj)
        if i > 0:
            samples.append(secs)
    sh(f'make -s -C "{proj}" clean')
    w = stats(samples)
    if ref_samples:
        w["ref_median"] = median(ref_samples)
    w["check"] = check
    return w


def run_fresh(sysobj, argv: List[str], runs: int, parse: Callable[[str], tuple],
              ref: Optional[List[str]] = None) -> dict:
    """The workload on a view set up anew before each run (setup not timed):
    the system's caches of the view are empty, the disk's are warm. With
    `ref` (the same workload on the merged copy), that runs right before
    each of the system's runs (its median becomes `ref_median`)."""
    samples, ref_samples = [], []
    check = ""
    for _ in range(runs):
        if ref is not None:
            rr = subprocess.run(ref, capture_output=True, text=True, timeout=3600)
            if rr.returncode == 0:
                ref_samples.append(parse(rr.stdout)[1])
        sysobj.stop()
        sysobj.start()
        r = subprocess.run(sysobj.wrap(argv), env=sysobj.env(), capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"fresh {argv[1]}: {r.stderr.strip()[-300:]}")
        check, secs, _ = parse(r.stdout)
        samples.append(secs)
    w = stats(samples)
    if ref_samples:
        w["ref_median"] = median(ref_samples)
    w["check"] = check
    return w


def perf_works() -> bool:
    return bool(shutil.which("perf")) and subprocess.run(
        ["perf", "stat", "-e", "cpu-clock", "true"], capture_output=True).returncode == 0


def busy(rows: List[tuple], limit: int, drop_comm: bool = False) -> List[tuple]:
    """perf rows without the idle task (`swapper`: a system-wide profile of
    a 2-core machine is mostly idle), as shares of the busy time."""
    kept = [(pct, name) for pct, name in rows if not name.startswith("swapper")]
    total = sum(pct for pct, _ in kept) or 1.0
    out = []
    for pct, name in kept:
        if drop_comm:
            name = name.split("  ", 1)[-1]
        out.append((100.0 * pct / total, name))
    return out[:limit]


def profile(sysobj, argv: List[str], data: Path, env: Optional[dict] = None) -> Dict[str, list]:
    """`perf record -a -e cpu-clock` around one run of the workload (system
    wide, so a FUSE server's and the kernel's share are counted), summarized
    by process and object, and by symbol."""
    rec = subprocess.Popen(["perf", "record", "-q", "-a", "-e", "cpu-clock", "-F", "2000", "-o", str(data)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        subprocess.run(sysobj.wrap(argv), env=env if env is not None else sysobj.env(), capture_output=True, timeout=3600)
    finally:
        rec.send_signal(2)
        rec.wait(timeout=120)
    out = {"by_dso": busy(perf_top(data, None, "comm,dso", 40), 8),
           "by_symbol": busy(perf_top(data, None, "comm,sym", 60), 12, drop_comm=True)}
    try:
        os.unlink(data)
    except OSError:
        pass
    return out
