"""The view survives containers and 32-bit programs. Bubblewrap containers
started from a view — one with a private /tmp (which hides the instance's
runtime directory), one unsharing every namespace, one with a root built
from scratch — see it under both engines (the preload engine reaches its
instance through the descriptor `usvfs run` hands down); a process that
cannot reach its instance says so on stderr; a 32-bit program sees the view
under the mount engine, and is named as running outside it (refused with
--strict) under the preload engine."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PRELOAD, REPO, Layout, snapshot_tree

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (setup.sh installs it)")


@functools.cache
def bwrap_works() -> bool:
    return subprocess.run(["bwrap", "--bind", "/", "/", "--dev", "/dev", "--", "true"], capture_output=True).returncode == 0


ENGINES = ["preload", "mount"]
CONTAINERS = ["private_tmp", "unshare_all", "own_root"]


def engine_args(engine: str) -> list[str]:
    return [] if engine == "preload" else ["--engine", "mount"]


def layout_binds(layout: Layout) -> list[str]:
    """The game folder, the layers and the create target, each at its own path."""
    binds: list[str] = []
    for d in ["game", "mods", "overwrite", "single"]:
        p = str(layout.root / d)
        binds += ["--bind", p, p]
    return binds


def container(layout: Layout, kind: str = "private_tmp", library: bool = True) -> list[str]:
    """A bubblewrap command line (up to its `--`):

    * private_tmp: the host's root with a private /tmp (hiding the runtime
      directory below it) and the layout's folders bound back in;
    * unshare_all: the same in new user, pid, network, IPC, UTS and cgroup
      namespaces (`--unshare-all`; nothing here needs the network, so no
      `--share-net`);
    * own_root: a root built from scratch: /usr read-only, and only the
      layout's folders bound in (plus the preload library's directory when
      `library`: LD_PRELOAD names it, and the loader must find it inside).
    """
    lib = str(PRELOAD.parent)
    if kind == "own_root":
        return ["bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64",
                "/lib64", "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev", *layout_binds(layout),
                *(["--ro-bind", lib, lib] if library else []), "--"]
    # The library and the package, wherever the checkout is (maybe below /tmp).
    binds = layout_binds(layout)
    for p in {lib, str(REPO)}:
        binds += ["--ro-bind", p, p]
    unshare = ["--unshare-all"] if kind == "unshare_all" else []
    return ["bwrap", *unshare, "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", *binds, "--"]


def mount_engine_runs(usvfs: Path, layout: Layout) -> bool:
    if not os.path.exists("/dev/fuse"):
        return False
    r = subprocess.run([str(usvfs), "run", "--engine", "mount", *layout.mapping_args(), "--", "true"],
                       cwd=layout.root, capture_output=True, timeout=60)
    return r.returncode == 0


def trees(layout: Layout) -> dict[str, dict]:
    return {d: snapshot_tree(layout.root / d) for d in ["game", "mods", "overwrite", "single"]}


@needs_bwrap
@pytest.mark.parametrize("kind", CONTAINERS)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_container_started_in_the_view_sees_it(usvfs: Path, layout: Layout, tmp_path: Path, engine: str,
                                                 kind: str) -> None:
    """The container lists the merged folder, reads a mod's files, and its new
    file lands in the create target; the runtime directory is hidden from
    it (the preload engine reaches the instance by its descriptor)."""
    if not bwrap_works():
        pytest.skip("bubblewrap cannot create namespaces here")
    if engine == "mount" and not mount_engine_runs(usvfs, layout):
        pytest.skip("the mount engine cannot run here (no /dev/fuse or no user namespaces)")
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    assert str(runtime).startswith("/tmp/"), "the runtime directory must be one the private /tmp hides"
    merged = layout.merged_copy(tmp_path / "merged")
    before = trees(layout)
    script = ('ls -1 "$1"; echo --; cat "$1/only_m2/readme.txt" "$1/shared.txt"; echo new > "$1/from_container.txt"; '
              'test -d "$2" && echo runtime-visible || echo runtime-hidden')
    r = subprocess.run(
        [str(usvfs), "run", *engine_args(engine), *layout.mapping_args(), "--", *container(layout, kind),
         "/bin/sh", "-c", script, "sh", str(layout.base), str(runtime)],
        cwd=layout.root, capture_output=True, timeout=120,
    )
    assert (r.returncode, r.stderr) == (0, b"")
    listing, rest = r.stdout.split(b"--\n")
    assert sorted(listing.splitlines()) == sorted(os.fsencode(n) for n in os.listdir(merged))
    assert rest == b"only in m2\nfrom m3\nruntime-hidden\n"
    after = trees(layout)
    assert after["overwrite"] == {**before["overwrite"], b"from_container.txt": ("f", b"new\n")}
    for d in ["game", "mods", "single"]:
        assert after[d] == before[d], d


@needs_bwrap
def test_a_root_without_the_preload_library_runs_on_the_real_disk(usvfs: Path, layout: Layout) -> None:
    """LD_PRELOAD names the library by its path: a container whose root lacks
    it loads nothing (the dynamic loader says so, once per program), so its
    programs run on the real disk. Bind the library's directory in, or use
    the mount engine."""
    if not bwrap_works():
        pytest.skip("bubblewrap cannot create namespaces here")
    before = trees(layout)
    real_listing = sorted(os.fsencode(n) for n in os.listdir(layout.base))
    r = subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--", *container(layout, "own_root", library=False),
         "/bin/sh", "-c", 'ls -1 "$1"; echo new > "$1/from_container.txt"', "sh", str(layout.base)],
        cwd=layout.root, capture_output=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == real_listing
    ld_so = f"ERROR: ld.so: object '{PRELOAD}' from LD_PRELOAD cannot be preloaded (cannot open shared object file): ignored."
    assert r.stderr.decode().splitlines() == [ld_so, ld_so]  # sh, then ls
    assert (layout.base / "from_container.txt").read_text() == "new\n"
    assert trees(layout)["overwrite"] == before["overwrite"]


# Like pressure-vessel's pv-adverb: only descriptors 0, 1 and 2 reach the
# program.
ONLY_STDIO = "import os, sys; os.closerange(3, 65536); os.execvp(sys.argv[1], sys.argv[1:])"


@needs_bwrap
@pytest.mark.parametrize("shared_runtime", [False, True])
def test_a_pressure_vessel_like_container(usvfs: Path, layout: Layout, tmp_path: Path, shared_runtime: bool) -> None:
    """A container that hides the runtime directory (pressure-vessel gives
    the game a /run of its own) and passes only descriptors 0-2 on, but
    shares /tmp: its program reaches the instance by path when
    USVFS_RUNTIME_DIR names a shared directory, and says it cannot reach it
    otherwise."""
    if not bwrap_works():
        pytest.skip("bubblewrap cannot create namespaces here")
    runtime = os.environ["XDG_RUNTIME_DIR"]
    env = dict(os.environ)
    if shared_runtime:
        env["USVFS_RUNTIME_DIR"] = str(tmp_path / "instances")
    merged = layout.merged_copy(tmp_path / "merged")
    real = sorted(os.fsencode(n) for n in os.listdir(layout.base))
    r = subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--", "bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc",
         "/proc", "--tmpfs", runtime, "--", sys.executable, "-c", ONLY_STDIO, "ls", "-1", str(layout.base)],
        cwd=layout.root, capture_output=True, timeout=120, env=env,
    )
    assert r.returncode == 0, r.stderr
    if shared_runtime:
        assert r.stderr == b""
        assert sorted(r.stdout.splitlines()) == sorted(os.fsencode(n) for n in os.listdir(merged))
        assert not (Path(runtime) / "usvfs").exists()
    else:
        assert r.stderr.decode() == (
            f"usvfs: ls cannot reach its view (instance {runtime}/usvfs/usvfs_instance): it runs on the real disk. "
            "The instance ended, or a container hides it: keep /proc and the descriptor USVFS_INSTANCE_FD in the "
            "container, or put the instance where the container sees it (USVFS_RUNTIME_DIR)\n")
        assert sorted(r.stdout.splitlines()) == real
    # A relative directory is refused, naming it.
    r = subprocess.run([str(usvfs), "run", *layout.mapping_args(), "--", "true"], cwd=layout.root,
                       capture_output=True, timeout=60, env={**env, "USVFS_RUNTIME_DIR": "instances"})
    assert r.returncode == 125
    assert b"USVFS_RUNTIME_DIR=instances is not an absolute path" in r.stderr


@needs_bwrap
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


@pytest.fixture(scope="module")
def game32(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """tests/c32/game32.c built for 32-bit x86 (`gcc -m32`, from gcc-multilib),
    or None where that cannot be built."""
    out = tmp_path_factory.mktemp("c32") / "game32"
    r = subprocess.run(["gcc", "-m32", "-O2", "-Wall", "-o", str(out), str(REPO / "tests" / "c32" / "game32.c")],
                       capture_output=True)
    return out if r.returncode == 0 else None


NO_GCC_M32 = "gcc -m32 cannot build a 32-bit program here (scripts/setup.sh installs gcc-multilib on x86_64)"


def test_a_32_bit_program_sees_the_view_under_the_mount_engine(usvfs: Path, layout: Layout, tmp_path: Path,
                                                               game32: Path | None) -> None:
    if game32 is None:
        pytest.skip(NO_GCC_M32)
    if not mount_engine_runs(usvfs, layout):
        pytest.skip("the mount engine cannot run here (no /dev/fuse or no user namespaces)")
    merged = layout.merged_copy(tmp_path / "merged")
    before = trees(layout)
    b = layout.base
    r = subprocess.run([str(usvfs), "run", "--engine", "mount", *layout.mapping_args(), "--",
                        str(game32), str(b), str(b / "only_m2" / "readme.txt"), str(b / "made32.txt")],
                       cwd=layout.root, capture_output=True, timeout=60)
    assert (r.returncode, r.stderr) == (0, b"")
    listing, content, done = r.stdout.split(b"--\n")
    assert sorted(listing.splitlines()) == sorted(os.fsencode(n) for n in os.listdir(merged))
    assert (content, done) == (b"only in m2\n", b"created\n")
    after = trees(layout)
    assert after["overwrite"] == {**before["overwrite"], b"made32.txt": ("f", b"written by a 32-bit program\n")}
    for d in ["game", "mods", "single"]:
        assert after[d] == before[d], d


def test_a_32_bit_program_is_named_and_refused_with_strict(usvfs: Path, layout: Layout, tmp_path: Path,
                                                          game32: Path | None) -> None:
    """Under the preload engine a 32-bit program started in the view runs on
    the real disk, named on stderr (the loader adds its own line about the
    library's ELF class); --strict refuses it, and `usvfs run` refuses it as
    its program."""
    real = game32 is not None
    if game32 is None:
        # Only the warning and the refusal can be checked without a C compiler
        # for 32-bit: a hand-made ELF that exits 0.
        game32 = tmp_path / "game32"
        elf32(game32)
    b = layout.base
    args = f"{b} {b}/shared.txt {b}/made32.txt" if real else ""
    before = trees(layout)
    r = subprocess.run([str(usvfs), "run", *layout.mapping_args(), "--", "sh", "-c", f"{game32} {args}; echo rc=$?"],
                       cwd=layout.root, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    warning = f"usvfs: {game32} is a 32-bit program (the preload library is 64-bit): it runs outside the view (use --strict to refuse it)"
    lines = r.stderr.decode().splitlines()
    assert lines[0] == warning
    if real:
        # The loader's own line, then the program saw the real folder, read
        # the base's file and wrote into the real folder.
        assert lines[1:] == [f"ERROR: ld.so: object '{PRELOAD}' from LD_PRELOAD cannot be preloaded (wrong ELF class: ELFCLASS64): ignored."]
        listing, content, done = r.stdout.split(b"--\n")
        assert sorted(listing.splitlines()) == sorted(os.fsencode(n) for n in os.listdir(b) if n != "made32.txt")
        assert (content, done) == (b"from base\n", b"created\nrc=0\n")
        assert (b / "made32.txt").read_text() == "written by a 32-bit program\n"
        (b / "made32.txt").unlink()
    else:
        assert lines[1:] == [] and r.stdout == b"rc=0\n"
    assert trees(layout) == before

    r = subprocess.run([str(usvfs), "run", "--strict", *layout.mapping_args(), "--", "sh", "-c",
                        f"{game32} {args}; echo rc=$?"], cwd=layout.root, capture_output=True, timeout=60)
    assert r.stdout == b"rc=126\n", (r.stdout, r.stderr)
    assert r.stderr.decode().splitlines()[0] == (
        f"usvfs: {game32} is a 32-bit program (the preload library is 64-bit): refused, it would run outside the view (--strict)")
    assert trees(layout) == before
    # As the program itself: refused at start.
    r = subprocess.run([str(usvfs), "run", *layout.mapping_args(), "--", str(game32)], cwd=layout.root,
                       capture_output=True, timeout=60)
    assert r.returncode == 125
    assert r.stderr.decode() == (
        f"usvfs: error: {game32} is a 32-bit program: the dynamic loader ignores the 64-bit preload library, so the "
        "preload engine cannot show it the view; run it with the mount engine (`usvfs run --engine mount`), or "
        "outside usvfs\n")


@needs_bwrap
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


def test_ps_lists_a_containers_programs_in_a_mount_engine_view(usvfs: Path, layout: Layout) -> None:
    """A container started in a mount-engine view puts its programs in a
    mount namespace of its own (as pressure-vessel does with a game): `usvfs
    ps` still lists them, as descendants of the instance's namespace."""
    if not bwrap_works() or not mount_engine_runs(usvfs, layout):
        pytest.skip("bubblewrap or the mount engine cannot run here")
    p = subprocess.Popen([str(usvfs), "run", "--engine", "mount", "--instance", "bwps", *layout.mapping_args(), "--",
                          "bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--",
                          "sh", "-c", "echo up; exec sleep 31.5"],
                         cwd=layout.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert p.stdout.readline() == b"up\n", p.stderr.read() if p.poll() is not None else b""
        r = subprocess.run([str(usvfs), "ps", "--instance", "bwps"], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert b"sleep 31.5" in r.stdout, r.stdout
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
