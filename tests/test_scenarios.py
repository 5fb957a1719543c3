"""The reference scenarios (usvfs's own scenario tests, re-expressed): each
checks the view and the exact physical trees afterwards, under both engines
(preload, and mount where this machine allows FUSE in a namespace)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import snapshot_tree, write


class Scene:
    """base/ with its own files, mods m1..m4 linked in order, overwrite/ last
    as create target, a single-file link, and `.skip` files skipped."""

    def __init__(self, root: Path, usvfs: Path, engine: str = "preload"):
        self.root, self.usvfs, self.engine = root, usvfs, engine
        self.base = root / "base"
        self.mods = [root / f"m{i}" for i in range(1, 5)]
        self.ow = root / "overwrite"
        write(self.base / "basefile.txt", "base\n")
        write(self.base / "bfolder" / "bfile.txt", "base b\n")
        write(self.mods[0] / "mfolder1" / "mfile1.txt", "m1\n")
        write(self.mods[0] / "mfile.txt", "from m1\n")
        write(self.mods[0] / "hidden.skip", "skipped\n")
        write(self.mods[1] / "mfolder2" / "mfile2.txt", "m2\n")
        write(self.mods[1] / "mfile.txt", "from m2\n")
        write(self.mods[2] / "mfolder3" / "mfile3.txt", "m3\n")
        write(self.mods[3] / "mfolder4" / "mfile4.txt", "m4\n")
        self.ow.mkdir()
        write(root / "single" / "linked.txt", "linked\n")

    def args(self) -> list[str]:
        a: list[str] = ["--engine", self.engine, "--instance", "scene", "--skip-suffix", ".skip"]
        for m in self.mods:
            a += ["--dir", str(m), str(self.base)]
        a += ["--create-target", str(self.ow), str(self.base)]
        a += ["--file", str(self.root / "single" / "linked.txt"), str(self.base / "linked.txt")]
        return a

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([str(self.usvfs), "run", *self.args(), "--", "sh", "-c", script],
                           cwd=self.base, capture_output=True, timeout=60)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def py(self, code: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([str(self.usvfs), "run", *self.args(), "--", sys.executable, "-c", code],
                           cwd=self.base, capture_output=True, timeout=60)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def trees(self) -> dict:
        return {p.name: tree_text(p) for p in [self.base, *self.mods, self.ow]}


def tree_text(p: Path) -> dict[str, str]:
    return {k.decode(): (t + ":" + v.decode()) for k, (t, v) in snapshot_tree(p).items()}


@pytest.fixture(params=["preload", "mount"])
def scene(request: pytest.FixtureRequest, tmp_path: Path, usvfs: Path) -> Scene:
    if request.param == "mount":
        why = request.getfixturevalue("mount_skip")
        if why:
            pytest.skip(f"the mount engine cannot run here: {why}")
    return Scene(tmp_path, usvfs, request.param)


def changed(before: dict, after: dict) -> dict:
    """Per physical tree: entries added, removed or modified."""
    out = {}
    for name in before:
        b, a = before[name], after[name]
        diff = {k: a.get(k) for k in set(a) | set(b) if a.get(k) != b.get(k)}
        if diff:
            out[name] = diff
    return out


def test_01_listing_is_the_union(scene: Scene) -> None:
    r = scene.sh("ls -1A")
    assert r.stdout.decode().split() == sorted(
        ["basefile.txt", "bfolder", "linked.txt", "mfile.txt", "mfolder1", "mfolder2", "mfolder3", "mfolder4"]
    )


def test_02_create_in_mod_only_directory_lands_in_overwrite(scene: Scene) -> None:
    before = scene.trees()
    scene.sh("mkdir mfolder1/newfolder1 && echo new > mfolder1/newfolder1/newfile1.txt && cat mfolder1/newfolder1/newfile1.txt")
    assert changed(before, scene.trees()) == {
        "overwrite": {"mfolder1": "d:", "mfolder1/newfolder1": "d:", "mfolder1/newfolder1/newfile1.txt": "f:new\n"}
    }


def test_03_deep_create_twice(scene: Scene) -> None:
    before = scene.trees()
    deep = "mfolder4/newfolder4/d/e/e/p"
    scene.sh(f"mkdir -p {deep} && echo one > {deep}/newfile4.txt")
    scene.sh(f"mkdir -p {deep} && echo two > {deep}/newfile4b.txt && ls {deep}")
    ch = changed(before, scene.trees())
    assert list(ch) == ["overwrite"]
    assert ch["overwrite"][f"{deep}/newfile4.txt"] == "f:one\n"
    assert ch["overwrite"][f"{deep}/newfile4b.txt"] == "f:two\n"
    assert len(ch["overwrite"]) == 8


def test_04_create_below_a_file_fails_and_creates_nothing(scene: Scene) -> None:
    before = scene.trees()
    r = scene.py(
        "import errno\n"
        "try:\n open('mfile.txt/sub.txt', 'w')\nexcept OSError as e:\n print(errno.errorcode[e.errno])\n"
        "try:\n import os; os.makedirs('mfile.txt/a/b')\nexcept OSError as e:\n print(errno.errorcode[e.errno])\n"
    )
    assert r.stdout == b"ENOTDIR\nENOTDIR\n"
    assert changed(before, scene.trees()) == {}


def test_05_copy_a_real_file_into_the_view(scene: Scene, tmp_path: Path) -> None:
    src = tmp_path / "outside.txt"
    src.write_text("outside\n")
    before = scene.trees()
    scene.sh(f"cp {src} mfolder2/copied.txt && cat mfolder2/copied.txt")
    assert changed(before, scene.trees()) == {"overwrite": {"mfolder2": "d:", "mfolder2/copied.txt": "f:outside\n"}}


def test_06_open_for_writing_without_writing_changes_nothing(scene: Scene) -> None:
    before = scene.trees()
    scene.py("open('mfile.txt', 'a').close(); open('basefile.txt', 'r+').close(); open('mfolder1/mfile1.txt', 'a').close()")
    assert changed(before, scene.trees()) == {}


def test_07_rewriting_a_mod_file_changes_it_in_place(scene: Scene) -> None:
    before = scene.trees()
    scene.sh("echo rewritten > mfile.txt && echo more >> mfolder1/mfile1.txt")
    assert changed(before, scene.trees()) == {
        "m2": {"mfile.txt": "f:rewritten\n"},
        "m1": {"mfolder1/mfile1.txt": "f:m1\nmore\n"},
    }


def test_08_rename_temp_over_mod_file_keeps_it_in_the_mod(scene: Scene) -> None:
    before = scene.trees()
    scene.sh("echo saved > mfolder2/tmp.txt && ls ../overwrite/mfolder2 >/dev/null && mv mfolder2/tmp.txt mfolder2/mfile2.txt && cat mfolder2/mfile2.txt")
    ch = changed(before, scene.trees())
    assert ch["m2"] == {"mfolder2/mfile2.txt": "f:saved\n"}
    # The temp is gone; only the directory made to hold it remains in overwrite.
    assert ch.get("overwrite", {}) in ({}, {"mfolder2": "d:"})


def test_09_delete_then_recreate(scene: Scene) -> None:
    before = scene.trees()
    r = scene.sh("rm mfile.txt; cat mfile.txt 2>/dev/null || echo absent; ls; echo again > mfile.txt; cat mfile.txt")
    lines = r.stdout.decode().split("\n")
    assert lines[0] == "absent" and "mfile.txt" not in lines[1:-3]
    assert lines[-2] == "again"
    assert changed(before, scene.trees()) == {"m2": {"mfile.txt": None}, "overwrite": {"mfile.txt": "f:again\n"}}


def test_10_delete_seen_by_another_process(scene: Scene) -> None:
    reader = subprocess.Popen(
        [str(scene.usvfs), "run", *scene.args(), "--", sys.executable, "-c",
         "import sys, os\n"
         "print(open('mfile.txt').read(), end='', flush=True)\n"
         "sys.stdin.readline()\n"
         "print(os.path.exists('mfile.txt'), sorted(os.listdir('.')), flush=True)\n"
         "sys.stdin.readline()\n"
         "print(open('mfile.txt').read(), end='', flush=True)\n"],
        cwd=scene.base, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stdout.readline() == "from m2\n"
        subprocess.run([str(scene.usvfs), "run", "--instance", "scene", "--", "rm", str(scene.base / "mfile.txt")], check=True)
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().startswith("False [")
        subprocess.run([str(scene.usvfs), "run", "--instance", "scene", "--", "sh", "-c",
                        f"echo recreated > {scene.base}/mfile.txt"], check=True)
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline() == "recreated\n"
    finally:
        reader.kill()
        reader.wait()
    assert (scene.ow / "mfile.txt").read_text() == "recreated\n"
    assert (scene.mods[0] / "mfile.txt").read_text() == "from m1\n"


def test_11_deleting_a_base_file_really_deletes_it(scene: Scene) -> None:
    before = scene.trees()
    scene.sh("rm basefile.txt && ! test -e basefile.txt")
    assert changed(before, scene.trees()) == {"base": {"basefile.txt": None}}


def test_12_renaming_a_base_file_moves_it_to_overwrite(scene: Scene) -> None:
    before = scene.trees()
    scene.sh("mv basefile.txt renamed.txt && cat renamed.txt && ! test -e basefile.txt")
    assert changed(before, scene.trees()) == {"base": {"basefile.txt": None}, "overwrite": {"renamed.txt": "f:base\n"}}


def test_13_handle_paths_are_virtual(scene: Scene) -> None:
    r = scene.py(
        "import os\n"
        "fd = os.open('mfolder3/mfile3.txt', os.O_RDONLY)\n"
        "print(os.readlink(f'/proc/self/fd/{fd}'))\n"
        "print(os.path.realpath('mfolder3/mfile3.txt'))\n"
        "f = open('mfolder3/created.txt', 'w')\n"
        "print(os.readlink(f'/proc/self/fd/{f.fileno()}'))\n"
    )
    b = scene.base
    assert r.stdout.decode().splitlines() == [f"{b}/mfolder3/mfile3.txt", f"{b}/mfolder3/mfile3.txt", f"{b}/mfolder3/created.txt"]


def test_14_recursive_walk_is_the_virtual_tree(scene: Scene) -> None:
    r = scene.py("import os\nfor d, ds, fs in sorted(os.walk('.')):\n  for n in sorted(ds + fs): print(os.path.join(d, n))")
    assert r.stdout.decode().splitlines() == [
        "./basefile.txt", "./bfolder", "./linked.txt", "./mfile.txt", "./mfolder1", "./mfolder2", "./mfolder3",
        "./mfolder4", "./bfolder/bfile.txt", "./mfolder1/mfile1.txt", "./mfolder2/mfile2.txt",
        "./mfolder3/mfile3.txt", "./mfolder4/mfile4.txt",
    ]


def test_15_canonical_missing_path_stays_virtual_and_writes_to_overwrite(scene: Scene) -> None:
    before = scene.trees()
    r = scene.py("import os\np = os.path.realpath('mfolder1/missing.txt')\nprint(p)\nopen(p, 'w').write('made\\n')")
    assert r.stdout.decode().strip() == f"{scene.base}/mfolder1/missing.txt"
    assert changed(before, scene.trees()) == {"overwrite": {"mfolder1": "d:", "mfolder1/missing.txt": "f:made\n"}}


def test_16_skipped_file_is_invisible_and_writes_go_to_overwrite(scene: Scene) -> None:
    before = scene.trees()
    r = scene.sh("test -e hidden.skip && echo visible || echo invisible; echo new > hidden.skip; cat hidden.skip")
    assert r.stdout == b"invisible\nnew\n"
    assert changed(before, scene.trees()) == {"overwrite": {"hidden.skip": "f:new\n"}}


def test_rmdir_needs_an_empty_view_and_rm_rf_empties_it(scene: Scene) -> None:
    r = scene.py(
        "import os, errno\n"
        "try:\n os.rmdir('mfolder1')\nexcept OSError as e: print(errno.errorcode[e.errno])\n"
        "os.unlink('mfolder1/mfile1.txt'); os.rmdir('mfolder1'); print(os.path.exists('mfolder1'))\n"
    )
    assert r.stdout == b"ENOTEMPTY\nFalse\n"
    before = scene.trees()
    scene.sh("rm -rf mfolder2 mfolder4 bfolder && ls")
    after = scene.trees()
    assert not (scene.mods[1] / "mfolder2").exists() and not (scene.mods[3] / "mfolder4").exists()
    assert not (scene.base / "bfolder").exists()
    assert scene.sh("ls -A").stdout.decode().split() == ["basefile.txt", "linked.txt", "mfile.txt", "mfolder3"]
    assert set(changed(before, after)) == {"m2", "m4", "base"}


def test_posix_errors(scene: Scene) -> None:
    r = scene.py(
        "import os, errno\n"
        "def e(f):\n try:\n  f(); return 'ok'\n except OSError as x: return errno.errorcode[x.errno]\n"
        "print(e(lambda: os.mkdir('mfolder1')))\n"
        "print(e(lambda: os.open('mfile.txt', os.O_CREAT | os.O_EXCL | os.O_WRONLY)))\n"
        "print(e(lambda: os.unlink('nope')))\n"
        "print(e(lambda: os.unlink('mfolder3')))\n"
        "print(e(lambda: os.rmdir('mfile.txt')))\n"
        "print(e(lambda: os.rename('mfolder3', 'mfile.txt')))\n"
        "print(e(lambda: os.rename('mfile.txt', 'mfolder3')))\n"
        "print(e(lambda: os.open('mfolder3', os.O_WRONLY)))\n"
        "print(e(lambda: os.mkdir('nope/sub')))\n"
        "print(e(lambda: os.rename('mfolder4', 'moved4')))\n"
        "open('bfolder/new.txt', 'w').close()\n"
        "print(e(lambda: os.rename('bfolder', 'moved_b')))\n"
        "print(sorted(os.listdir('moved4')))\n"
    )
    # mfolder4 lives in m4 alone: it moves (into overwrite). bfolder now
    # merges the real directory and a file in overwrite: EXDEV.
    assert r.stdout.decode().split("\n") == [
        "EEXIST", "EEXIST", "ENOENT", "EISDIR", "ENOTDIR", "ENOTDIR", "EISDIR", "EISDIR", "ENOENT", "ok", "EXDEV",
        "['mfile4.txt']", "",
    ]
    assert not (scene.mods[3] / "mfolder4").exists()


def test_rename_across_file_systems_moves_the_file(tmp_path: Path, usvfs: Path) -> None:
    """A merged directory hides that overwrite sits on another file system:
    renaming a mod file to a new name still works (copy, then remove)."""
    import os
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system to test with")
    ow = Path(tempfile.mkdtemp(dir=shm))
    try:
        base, mod = tmp_path / "base", tmp_path / "mod"
        write(mod / "sub" / "f.txt", "payload\n")
        base.mkdir()
        os.utime(mod / "sub" / "f.txt", (1_000_000, 1_000_000))
        r = subprocess.run(
            [str(usvfs), "run", "--dir", str(mod), str(base), "--create-target", str(ow), str(base), "--",
             sys.executable, "-c", "import os; os.rename('sub/f.txt', 'sub/g.txt'); print(open('sub/g.txt').read(), end=''); print(os.path.exists('sub/f.txt'))"],
            cwd=base, capture_output=True,
        )
        assert r.stdout == b"payload\nFalse\n", r.stderr
        assert (ow / "sub" / "g.txt").read_text() == "payload\n"
        assert os.stat(ow / "sub" / "g.txt").st_mtime == 1_000_000
        assert not (mod / "sub" / "f.txt").exists()
        assert sorted(os.listdir(ow / "sub")) == ["g.txt"]
    finally:
        shutil.rmtree(ow)


def test_renameat2_noreplace_and_exchange(scene: Scene) -> None:
    r = scene.py(
        "import ctypes, os, errno\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "AT = -100\n"
        "def ren(a, b, flags):\n"
        "    r = libc.renameat2(AT, a.encode(), AT, b.encode(), flags)\n"
        "    return 'ok' if r == 0 else errno.errorcode[ctypes.get_errno()]\n"
        "print(ren('mfolder1/mfile1.txt', 'mfolder2/mfile2.txt', 1))\n"  # RENAME_NOREPLACE
        "print(ren('mfolder1/mfile1.txt', 'mfolder1/fresh.txt', 1))\n"
        "print(ren('mfolder3/mfile3.txt', 'mfolder4/mfile4.txt', 2))\n"  # RENAME_EXCHANGE
        "print(open('mfolder3/mfile3.txt').read(), open('mfolder4/mfile4.txt').read(), end='')\n"
        "print(ren('mfolder3/mfile3.txt', 'mfolder3/none.txt', 2))\n"
    )
    assert r.stdout.decode().split() == ["EEXIST", "ok", "ok", "m4", "m3", "ENOENT"]
    assert (scene.mods[2] / "mfolder3" / "mfile3.txt").read_text() == "m4\n"
    assert (scene.mods[3] / "mfolder4" / "mfile4.txt").read_text() == "m3\n"
    assert (scene.ow / "mfolder1" / "fresh.txt").read_text() == "m1\n"
    assert not (scene.mods[0] / "mfolder1" / "mfile1.txt").exists()
