"""The instance log: `usvfs run --log-level` makes hooked processes log to the
instance's log, `usvfs log` prints it; off by default (no file at all), but
for the notices of programs started outside the view, logged at any level."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Layout
from test_containers import elf32

# `<unix time with ms> <pid> <LEVEL> <target>: <message> key=value...`
JOINED = re.compile(rb"^\d{10,}\.\d{3} (\d+) DEBUG usvfs_preload::log: process (\d+) joined instance instance=\"(.*?)\" exe=\"(.*?)\"$")


def usvfs_cmd(usvfs: Path, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(usvfs), *map(str, args)], capture_output=True, cwd=cwd, timeout=60)


def instance_dir(name: str) -> Path:
    return Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs" / name


def start_waiting(usvfs: Path, layout: Layout, name: str, *extra: str) -> subprocess.Popen:
    """A shell in the view that reads a file, then waits for a line on stdin
    (the instance lives until then)."""
    p = subprocess.Popen(
        [str(usvfs), "run", "--instance", name, *extra, *layout.mapping_args(), "--",
         "sh", "-c", "cat shared.txt; read x"],
        cwd=layout.base, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert p.stdout is not None
    # cat ran (so its line, written in the library constructor, is there).
    assert p.stdout.readline() == b"from m3\n"
    return p


def finish(p: subprocess.Popen) -> None:
    _, err = p.communicate(b"\n", timeout=60)
    assert p.returncode == 0, err


def joined(text: bytes) -> list[re.Match]:
    return [m for m in map(JOINED.match, text.splitlines()) if m]


def test_log_level_debug_logs_processes_joining(usvfs: Path, layout: Layout) -> None:
    p = start_waiting(usvfs, layout, "logged", "--log-level", "debug")
    try:
        r = usvfs_cmd(usvfs, "log", "--instance", "logged")
        assert r.returncode == 0, r.stderr
        lines = joined(r.stdout)
        # The shell and cat, each in its own process, one line each.
        assert len(lines) == 2, r.stdout
        for m in lines:
            assert m[1] == m[2] and m[3] == b"logged"
        assert {Path(os.fsdecode(m[4])).name for m in lines} == {"cat", Path(os.path.realpath("/bin/sh")).name}
        assert len({m[1] for m in lines}) == 2
        assert (instance_dir("logged") / "log_level").read_text() == "debug\n"

        # A program joining the running instance logs there too (the level
        # stays), and --clear empties the log after printing it.
        j = usvfs_cmd(usvfs, "run", "--instance", "logged", "--", "true")
        assert j.returncode == 0, j.stderr
        r = usvfs_cmd(usvfs, "log", "--instance", "logged", "--clear")
        assert len(joined(r.stdout)) == 3, r.stdout
        r = usvfs_cmd(usvfs, "log", "--instance", "logged")
        assert (r.returncode, r.stdout) == (0, b"")
    finally:
        finish(p)
    # The log lives with the instance.
    r = usvfs_cmd(usvfs, "log", "--instance", "logged")
    assert r.returncode == 125
    assert b'"logged"' in r.stderr and b"--log-level" in r.stderr


def test_log_is_off_by_default_and_no_file_is_created(usvfs: Path, layout: Layout) -> None:
    p = start_waiting(usvfs, layout, "quiet")
    try:
        d = instance_dir("quiet")
        assert (d / "index").exists()
        assert not (d / "log").exists() and not (d / "log_level").exists()
        r = usvfs_cmd(usvfs, "log", "--instance", "quiet")
        assert (r.returncode, r.stdout) == (0, b"")
        assert b"log level is off" in r.stderr
    finally:
        finish(p)
    # Below the level nothing is written, and nothing opened either.
    p = start_waiting(usvfs, layout, "errors_only", "--log-level", "error")
    try:
        d = instance_dir("errors_only")
        assert (d / "log_level").read_text() == "error\n"
        assert not (d / "log").exists()
    finally:
        finish(p)


def test_log_follow_prints_new_lines(usvfs: Path, layout: Layout) -> None:
    p = start_waiting(usvfs, layout, "followed", "--log-level", "debug")
    f = subprocess.Popen([str(usvfs), "log", "--follow", "--instance", "followed"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert f.stdout is not None
        got = b""
        deadline = time.monotonic() + 30
        started = False
        while len(joined(got)) < 3 and time.monotonic() < deadline:
            if not started and len(joined(got)) == 2:
                assert usvfs_cmd(usvfs, "run", "--instance", "followed", "--", "true").returncode == 0
                started = True
            ready, _, _ = select.select([f.stdout], [], [], 0.5)
            if ready:
                got += os.read(f.stdout.fileno(), 65536)
        assert len(joined(got)) == 3, got
        assert f.poll() is None, "--follow keeps running"
    finally:
        f.terminate()
        f.wait(timeout=10)
        finish(p)


def test_log_level_from_profile_and_bad_levels(usvfs: Path, layout: Layout) -> None:
    prof = layout.root / "profile.toml"
    prof.write_text(f'instance = "profiled"\nlog_level = "debug"\n[[link]]\ndir = "{layout.mods[0]}"\nto = "{layout.base}"\n')
    # usvfs log inside the view: the instance is running while it reads.
    r = usvfs_cmd(usvfs, "run", "--profile", prof, "--", str(usvfs), "log", "--instance", "profiled")
    assert r.returncode == 0, r.stderr
    assert [Path(os.fsdecode(m[4])).name for m in joined(r.stdout)] == ["usvfs"], r.stdout
    # The command line wins over the profile.
    r = usvfs_cmd(usvfs, "run", "--profile", prof, "--log-level", "off", "--", str(usvfs), "log", "--instance", "profiled")
    assert (r.returncode, r.stdout) == (0, b""), r.stderr

    prof.write_text(f'log_level = "loud"\n[[link]]\ndir = "{layout.mods[0]}"\nto = "{layout.base}"\n')
    r = usvfs_cmd(usvfs, "run", "--profile", prof, "--", "true")
    assert r.returncode == 125
    assert b"loud" in r.stderr and str(prof).encode() in r.stderr
    r = usvfs_cmd(usvfs, "run", "--log-level", "loud", *layout.mapping_args(), "--", "true")
    assert r.returncode == 125 and b"possible values" in r.stderr


# A notice: the stderr line of a program started outside the view, without
# its `usvfs: ` prefix.
NOTICE = re.compile(rb"^\d{10,}\.\d{3} (\d+) WARN usvfs_preload::hooks::exec: (.*)$")


@pytest.mark.parametrize("level", [None, "off", "error", "debug"])
def test_programs_outside_the_view_are_logged_whatever_the_level(usvfs: Path, layout: Layout, tmp_path: Path,
                                                                 level: str | None) -> None:
    """What a process says on stderr about a program it starts outside the
    view is in the log too, once, at any level (a game started from Steam
    has no terminal to show stderr)."""
    prog = tmp_path / "game32"
    elf32(prog)
    r = usvfs_cmd(usvfs, "run", "--instance", "noticed", *(["--log-level", level] if level else []),
                  *layout.mapping_args(), "--", "sh", "-c", f'{prog}; "$0" log --instance noticed', usvfs,
                  cwd=layout.root)
    assert r.returncode == 0, r.stderr
    sentence = f"{prog} is a 32-bit program (the preload library is 64-bit): it runs outside the view (use --strict to refuse it)"
    assert r.stderr.decode() == f"usvfs: {sentence}\n"
    notices = [m for m in map(NOTICE.match, r.stdout.splitlines()) if m]
    assert [m[2] for m in notices] == [sentence.encode()], r.stdout
    # Besides, at debug, the shell and `usvfs log` joining; nothing else.
    others = [line for line in r.stdout.splitlines() if not NOTICE.match(line)]
    assert len(others) == len(joined(r.stdout)) == (2 if level == "debug" else 0), r.stdout


def unreachable(d: Path) -> str:
    return (f"true cannot reach its view (instance {d}): it runs on the real disk. The instance ended, or a "
            "container hides it: keep /proc and the descriptor USVFS_INSTANCE_FD in the container, or put the "
            "instance where the container sees it (USVFS_RUNTIME_DIR)")


def test_a_process_that_cannot_load_its_view_logs_it_where_the_directory_is(tmp_path: Path) -> None:
    """A process whose instance directory is there but holds no view (no
    index) says so on stderr and in that directory's log; one whose
    directory is gone (or hidden) can only say it on stderr."""
    from conftest import PRELOAD

    there, gone = tmp_path / "inst", tmp_path / "gone"
    there.mkdir(mode=0o700)
    for d in (there, gone):
        env = {**os.environ, "LD_PRELOAD": str(PRELOAD), "USVFS_INSTANCE_DIR": str(d)}
        env.pop("USVFS_INSTANCE_FD", None)
        r = subprocess.run(["true"], env=env, capture_output=True, timeout=60)
        assert (r.returncode, r.stderr.decode()) == (0, f"usvfs: {unreachable(d)}\n")
    log = (there / "log").read_bytes().splitlines()
    assert len(log) == 1
    m = re.match(rb"^\d{10,}\.\d{3} \d+ WARN usvfs_preload: (.*)$", log[0])
    assert m and m[1] == unreachable(there).encode()
    assert not gone.exists()


def test_an_index_from_another_usvfs_version_is_named_with_what_to_do(usvfs: Path, layout: Layout) -> None:
    """A process joining an instance whose index another version of usvfs
    wrote (an instance started before an upgrade) says which index, that
    its format differs and what to do, and runs on the real disk."""
    # The header's format number (after the 8-byte magic) set to 2.
    script = ('printf "\\002\\000\\000\\000" | dd of="$USVFS_INSTANCE_DIR/index" bs=1 seek=8 conv=notrunc '
              '2>/dev/null; cat "$0"; echo "$USVFS_INSTANCE_DIR"')
    seen = layout.base / "shared.txt"  # a mod's in the view, the base's on the real disk
    r = usvfs_cmd(usvfs, "run", "--instance", "oldformat", *layout.mapping_args(), "--", "sh", "-c", script, seen,
                  cwd=layout.root)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    inst = lines[-1]
    assert lines[:-1] == ["from base"]
    assert r.stderr.decode() == (
        f"usvfs: cat cannot use its view (instance {inst}): it runs on the real disk. "
        f'index "{inst}/index": written by another version of usvfs (index format 2; this one reads 4): '
        "end that instance and start the program again with this version's `usvfs run`\n")
