"""`usvfs run` owns its program's life: signals sent to usvfs reach the
program, the program learns when usvfs is killed, and the registry never
counts processes that left without their exit hook (or pids reused since)."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from conftest import Layout

TIMEOUT = 20

# Traps the forwarded signals; on one, writes its number to argv[1] and exits
# with 40+N. With argv[2] == "count": SIGINT is counted (one line each) and
# SIGUSR1 ends the program with 3.
PROGRAM = r"""
import os, signal, sys, time
out, mode = sys.argv[1], sys.argv[2]
def note(s):
    with open(out, "a") as f:
        f.write(f"{s}\n")
def on_signal(s, _frame):
    if mode == "count" and s == signal.SIGINT:
        note(s)
        return
    if mode == "count" and s == signal.SIGUSR1:
        os._exit(3)
    note(s)
    os._exit(40 + s)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
          signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):
    signal.signal(s, on_signal)
open(out + ".ready", "w").close()
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    time.sleep(0.05)
os._exit(99)
"""


def wait_for(cond, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def start(usvfs: Path, layout: Layout, instance: str, cmd: list, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [str(usvfs), "run", "--instance", instance, *layout.mapping_args(), "--", *cmd],
        cwd=layout.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kw,
    )


def program(tmp_path: Path, mode: str = "exit") -> tuple[list[str], Path]:
    script = tmp_path / "trap.py"
    script.write_text(PROGRAM)
    out = tmp_path / "signals.txt"
    return [sys.executable, str(script), str(out), mode], out


def lines(p: Path) -> list[str]:
    return p.read_text().split() if p.exists() else []


def instance_dir(name: str) -> Path:
    return Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs" / name


@pytest.mark.parametrize(
    "sig",
    [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH],
    ids=lambda s: s.name,
)
def test_signal_sent_to_usvfs_alone_reaches_the_program(usvfs: Path, layout: Layout, tmp_path: Path, sig) -> None:
    cmd, out = program(tmp_path)
    p = start(usvfs, layout, "life", cmd)
    try:
        wait_for(lambda: Path(str(out) + ".ready").exists(), "the program to trap its signals")
        os.kill(p.pid, sig)
        rc = p.wait(timeout=TIMEOUT)
    finally:
        p.kill()
        p.wait()
    assert lines(out) == [str(int(sig))], p.stderr.read()
    assert rc == 40 + sig, "usvfs exits with the program's status"


def test_terminal_interrupt_reaches_the_program_once(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    """A real ^C: the terminal sends SIGINT to its whole foreground process
    group (usvfs and the program); usvfs must not forward a second one."""
    cmd, out = program(tmp_path, "count")
    master, slave = os.openpty()

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = start(
        usvfs,
        layout,
        "life",
        cmd,
        stdin=slave,
        start_new_session=True,
        preexec_fn=controlling_terminal,
        env={**os.environ, "USVFS_LOG": "usvfs=debug"},
    )
    os.close(slave)
    try:
        wait_for(lambda: Path(str(out) + ".ready").exists(), "the program to trap its signals")
        os.write(master, b"\x03")
        wait_for(lambda: lines(out), "the program to see ^C")
        # Anything usvfs forwarded would have been sent before this SIGUSR1.
        os.kill(p.pid, signal.SIGUSR1)
        rc = p.wait(timeout=TIMEOUT)
    finally:
        p.kill()
        p.wait()
        os.close(master)
    err = re.sub(r"\x1b\[[0-9;]*m", "", p.stderr.read().decode())
    assert lines(out) == [str(int(signal.SIGINT))], "exactly one SIGINT"
    assert rc == 3
    # Two SIGINTs close together may merge into one pending signal, so the
    # count alone cannot show a duplicate: usvfs says what it forwarded.
    forwarded = [line for line in err.splitlines() if "forwarding signal" in line]
    assert len(forwarded) == 1 and f"sig={int(signal.SIGUSR1)}" in forwarded[0], err


def test_killing_usvfs_terminates_the_program(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    cmd, out = program(tmp_path)
    p = start(usvfs, layout, "life", cmd)
    try:
        wait_for(lambda: Path(str(out) + ".ready").exists(), "the program to trap its signals")
        p.kill()
        assert p.wait(timeout=TIMEOUT) == -signal.SIGKILL
        wait_for(lambda: lines(out), "the program to get SIGTERM")
    finally:
        p.kill()
        p.wait()
    assert lines(out) == [str(int(signal.SIGTERM))]


EXIT_WITHOUT_HOOK = r"""
import os, subprocess, sys, time
usvfs = sys.argv[1]
ps = lambda: subprocess.run([usvfs, "ps", "--instance", "life"], capture_output=True).stdout.decode()
child = subprocess.Popen([sys.executable, "-c", "import os, sys; sys.stdin.read(); os._exit(0)"],
                         stdin=subprocess.PIPE)
time.sleep(0.3)
while_alive = ps()
child.stdin.close()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    with open(f"/proc/{child.pid}/stat") as f:
        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
            break
    time.sleep(0.01)
print(child.pid, os.getpid())
print("alive:", " ".join(sorted(line.split()[0] for line in while_alive.splitlines()[1:])))
print("zombie:", " ".join(sorted(line.split()[0] for line in ps().splitlines()[1:])))
child.wait()
"""


def test_process_that_left_by_exit_without_hook_is_not_listed(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    # Hooked processes hold the instance by a lock the kernel drops at any
    # exit: the _exit-ed child (a zombie, its exit hook never ran) is listed
    # while it runs and not after.
    script = tmp_path / "leave.py"
    script.write_text(EXIT_WITHOUT_HOOK)
    r = subprocess.run(
        [str(usvfs), "run", "--instance", "life", *layout.mapping_args(), "--",
         sys.executable, str(script), str(usvfs)],
        cwd=layout.root, capture_output=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    ids, alive, zombie = r.stdout.decode().splitlines()
    child, me = ids.split()
    assert child in alive.split()[1:] and me in alive.split()[1:], alive
    assert me in zombie.split()[1:] and child not in zombie.split()[1:], zombie
    # Nothing was written per process: only usvfs's own entry.
    assert not instance_dir("life").exists()


def test_stale_and_reused_pids_are_not_listed(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    go = tmp_path / "go"
    waiter = tmp_path / "wait.py"
    waiter.write_text("import os, sys, time\nwhile not os.path.exists(sys.argv[1]):\n    time.sleep(0.02)\n")
    p = start(usvfs, layout, "life", [sys.executable, str(waiter), str(go)])
    procs = instance_dir("life") / "procs"
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        def listed_now() -> list[str]:
            r = subprocess.run([str(usvfs), "ps", "--instance", "life"], capture_output=True, timeout=TIMEOUT)
            return [line.split()[0] for line in r.stdout.decode().splitlines()[1:]]

        wait_for(lambda: procs.is_dir() and len(listed_now()) >= 2, "usvfs and its program to register")
        # This test's pid with another start time: a pid reused since.
        (procs / str(os.getpid())).write_text("1")
        # An empty entry for a process that does not map the index.
        (procs / str(sleeper.pid)).write_text("")
        # A pid that has no process.
        (procs / "999999999").write_text("12345")
        r = subprocess.run([str(usvfs), "ps", "--instance", "life"], capture_output=True, timeout=TIMEOUT)
        listed = [line.split()[0] for line in r.stdout.decode().splitlines()[1:]]
        assert str(p.pid) in listed and len(listed) == 2, listed
        # The stale entries are pruned; the hooked program holds the
        # instance by a lock (no entry), usvfs by its entry.
        assert [e.name for e in procs.iterdir()] == [str(p.pid)]
        go.touch()
        assert p.wait(timeout=TIMEOUT) == 0
    finally:
        sleeper.kill()
        sleeper.wait()
        p.kill()
        p.wait()
    assert not instance_dir("life").exists()


def test_joining_a_dead_leftover_instance_fails(usvfs: Path, layout: Layout) -> None:
    # The program kills usvfs; SIGTERM (PDEATHSIG) then ends the program:
    # no exit hook runs anywhere, so the instance directory stays behind.
    r = subprocess.run(
        [str(usvfs), "run", "--instance", "gone", *layout.mapping_args(), "--", sys.executable, "-c",
         "import os, time; os.kill(os.getppid(), 9); time.sleep(20)"],
        cwd=layout.root, capture_output=True, timeout=TIMEOUT,
    )
    assert r.returncode == -signal.SIGKILL
    assert (instance_dir("gone") / "index").exists()
    r = subprocess.run([str(usvfs), "run", "--instance", "gone", "--", "true"],
                       cwd=layout.root, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 125
    err = r.stderr.decode()
    assert '"gone"' in err and "not running" in err and "--profile" in err, err
    assert not instance_dir("gone").exists(), "the leftover is removed"
    # With rules, the name starts a fresh instance.
    r = subprocess.run([str(usvfs), "run", "--instance", "gone", *layout.mapping_args(), "--", "true"],
                       cwd=layout.root, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr


def test_program_closing_every_descriptor_stays_listed(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    # Daemons close every descriptor they did not open; the hold survives.
    flag = tmp_path / "closed"
    code = ("import os, sys, time\n"
            "os.closerange(3, 65536)\n"
            "for fd in range(3, 1024):\n"
            "    try: os.close(fd)\n"
            "    except OSError: pass\n"
            f"open({str(flag)!r}, 'w').close()\n"
            "time.sleep(30)\n")
    script = tmp_path / "daemon.py"
    script.write_text(code)
    p = start(usvfs, layout, "life", [sys.executable, str(script)])
    try:
        wait_for(flag.exists, "the program to close its descriptors")
        r = subprocess.run([str(usvfs), "ps", "--instance", "life"], capture_output=True, timeout=TIMEOUT)
        listed = [line.split()[0] for line in r.stdout.decode().splitlines()[1:]]
        children = [c for c in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
        assert children and children[0] in listed, (listed, children)
    finally:
        p.kill()
        p.wait()


def test_forked_child_keeps_the_instance_after_its_parent_leaves(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    # The program forks (no exec) and exits; usvfs leaves with it. The child
    # still holds the instance: it stays until the child is done, then goes.
    go, out = tmp_path / "go", tmp_path / "out"
    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    null = os.open('/dev/null', os.O_WRONLY)\n"
            "    os.dup2(null, 1); os.dup2(null, 2)\n"
            f"    while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
            f"    open({str(out)!r}, 'w').write(open({str(layout.base / 'shared.txt')!r}).read())\n"
            "    os._exit(0)\n")
    script = tmp_path / "forker.py"
    script.write_text(code)
    r = subprocess.run([str(usvfs), "run", "--instance", "life", *layout.mapping_args(), "--",
                        sys.executable, str(script)], cwd=layout.root, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert instance_dir("life").exists(), "removed while a forked child still holds it"
    go.touch()
    wait_for(out.exists, "the child to read through the view")
    assert out.read_text() == "from m3\n"
    # os._exit skips the exit hook: the next controller to look finds
    # nobody holding the instance and removes it.
    wait_for(lambda: subprocess.run([str(usvfs), "ps", "--instance", "life"], capture_output=True).returncode == 0
             and not instance_dir("life").exists(), "the instance to go")


# A library whose constructor runs before the engine's (preloaded after it)
# and takes a while: the window between a child's exec and its joining.
SLOW_START = r"""
#include <unistd.h>
__attribute__((constructor)) static void slow(void) { usleep(700 * 1000); }
"""


@pytest.mark.parametrize("how", ["fork_exec", "posix_spawn"])
def test_instance_stays_while_a_child_is_between_exec_and_joining(
    usvfs: Path, layout: Layout, tmp_path: Path, how: str
) -> None:
    # The program starts a child and leaves at once; usvfs leaves with it.
    # The child's exec drops what it inherited, and it joins only after the
    # slow constructor: the instance must still be there then (the parent's
    # hold stays open across the exec until the child holds it itself).
    src, slow = tmp_path / "slow.c", tmp_path / "libslow.so"
    src.write_text(SLOW_START)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(slow), str(src)], check=True)
    out = tmp_path / "out"
    start_child = (
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.execve('/bin/sh', argv, env)\n"
        if how == "fork_exec"
        else "os.posix_spawn('/bin/sh', argv, env)\n"
    )
    script = tmp_path / "leaver.py"
    script.write_text(
        "import os\n"
        f"env = dict(os.environ, LD_PRELOAD={str(slow)!r})\n"
        f"argv = ['sh', '-c', 'cat {layout.base / 'shared.txt'} > {out}.tmp; mv {out}.tmp {out}']\n"
        + start_child
    )
    r = subprocess.run([str(usvfs), "run", "--instance", "gap", *layout.mapping_args(), "--",
                        sys.executable, str(script)], cwd=layout.root, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    wait_for(out.exists, "the child to read through the view")
    assert out.read_text() == "from m3\n", "the child ran outside the view"
    # The shell leaves by _exit (no exit hook): the next controller to look
    # finds nobody holding the instance and removes it.
    wait_for(lambda: subprocess.run([str(usvfs), "ps", "--instance", "gap"], capture_output=True).returncode == 0
             and not instance_dir("gap").exists(), "the instance to go once the child left")


def test_a_threads_exec_never_leaves_the_hold_to_other_forks(usvfs: Path, layout: Layout, cbin: dict) -> None:
    # Leaving the hold open across an exec changes a descriptor table that
    # other threads fork from: a multi-threaded process keeps it
    # close-on-exec (its children take their own hold instead).
    r = subprocess.run([str(usvfs), "run", *layout.mapping_args(), "--", str(cbin["holdrace"]), str(layout.base)],
                       cwd=layout.root, capture_output=True, timeout=TIMEOUT * 6)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "0", r.stdout
