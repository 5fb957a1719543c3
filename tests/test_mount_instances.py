"""Instances of the mount engine: joining a running one (`usvfs run
--instance NAME` without rules enters its namespaces), one engine per
instance, `usvfs ps` and `usvfs dump` of one, and io_uring in the view."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import NOBODY, Layout, build_layout, nobody_with_fuse
from test_mount_engine import mount_works, nobody_layout, run_mount  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse: the mount engine needs FUSE")

# The first program: says which mount namespace it is in and its pid, then
# waits until a joined program created data/joined.txt, and reads it (or
# until ../stop, outside the view, exists: a file created in a layer from
# outside does not show in the view).
WAITER = (
    "readlink /proc/self/ns/mnt; echo $$; "
    "while [ ! -e data/joined.txt ] && [ ! -e ../stop ]; do sleep 0.05; done; cat data/joined.txt 2>/dev/null; true"
)


def stop(layout: Layout, first: subprocess.Popen) -> bytes:
    """Ends the first program; returns what it printed after its pid."""
    (layout.root / "stop").write_bytes(b"")
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    return out


def start(usvfs: Path, layout: Layout, script: str, engine: str = "mount", prefix: list | None = None,
          env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*(prefix or []), str(usvfs), "run", "--engine", engine, "--instance", "game", *layout.mapping_args(),
         "--", "sh", "-c", script],
        cwd=layout.base.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def join(usvfs: Path, layout: Layout, script: str, *extra: str, prefix: list | None = None,
         env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*(prefix or []), str(usvfs), "run", "--instance", "game", *extra, "--", "sh", "-c", script],
        cwd=layout.base.parent,
        capture_output=True,
        timeout=60,
        env=env,
    )


JOINED = (
    "readlink /proc/self/ns/mnt; cat data/only_m2/readme.txt; ls data/textures; "
    "echo joined > data/joined.txt; grep -c ' fuse.usvfs ' /proc/self/mountinfo; exit 5"
)


def test_join_enters_the_running_view(mount_works, usvfs: Path, layout: Layout) -> None:
    first = start(usvfs, layout, WAITER)
    ns = first.stdout.readline()
    assert ns.startswith(b"mnt:["), first.stderr.read()
    first.stdout.readline()
    r = join(usvfs, layout, JOINED)
    assert r.returncode == 5, r.stderr
    # The same mount namespace, the same view, its one mount.
    assert r.stdout == ns + b"only in m2\nbase_tex.dds\nm1_tex.dds\nm2_tex.dds\n1\n"
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    # The first program read what the joined one created, through the view.
    assert out == b"joined\n"
    assert (layout.overwrite / "joined.txt").read_bytes() == b"joined\n"
    assert not (layout.base / "joined.txt").exists()
    # Outside the namespace: the real disk.
    assert b"fuse.usvfs" not in Path("/proc/self/mountinfo").read_bytes()
    # The instance ended with its programs: joining it now fails.
    r = join(usvfs, layout, "true")
    assert r.returncode == 125 and b"not running" in r.stderr


def test_join_with_explicit_engine_and_cwd(mount_works, usvfs: Path, layout: Layout) -> None:
    first = start(usvfs, layout, WAITER)
    first.stdout.readline(), first.stdout.readline()
    # --cwd is a directory of the view (only_m2 exists in a mod only).
    r = join(usvfs, layout, "pwd; cat readme.txt; echo x > ../joined.txt", "--engine", "mount",
             "--cwd", str(layout.base / "only_m2"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{layout.base / 'only_m2'}\nonly in m2\n".encode()
    assert first.communicate(timeout=60)[0] == b"x\n"


def test_joined_program_outlives_the_first(mount_works, usvfs: Path, layout: Layout) -> None:
    """The namespace lives while a joined program runs: the first program
    may end first; its controller serves until the last process is gone."""
    first = start(usvfs, layout, "echo ready; read x; echo first done")
    assert first.stdout.readline() == b"ready\n"
    joined = subprocess.Popen(
        [str(usvfs), "run", "--instance", "game", "--", "sh", "-c", "echo in; read y; cat data/only_m2/readme.txt; kill -TERM $$"],
        cwd=layout.base.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert joined.stdout.readline() == b"in\n"
    first.stdin.write(b"\n")
    first.stdin.close()
    assert first.stdout.readline() == b"first done\n"
    out, err = joined.communicate(b"\n", timeout=60)
    # The joined program's status, killed by SIGTERM: 128 + 15.
    assert (joined.returncode, out) == (143, b"only in m2\n"), err
    first.wait(timeout=60)
    assert first.returncode == 0


def test_namespace_of_a_killed_controller_is_not_joined(mount_works, usvfs: Path, layout: Layout) -> None:
    """A controller killed with SIGKILL leaves its namespace unserved (its
    processes there get ENOTCONN): a later join starts a namespace of its
    own instead of entering that one, while the instance lives on through
    another controller."""
    import signal

    first = start(usvfs, layout, 'trap "" TERM; echo ready; while [ ! -e ../stop ]; do sleep 0.05; done')
    assert first.stdout.readline() == b"ready\n"
    keeper = subprocess.Popen(
        [str(usvfs), "run", "--instance", "game", "--", "sh", "-c", "readlink /proc/self/ns/mnt; read y"],
        cwd=layout.base.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    dead_ns = keeper.stdout.readline()
    first.send_signal(signal.SIGKILL)
    first.wait()
    r = join(usvfs, layout, "readlink /proc/self/ns/mnt; cat data/only_m2/readme.txt")
    assert r.returncode == 0, r.stderr
    ns, text = r.stdout.split(b"\n", 1)
    assert ns + b"\n" != dead_ns and text == b"only in m2\n"
    (layout.root / "stop").write_bytes(b"")
    keeper.communicate(b"\n", timeout=60)
    assert keeper.returncode == 0


def test_join_program_not_found_is_127(mount_works, usvfs: Path, layout: Layout) -> None:
    first = start(usvfs, layout, WAITER)
    first.stdout.readline(), first.stdout.readline()
    r = subprocess.run([str(usvfs), "run", "--instance", "game", "--", "data/no_such_program"],
                       cwd=layout.base.parent, capture_output=True, timeout=60)
    assert r.returncode == 127, r.stderr
    assert b"data/no_such_program" in r.stderr
    assert stop(layout, first) == b""


def test_one_engine_per_instance(mount_works, usvfs: Path, layout: Layout) -> None:
    first = start(usvfs, layout, WAITER)
    first.stdout.readline(), first.stdout.readline()
    r = join(usvfs, layout, "echo ran", "--engine", "preload")
    assert (r.returncode, r.stdout) == (125, b""), r.stderr
    assert b'instance "game"' in r.stderr and b"runs the mount engine, not the preload engine" in r.stderr
    # New rules for the running instance with the other engine: refused too.
    r = subprocess.run([str(usvfs), "run", "--engine", "preload", "--instance", "game", *layout.mapping_args(), "--", "true"],
                       cwd=layout.base.parent, capture_output=True, timeout=60)
    assert r.returncode == 125 and b"runs the mount engine" in r.stderr, r.stderr
    assert stop(layout, first) == b""
    assert not (layout.root / "runtime" / "usvfs" / "game").exists()

    # A preload instance joined with --engine mount.
    first = start(usvfs, layout, "echo ready; read x", engine="preload")
    assert first.stdout.readline() == b"ready\n"
    r = join(usvfs, layout, "echo ran", "--engine", "mount")
    assert (r.returncode, r.stdout) == (125, b""), r.stderr
    assert b'instance "game"' in r.stderr and b"runs the preload engine, not the mount engine" in r.stderr
    first.communicate(b"\n", timeout=60)
    assert first.returncode == 0


def ps(usvfs: Path) -> list[tuple[int, bytes]]:
    r = subprocess.run([str(usvfs), "ps", "--instance", "game"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == [b"PID", b"INSTANCE", b"COMMAND"]
    return [(int(f[0]), f[2] if len(f) > 2 else b"") for f in (line.split(None, 2) for line in lines[1:])]


def test_ps_lists_the_processes_in_the_namespace(mount_works, usvfs: Path, layout: Layout) -> None:
    first = start(usvfs, layout, WAITER)
    first.stdout.readline()
    shell = int(first.stdout.readline())
    listed = ps(usvfs)
    pids = [p for p, _ in listed]
    # The controller (registered) and the program inside the namespace,
    # which loads no library and registers nowhere.
    assert first.pid in pids and shell in pids, listed
    assert dict(listed)[shell] == b"sh -c " + WAITER.encode()
    # Its children are in the namespace too: a joined program and its own.
    r = join(usvfs, layout, "sleep 30 >/dev/null 2>&1 & echo $!; echo $$")
    bg, joined_shell = (int(x) for x in r.stdout.split())
    pids = [p for p, _ in ps(usvfs)]
    assert bg in pids and joined_shell not in pids
    os.kill(bg, 9)
    stop(layout, first)
    assert ps(usvfs) == []


def dump_while_running(usvfs: Path, root: Path, engine: str) -> bytes:
    layout = build_layout(root)
    p = start(usvfs, layout, "echo new > data/new.txt; rm data/base_only.txt; mv data/only_m2/readme.txt data/moved.txt; "
                             "echo ready; read x", engine=engine)
    assert p.stdout.readline() == b"ready\n", p.stderr.read()
    r = subprocess.run([str(usvfs), "dump", "--instance", "game"], capture_output=True, timeout=60)
    p.communicate(b"\n", timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.replace(os.fsencode(root), b"ROOT")


def test_dump_equals_the_preload_engines(mount_works, usvfs: Path, tmp_path: Path) -> None:
    """`usvfs dump` of a running mount instance: the tree and the changes its
    processes made, as for the same changes under the preload engine."""
    mount = dump_while_running(usvfs, tmp_path / "m", "mount")
    preload = dump_while_running(usvfs, tmp_path / "p", "preload")
    assert mount == preload
    assert b"+ ROOT/game/data/new.txt -> ROOT/overwrite/new.txt" in mount
    assert b"- ROOT/game/data/only_m2/readme.txt" in mount


def test_unprivileged_user_joins(mount_works, usvfs: Path, nobody_layout) -> None:
    """A normal user joins its own mount instance: it owns the user
    namespace, so it may enter it and then the mount namespace."""
    layout, rt = nobody_layout
    first_prefix = nobody_with_fuse(layout.root)
    if first_prefix is None:
        pytest.skip("needs root (to become another user), setpriv, and unshare where /dev/fuse is 0600")
    nobody = NOBODY
    env = dict(os.environ, XDG_RUNTIME_DIR=str(rt))
    first = start(usvfs, layout, WAITER, prefix=first_prefix, env=env)
    ns = first.stdout.readline()
    if first.poll() is not None or not ns:
        err = first.stderr.read()
        if b"user namespace" in err:
            pytest.skip(f"unprivileged user namespaces are not allowed here: {err!r}")
        pytest.fail(err.decode(errors="replace"))
    first.stdout.readline()
    r = join(usvfs, layout, "id -u; " + JOINED, prefix=nobody, env=env)
    assert r.returncode == 5, r.stderr
    assert r.stdout == b"65534\n" + ns + b"only in m2\nbase_tex.dds\nm1_tex.dds\nm2_tex.dds\n1\n"
    assert first.communicate(timeout=60)[0] == b"joined\n"
    assert (layout.overwrite / "joined.txt").stat().st_uid == 65534


def io_uring_refused() -> str | None:
    try:
        v = Path("/proc/sys/kernel/io_uring_disabled").read_text().strip()
    except OSError:
        return None
    return None if v == "0" else f"io_uring is disabled by the kernel (kernel.io_uring_disabled={v})"


def test_io_uring_sees_and_changes_the_view(mount_works, usvfs: Path, layout: Layout, cbin: dict) -> None:
    """A program doing its file work through io_uring (openat, read, write,
    close submitted to the ring) reads the merged view and its new file
    lands in the create target: the kernel runs those requests in the
    program's mount namespace. The preload engine cannot see them."""
    if "uring" not in cbin:
        pytest.skip("liburing is not installed (scripts/setup.sh installs liburing-dev)")
    why = io_uring_refused()
    if why:
        pytest.skip(why)
    before = {p.name: p.read_bytes() for p in layout.overwrite.iterdir()}
    r = run_mount(usvfs, layout, [str(cbin["uring"]), "data/only_m2/readme.txt", "data/by_uring.txt"],
                  cwd=layout.base.parent)
    if r.returncode == 77:
        pytest.skip(f"io_uring refused here: {r.stderr!r}")
    assert (r.returncode, r.stdout) == (0, b"only in m2\n"), r.stderr
    after = {p.name: p.read_bytes() for p in layout.overwrite.iterdir()}
    assert after == {**before, "by_uring.txt": b"written by io_uring\n"}
    assert not (layout.base / "by_uring.txt").exists()
    assert not (layout.base / "only_m2").exists()
    # Under the preload engine the ring's open sees the real disk.
    r = run_mount(usvfs, layout, [str(cbin["uring"]), "data/only_m2/readme.txt", "data/by_uring2.txt"],
                  cwd=layout.base.parent, engine="preload")
    assert r.returncode == 1 and b"No such file or directory" in r.stderr
