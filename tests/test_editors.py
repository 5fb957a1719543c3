"""Edits keep the file in its mod, whatever the editor's strategy: in place,
write a temporary file and rename it over, or rename the original to a
backup (or delete it) and write a new file (vim with backupcopy=no, GNU
`patch -b`, `git apply`). A path that a process renamed away or deleted and
then creates again goes back to its place; backups are new files and land
in the create target."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Layout, run_view, snapshot_tree

OLD = "only in m2\n"
NEW = "edited in the view\n"


def diff_file(tmp_path: Path) -> Path:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(OLD)
    b.write_text(NEW)
    d = tmp_path / "p.diff"
    out = subprocess.run(["diff", "-u", str(a), str(b)], capture_output=True).stdout
    # Paths relative to the game folder, as a mod's patch names them.
    out = out.replace(str(a).encode(), b"a/data/only_m2/readme.txt").replace(str(b).encode(), b"b/data/only_m2/readme.txt")
    d.write_bytes(out)
    return d


def edit(usvfs: Path, layout: Layout, cmd: list[str]) -> None:
    r = run_view(usvfs, layout, cmd, cwd=layout.base.parent)
    assert r.returncode == 0, r.stdout + r.stderr


EDITORS = {
    # vim renames the original to `readme.txt~`, writes a new file, then
    # removes the backup.
    "vim-rename": (["vim", "-Nu", "NONE", "-es", "-c", "set backupcopy=no writebackup nobackup",
                    "-c", "%s/only in m2/edited in the view/", "-c", "wq", "data/only_m2/readme.txt"], []),
    "vim-default": (["vim", "-Nu", "NONE", "-es", "-c", "%s/only in m2/edited in the view/", "-c", "wq",
                     "data/only_m2/readme.txt"], []),
    "patch-b": (["patch", "-b", "-p1", "-i", "{diff}"], ["only_m2/readme.txt.orig"]),
    "git-apply": (["git", "apply", "{diff}"], []),
    "sed-i": (["sed", "-i", "s/only in m2/edited in the view/", "data/only_m2/readme.txt"], []),
}


@pytest.mark.parametrize("name", list(EDITORS))
def test_an_edit_keeps_the_file_in_its_mod(usvfs: Path, layout: Layout, tmp_path: Path, name: str) -> None:
    cmd, backups = EDITORS[name]
    tool = cmd[0]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    diff = diff_file(tmp_path)
    before = {p: snapshot_tree(p) for p in [layout.base, *layout.mods]}
    edit(usvfs, layout, [c.replace("{diff}", str(diff)) for c in cmd])
    # The mod's file holds the edit; nothing else in the mods or the game changed.
    assert (layout.mods[1] / "only_m2" / "readme.txt").read_text() == NEW
    after = {p: snapshot_tree(p) for p in [layout.base, *layout.mods]}
    before[layout.mods[1]][b"only_m2/readme.txt"] = ("f", NEW.encode())
    assert after == before
    # Only backups (new files) land in the create target.
    ow = snapshot_tree(layout.overwrite)
    files = sorted(k.decode() for k, v in ow.items() if v[0] == "f" and k != b"ow_existing.txt")
    assert files == backups
    if backups:
        assert ow[backups[0].encode()] == ("f", OLD.encode())
    # The view shows the edit.
    r = run_view(usvfs, layout, ["cat", "data/only_m2/readme.txt"], cwd=layout.base.parent)
    assert r.stdout.decode() == NEW


def test_a_file_another_process_deleted_is_created_where_creates_go(usvfs: Path, layout: Layout) -> None:
    """Only the process that removed a file brings it back to its place."""
    edit(usvfs, layout, ["sh", "-c", "rm data/only_m2/readme.txt && sh -c 'echo new > data/only_m2/readme.txt'"])
    assert not (layout.mods[1] / "only_m2" / "readme.txt").exists()
    assert (layout.overwrite / "only_m2" / "readme.txt").read_text() == "new\n"


def test_a_process_that_deletes_and_recreates_keeps_the_place(usvfs: Path, layout: Layout) -> None:
    code = "import os; os.remove('data/only_m2/readme.txt'); open('data/only_m2/readme.txt', 'w').write('again\\n')"
    edit(usvfs, layout, ["python3", "-c", code])
    assert (layout.mods[1] / "only_m2" / "readme.txt").read_text() == "again\n"
    assert not (layout.overwrite / "only_m2").exists()
