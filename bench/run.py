#!/usr/bin/env python3
"""Benchmarks usvfs's preload engine against the physically merged copy of the
same layers, in the same run, and prints medians and ratios.

Workloads run as a hooked process exactly as `usvfs run` starts one (the
library in LD_PRELOAD, the instance's index mapped), but without the CLI's own
start-up in the measured time; the setup row measures that separately.
Never used as a test: nothing here passes or fails on a timing."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from gen import generate  # noqa: E402

USVFS = REPO / "target" / "release" / "usvfs"
LIB = REPO / "target" / "release" / "libusvfs_preload.so"
SIZES = {"small": (20, 2000), "large": (1000, 500)}


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, bytes]:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"benchmark command failed: {cmd}\n{r.stderr.decode(errors='replace')}")
    return dt, r.stdout


def measure(cmd: list[str], runs: int, env: dict | None = None) -> dict:
    timed(cmd, env)  # warm-up: caches, page tables
    times, out = [], b""
    for _ in range(runs):
        dt, out = timed(cmd, env)
        times.append(dt)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "output": out.decode()}


def prepare(size: str, out: Path) -> tuple[Path, list[Path], Path]:
    layers, files = SIZES[size]
    root = out / f"setup-{size}"
    marker = root / ".complete"
    base, merged = root / "game" / "data", root / "merged"
    mods_dir = root / "mods"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"generating {layers} layers x {files} files in {root} ...", flush=True)
        mods = generate(mods_dir, layers, files)
        base.mkdir(parents=True)
        for i in range(50):
            (base / f"base_{i}.dat").write_bytes(b"base")
        (base / "shared").mkdir()
        print("building the physically merged copy ...", flush=True)
        shutil.copytree(base, merged)
        for m in mods:
            subprocess.run(["cp", "-a", f"{m}/.", str(merged)], check=True)
        marker.write_text("ok")
    mods = sorted(p for p in mods_dir.iterdir())
    return base, mods, merged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    workload = a.out / "workload"
    subprocess.run(["gcc", "-O2", "-o", str(workload), str(HERE / "workload.c")], check=True)
    base, mods, merged = prepare(a.size, a.out)

    rt = a.out / "runtime"
    rt.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(rt))
    mapping = [x for m in mods for x in ("--dir", str(m), str(base))]
    inst = "bench"
    # A long-lived controller keeps the instance (and its index) published.
    holder = subprocess.Popen(
        [str(USVFS), "run", "--instance", inst, *mapping, "--", "sleep", "3600"], env=env, start_new_session=True
    )
    inst_dir = rt / "usvfs" / inst
    deadline = time.time() + 120
    while not (inst_dir / "index").exists() and time.time() < deadline:
        time.sleep(0.05)
    hooked = dict(env, LD_PRELOAD=str(LIB), USVFS_INSTANCE_DIR=str(inst_dir))

    results = []
    try:
        for name, args in [
            ("walk + lstat", ["walk"]),
            ("open + read", ["read"]),
            ("10,000 failed lookups", ["miss", "-", "10000"]),
            ("list the shared directory", ["list", "shared"]),
        ]:
            def cmd(d: Path) -> list[str]:
                out = [str(workload), args[0]]
                if args[0] == "list":
                    return out + [str(d / "shared")]
                out.append(str(d))
                return out + args[2:]
            ref = measure(cmd(merged), a.runs)
            view = measure(cmd(base), a.runs, hooked)
            if ref["output"] != view["output"]:
                raise SystemExit(f"{name}: the view and the merged copy disagree: {view['output']} vs {ref['output']}")
            results.append((name, ref, view))
            print(f"{name:28} merged {ref['median']*1000:8.1f} ms   usvfs {view['median']*1000:8.1f} ms   ratio {view['median']/ref['median']:.2f}", flush=True)
        true_ref = measure(["/bin/true"], a.runs)
        true_view = measure(["/bin/true"], a.runs, hooked)
        results.append(("start /bin/true", true_ref, true_view))
        print(f"{'start /bin/true':28} native {true_ref['median']*1000:8.2f} ms   usvfs {true_view['median']*1000:8.2f} ms   ratio {true_view['median']/true_ref['median']:.2f}")
    finally:
        os.killpg(holder.pid, 15)
        holder.wait()

    find = measure(["find", *map(str, mods)], 3)
    setup = measure([str(USVFS), "run", "--instance", "bench-setup", *mapping, "--", "true"], 3, env)
    results.append(("setup: index build vs bare find", find, setup))
    print(f"{'setup (vs bare find)':28} find   {find['median']*1000:8.1f} ms   usvfs {setup['median']*1000:8.1f} ms   ratio {setup['median']/find['median']:.2f}")
    index_bytes = (inst_dir / "index").stat().st_size if (inst_dir / "index").exists() else None

    report = {
        "size": a.size,
        "layers": len(mods),
        "machine": {"cores": os.cpu_count(), "kernel": platform.release()},
        "results": [
            {"workload": n, "reference": {k: r[k] for k in ("median", "min", "max")},
             "usvfs": {k: v[k] for k in ("median", "min", "max")}, "ratio": v["median"] / r["median"]}
            for n, r, v in results
        ],
        "index_bytes": index_bytes,
    }
    (a.out / f"results-{a.size}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
