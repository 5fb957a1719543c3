"""Programs the preload engine cannot follow, started by a hooked process: a
statically linked program, a set-user-ID one and a Go program each get one
line on stderr and a warning in the instance log, and run outside the view;
with `usvfs run --strict` their exec fails with EACCES and nothing runs. The
CLI refuses such a program as the program it starts (exit 125)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Layout, snapshot_tree

TOUCH_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) { perror(argv[1]); return 3; }
    write(fd, "made\n", 5);
    return 0;
}
"""

GO_MAIN = """package main

import "os"

func main() {
	if err := os.WriteFile(os.Args[1], []byte("made\\n"), 0644); err != nil {
		os.Stderr.WriteString(err.Error() + "\\n")
		os.Exit(3)
	}
}
"""

# The same, linked dynamically (cgo): the loader runs, the preload loads,
# and still Go's own system calls bypass it.
GO_CGO = GO_MAIN.replace('import "os"', 'import "os"\n\n// int unused;\nimport "C"')

LOG_LINE = re.compile(rb"^\d{10,}\.\d{3} \d+ WARN usvfs_preload::hooks::exec: (.*)$")


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("unfollowable")
    (out / "touch.c").write_text(TOUCH_C)
    progs: dict[str, Path] = {}
    subprocess.run(["gcc", "-O2", "-o", str(out / "dyn_touch"), str(out / "touch.c")], check=True)
    progs["dynamic"] = out / "dyn_touch"
    r = subprocess.run(["gcc", "-O2", "-static", "-o", str(out / "static_touch"), str(out / "touch.c")])
    if r.returncode == 0:
        progs["static"] = out / "static_touch"
    go = shutil.which("go")
    if go:
        env = dict(os.environ, GOCACHE=str(out / "gocache"), GOPATH=str(out / "gopath"), HOME=str(out))
        # Without a build ID there is no Go note: the .go.buildinfo section tells.
        for name, src, cgo, flags in (("go", GO_MAIN, "0", []), ("go_cgo", GO_CGO, "1", []),
                                      ("go_no_buildid", GO_MAIN, "0", ["-ldflags=-buildid="])):
            d = out / name
            d.mkdir()
            (d / "main.go").write_text(src)
            subprocess.run([go, "build", *flags, "-o", str(out / f"{name}_touch"), "main.go"], cwd=d,
                           env=dict(env, CGO_ENABLED=cgo), check=True, capture_output=True, timeout=600)
            progs[name] = out / f"{name}_touch"
    return progs


def need(programs: dict[str, Path], kind: str) -> Path:
    if kind not in programs:
        pytest.skip(f"cannot build a {kind} program here (see scripts/setup.sh)")
    return programs[kind]


def run_in_view(usvfs: Path, layout: Layout, script: str, *extra: str, **env: str) -> subprocess.CompletedProcess:
    """Runs `sh -c script` in the view, at the default log level (off: the
    notices of programs running outside the view are logged whatever the
    level); the script prints the instance's log last (the log goes away
    with the instance)."""
    return subprocess.run(
        [str(usvfs), "run", "--instance", "unf", *extra, *layout.mapping_args(), "--",
         "sh", "-c", script + '; echo "rc=$rc"; "$USVFS" log --instance unf'],
        cwd=layout.base, capture_output=True, timeout=120, env=dict(os.environ, USVFS=str(usvfs), **env),
    )


def disk(layout: Layout) -> dict:
    """Everything below the setup but the runtime directory (instances)."""
    return {k: v for k, v in snapshot_tree(layout.root).items() if not k.startswith(b"runtime")}


def log_messages(stdout: bytes) -> list[bytes]:
    return [m.group(1) for m in map(LOG_LINE.match, stdout.splitlines()) if m]


DESCRIBE = {
    "static": "is statically linked",
    "go": "is a Go program (it makes system calls without the C library)",
    "go_cgo": "is a Go program (it makes system calls without the C library)",
    "go_no_buildid": "is a Go program (it makes system calls without the C library)",
}


@pytest.mark.parametrize("kind", ["static", "go", "go_cgo", "go_no_buildid"])
def test_unfollowable_child_warns_and_runs_outside_the_view(
    usvfs: Path, layout: Layout, programs: dict[str, Path], kind: str
) -> None:
    prog = need(programs, kind)
    r = run_in_view(usvfs, layout, f'"$PROG" made.txt; rc=$?', PROG=str(prog))
    assert r.returncode == 0, r.stderr
    what = DESCRIBE[kind]
    assert r.stderr.decode() == f"usvfs: {prog} {what}: it runs outside the view (use --strict to refuse it)\n"
    assert r.stdout.splitlines()[0] == b"rc=0"
    assert log_messages(r.stdout) == [f"{prog} {what}: it runs outside the view (use --strict to refuse it)".encode()]
    # Outside the view: the file landed in the real directory, not in the
    # create target where a file created in the view goes.
    assert (layout.base / "made.txt").read_bytes() == b"made\n"
    assert not (layout.overwrite / "made.txt").exists()


def test_dynamic_child_is_followed_silently(usvfs: Path, layout: Layout, programs: dict[str, Path]) -> None:
    # At `warn` (`usvfs log` says the log level is off otherwise).
    r = run_in_view(usvfs, layout, '"$PROG" made.txt; rc=$?', "--log-level", "warn", PROG=str(programs["dynamic"]))
    assert r.returncode == 0 and r.stderr == b""
    assert log_messages(r.stdout) == []
    assert (layout.overwrite / "made.txt").read_bytes() == b"made\n"
    assert not (layout.base / "made.txt").exists()


@pytest.mark.parametrize("kind", ["static", "go", "go_cgo", "go_no_buildid"])
def test_strict_refuses_with_eacces_and_the_disk_stays(
    usvfs: Path, layout: Layout, programs: dict[str, Path], kind: str
) -> None:
    prog = need(programs, kind)
    before = disk(layout)
    # execve's own errno, printed by the shell's exec failure.
    r = run_in_view(usvfs, layout, '"$PROG" made.txt 2>/dev/null; rc=$?; python3 -c "import os,sys\n'
                    'try: os.execv(sys.argv[1], [sys.argv[1], \'made.txt\'])\n'
                    'except OSError as e: print(\'errno\', e.errno)" "$PROG"',
                    "--strict", PROG=str(prog))
    assert r.returncode == 0, r.stderr
    what = DESCRIBE[kind]
    # The shell's attempt wrote its line to /dev/null; python's is here.
    assert r.stderr.decode() == f"usvfs: {prog} {what}: refused, it would run outside the view (--strict)\n"
    lines = r.stdout.splitlines()
    assert lines[0] == b"errno 13"
    assert lines[1] == b"rc=126"
    msg = f"{prog} {what}: refused, it would run outside the view (--strict)".encode()
    assert log_messages(r.stdout) == [msg, msg]
    after = disk(layout)
    assert before == after


FEXECVE = "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY)\n" \
    "try: os.execve(fd, [sys.argv[1], 'made.txt'], os.environ)\n" \
    "except OSError as e: print('errno', e.errno)"


@pytest.mark.parametrize("strict", [False, True])
def test_fexecve_of_a_static_program(usvfs: Path, layout: Layout, programs: dict[str, Path], strict: bool) -> None:
    prog = need(programs, "static")
    before = disk(layout)
    r = run_in_view(usvfs, layout, f'python3 -c "{FEXECVE}" "$PROG"; rc=$?', *(["--strict"] if strict else []),
                    PROG=str(prog))
    assert r.returncode == 0, r.stderr
    what = DESCRIBE["static"]
    if strict:
        assert r.stderr.decode() == f"usvfs: {prog} {what}: refused, it would run outside the view (--strict)\n"
        assert r.stdout.splitlines()[:2] == [b"errno 13", b"rc=0"]
        assert disk(layout) == before
    else:
        assert r.stderr.decode() == f"usvfs: {prog} {what}: it runs outside the view (use --strict to refuse it)\n"
        assert r.stdout.splitlines()[0] == b"rc=0"
        assert (layout.base / "made.txt").read_bytes() == b"made\n"


def test_setuid_child_of_another_user(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a set-user-ID file of another user")
    prog = tmp_path / "suid_id"
    shutil.copy2("/usr/bin/id", prog)
    os.chown(prog, 65534, 65534)
    os.chmod(prog, 0o4755)
    what = "is set-user-ID or set-group-ID"
    r = run_in_view(usvfs, layout, '"$PROG" -u; rc=$?', PROG=str(prog))
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode() == f"usvfs: {prog} {what}: it runs outside the view (use --strict to refuse it)\n"
    assert r.stdout.splitlines()[:2] == [b"65534", b"rc=0"]
    assert log_messages(r.stdout) == [f"{prog} {what}: it runs outside the view (use --strict to refuse it)".encode()]
    r = run_in_view(usvfs, layout, '"$PROG" -u; rc=$?', "--strict", PROG=str(prog))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == b"rc=126"
    assert r.stderr.decode().splitlines()[0] == (
        f"usvfs: {prog} {what}: refused, it would run outside the view (--strict)"
    )
    assert b"Permission denied" in r.stderr


def test_strict_is_kept_by_a_joining_process(usvfs: Path, layout: Layout, programs: dict[str, Path]) -> None:
    """A controller joining a running --strict instance without the flag
    keeps it strict (as it keeps the log level)."""
    prog = need(programs, "static")
    p = subprocess.Popen(
        [str(usvfs), "run", "--instance", "unf", "--strict", *layout.mapping_args(), "--", "sh", "-c", "echo up; read x"],
        cwd=layout.base, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert p.stdout is not None and p.stdout.readline() == b"up\n"
        r = subprocess.run([str(usvfs), "run", "--instance", "unf", "--", "sh", "-c", f'"{prog}" made.txt; echo rc=$?'],
                           cwd=layout.base, capture_output=True, timeout=60)
        assert r.stdout == b"rc=126\n"
        assert not (layout.base / "made.txt").exists()
    finally:
        p.communicate(b"\n", timeout=60)


@pytest.mark.parametrize("kind", ["go", "go_cgo"])
def test_cli_refuses_a_go_program_with_125(usvfs: Path, layout: Layout, programs: dict[str, Path], kind: str) -> None:
    prog = need(programs, kind)
    r = subprocess.run([str(usvfs), "run", *layout.mapping_args(), "--", str(prog), "made.txt"],
                       cwd=layout.base, capture_output=True, timeout=60)
    assert r.returncode == 125
    assert r.stderr.decode() == (
        f"usvfs: error: {prog} is a Go program: it makes system calls without the C library, so the preload "
        "engine cannot hook it; run it with the mount engine (`usvfs run --engine mount`), or outside usvfs\n"
    )
    assert not (layout.base / "made.txt").exists() and not (layout.overwrite / "made.txt").exists()


def test_program_with_file_capabilities_run_by_a_user(usvfs: Path) -> None:
    """For a user other than root, a program with file capabilities gains
    privileges: the loader ignores LD_PRELOAD for it."""
    setcap = shutil.which("setcap")
    if os.geteuid() != 0 or not setcap:
        pytest.skip("needs root and setcap to give a program file capabilities")
    import tempfile

    from conftest import build_layout

    home = Path(tempfile.mkdtemp(prefix="usvfs-caps-"))
    try:
        os.chmod(home, 0o755)
        layout = build_layout(home)
        bindir = home / "bin"
        bindir.mkdir()
        shutil.copy2(usvfs, bindir / "usvfs")
        shutil.copy2(usvfs.parent / "libusvfs_preload.so", bindir / "libusvfs_preload.so")
        prog = bindir / "capid"
        shutil.copy2("/usr/bin/id", prog)
        for p in [home, *home.rglob("*")]:
            os.lchown(p, 65534, 65534)
        subprocess.run([setcap, "cap_net_bind_service+ep", str(prog)], check=True)
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        env.update(HOME=str(home), PROG=str(prog))
        what = "has file capabilities"

        def run(*extra: str, cmd: tuple = ("sh", "-c", '"$PROG" -u; echo "rc=$?"')) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(bindir / "usvfs"), "run",
                 *extra, *layout.mapping_args(), "--", *cmd],
                cwd=layout.root, capture_output=True, env=env, timeout=60,
            )

        r = run()
        assert r.stdout == b"65534\nrc=0\n", r.stderr
        assert r.stderr.decode() == f"usvfs: {prog} {what}: it runs outside the view (use --strict to refuse it)\n"
        r = run("--strict")
        assert r.stdout == b"rc=126\n"
        assert r.stderr.decode().splitlines()[0] == (
            f"usvfs: {prog} {what}: refused, it would run outside the view (--strict)")
        r = run(cmd=(str(prog), "-u"))
        assert r.returncode == 125 and r.stdout == b""
        assert r.stderr.decode().startswith(f"usvfs: error: {prog} {what}: the dynamic loader ignores LD_PRELOAD")
    finally:
        shutil.rmtree(home)
