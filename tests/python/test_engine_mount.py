"""`UserspaceVFS(engine="mount")`: the usual launching API runs programs
through the mount engine (the bundled `usvfs run`), so even a statically
linked program sees the view; the default stays the preload engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import usvfs
from usvfs import dll

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse: the mount engine needs FUSE")

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "mod" / "sub").mkdir(parents=True)
    (tmp_path / "mod" / "a.txt").write_text("from mod\n")
    (tmp_path / "mod" / "sub" / "deep.txt").write_text("deep\n")
    (tmp_path / "game").mkdir()
    (tmp_path / "game" / "base.txt").write_text("base\n")
    (tmp_path / "overwrite").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def mapping() -> usvfs.Mapping:
    m = usvfs.Mapping()
    m.link(usvfs.VirtualDirectory("mod", "game"))
    ow = usvfs.VirtualDirectory("overwrite", "game")
    ow.redirect_create = True
    m.link(ow)
    return m


def name() -> str:
    return f"mnt_{os.getpid()}_{time.monotonic_ns()}"


@pytest.fixture
def vfs(tree: Path):
    with usvfs.UserspaceVFS(name(), engine="mount") as v:
        v.set_mapping(mapping())
        r = v.run(["true"], capture_output=True)
        if r.returncode == 125 and (b"namespace" in r.stderr or b"/dev/fuse" in r.stderr):
            pytest.skip(f"the mount engine cannot run here: {r.stderr!r}")
        yield v


def test_run_shows_the_view_to_a_static_program(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (scripts/setup.sh installs it)")
    assert vfs.engine == "mount"
    r = vfs.run([BUSYBOX, "sh", "-c", "ls game; cat game/sub/deep.txt; echo new > game/new.txt; exit 3"],
                capture_output=True)
    assert (r.returncode, r.stdout) == (3, b"a.txt\nbase.txt\nsub\ndeep\n"), r.stderr
    assert (tree / "overwrite" / "new.txt").read_text() == "new\n"
    assert sorted(os.listdir(tree / "game")) == ["base.txt"]
    # The preload engine cannot show it the view.
    with usvfs.UserspaceVFS(name()) as pre:
        pre.set_mapping(mapping())
        with pytest.raises(usvfs.ProgramNotHookable):
            pre.run([BUSYBOX, "true"])


def test_cwd_shell_env_and_check(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    r = vfs.run("pwd; cat deep.txt; echo $FOO", shell=True, cwd=tree / "game" / "sub", env={"FOO": "bar", "PATH": os.environ["PATH"]},
                capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, f"{tree / 'game' / 'sub'}\ndeep\nbar\n"), r.stderr
    with pytest.raises(subprocess.CalledProcessError):
        vfs.run(["false"], check=True)
    with pytest.raises(usvfs.ProgramNotFound):
        vfs.run(["game/no_such_program"])
    with pytest.raises(usvfs.USVFSException):
        vfs.run(["true"], cwd=tree / "game" / "nothere")


def test_popen_joins_the_running_namespace(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    """A second program started while the first runs is in the same mount
    namespace; the instance lists both, with the processes inside."""
    first = vfs.popen(["sh", "-c", "readlink /proc/self/ns/mnt; echo $$; read x; cat game/from_second.txt"],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert first.stdout is not None
    ns = first.stdout.readline()
    inner = int(first.stdout.readline())
    assert ns.startswith(b"mnt:[")
    r = vfs.run(["sh", "-c", "readlink /proc/self/ns/mnt; echo second > game/from_second.txt"], capture_output=True)
    assert (r.returncode, r.stdout) == (0, ns), r.stderr
    active = vfs.get_active_processes()
    assert first.pid in active and inner in active, active
    assert inner in dll.GetVFSProcessList()
    out, _ = first.communicate(b"\n", timeout=60)
    assert (first.returncode, out) == (0, b"second\n")
    assert (tree / "overwrite" / "from_second.txt").read_text() == "second\n"
    # The namespace ended with its programs; the next run makes a new one.
    r = vfs.run(["cat", "game/from_second.txt"], capture_output=True)
    assert (r.returncode, r.stdout) == (0, b"second\n"), r.stderr
    assert "from_second.txt -> " in vfs.dump()


def test_run_process_blocking(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    out = tree / "listing.txt"
    assert vfs.run_process(f"sh -c 'ls game > {out}'") > 0
    assert out.read_text() == "a.txt\nbase.txt\nsub\n"


def test_engine_names_and_one_engine_per_instance(tree: Path) -> None:
    for bad in ["fuse", "", "Mount", None]:
        with pytest.raises(ValueError, match="'preload', 'mount'"):
            usvfs.UserspaceVFS(name(), engine=bad)  # type: ignore[arg-type]
    p = dll.USVFSParameters()
    with pytest.raises(ValueError, match="'preload', 'mount'"):
        dll.USVFSInitParameters(p, "x", False, dll.LogLevel.ERROR, dll.CrashDumpsType.NONE, "", False, "overlay")
    assert p.engine == "preload"
    assert dll.ENGINES == ("preload", "mount")
    # The default is the preload engine, as in py-usvfs.
    shared = name()
    with usvfs.UserspaceVFS(shared) as pre:
        assert pre.engine == "preload"
        pre.set_mapping(mapping())
        # Another controller joining with the mount engine is refused.
        r = subprocess.run(
            ["python3", "-c", f"import usvfs; usvfs.UserspaceVFS({shared!r}, engine='mount').initialize()"],
            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(Path(usvfs.__file__).parent.parent)),
        )
        assert r.returncode == 1
        assert "InstanceError" in r.stderr and "runs the preload engine, not the mount engine" in r.stderr
        # So is `usvfs run --engine mount` joining it.
        r = subprocess.run([os.environ["USVFS_CLI"], "run", "--engine", "mount", "--instance", shared, "--", "true"],
                           capture_output=True)
        assert r.returncode == 125 and b"runs the preload engine" in r.stderr


def test_a_blacklist_is_refused_not_ignored(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    """Every program in the mount engine's namespace sees the view, so a
    blacklist raises (as `usvfs run --blacklist` exits 125) and nothing runs."""
    with pytest.raises(usvfs.USVFSException, match="blacklist: touch"):
        vfs.blacklist_executable("touch")
        vfs.run(["touch", "game/made.txt"])
    assert sorted(os.listdir(tree / "overwrite")) == []
    assert sorted(os.listdir(tree / "game")) == ["base.txt"]
