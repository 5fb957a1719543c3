"""Entry points beyond the plain libc wrappers: file-system calls made through
syscall(2), glob(3) and wordexp(3), dlopen of plugins that live in a mod; and
the hot path's robustness: vfork children, 16 KiB thread stacks, descriptors
closed while other threads use them, failing calls, system/popen, spawn."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Layout, run_view


def test_syscall_file_calls_see_the_view(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    """openat, openat2, newfstatat, getdents64 and renameat2 through
    syscall() behave as on a merged copy; other numbers pass straight on."""
    merged = layout.merged_copy(tmp_path / "merged")
    want = subprocess.run([str(cbin["rawsys"]), str(merged)], capture_output=True, check=True).stdout
    r = run_view(usvfs, layout, [str(cbin["rawsys"]), str(layout.base)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.replace(bytes(layout.base), b"D") == want.replace(bytes(merged), b"D")
    assert b"openat: only in m2\n" in r.stdout
    assert b"renameat2: 0\nold gone, new present\n" in r.stdout
    assert b"getpid same: 1\nbad number: -1 errno ENOSYS\n" in r.stdout
    # The rename moved the mod's file where a new file goes (README, "Changes").
    assert not (layout.mods[1] / "only_m2" / "readme.txt").exists()
    assert (layout.overwrite / "only_m2" / "renamed.txt").read_text() == "only in m2\n"


def test_gnu_patch_edits_a_mod_file_in_the_view(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    """GNU patch renames through syscall(SYS_renameat2) (gnulib), and its
    own renameat2 calls syscall() again: the view must apply without looping."""
    if shutil.which("patch") is None:
        pytest.fail("GNU patch missing: scripts/setup.sh installs it")
    old, new = tmp_path / "a.txt", tmp_path / "b.txt"
    old.write_text("only in m2\n")
    new.write_text("patched in the view\n")
    diff = subprocess.run(["diff", "-u", str(old), str(new)], capture_output=True).stdout
    (tmp_path / "p.diff").write_bytes(diff)
    r = run_view(usvfs, layout, ["patch", "-b", "data/only_m2/readme.txt", str(tmp_path / "p.diff")],
                 cwd=layout.base.parent)
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = run_view(usvfs, layout, ["cat", "data/only_m2/readme.txt", "data/only_m2/readme.txt.orig"],
                 cwd=layout.base.parent)
    assert (r.returncode, r.stdout) == (0, b"patched in the view\nonly in m2\n"), r.stderr
    # The backup is a new file: it lands in the create target.
    assert (layout.overwrite / "only_m2" / "readme.txt.orig").read_text() == "only in m2\n"


GLOB_PATTERNS = ["*", "*/*.dds", "textures/m?_tex.dds", "meshes/*/*", "nomatch*", "dir with space/*",
                 "only_m2/[r]*", "links/*", "[a-d]*"]


def test_glob_and_wordexp_list_the_view(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    merged = layout.merged_copy(tmp_path / "merged")
    want = subprocess.run([str(cbin["globwe"]), *GLOB_PATTERNS], cwd=merged, capture_output=True, check=True)
    r = run_view(usvfs, layout, [str(cbin["globwe"]), *GLOB_PATTERNS], cwd=layout.base)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode(errors="replace").splitlines() == want.stdout.decode(errors="replace").splitlines()
    assert b"glob plain */*.dds: 0 [textures/base_tex.dds] [textures/m1_tex.dds] [textures/m2_tex.dds]\n" in r.stdout
    assert b"wordexp offs 0: [(null)] [(null)] [textures/base_tex.dds] [textures/m1_tex.dds] " \
           b"[textures/m2_tex.dds] [nomatch*]\n" in r.stdout


PLUGIN = "int plugin_value(void) { return %d; }\n"


def build_plugin(src_dir: Path, lib: Path, value: int) -> None:
    src_dir.mkdir(parents=True, exist_ok=True)
    c = src_dir / f"plugin{value}.c"
    c.write_text(PLUGIN % value)
    lib.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(c)], check=True)


def test_dlopen_loads_a_plugin_that_lives_in_a_mod(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    build_plugin(tmp_path / "src", layout.mods[0] / "plugins" / "libplug.so", 42)
    plugins = layout.base / "plugins"
    # A relative path, an absolute one, and a bare name through LD_LIBRARY_PATH.
    r = run_view(usvfs, layout, [str(cbin["dlplug"]), "data/plugins/libplug.so", f"{plugins}/libplug.so"],
                 cwd=layout.base.parent)
    assert (r.returncode, r.stdout) == (0, b"data/plugins/libplug.so: 42\n" + f"{plugins}/libplug.so: 42\n".encode()), r.stderr
    env = {**os.environ, "LD_LIBRARY_PATH": f"{tmp_path}/nothing:{plugins}"}
    r = run_view(usvfs, layout, [str(cbin["dlplug"]), "libplug.so"], env=env)
    assert (r.returncode, r.stdout) == (0, b"libplug.so: 42\n"), r.stderr


def test_dlopen_bare_name_still_uses_the_callers_runpath(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    """glibc finds a bare name through the RUNPATH of the object that called
    dlopen, known by its return address: the hook must keep it the program's."""
    libdir = tmp_path / "rp"
    build_plugin(tmp_path / "src", libdir / "librp.so", 7)
    exe = tmp_path / "dlplug_rp"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(Path(__file__).parent / "c" / "dlplug.c"),
                    f"-Wl,-rpath,{libdir}", "-Wl,--enable-new-dtags"], check=True)
    r = run_view(usvfs, layout, [str(exe), "librp.so"])
    assert (r.returncode, r.stdout) == (0, b"librp.so: 7\n"), r.stderr


def test_dlopen_of_a_loaded_library_returns_it(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    """A bare name that is already loaded is the loaded library, as ld.so
    matches it, even where an LD_LIBRARY_PATH directory of the view has
    another file of that name."""
    libdir = tmp_path / "linked"
    build_plugin(tmp_path / "src", libdir / "libdup.so", 1)
    build_plugin(tmp_path / "src2", layout.mods[0] / "plugins" / "libdup.so", 2)
    exe = tmp_path / "dlplug_linked"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(Path(__file__).parent / "c" / "dlplug.c"), f"-L{libdir}",
                    "-Wl,--no-as-needed", "-ldup", f"-Wl,-rpath,{libdir}"], check=True)
    env = {**os.environ, "LD_LIBRARY_PATH": str(layout.base / "plugins")}
    r = run_view(usvfs, layout, [str(exe), "libdup.so", "data/plugins/libdup.so"], cwd=layout.base.parent, env=env)
    assert (r.returncode, r.stdout) == (0, b"libdup.so: 1\ndata/plugins/libdup.so: 2\n"), r.stderr


def test_vfork_child_leaves_the_parents_view_state(usvfs: Path, layout: Layout, cbin: dict) -> None:
    """The child's chdir into a directory of the view and its close (and
    reuse) of a descriptor number change nothing the parent sees."""
    r = run_view(usvfs, layout, [str(cbin["vforkstate"]), "game/data/only_m2", "game/data/textures"])
    root, d = layout.root, layout.base / "only_m2"
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"before: cwd {root} fd {d}\nchild 0\nafter: cwd {root} fd {d}\n"


def test_write_hooks_on_a_16k_thread_stack(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    before = {p for p in layout.root.rglob("*")}
    r = run_view(usvfs, layout, [str(cbin["tinystack"]), "-w", "data", "data/only_m2", "data/textures",
                                 "data/meshes/a", str(tmp_path)], cwd=layout.base.parent)
    assert (r.returncode, r.stdout) == (0, b"ok\n"), r.stderr
    # Everything made was removed again; the directories a create needed in
    # the create target stay.
    assert not [p for p in layout.root.rglob("tiny_*")]
    assert before <= {p for p in layout.root.rglob("*")}


def test_failing_calls_leave_no_descriptor_behind(usvfs: Path, layout: Layout, cbin: dict) -> None:
    for d, f in (("data/only_m2", "data/only_m2/readme.txt"), ("data", "data/shared.txt"),
                 ("data/textures", "data/textures/m1_tex.dds")):
        r = run_view(usvfs, layout, [str(cbin["fdleak"]), d, f], cwd=layout.base.parent)
        assert (r.returncode, r.stdout) == (0, b"failures 2800 unexpected 0 leaked 0\n"), (d, r.stderr)


def test_closing_descriptors_while_other_threads_use_them(usvfs: Path, layout: Layout, cbin: dict) -> None:
    """A table entry freed under a reader crashed this (freed memory is
    scribbled over with MALLOC_PERTURB_, so a use after free shows)."""
    args = ["data/only_m2", "readme.txt", "only in m2\n", "data/textures", "m2_tex.dds", "m2 tex\n",
            "data/meshes/a", "m2.nif", "m2 mesh\n", "data/dir with space", "m3 file.txt", "m3 spaced\n"]
    env = {**os.environ, "MALLOC_PERTURB_": "165"}
    for _ in range(10):
        r = run_view(usvfs, layout, [str(cbin["fdrace"]), *args], cwd=layout.base.parent, env=env)
        assert r.returncode == 0 and r.stdout.startswith(b"ok opened "), (r.returncode, r.stdout, r.stderr)


def test_system_and_popen_leave_the_callers_environment_alone(usvfs: Path, layout: Layout, cbin: dict) -> None:
    """The program removed the view's variables: its shells still join the
    view, and the program's own environment stays as it made it."""
    r = run_view(usvfs, layout, [str(cbin["sysenv"]), "data/only_m2/readme.txt"], cwd=layout.base.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (b"only in m2\n[sh]\nsystem 0\npopen only in m2\n[sh]\npclose 0\n"
                        b"parent LD_PRELOAD unset, USVFS_INSTANCE_DIR unset\n")


def test_python_posix_spawnp_runs_programs_of_the_view(usvfs: Path, layout: Layout) -> None:
    """posix_spawnp through a PATH entry of the view, and of a program outside
    it reading the view; no recursion into itself."""
    tool = layout.mods[2] / "bin" / "modtool"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\necho modtool sees: $(cat \"$1\")\n")
    tool.chmod(0o755)
    code = (
        "import os\n"
        # posix_spawnp searches the caller's own PATH (not the child's).
        "os.environ['PATH'] = os.path.abspath('data/bin') + ':' + os.environ['PATH']\n"
        "for argv in (['modtool', 'data/only_m2/readme.txt'], ['cat', 'data/shared.txt']):\n"
        "    pid = os.posix_spawnp(argv[0], argv, os.environ)\n"
        "    print(argv[0], os.waitpid(pid, 0)[1], flush=True)\n"
    )
    r = run_view(usvfs, layout, [sys.executable, "-c", code], cwd=layout.base.parent)
    assert (r.returncode, r.stdout) == (0, b"modtool sees: only in m2\nmodtool 0\nfrom m3\ncat 0\n"), r.stderr
