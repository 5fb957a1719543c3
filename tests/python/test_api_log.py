"""get_log_messages / dll.GetLogMessages return what hooked processes logged to
the instance's log, at the level py-usvfs's parameters give."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import usvfs
from usvfs import dll

JOINED = re.compile(r"^\d+\.\d{3} (\d+) DEBUG usvfs_preload::log: process (\d+) joined instance ")


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_text("one\n")
    (tmp_path / "dest").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def mapping() -> usvfs.Mapping:
    m = usvfs.Mapping()
    m.link(usvfs.VirtualDirectory("src/", "dest/"))
    return m


def joined_pids(messages: list[str]) -> list[int]:
    return [int(m[1]) for m in map(JOINED.match, messages) if m and m[1] == m[2]]


def instance_dir(name: str) -> Path:
    return Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs" / name


def test_get_log_messages_returns_hooked_process_lines(tree: Path) -> None:
    dll.GetLogMessages()  # what earlier tests left
    name = f"pylog_{os.getpid()}_{time.monotonic_ns()}"
    with usvfs.UserspaceVFS(name, log_level=dll.LogLevel.DEBUG) as vfs:
        vfs.set_mapping(mapping())
        assert (instance_dir(name) / "log_level").read_text() == "debug\n"
        p = vfs.popen(["cat", "dest/f.txt"], stdout=subprocess.PIPE)
        assert p.communicate(timeout=30)[0] == b"one\n"
        msgs = vfs.get_log_messages()
        assert joined_pids(msgs) == [p.pid], msgs
        # Each line once: the next call starts where this one stopped.
        assert joined_pids(vfs.get_log_messages()) == []
        pid = vfs.run_process("true")
        assert joined_pids(vfs.get_log_messages()) == [pid]
        # The CLI reads the same log.
        r = subprocess.run([os.environ["USVFS_CLI"], "log", "--instance", name], capture_output=True, text=True)
        assert joined_pids(r.stdout.splitlines()) == [p.pid, pid], r.stderr
        # What was logged just before close is kept for after it.
        last = vfs.run_process("true")
    assert joined_pids(dll.GetLogMessages()) == [last]


def test_debug_mode_and_low_level_api(tree: Path) -> None:
    dll.GetLogMessages()
    params = dll.USVFSParameters()
    dll.USVFSInitParameters(params, "pylog_lowlevel", True, dll.LogLevel.ERROR, dll.CrashDumpsType.NONE, "")
    assert dll.CreateVFS(params)
    try:
        assert dll.VirtualLinkDirectoryStatic(str(tree / "src"), str(tree / "dest"), dll.LINKFLAG_RECURSIVE)
        # debug mode: processes log at debug.
        assert (instance_dir("pylog_lowlevel") / "log_level").read_text() == "debug\n"
        pid = dll.CreateProcessHooked("cat dest/f.txt", str(tree), True)
        assert pid > 0
        assert joined_pids(dll.GetLogMessages()) == [pid]
    finally:
        dll.DisconnectVFS()


def test_default_level_logs_errors_only(tree: Path) -> None:
    name = f"pylog_default_{os.getpid()}"
    with usvfs.UserspaceVFS(name) as vfs:
        vfs.set_mapping(mapping())
        assert (instance_dir(name) / "log_level").read_text() == "error\n"
        assert vfs.run(["cat", "dest/f.txt"], capture_output=True).stdout == b"one\n"
        assert joined_pids(vfs.get_log_messages()) == []
        # No error happened: no log file was even opened.
        assert not (instance_dir(name) / "log").exists()
