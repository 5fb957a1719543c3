"""Seeded fault injection with real programs: writers in the view are killed
(SIGKILL) or stopped (SIGSTOP) at random points of create, rename, delete,
mkdir and rmdir loops, some of them inside a PID namespace. After every
fault the view of the running instance must be a state the operations allow
and equal the layers physically merged; at the end a fresh run of the
mapping must show the disk as it is (the running view, plus empty lower
copies of directories it deleted: a delete removes the winning copy). Every operation's result must match the
model (a false ENOENT from a confused lock shows up here).

Other faults live beside the code they exercise: journal churn, a full
runtime directory and ENOSPC in test_journal_faults.py; signals to
`usvfs run` and dead instances in test_lifecycle.py; signal handlers in
test_signals.py; sources changing underneath in test_monitor.py.

Set USVFS_FAULT_SEED to replay one seed, USVFS_FAULT_ROUNDS for longer runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import faultmodel as fm
from conftest import Layout, write

HERE = Path(__file__).resolve().parent
SEEDS = [int(os.environ["USVFS_FAULT_SEED"])] if "USVFS_FAULT_SEED" in os.environ else [1, 2, 3]
ROUNDS = int(os.environ.get("USVFS_FAULT_ROUNDS", "40"))


def fault_layout(layout: Layout) -> tuple[Path, list[Path]]:
    """Files of the loop's names spread over the base and the mods (each in
    one place, so a fresh run shows what the running view shows)."""
    base = layout.base / "ft"
    for i in range(2):
        write(base / f"base{i}", f"base {i}")
    m1, m2, m3 = layout.mods
    for i in range(5):
        write(m1 / "ft" / f"a{i}", f"m1 a{i}")
        write(m2 / "ft" / f"a{i + 5}", f"m2 a{i + 5}")
    for i in range(2):
        write(m3 / "ft" / "sub" / f"x{i}", f"m3 x{i}")
    (layout.overwrite / "ft").mkdir(parents=True, exist_ok=True)
    (layout.base / "other").mkdir()
    layers = [base, *(m / "ft" for m in layout.mods), layout.overwrite / "ft"]
    return base, layers


def unshare_works() -> bool:
    r = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "true"], capture_output=True
    )
    return r.returncode == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_kills_and_stops_at_random_points_never_hide_or_lose_a_file(
    usvfs: Path, layout: Layout, cbin: dict[str, Path], tmp_path: Path, seed: int
) -> None:
    view, layers = fault_layout(layout)
    work = tmp_path / "work"
    work.mkdir()
    driver = [
        sys.executable,
        str(HERE / "faultdriver.py"),
        "--seed",
        str(seed),
        "--rounds",
        str(ROUNDS),
        "--oploop",
        str(cbin["oploop"]),
        "--work",
        str(work),
        "--view",
        str(view),
        "--other",
        str(layout.base / "other"),
        *(x for layer in layers for x in ("--layer", str(layer))),
    ]
    if unshare_works():
        driver += ["--pidns-every", "3"]
    r = subprocess.run(
        [str(usvfs), "run", "--instance", "faults", *layout.mapping_args(), "--", *driver],
        cwd=layout.root,
        capture_output=True,
        timeout=600,
    )
    assert r.returncode == 0, f"seed {seed}: {r.stderr.decode()[-3000:]}"
    final = json.loads(r.stdout.decode().splitlines()[-1])
    stats = json.loads(r.stderr.decode().strip().splitlines()[-1])
    print(f"seed {seed}: {stats}")
    assert stats["kills"] == ROUNDS and stats["ops"] > 0 and stats["cut_mid_op"] > 0, stats
    # A fresh run of the same mapping (a new instance) shows the disk as it
    # is: the final tree, and empty lower copies of deleted directories.
    disk = fm.merge([str(p) for p in layers])
    assert fm.agrees_with_disk(final, disk) == ""
    lister = [sys.executable, "-c", "import json,sys; sys.path.insert(0, sys.argv[2]); import faultmodel as fm; print(json.dumps(fm.read_tree(sys.argv[1])))", str(view), str(HERE)]
    fresh = subprocess.run(
        [str(usvfs), "run", "--instance", "fresh", *layout.mapping_args(), "--", *lister],
        cwd=layout.root,
        capture_output=True,
        timeout=120,
    )
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout) == disk, fm.diff(json.loads(fresh.stdout), disk)
    # Nothing was written into the real game folder but its own files' fate.
    assert sorted(os.listdir(layout.base / "other")) == []


def test_model_predicts_plain_directory_results(tmp_path: Path, cbin: dict[str, Path]) -> None:
    """The oracle itself, on a plain directory: every predicted result and
    the final tree match what the kernel does (so a view that differs from
    the model is the view's fault)."""
    import random

    d = tmp_path / "plain"
    d.mkdir()
    ops = fm.generate(random.Random(7), 2000, "p")
    (tmp_path / "ops").write_text("\n".join(ops) + "\n")
    out = subprocess.run([str(cbin["oploop"]), str(d), str(tmp_path / "ops")], capture_output=True, check=True).stdout
    model: fm.Tree = {}
    for line in out.decode().splitlines():
        i, rc = (int(x) for x in line.split())
        allowed = fm.predict(model, ops[i])
        assert allowed is None or rc in allowed, (i, ops[i], rc, allowed)
        if rc == 0:
            model = fm.apply(model, ops[i])
    assert fm.read_tree(str(d)) == model
    shutil.rmtree(d)
