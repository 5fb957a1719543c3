"""The command line: exit codes like env/chroot, clear errors that name the
path, the disk untouched on bad input, profiles and dumps."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import Layout, run_view, snapshot_tree


def run(usvfs: Path, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(usvfs), *map(str, args)], capture_output=True, cwd=cwd, timeout=60)


def trees(layout: Layout) -> dict:
    return {p: snapshot_tree(p) for p in [layout.base, *layout.mods, layout.overwrite]}


def test_program_exit_code_is_passed_through(usvfs: Path, layout: Layout) -> None:
    assert run_view(usvfs, layout, ["sh", "-c", "exit 7"]).returncode == 7
    assert run_view(usvfs, layout, ["sh", "-c", "kill -TERM $$"]).returncode == 128 + 15


def test_missing_program_is_127(usvfs: Path, layout: Layout) -> None:
    r = run_view(usvfs, layout, ["no-such-program-xyz"])
    assert r.returncode == 127
    assert b"no-such-program-xyz" in r.stderr and b"not found" in r.stderr


def test_non_executable_program_is_126(usvfs: Path, layout: Layout) -> None:
    r = run_view(usvfs, layout, [str(layout.base / "shared.txt")])
    assert r.returncode == 126
    assert b"shared.txt" in r.stderr and b"chmod +x" in r.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--dir", "{root}/nope", "{root}/game/data"], "does not exist"),
        (["--dir", "{root}/mods/m1", "{root}/mods/m1/sub"], "inside its own source"),
        (["--file", "{root}/mods/m1", "{root}/game/data/x"], "is a directory"),
        (["--dir", "{root}/single/readme_single.txt", "{root}/game/data"], "is not a directory"),
    ],
    ids=["missing-source", "dest-inside-source", "file-link-of-dir", "dir-link-of-file"],
)
def test_bad_mappings_fail_with_125_and_touch_nothing(usvfs: Path, layout: Layout, args: list, needle: str) -> None:
    before = trees(layout)
    args = [a.format(root=layout.root) for a in args]
    r = run(usvfs, "run", *args, "--", "true")
    assert r.returncode == 125, r.stderr
    assert needle.encode() in r.stderr
    assert str(layout.root).encode() in r.stderr, "the message names the path"
    assert trees(layout) == before
    assert not (Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs" / "usvfs_instance").exists()


def test_source_inside_destination_is_refused(usvfs: Path, layout: Layout) -> None:
    inner = layout.base / "inner_mod"
    inner.mkdir()
    r = run(usvfs, "run", "--dir", inner, layout.base, "--", "true")
    assert r.returncode == 125
    assert b"inside its destination" in r.stderr


def test_unreadable_source(usvfs: Path, layout: Layout) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads everything; the unprivileged test covers permissions")
    layout.mods[0].chmod(0)
    r = run(usvfs, "run", "--dir", layout.mods[0], layout.base, "--", "true")
    assert r.returncode == 125 and b"cannot be read" in r.stderr


def test_static_program_is_refused_with_advice(usvfs: Path, layout: Layout, cbin: dict) -> None:
    if "static_hello" not in cbin:
        pytest.skip("no static C library to build a static program")
    r = run_view(usvfs, layout, [str(cbin["static_hello"])])
    assert r.returncode == 125
    assert b"statically linked" in r.stderr and b"--engine mount" in r.stderr


def test_setuid_program_of_another_user_is_refused(usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a set-user-ID file of another user")
    exe = tmp_path / "suid_true"
    exe.write_bytes(Path("/bin/true").read_bytes())
    os.chown(exe, 65534, 65534)
    exe.chmod(0o4755)
    r = run_view(usvfs, layout, [str(exe)])
    assert r.returncode == 125
    assert b"set-user-ID" in r.stderr


def test_bad_flag_is_125(usvfs: Path) -> None:
    r = run(usvfs, "run", "--bogus", "--", "true")
    assert r.returncode == 125
    assert b"--bogus" in r.stderr


def test_non_utf8_paths_work(usvfs: Path, layout: Layout) -> None:
    odd = os.path.join(os.fsencode(layout.root), b"mods", b"m\xff\xfe")
    os.makedirs(os.path.join(odd, b"sub\xe9"))
    with open(os.path.join(odd, b"sub\xe9", b"f\xe9.txt"), "wb") as f:
        f.write(b"latin-1 everywhere\n")
    r = subprocess.run(
        [os.fsencode(usvfs), b"run", b"--dir", odd, os.fsencode(layout.base), b"--", b"cat",
         os.path.join(os.fsencode(layout.base), b"sub\xe9", b"f\xe9.txt")],
        capture_output=True,
    )
    assert (r.returncode, r.stdout) == (0, b"latin-1 everywhere\n"), r.stderr


def test_later_rules_win_in_command_line_order(usvfs: Path, layout: Layout) -> None:
    m1, m2, m3 = layout.mods
    r = run(usvfs, "run", "--dir", m3, layout.base, "--file", layout.single, layout.base / "shared.txt",
            "--dir", m1, layout.base, "--", "cat", layout.base / "shared.txt")
    assert r.stdout == b"from m1\n"
    r = run(usvfs, "run", "--dir", m3, layout.base, "--dir", m1, layout.base,
            "--file", layout.single, layout.base / "shared.txt", "--", "cat", layout.base / "shared.txt")
    assert r.stdout == b"a single linked file\n"


def test_skip_suffix_and_skip_dir(usvfs: Path, layout: Layout) -> None:
    layout.extra = ["--skip-suffix", ".DDS", "--skip-dir", "ONLY_M2"]
    r = run_view(usvfs, layout, ["find", "data/textures", "data/only_m2"], cwd=layout.base.parent)
    # Skipped mod files are not linked; the real directory's own files still show.
    assert r.stdout == b"data/textures\ndata/textures/base_tex.dds\n"
    assert b"only_m2" in r.stderr


def test_no_recursive_links_only_direct_files(usvfs: Path, layout: Layout) -> None:
    r = run(usvfs, "run", "--no-recursive", "--dir", layout.mods[0], layout.base, "--", "sh", "-c",
            f"cd {layout.base} && ls -1 && ls textures")
    assert r.stdout == (
        b"base_only.txt\ncaf\xe9 latin1.txt\nconflict_kind\ndir with space\nname with spaces.txt\n"
        b"shared.txt\ntextures\nbase_tex.dds\n"
    ), r.stderr


def test_profile_gives_the_same_mapping(usvfs: Path, layout: Layout) -> None:
    m1, m2, m3 = layout.mods
    prof = layout.root / "profile.toml"
    prof.write_text(
        'instance = "fromprofile"\n'
        'skip_suffixes = [".bak"]\n'
        "[[link]]\ndir = 'mods/m1'\nto = 'game/data'\n"
        "[[link]]\ndir = 'mods/m2'\nto = 'game/data'\n"
        "[[link]]\ndir = 'mods/m3'\nto = 'game/data'\n"
        "[[link]]\ndir = 'overwrite'\nto = 'game/data'\ncreate_target = true\n"
        "[[link]]\nfile = 'single/readme_single.txt'\nto = 'game/data/meshes/single.txt'\n"
    )
    from_profile = run(usvfs, "dump", "--profile", prof, cwd="/")
    from_args = run(usvfs, "dump", *layout.mapping_args())
    assert from_profile.returncode == 0, from_profile.stderr
    assert from_profile.stdout == from_args.stdout
    r = run(usvfs, "run", "--profile", prof, "--", "cat", layout.base / "shared.txt", cwd="/")
    assert r.stdout == b"from m3\n"


@pytest.mark.parametrize(
    "text,needle",
    [("", "empty"), ("[[link]\n", "malformed"), ("[[link]]\nto = 'x'\n", "exactly one of"),
     ("colour = 1\n", "malformed"), ("instance = 'x'\n", "no [[link]]")],
    ids=["empty", "syntax", "no-source", "unknown-key", "no-links"],
)
def test_bad_profiles(usvfs: Path, tmp_path: Path, text: str, needle: str) -> None:
    prof = tmp_path / "bad.toml"
    prof.write_text(text)
    r = run(usvfs, "run", "--profile", prof, "--", "true")
    assert r.returncode == 125
    assert needle.encode() in r.stderr and str(prof).encode() in r.stderr


def test_dump_shows_the_virtual_tree(usvfs: Path, layout: Layout) -> None:
    r = run(usvfs, "dump", *layout.mapping_args())
    assert r.returncode == 0
    lines = r.stdout.decode("utf-8", "surrogateescape").splitlines()
    # Real directories above the destination collapse into the first line.
    assert lines[0] == f"{layout.root}/game/"
    assert lines[1] == f"  data/ -> {layout.overwrite}"
    ind = "    "
    assert f"{ind}shared.txt -> {layout.root}/mods/m3/shared.txt" in lines
    assert f"{ind}only_m2/ -> {layout.root}/mods/m2/only_m2" in lines
    assert f"{ind}  readme.txt -> {layout.root}/mods/m2/only_m2/readme.txt" in lines
    assert f"{ind}  single.txt -> {layout.single}" in lines


def test_run_joins_a_running_instance(usvfs: Path, layout: Layout) -> None:
    p = subprocess.Popen([str(usvfs), "run", "--instance", "shared", *layout.mapping_args(), "--", "sleep", "30"])
    try:
        import time

        deadline = time.time() + 10
        while time.time() < deadline:
            r = run(usvfs, "run", "--instance", "shared", "--", "cat", layout.base / "only_m2" / "readme.txt")
            if r.returncode == 0:
                break
            time.sleep(0.05)
        assert r.stdout == b"only in m2\n", r.stderr
    finally:
        p.kill()
        p.wait()
    r = run(usvfs, "run", "--instance", "nothing-here", "--", "true")
    assert r.returncode == 125 and b"no mapping given" in r.stderr


def test_dump_of_a_running_instance_lists_changes(usvfs: Path, layout: Layout) -> None:
    script = f'echo new > data/new.txt && rm data/shared.txt && "{usvfs}" dump --instance changes'
    r = subprocess.run([str(usvfs), "run", "--instance", "changes", *layout.mapping_args(), "--", "sh", "-c", script],
                       cwd=layout.base.parent, capture_output=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode("utf-8", "surrogateescape").splitlines()  # the fixture has a latin-1 name
    i = lines.index("# changes since the mapping was set")
    assert lines[i + 1:] == [f"+ {layout.base}/new.txt -> {layout.overwrite}/new.txt", f"- {layout.base}/shared.txt"]
