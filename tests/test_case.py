"""A case-insensitive view (`usvfs run --case-insensitive`), end to end: real
programs in the view over three mods, the base and an overwrite folder that
spell the same directories and files differently, compared with a physically
case-folded merged copy the test builds itself; then writes, and the exact
physical trees they leave."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import merge_into, snapshot_tree, write


def fold(name: bytes) -> bytes:
    """The test's own case folding (per character, as the view's simple
    folding does for the names used here; ASCII only for non-UTF-8)."""
    try:
        s = name.decode()
    except UnicodeDecodeError:
        return name.lower()
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in s).encode()


class CaseLayout:
    """`game/Data` (the base) with mods m1..m3 and `overwrite` (create
    target), in that priority order, spelling things differently."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "game" / "Data"
        self.mods = [root / "mods" / n for n in ("m1", "m2", "m3")]
        self.overwrite = root / "overwrite"
        b, (m1, m2, m3), ow = self.base, self.mods, self.overwrite
        write(b / "Data.esm", "base esm\n")
        write(b / "Textures" / "base.dds", "base tex\n")
        write(b / "Textures" / "Armor.dds", "base armor\n")
        write(b / "Meshes" / "readme.txt", "base readme\n")
        write(b / "Ärger.txt", "base ärger\n")
        write(self.bpath(b, b"CAF\xe9.txt"), "base latin-1\n")
        write(m1 / "textures" / "armor.dds", "m1 armor\n")
        write(m1 / "textures" / "m1only.dds", "m1 only\n")
        write(m1 / "textures" / "Sub" / "one.dds", "m1 one\n")
        write(m1 / "meshes" / "m1.nif", "m1 nif\n")
        write(self.bpath(m1, b"caf\xe9.TXT"), "m1 latin-1\n")
        write(m2 / "TEXTURES" / "ARMOR.DDS", "m2 armor\n")
        write(m2 / "TEXTURES" / "SUB" / "two.dds", "m2 two\n")
        write(m2 / "ärger.TXT", "m2 ärger\n")
        write(m2 / "Scripts" / "A.pex", "m2 script\n")
        write(m3 / "Textures" / "m3.dds", "m3 tex\n")
        write(m3 / "MESHES" / "m3.nif", "m3 nif\n")
        write(m3 / "scripts" / "b.pex", "m3 script\n")
        write(ow / "textures" / "ow_existing.dds", "already in overwrite\n")

    @staticmethod
    def bpath(d: Path, name: bytes) -> Path:
        return Path(os.fsdecode(os.path.join(os.fsencode(d), name)))

    def layers(self) -> list[Path]:
        return [self.base, *self.mods, self.overwrite]

    def args(self, case_insensitive: bool = True) -> list[str]:
        a = ["--case-insensitive"] if case_insensitive else []
        for m in self.mods:
            a += ["--dir", str(m), str(self.base)]
        return a + ["--create-target", str(self.overwrite), str(self.base)]

    def run(self, cmd: list, case_insensitive: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(USVFS), "run", *self.args(case_insensitive), "--", *cmd],
            cwd=self.base.parent,
            capture_output=True,
            timeout=120,
        )

    def trees(self) -> dict[str, dict]:
        return {str(p.relative_to(self.root)): snapshot_tree(p) for p in self.layers()}


def merge_folded(src: Path, dest: Path) -> None:
    """Merges `src` over `dest` like the view does: names that fold alike are
    one entry, spelled as the higher layer (`src`) spells it; directories
    merge, anything else replaces."""
    for name in sorted(os.listdir(os.fsencode(src))):
        s = os.path.join(os.fsencode(src), name)
        existing = [n for n in os.listdir(os.fsencode(dest)) if fold(n) == fold(name)]
        t = os.path.join(os.fsencode(dest), name)
        if existing:
            old = os.path.join(os.fsencode(dest), existing[0])
            if os.path.isdir(s) and os.path.isdir(old):
                os.rename(old, t)  # the higher layer's spelling
            elif os.path.isdir(old):
                subprocess.run(["rm", "-rf", old], check=True)
            else:
                os.unlink(old)
        if os.path.isdir(s):
            os.makedirs(t, exist_ok=True)
            merge_folded(Path(os.fsdecode(s)), Path(os.fsdecode(t)))
        else:
            with open(s, "rb") as f, open(t, "wb") as g:
                g.write(f.read())


USVFS: Path = Path()


@pytest.fixture
def case(usvfs: Path, tmp_path: Path) -> CaseLayout:
    global USVFS
    USVFS = usvfs
    return CaseLayout(tmp_path)


@pytest.fixture
def folded(case: CaseLayout) -> Path:
    """The physically case-folded merged copy, at `merged/Data`."""
    dest = case.root / "merged" / "Data"
    dest.mkdir(parents=True)
    for layer in case.layers():
        merge_folded(layer, dest)
    return dest


def all_files(d: Path) -> list[bytes]:
    out = []
    for dirpath, _, filenames in os.walk(os.fsencode(d)):
        for f in filenames:
            out.append(os.path.relpath(os.path.join(dirpath, f), os.fsencode(d)))
    return sorted(out)


def respell(rel: bytes, how: str) -> bytes:
    """The same path in another spelling."""
    try:
        s = rel.decode()
    except UnicodeDecodeError:
        return rel.upper() if how == "upper" else rel.swapcase()
    return (s.upper() if how == "upper" else s.swapcase()).encode()


def test_folded_merged_copy_is_what_the_test_expects(folded: Path) -> None:
    """The oracle itself, spelled out: one entry per folded name, spelled by
    the highest layer that has it."""
    assert sorted(os.listdir(os.fsencode(folded))) == sorted(
        [b"Data.esm", b"MESHES", b"caf\xe9.TXT", b"scripts", b"textures", "ärger.TXT".encode()]
    )
    assert sorted(os.listdir(folded / "textures")) == ["ARMOR.DDS", "SUB", "base.dds", "m1only.dds", "m3.dds", "ow_existing.dds"]
    assert sorted(os.listdir(folded / "textures" / "SUB")) == ["one.dds", "two.dds"]
    assert sorted(os.listdir(folded / "MESHES")) == ["m1.nif", "m3.nif", "readme.txt"]
    assert (folded / "textures" / "ARMOR.DDS").read_text() == "m2 armor\n"


LISTINGS = [
    ("ls", ["ls", "-1AR", "Data"], False),
    ("find", ["find", "Data", "-printf", "%p %y\\n"], True),
    ("find-sizes", ["find", "Data", "-type", "f", "-printf", "%p %s\\n"], True),
    ("cat-all", ["sh", "-c", "find Data -type f | LC_ALL=C sort | while read -r f; do echo \"== $f\"; cat \"$f\"; done"], False),
]


@pytest.mark.parametrize("name,argv,sort", LISTINGS, ids=[x[0] for x in LISTINGS])
def test_programs_see_the_folded_merge(case: CaseLayout, folded: Path, name: str, argv: list, sort: bool) -> None:
    before = case.trees()
    view = case.run(argv)
    real = subprocess.run(argv, cwd=folded.parent, capture_output=True, timeout=60)
    assert view.returncode == real.returncode == 0, (view.stderr, real.stderr)
    v, r = view.stdout, real.stdout
    if sort:
        v, r = sorted(v.splitlines()), sorted(r.splitlines())
    assert v == r, view.stderr
    assert real.stdout.strip()
    assert case.trees() == before, "a read-only program changed the disk"


def test_every_file_opens_in_any_spelling(case: CaseLayout, folded: Path) -> None:
    files = all_files(folded)
    assert len(files) == 15
    script = b"".join(
        b'echo "== %s"; cat "Data/%s"; ' % (f, respell(f, how)) for f in files for how in ("upper", "swap")
    )
    view = case.run(["sh", "-c", script])
    assert view.returncode == 0, view.stderr
    expected = b"".join(b"== %s\n%s" % (f, (folded / os.fsdecode(f)).read_bytes()) for f in files for _ in range(2))
    assert view.stdout == expected, view.stderr
    # stat and test -e agree with cat; another name does not exist.
    r = case.run(["sh", "-c", "stat -c '%s %F' Data/TEXTURES/armor.DDS Data/ÄRGER.txt; stat -c %F Data/meshes; "
                  "test -e Data/textures/NOPE.dds || echo absent; test -d Data/TEXTURES/sub && echo dir"])
    assert r.stdout == b"9 regular file\n10 regular file\ndirectory\nabsent\ndir\n", r.stderr


def test_writes_land_below_the_views_spelling(case: CaseLayout) -> None:
    before = case.trees()
    script = "; ".join(
        [
            "export LC_ALL=C",
            "cd Data",
            "echo new > TEXTURES/New.txt",  # under ow's existing `textures`
            "cat textures/NEW.TXT",
            "echo nif > meshes/Added.NIF",  # the view spells MESHES (m3)
            "mkdir Meshes/NewDir",
            "echo inner > MESHES/newdir/Inner.txt",
            "cat meshes/NEWDIR/inner.TXT",
            "mv TEXTURES/M1ONLY.DDS Textures/Moved.dds",
            "rm textures/armor.DDS",
            "test -e TEXTURES/Armor.dds || echo armor-gone",
            "mkdir textures/sub/Deeper",
            "echo deep > TEXTURES/SUB/deeper/Deep.dds",
            "ls textures",
            "ls MESHES",
            "ls textures/SUB textures/sub/DEEPER",
        ]
    )
    r = case.run(["sh", "-c", script])
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        b"new\ninner\narmor-gone\n"
        b"Moved.dds\nNew.txt\nSUB\nbase.dds\nm3.dds\now_existing.dds\n"
        b"Added.NIF\nNewDir\nm1.nif\nm3.nif\nreadme.txt\n"
        b"textures/SUB:\nDeeper\none.dds\ntwo.dds\n\ntextures/sub/DEEPER:\nDeep.dds\n"
    ), r.stderr
    after = case.trees()
    # New entries went to the overwrite folder, spelled as the view spells
    # their parents; the moved file left m1; the deleted winner left m2.
    assert after["overwrite"] == {
        b"textures": ("d", b""),
        b"textures/ow_existing.dds": ("f", b"already in overwrite\n"),
        b"textures/New.txt": ("f", b"new\n"),
        b"textures/Moved.dds": ("f", b"m1 only\n"),
        b"textures/SUB": ("d", b""),
        b"textures/SUB/Deeper": ("d", b""),
        b"textures/SUB/Deeper/Deep.dds": ("f", b"deep\n"),
        b"MESHES": ("d", b""),
        b"MESHES/Added.NIF": ("f", b"nif\n"),
        b"MESHES/NewDir": ("d", b""),
        b"MESHES/NewDir/Inner.txt": ("f", b"inner\n"),
    }
    expected_m1 = dict(before["mods/m1"])
    del expected_m1[b"textures/m1only.dds"]
    assert after["mods/m1"] == expected_m1
    expected_m2 = dict(before["mods/m2"])
    del expected_m2[b"TEXTURES/ARMOR.DDS"]
    assert after["mods/m2"] == expected_m2
    assert after["mods/m3"] == before["mods/m3"]
    assert after["game/Data"] == before["game/Data"]
    # A new mapping reads the disk as it now is: the next armor shows (m1's).
    r = case.run(["sh", "-c", "cat Data/TEXTURES/ARMOR.DDS; cat Data/meshes/newdir/INNER.TXT; LC_ALL=C ls Data/Textures"])
    assert r.stdout == (
        b"m1 armor\ninner\nMoved.dds\nNew.txt\nSUB\narmor.dds\nbase.dds\nm3.dds\now_existing.dds\n"
    ), r.stderr


def test_a_case_sensitive_run_is_unchanged(case: CaseLayout, tmp_path: Path) -> None:
    merged = tmp_path / "plain" / "Data"
    merged.parent.mkdir()
    import shutil

    shutil.copytree(case.base, merged)
    for layer in [*case.mods, case.overwrite]:
        merge_into(layer, merged)
    for argv in (["ls", "-1AR", "Data"], ["sh", "-c", "cat Data/textures/armor.dds Data/TEXTURES/ARMOR.DDS Data/Textures/Armor.dds"]):
        view = case.run(argv, case_insensitive=False)
        real = subprocess.run(argv, cwd=merged.parent, capture_output=True)
        assert view.returncode == real.returncode == 0, view.stderr
        assert view.stdout == real.stdout
    r = case.run(["cat", "Data/TEXTURES/armor.dds"], case_insensitive=False)
    assert r.returncode == 1 and b"No such file" in r.stderr


def test_dump_profile_and_python(case: CaseLayout, tmp_path: Path) -> None:
    d = subprocess.run([str(USVFS), "dump", *case.args()], capture_output=True, check=True)
    lines = d.stdout.splitlines()
    assert lines[0].startswith(b"# case-insensitive")
    assert any(l.strip() == b"ARMOR.DDS -> " + bytes(case.mods[1] / "TEXTURES" / "ARMOR.DDS") for l in lines), d.stdout
    d = subprocess.run([str(USVFS), "dump", *case.args(False)], capture_output=True, check=True)
    assert b"case-insensitive" not in d.stdout
    # A profile's `case_insensitive = true`.
    prof = tmp_path / "profile.toml"
    links = "".join(f'[[link]]\ndir = "{m}"\nto = "{case.base}"\n\n' for m in case.mods)
    prof.write_text(f"case_insensitive = true\n\n{links}")
    r = subprocess.run([str(USVFS), "run", "--profile", str(prof), "--", "cat", "Data/textures/ARMOR.dds"],
                       cwd=case.base.parent, capture_output=True)
    assert r.stdout == b"m2 armor\n", r.stderr
    # The flag needs a mapping to apply to.
    r = subprocess.run([str(USVFS), "run", "--case-insensitive", "--", "true"], capture_output=True)
    assert r.returncode == 125 and b"--case-insensitive applies to a new mapping" in r.stderr
    # Python: UserspaceVFS(case_insensitive=True).
    code = (
        "import sys, usvfs\n"
        "m = usvfs.Mapping()\n"
        f"for mod in {[str(m) for m in case.mods]!r}:\n"
        f"    m.link(usvfs.VirtualDirectory(mod, {str(case.base)!r}))\n"
        "for ci in (True, False):\n"
        "    with usvfs.UserspaceVFS('case_py_' + str(ci), case_insensitive=ci) as vfs:\n"
        "        assert vfs.case_insensitive is ci\n"
        "        vfs.set_mapping(m)\n"
        f"        r = vfs.run(['cat', {str(case.base / 'textures' / 'ARMOR.dds')!r}], capture_output=True)\n"
        "        sys.stdout.buffer.write(r.stdout or b'missing\\n')\n"
        "        sys.stdout.write(vfs.dump().splitlines()[0][:18] + '\\n')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent / "python"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == b"m2 armor" and out[1] == b"# case-insensitive"
    assert out[2] == b"missing" and out[3] != b"# case-insensitive"
