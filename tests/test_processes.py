"""Who sees the view: hooked processes and their children do, everybody else
sees the real disk; blacklisted programs start outside; threads, fork and vfork
are safe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import Layout, run_view, snapshot_tree


def test_processes_outside_see_the_real_disk(usvfs: Path, layout: Layout) -> None:
    before = snapshot_tree(layout.base)
    p = subprocess.Popen(
        [str(usvfs), "run", *layout.mapping_args(), "--", "sh", "-c", "cat data/shared.txt; sleep 30"],
        cwd=layout.base.parent,
        stdout=subprocess.PIPE,
    )
    try:
        assert p.stdout.readline() == b"from m3\n"
        # While the view is live, an ordinary process sees only the real files.
        assert (layout.base / "shared.txt").read_text() == "from base\n"
        assert not (layout.base / "only_m2").exists()
        assert sorted(os.listdir(layout.base)) == sorted(
            ["base_only.txt", "shared.txt", "textures", "dir with space", "conflict_kind"]
        )
    finally:
        p.kill()
        p.wait()
    assert snapshot_tree(layout.base) == before


def test_scrubbed_environment_stays_in_view(usvfs: Path, layout: Layout) -> None:
    r = run_view(usvfs, layout, ["env", "-i", "/bin/cat", "data/only_m2/readme.txt"], cwd=layout.base.parent)
    assert (r.returncode, r.stdout) == (0, b"only in m2\n"), r.stderr
    code = "import subprocess; print(subprocess.run(['cat', 'data/shared.txt'], env={}, capture_output=True, text=True).stdout, end='')"
    r = run_view(usvfs, layout, [sys.executable, "-c", code], cwd=layout.base.parent)
    assert r.stdout == b"from m3\n", r.stderr


def test_shell_pipelines_system_and_popen_stay_in_view(usvfs: Path, layout: Layout) -> None:
    code = (
        "import os; os.environ.clear(); "
        "os.system('cat data/only_m2/readme.txt'); "
        "print(os.popen('cat data/shared.txt').read(), end='')"
    )
    r = run_view(usvfs, layout, [sys.executable, "-c", code], cwd=layout.base.parent)
    assert r.stdout == b"only in m2\nfrom m3\n", r.stderr


def test_blacklisted_executable_starts_outside(usvfs: Path, layout: Layout) -> None:
    layout.extra = ["--blacklist", "head"]
    r = run_view(
        usvfs,
        layout,
        ["sh", "-c", "cat data/shared.txt; head -n1 data/shared.txt; head -n1 data/only_m2/readme.txt 2>/dev/null || echo absent"],
        cwd=layout.base.parent,
    )
    assert r.stdout == b"from m3\nfrom base\nabsent\n", r.stderr


def test_program_inside_the_view_runs_with_virtual_paths(usvfs: Path, layout: Layout) -> None:
    script = layout.mods[1] / "only_m2" / "tool.sh"
    script.write_text('#!/bin/sh\necho "$0"\ncat "$(dirname "$0")/readme.txt"\n')
    script.chmod(0o755)
    r = run_view(usvfs, layout, ["data/only_m2/tool.sh"], cwd=layout.base.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{layout.base}/only_m2/tool.sh\nonly in m2\n".encode()
    # Also through PATH, from a hooked shell.
    r = run_view(usvfs, layout, ["sh", "-c", f"PATH={layout.base}/only_m2:$PATH tool.sh"], cwd=layout.base.parent)
    assert r.stdout.endswith(b"only in m2\n"), r.stderr


def test_cwd_option_and_paths_given_back(usvfs: Path, layout: Layout) -> None:
    code = (
        "import os\n"
        "print(os.getcwd())\n"
        "fd = os.open('readme.txt', os.O_RDONLY)\n"
        "print(os.readlink(f'/proc/self/fd/{fd}'))\n"
        "print(os.path.realpath('readme.txt'))\n"
        "print(os.readlink('/proc/self/cwd'))\n"
    )
    layout_cwd = layout.base / "only_m2"
    r = subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--cwd", str(layout_cwd), "--", sys.executable, "-c", code],
        capture_output=True,
        cwd=layout.root,
    )
    assert r.returncode == 0, r.stderr
    d = str(layout_cwd)
    assert r.stdout.decode().splitlines() == [d, f"{d}/readme.txt", f"{d}/readme.txt", d]


def test_symlinked_prefix_reaches_the_mapping(usvfs: Path, layout: Layout) -> None:
    # Wine reaches every Linux path through dosdevices/z: -> /
    dosdevices = layout.root / "prefix" / "dosdevices"
    dosdevices.mkdir(parents=True)
    os.symlink("/", dosdevices / "z:")
    via = f"{dosdevices}/z:{layout.base}"
    r = run_view(usvfs, layout, ["sh", "-c", f'cat "{via}/shared.txt" "{via}/only_m2/readme.txt"; ls "{via}/textures"'])
    assert r.stdout == b"from m3\nonly in m2\nbase_tex.dds\nm1_tex.dds\nm2_tex.dds\n", r.stderr


def test_threads_fork_and_vfork_under_load(usvfs: Path, layout: Layout, cbin: dict) -> None:
    entries = len(os.listdir(layout.merged_copy(layout.root / "m" / "data")))
    r = run_view(
        usvfs,
        layout,
        [str(cbin["stress"]), "data", "data/shared.txt", "from m3\n", str(entries), "3000"],
        cwd=layout.base.parent,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"failures=0\n"


def test_ps_lists_live_processes_and_instance_goes_away(usvfs: Path, layout: Layout) -> None:
    p = subprocess.Popen(
        [str(usvfs), "run", "--instance", "pstest", *layout.mapping_args(), "--", "sh", "-c", "echo up; sleep 30"],
        stdout=subprocess.PIPE,
    )
    try:
        assert p.stdout.readline() == b"up\n"
        # `sleep` registers when it starts, just after "up" is printed.
        deadline = time.time() + 10
        while True:
            r = subprocess.run([str(usvfs), "ps", "--instance", "pstest"], capture_output=True, check=True)
            lines = r.stdout.decode().splitlines()
            if any(" sleep 30" in l and "sh -c" not in l for l in lines) or time.time() > deadline:
                break
            time.sleep(0.05)
        assert any("sh -c echo up; sleep 30" in l for l in lines), lines
        assert any(" sleep 30" in l and "sh -c" not in l for l in lines), lines
        inst = Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs" / "pstest"
        assert (inst / "index").exists()
        assert (inst.stat().st_mode & 0o777) == 0o700
    finally:
        p.kill()
        subprocess.run(["pkill", "-f", "sleep 30"], check=False)
        p.wait()
    # The controller was killed: the next usvfs command prunes dead processes.
    deadline = time.time() + 10
    while time.time() < deadline:
        r = subprocess.run([str(usvfs), "ps", "--instance", "pstest"], capture_output=True, check=True)
        if len(r.stdout.decode().splitlines()) == 1:
            break
        time.sleep(0.1)
    assert len(r.stdout.decode().splitlines()) == 1


def test_instance_is_removed_when_last_process_ends(usvfs: Path, layout: Layout) -> None:
    r = run_view(usvfs, layout, ["true"])
    assert r.returncode == 0
    assert not (Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs" / "usvfs_instance").exists()


def test_unprivileged_user(usvfs: Path, layout: Layout) -> None:
    if os.geteuid() != 0:
        r = run_view(usvfs, layout, ["cat", "data/shared.txt"], cwd=layout.base.parent)
        assert r.stdout == b"from m3\n"
        return
    # As root, drop to nobody: no privilege is needed anywhere.
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="usvfs-nobody-"))
    os.chmod(home, 0o755)
    try:
        _run_as_nobody(usvfs, layout, home)
    finally:
        shutil.rmtree(home)


def _run_as_nobody(usvfs: Path, layout: Layout, home: Path) -> None:
    from conftest import build_layout

    layout = build_layout(home)
    # The checkout may sit below a directory nobody cannot enter (/root):
    # run copies of the binaries from the world-readable home.
    import shutil

    bindir = home / "bin"
    bindir.mkdir()
    shutil.copy2(usvfs, bindir / "usvfs")
    shutil.copy2(usvfs.parent / "libusvfs_preload.so", bindir / "libusvfs_preload.so")
    usvfs = bindir / "usvfs"
    for p in [home, *home.rglob("*")]:
        os.lchown(p, 65534, 65534)
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["HOME"] = str(home)
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(usvfs), "run", *layout.mapping_args(),
         "--", "sh", "-c", "id -u; cat data/shared.txt data/only_m2/readme.txt"],
        cwd=layout.base.parent, capture_output=True, env=env,
    )
    assert r.stdout == b"65534\nfrom m3\nonly in m2\n", r.stderr


def test_running_processes_pick_up_a_new_mapping(usvfs: Path, layout: Layout) -> None:
    m1, m2, m3 = layout.mods
    code = (
        "import os, sys\n"
        "f = 'data/shared.txt'\n"
        "os.chdir('data/only_m2') if os.path.isdir('data/only_m2') else None\n"
        "print(open('../shared.txt' if os.getcwd().endswith('only_m2') else f).read(), end='', flush=True)\n"
        "sys.stdin.readline()\n"
        "print(open('../shared.txt').read(), end='', flush=True)\n"
        "print(sorted(os.listdir('..'))[:3], os.getcwd().endswith('only_m2'), flush=True)\n"
    )
    reader = subprocess.Popen(
        [str(usvfs), "run", "--instance", "gen", "--dir", str(m2), str(layout.base), "--", sys.executable, "-c", code],
        cwd=layout.base.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stdout.readline() == "from m2\n"
        # Another controller sets a new mapping for the same instance.
        r = subprocess.run([str(usvfs), "run", "--instance", "gen", "--dir", str(m2), str(layout.base),
                            "--dir", str(m1), str(layout.base), "--", "true"], capture_output=True)
        assert r.returncode == 0, r.stderr
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline() == "from m1\n"
        assert reader.stdout.readline().strip().endswith("True")
    finally:
        reader.kill()
        reader.wait()


def test_hooks_on_a_minimal_thread_stack(usvfs: Path, layout: Layout, cbin: dict) -> None:
    """A 16 KiB thread stack (PTHREAD_STACK_MIN): outside and inside the view."""
    r = run_view(usvfs, layout, [str(cbin["tinystack"]), "/etc/passwd", "data/only_m2/readme.txt",
                                 "data/shared.txt", f"{layout.base}/links/to_m2"], cwd=layout.base.parent)
    assert (r.returncode, r.stdout) == (0, b"ok\n"), r.stderr


def test_vfork_child_exec_leaves_the_parent_in_the_view(usvfs: Path, layout: Layout, cbin: dict) -> None:
    """A vfork child shares the parent's thread-local state: its exec (execve
    or fexecve) must not leave the parent's hooks switched off."""
    for how in ("execve", "fexecve"):
        r = run_view(usvfs, layout, [str(cbin["vfork_exec"]), how, "data/only_m2/readme.txt"],
                     cwd=layout.base.parent)
        assert (r.returncode, r.stdout) == (0, b"child 0, data/only_m2/readme.txt visible\n"), (how, r.stderr)


def test_a_directory_gone_from_the_top_layer_leaves_the_merged_one(usvfs: Path, layout: Layout) -> None:
    # m3 (the top mod) has an empty `deep/`, m1 a file in it: m3's wins.
    (layout.mods[2] / "deep").mkdir()
    (layout.mods[0] / "deep").mkdir()
    (layout.mods[0] / "deep" / "a.txt").write_text("from m1\n")
    script = f'ls data/deep; rmdir "{layout.mods[2]}/deep"; ls data/deep; cat data/deep/a.txt; test -d data/deep && echo dir'
    r = run_view(usvfs, layout, ["sh", "-c", script], cwd=layout.base.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"a.txt\na.txt\nfrom m1\ndir\n", r.stderr


def test_a_forked_child_starts_with_the_parents_code_pages(usvfs: Path, layout: Layout, cbin: dict) -> None:
    # fork copies a mapping's page-table entries only when it has private
    # pages; the library gives its code mapping one before the first fork,
    # so a child (about to exec, say) does not fault every page in again.
    r = run_view(usvfs, layout, [str(cbin["forkmap"]), "data/shared.txt", "data", "data/missing"])
    assert r.returncode == 0, r.stderr
    kb = dict(line.split() for line in r.stdout.decode().splitlines())
    child, parent = int(kb["child"]), int(kb["parent"])
    assert parent > 0, r.stdout
    # Read before the child ran any of the library: all of it came from the
    # parent (the parent may have touched a window more since).
    assert child >= parent - 64, (child, parent)
