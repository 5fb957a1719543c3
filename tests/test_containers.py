"""The view survives containers and 32-bit programs (preload engine): a
process inside bubblewrap with a private /tmp (which hides the instance's
runtime directory) reaches its instance through the descriptor `usvfs run`
hands down; a process that cannot reach it at all says so on stderr; a
32-bit program started in the view is named as running outside it, and
refused with --strict."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PRELOAD, REPO, Layout, snapshot_tree

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (setup.sh installs it)")


def bwrap_works() -> bool:
    return subprocess.run(["bwrap", "--bind", "/", "/", "--dev", "/dev", "--", "true"], capture_output=True).returncode == 0


def container(layout: Layout, *extra: str) -> list[str]:
    """bubblewrap with the host's root, a private /tmp (hiding the runtime
    directory below it) and the layout's folders bound back in."""
    binds: list[str] = []
    for d in ["game", "mods", "overwrite", "single"]:
        p = str(layout.root / d)
        binds += ["--bind", p, p]
    # The library and the package, wherever the checkout is (maybe below /tmp).
    for p in {str(PRELOAD.parent), str(REPO)}:
        binds += ["--ro-bind", p, p]
    return ["bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", *binds, *extra, "--"]


def test_a_container_with_a_private_tmp_sees_the_view(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    if not bwrap_works():
        pytest.skip("bubblewrap cannot create namespaces here")
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    merged = layout.merged_copy(tmp_path / "merged")
    assert str(runtime).startswith("/tmp/"), "the runtime directory must be one the private /tmp hides"
    script = "ls -1 \"$1\"; cat \"$1/only_m2/readme.txt\"; echo new > \"$1/from_container.txt\"; test -d \"$2\" && echo runtime-visible || echo runtime-hidden"
    r = subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--", *container(layout), "sh", "-c", script, "sh",
         str(layout.base), str(runtime)],
        cwd=layout.root, capture_output=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout.split(b"\n")
    assert sorted(out[: len(os.listdir(merged))]) == sorted(os.fsencode(n) for n in os.listdir(merged))
    assert b"only in m2" in out
    assert b"runtime-hidden" in out
    assert (layout.overwrite / "from_container.txt").read_text() == "new\n"
    assert not (layout.base / "from_container.txt").exists()
    assert b"cannot reach" not in r.stderr


def test_a_process_that_cannot_reach_its_instance_says_so(usvfs: Path, layout: Layout) -> None:
    if not bwrap_works():
        pytest.skip("bubblewrap cannot create namespaces here")
    before = snapshot_tree(layout.overwrite)
    code = "import os, subprocess; os.close(int(os.environ['USVFS_INSTANCE_FD'].split(':')[0])); subprocess.run(['ls', '-1', os.environ['D']])"
    r = subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--", *container(layout), sys.executable, "-c", code],
        cwd=layout.root, capture_output=True, timeout=120, env={**os.environ, "D": str(layout.base)},
    )
    assert r.returncode == 0, r.stderr
    # ls ran on the real disk, and said why, once, naming itself.
    assert sorted(r.stdout.split(b"\n")[:-1]) == sorted(os.fsencode(n) for n in os.listdir(layout.base))
    lines = [line for line in r.stderr.decode().splitlines() if "cannot reach" in line]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("usvfs: ls cannot reach its view (instance ")
    assert "it runs on the real disk" in lines[0]
    assert snapshot_tree(layout.overwrite) == before


def elf32(path: Path) -> None:
    """A minimal 32-bit x86 executable: exit(0)."""
    code = bytes([0xB8, 1, 0, 0, 0, 0x31, 0xDB, 0xCD, 0x80])
    base, eh, ph = 0x08048000, 52, 32
    header = b"\x7fELF" + bytes([1, 1, 1, 0]) + b"\0" * 8 + struct.pack(
        "<HHIIIIIHHHHHH", 2, 3, 1, base + eh + ph, eh, 0, 0, eh, ph, 1, 0, 0, 0
    )
    prog = struct.pack("<IIIIIIII", 1, 0, base, base, eh + ph + len(code), eh + ph + len(code), 5, 0x1000)
    path.write_bytes(header + prog + code)
    path.chmod(0o755)


def test_a_32_bit_program_is_named_and_refused_with_strict(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    prog = tmp_path / "game32"
    elf32(prog)
    r = subprocess.run([str(usvfs), "run", *layout.mapping_args(), "--", "sh", "-c", f"{prog}; echo rc=$?"],
                       cwd=layout.root, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"usvfs: {prog} is a 32-bit program (the preload library is 64-bit): it runs outside the view".encode() in r.stderr
    r = subprocess.run([str(usvfs), "run", "--strict", *layout.mapping_args(), "--", "sh", "-c", f"{prog}; echo rc=$?"],
                       cwd=layout.root, capture_output=True, timeout=60)
    assert r.stdout.strip() == b"rc=126", (r.stdout, r.stderr)
    # As the program itself: refused at start.
    r = subprocess.run([str(usvfs), "run", *layout.mapping_args(), "--", str(prog)], cwd=layout.root,
                       capture_output=True, timeout=60)
    assert r.returncode == 125
    assert b"is a 32-bit program" in r.stderr


def test_a_container_started_from_python_sees_the_view(layout: Layout, tmp_path: Path) -> None:
    if not bwrap_works():
        pytest.skip("bubblewrap cannot create namespaces here")
    from usvfs import Mapping, UserspaceVFS, VirtualDirectory

    mp = Mapping()
    for m in layout.mods:
        mp.link(VirtualDirectory(str(m), str(layout.base)))
    ow = VirtualDirectory(str(layout.overwrite), str(layout.base))
    ow.redirect_create = True
    mp.link(ow)
    with UserspaceVFS("pycontainer") as vfs:
        vfs.set_mapping(mp)
        r = vfs.run([*container(layout), "sh", "-c", 'cat "$1/only_m2/readme.txt"; echo py > "$1/from_py.txt"', "sh",
                     str(layout.base)], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"only in m2\n"
    assert b"cannot reach" not in r.stderr
    assert (layout.overwrite / "from_py.txt").read_text() == "py\n"


def mount_engine_runs(usvfs: Path, layout: Layout) -> bool:
    if not os.path.exists("/dev/fuse"):
        return False
    r = subprocess.run([str(usvfs), "run", "--engine", "mount", *layout.mapping_args(), "--", "true"],
                       cwd=layout.root, capture_output=True, timeout=60)
    return r.returncode == 0


def test_containers_inside_a_mount_engine_view(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    """A container started from a mount-engine view sees it: one that binds
    the host's root, and one that builds its own root from scratch with the
    game folder bound in (its FUSE mount comes along). A static program in
    it sees the view too."""
    if not bwrap_works() or not mount_engine_runs(usvfs, layout):
        pytest.skip("bubblewrap or the mount engine cannot run here")
    busybox = shutil.which("busybox")
    game = layout.root / "game"
    whole = [*container(layout), "sh", "-c", 'cat "$1/only_m2/readme.txt"; echo a > "$1/from_whole.txt"', "sh",
             str(layout.base)]
    own_root = ["bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64",
                "/lib64", "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev",
                "--bind", str(game), "/game", "--",
                *([busybox, "sh"] if busybox else ["/bin/sh"]), "-c",
                'cat /game/data/only_m2/readme.txt; echo b > /game/data/from_own_root.txt']
    for cmd in (whole, own_root):
        r = subprocess.run([str(usvfs), "run", "--engine", "mount", *layout.mapping_args(), "--", *cmd],
                           cwd=layout.root, capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"only in m2\n", r.stderr
    assert (layout.overwrite / "from_whole.txt").read_text() == "a\n"
    assert (layout.overwrite / "from_own_root.txt").read_text() == "b\n"
    assert not (layout.base / "from_whole.txt").exists()
    assert not (layout.base / "from_own_root.txt").exists()
