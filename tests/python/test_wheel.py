"""The wheel: `pip wheel .` builds a manylinux abi3 wheel with stripped
binaries and the license; installed into a fresh venv with no Rust toolchain
on PATH, the README's Python examples and the `usvfs` command run from it.

`make test` builds the wheel first (`make wheel`) and hands it over in
USVFS_WHEEL; without it, this test runs `pip wheel .` itself, reusing the
binaries of the workspace build (USVFS_BUNDLE_FROM)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"


def build_wheel(out: Path) -> Path:
    # pip's build hook asks maturin for a plain `linux` tag unless told
    # otherwise; the manylinux tag is the one pyproject.toml names.
    env = dict(os.environ, USVFS_BUNDLE_FROM=str(TARGET), MATURIN_PEP517_ARGS="--compatibility manylinux_2_34")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)]
    try:
        import maturin  # noqa: F401

        cmd.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    r = subprocess.run(cmd, capture_output=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    (wheel,) = out.glob("usvfs-*.whl")
    return wheel


def readme_python_examples() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Python") :]
    section = section[: section.index("\n### ", 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def elf_sections(path: Path) -> list[str]:
    out = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\]\s+(\.\S+)", out)


def test_wheel_installs_and_runs_the_readme_examples_without_rust(tmp_path: Path) -> None:
    if os.environ.get("USVFS_SKIP_PIP_TEST"):
        pytest.skip("USVFS_SKIP_PIP_TEST is set")
    given = os.environ.get("USVFS_WHEEL")
    wheel = Path(given) if given else build_wheel(tmp_path / "dist")
    # Tags: abi3 for every CPython >= 3.9, a manylinux platform tag.
    assert re.fullmatch(r"usvfs-0\.1\.0-cp39-abi3-manylinux_2_\d+_x86_64\.whl", wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "usvfs-0.1.0.dist-info/licenses/LICENSE" in names
        assert b"GNU GENERAL PUBLIC LICENSE" in z.read("usvfs-0.1.0.dist-info/licenses/LICENSE")
        assert "License-Expression: GPL-3.0-or-later" in z.read("usvfs-0.1.0.dist-info/METADATA").decode() or \
            "License: GPL-3.0-or-later" in z.read("usvfs-0.1.0.dist-info/METADATA").decode()
        bins = ["usvfs/_native.abi3.so", "usvfs/_bin/libusvfs_preload.so", "usvfs/_bin/usvfs"]
        assert set(bins) <= names
        assert {"usvfs/py.typed", "usvfs/__init__.pyi", "usvfs/__main__.py", "usvfs/usvfs_wrapper.py"} <= names
        z.extractall(tmp_path / "unpacked", bins)
    for b in bins:
        sections = elf_sections(tmp_path / "unpacked" / b)
        assert ".text" in sections and not [s for s in sections if s.startswith(".debug") and s != ".debug_gdb_scripts"], (b, sections)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", str(wheel)],
                         capture_output=True, timeout=300)
    assert pip.returncode == 0, pip.stderr.decode()[-3000:]

    # No Rust toolchain, no source tree: only the installed copy.
    path = os.pathsep.join(
        [str(venv / "bin")] + [p for p in os.environ["PATH"].split(os.pathsep)
                               if p and not shutil.which("cargo", path=p) and not shutil.which("rustc", path=p)]
    )
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    env = {k: v for k, v in os.environ.items()
           if k not in ("USVFS_PRELOAD", "USVFS_CLI", "PYTHONPATH", "CARGO_TARGET_DIR", "CARGO_HOME", "RUSTUP_HOME")}
    env["PATH"] = path
    python = str(venv / "bin" / "python")

    site = subprocess.run([python, "-c", "import usvfs, os; print(os.path.dirname(usvfs.__file__))"],
                          capture_output=True, text=True, check=True, env=env, cwd=tmp_path).stdout.strip()
    assert site.startswith(str(venv)), site

    work = tmp_path / "work"
    for d in ["src/sub", "dest", "mods/a", "mods/b", "overwrite", "game/data"]:
        (work / d).mkdir(parents=True)
    (work / "src" / "s.txt").write_text("s\n")
    (work / "src" / "sub" / "t.txt").write_text("t\n")
    (work / "mods" / "a" / "readme.txt").write_text("from a\n")
    (work / "mods" / "b" / "readme.txt").write_text("from b\n")
    (work / "mods" / "b" / "b.txt").write_text("b\n")

    first, modern = readme_python_examples()
    r = subprocess.run([python, "-c", first], cwd=work, capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [b"dest:", b"s.txt", b"sub", b"dest/sub:", b"t.txt"]

    r = subprocess.run([python, "-c", modern], cwd=work, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["b.txt", "readme.txt", ""]
    assert lines[3] == "b'from b\\n'"
    assert any(line.strip().startswith("readme.txt -> ") and "mods/b/readme.txt" in line for line in lines[4:]), lines

    # The command, installed as a script and as `python -m usvfs`.
    for cmd in ([str(venv / "bin" / "usvfs")], [python, "-m", "usvfs"]):
        r = subprocess.run([*cmd, "run", "--dir", "src", "dest", "--", "cat", "dest/s.txt"],
                           cwd=work, capture_output=True, env=env, timeout=120)
        assert (r.returncode, r.stdout) == (0, b"s\n"), r.stderr
