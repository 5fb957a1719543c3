"""Everyday tools that rename directories, run in the view on sources that
live in a mod: an offline `cargo build` (it renames its temporary target
directories) and pytest with its cache (created as a temporary directory,
then renamed). Their output lands in the create target; the mod stays as it
was."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Layout, run_view, snapshot_tree, write


def test_cargo_builds_a_crate_that_lives_in_a_mod(usvfs: Path, layout: Layout) -> None:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed")
    crate = layout.mods[0] / "tool"
    write(crate / "Cargo.toml", '[package]\nname = "tool"\nversion = "0.1.0"\nedition = "2021"\n')
    write(crate / "src" / "main.rs", 'fn main() { println!("built in the view"); }\n')
    before = snapshot_tree(layout.mods[0])
    env = {k: v for k, v in os.environ.items() if k != "CARGO_TARGET_DIR"}
    env["CARGO_INCREMENTAL"] = "1"
    for _ in range(2):
        r = subprocess.run(
            [str(usvfs), "run", *layout.mapping_args(), "--cwd", str(layout.base / "tool"), "--",
             cargo, "run", "--offline", "-q"],
            cwd=layout.root, capture_output=True, timeout=300, env=env,
        )
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        assert r.stdout == b"built in the view\n"
    # Edit the source in the mod through the view and rebuild incrementally.
    r = subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--cwd", str(layout.base / "tool"), "--", "sh", "-c",
         "sed -i 's/built in the view/rebuilt/' src/main.rs && cargo run --offline -q"],
        cwd=layout.root, capture_output=True, timeout=300, env=env,
    )
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout == b"rebuilt\n"
    before[b"tool/src/main.rs"] = ("f", b'fn main() { println!("rebuilt"); }\n')
    assert snapshot_tree(layout.mods[0]) == before
    assert (layout.overwrite / "tool" / "target").is_dir()
    assert (layout.overwrite / "tool" / "Cargo.lock").is_file()


def test_pytest_and_its_cache_in_the_view(usvfs: Path, layout: Layout) -> None:
    write(layout.mods[1] / "suite" / "test_x.py", "def test_ok():\n    assert 1\n\ndef test_fails():\n    assert 0\n")
    before = snapshot_tree(layout.mods[1])
    runs = []
    for extra in ([], ["--lf"]):
        r = run_view(usvfs, layout, [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *extra, "suite"],
                     cwd=layout.base)
        runs.append(r)
    first, second = runs
    assert first.returncode == 1 and b"1 failed, 1 passed" in first.stdout, first.stdout + first.stderr
    # The cache remembered the failure: --lf runs only it.
    assert second.returncode == 1 and b"1 failed" in second.stdout and b"passed" not in second.stdout.split(b"\n")[-2]
    assert snapshot_tree(layout.mods[1]) == before
    assert (layout.overwrite / ".pytest_cache" / "v" / "cache" / "lastfailed").is_file()
