"""One view per wineserver, checked without Wine itself: processes that do
what Wine's server does (lock `lock` in the server directory, bind `socket`
there) in both of Wine's layouts. Upstream Wine and Proton use
/tmp/.wine-UID/server-DEV-INO; Debian's packages name a directory below /tmp
in the prefix's `wineserver` file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Layout

# A stand-in wineserver: makes its server directory, locks `lock`, binds
# `socket` (relative, after chdir, as Wine does), prints "ready", waits.
FAKE_SERVER = r"""
import fcntl, os, socket, sys, time
d = sys.argv[1]
os.makedirs(d, mode=0o700, exist_ok=True)
os.chdir(d)
f = open("lock", "w")
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
s = socket.socket(socket.AF_UNIX)
s.bind("socket")
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""


def server_name(prefix: Path) -> str:
    st = prefix.stat()
    return f"server-{st.st_dev:x}-{st.st_ino:x}"


def upstream_dir(prefix: Path) -> Path:
    return Path(f"/tmp/.wine-{os.getuid()}") / server_name(prefix)


@pytest.fixture
def prefix(tmp_path: Path):
    p = tmp_path / "prefix"
    p.mkdir()
    yield p
    shutil.rmtree(upstream_dir(p), ignore_errors=True)


def start_server(d: Path, seconds: float = 30, env: dict | None = None, cmd_prefix: list | None = None):
    p = subprocess.Popen(
        [*(cmd_prefix or []), sys.executable, "-c", FAKE_SERVER, str(d), str(seconds)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert p.stdout.readline() == b"ready\n"
    return p


def run(usvfs: Path, layout: Layout, prefix: Path, cmd: list) -> subprocess.CompletedProcess:
    env = dict(os.environ, WINEPREFIX=str(prefix))
    return subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--", *cmd], capture_output=True, env=env, timeout=60
    )


@pytest.mark.parametrize("style", ["upstream", "debian"])
def test_refuses_while_a_wineserver_for_the_prefix_runs_outside(
    usvfs: Path, layout: Layout, prefix: Path, tmp_path: Path, style: str
) -> None:
    if style == "upstream":
        d = upstream_dir(prefix)
    else:
        name = f"wine-test-{os.getpid()}"
        (prefix / "wineserver").write_text(name)
        d = Path("/tmp") / name / server_name(prefix)
    server = start_server(d)
    try:
        before = sorted(os.listdir(layout.overwrite))
        r = run(usvfs, layout, prefix, ["sh", "-c", "echo new > data/new.txt"])
        assert r.returncode == 125, r.stderr
        err = r.stderr.decode()
        assert f"pid {server.pid}" in err and str(prefix) in err and "wineserver -k" in err, err
        assert sorted(os.listdir(layout.overwrite)) == before
    finally:
        server.kill()
        server.wait()
        if style == "debian":
            shutil.rmtree(d.parent, ignore_errors=True)
    # Once it is gone, the run goes ahead.
    r = run(usvfs, layout, prefix, ["true"])
    assert r.returncode == 0, r.stderr


def test_the_views_wineserver_is_private(usvfs: Path, layout: Layout, prefix: Path) -> None:
    d = upstream_dir(prefix)
    # Inside the view a server starts where Wine looks for it...
    env = dict(os.environ, WINEPREFIX=str(prefix))
    inner = start_server(
        d, 5, env=env, cmd_prefix=[str(usvfs), "run", *layout.mapping_args(), "--"]
    )
    try:
        # ... but outside, nothing is there: a `wine` started outside would
        # start its own server instead of reaching the view's.
        assert not (d / "socket").exists()
        assert not (d / "lock").exists()
        # And an outside server for the prefix may start meanwhile without
        # meeting the view's.
        outer = start_server(d, 1)
        outer.wait()
    finally:
        inner.kill()
        inner.wait()


def test_run_waits_for_the_views_wineserver(usvfs: Path, layout: Layout, prefix: Path) -> None:
    d = upstream_dir(prefix)
    # The program leaves a "wineserver" behind that lives 1.5 s more.
    script = f"{sys.executable} -c '{FAKE_SERVER}' {d} 1.5 > /dev/null &"
    private = f"usvfs-wine-{os.getuid()}-usvfs_instance-*"
    before = set(Path("/tmp").glob(private))
    t0 = time.monotonic()
    r = run(usvfs, layout, prefix, ["sh", "-c", script + " sleep 0.3"])
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert elapsed >= 1.5, elapsed
    # The private server directory is gone with the instance.
    assert set(Path("/tmp").glob(private)) <= before
