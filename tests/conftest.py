"""Shared fixtures: the built binaries, a layered mod setup, and its physically
merged copy (the oracle every view is compared with)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"
USVFS = TARGET / "usvfs"
PRELOAD = TARGET / "libusvfs_preload.so"


def _python_package_importable() -> None:
    """Tests import the package from the source tree, with the extension module
    the workspace build produced (the packaging test installs it for real)."""
    import sys

    native = REPO / "python" / "usvfs" / "_native.abi3.so"
    built = TARGET / "lib_native.so"
    if built.exists() and not native.exists():
        native.symlink_to(built)
    if str(REPO / "python") not in sys.path:
        sys.path.insert(0, str(REPO / "python"))
    # The freshly built engine, not a copy an earlier `pip install .` left.
    os.environ["USVFS_PRELOAD"] = str(PRELOAD)
    os.environ["USVFS_CLI"] = str(USVFS)


_python_package_importable()


@pytest.fixture(scope="session")
def usvfs() -> Path:
    if not USVFS.exists() or not PRELOAD.exists():
        pytest.fail(f"{USVFS} or {PRELOAD} missing: run `cargo build --release --workspace` (make test does)")
    return USVFS


@pytest.fixture(scope="session")
def cbin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small C test programs, compiled once. A program whose first line
    is `// link: FLAGS` needs a library (FLAGS are added); it is left out
    when that library is missing (its tests skip, naming it)."""
    out = tmp_path_factory.mktemp("cbin")
    progs = {}
    for src in (REPO / "tests" / "c").glob("*.c"):
        exe = out / src.stem
        first = src.read_text().split("\n", 1)[0]
        link = first[len("// link: "):].split() if first.startswith("// link: ") else []
        argv = ["gcc", "-O2", "-Wall", "-pthread", "-o", str(exe), str(src), *link]
        if link and subprocess.run(argv, capture_output=True).returncode != 0:
            continue
        subprocess.run(argv, check=True)
        progs[src.stem] = exe
    static = out / "static_hello"
    (out / "hello.c").write_text('#include <stdio.h>\nint main(void){puts("hi");return 0;}\n')
    r = subprocess.run(["gcc", "-static", "-o", str(static), str(out / "hello.c")])
    if r.returncode == 0:
        progs["static_hello"] = static
    return progs


def write(p: Path, data: bytes | str = b"") -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)


@dataclass
class Layout:
    """A base directory, three mods, an overwrite folder and a file link, and
    the `usvfs run` options that map them (in priority order)."""

    root: Path
    base: Path
    mods: list[Path]
    overwrite: Path
    single: Path
    single_dest: Path
    extra: list[str] = field(default_factory=list)

    def mapping_args(self) -> list[str]:
        args: list[str] = []
        for m in self.mods:
            args += ["--dir", str(m), str(self.base)]
        args += ["--create-target", str(self.overwrite), str(self.base)]
        args += ["--file", str(self.single), str(self.single_dest)]
        return args + self.extra

    def merged_copy(self, dest: Path) -> Path:
        """Copies the layers in priority order: the oracle."""
        shutil.copytree(self.base, dest, symlinks=True)
        for layer in [*self.mods, self.overwrite]:
            merge_into(layer, dest)
        rel = self.single_dest.relative_to(self.base)
        shutil.copy2(self.single, dest / rel)
        return dest


def merge_into(src: Path, dest: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(os.fsencode(src)):
        rel = os.path.relpath(dirpath, os.fsencode(src))
        target = os.path.join(os.fsencode(dest), rel) if rel != b"." else os.fsencode(dest)
        for d in list(dirnames):
            s, t = os.path.join(dirpath, d), os.path.join(target, d)
            if os.path.islink(s):
                dirnames.remove(d)
                filenames.append(d)
                continue
            if os.path.lexists(t) and not (os.path.isdir(t) and not os.path.islink(t)):
                os.unlink(t)
            os.makedirs(t, exist_ok=True)
        for f in filenames:
            s, t = os.path.join(dirpath, f), os.path.join(target, f)
            if os.path.isdir(t) and not os.path.islink(t):
                shutil.rmtree(t)
            elif os.path.lexists(t):
                os.unlink(t)
            shutil.copy2(s, t, follow_symlinks=False)


def build_layout(root: Path) -> Layout:
    base = root / "game" / "data"
    write(base / "base_only.txt", "base only\n")
    write(base / "shared.txt", "from base\n")
    write(base / "textures" / "base_tex.dds", "base tex\n")
    write(base / "dir with space" / "base file.txt", "base spaced\n")
    write(base / "conflict_kind" / "inner.txt", "hidden by m2's file\n")
    m1, m2, m3 = (root / "mods" / n for n in ("m1", "m2", "m3"))
    write(m1 / "shared.txt", "from m1\n")
    write(m1 / "textures" / "m1_tex.dds", "m1 tex\n")
    write(m1 / "meshes" / "a" / "b" / "m1.nif", "m1 mesh\n")
    write(m1 / "name with spaces.txt", "spaces\n")
    write(Path(os.fsdecode(os.path.join(os.fsencode(m1), b"caf\xe9 latin1.txt"))), "not utf-8\n")
    write(m1 / "links" / "keep.txt", "keep\n")
    os.symlink("../only_m2/readme.txt", m1 / "links" / "to_m2")
    os.symlink("../shared.txt", m1 / "links" / "to_shared")
    write(m2 / "shared.txt", "from m2\n")
    write(m2 / "only_m2" / "readme.txt", "only in m2\n")
    write(m2 / "textures" / "m2_tex.dds", "m2 tex\n")
    write(m2 / "meshes" / "a" / "m2.nif", "m2 mesh\n")
    write(m2 / "conflict_kind", "a file over base's directory\n")
    write(m3 / "shared.txt", "from m3\n")
    write(m3 / "textures" / "m1_tex.dds", "m3 overrides m1\n")
    write(m3 / "dir with space" / "m3 file.txt", "m3 spaced\n")
    ow = root / "overwrite"
    write(ow / "ow_existing.txt", "already in overwrite\n")
    single = root / "single" / "readme_single.txt"
    write(single, "a single linked file\n")
    return Layout(root, base, [m1, m2, m3], ow, single, base / "meshes" / "single.txt")


def snapshot_tree(p: Path) -> dict[bytes, tuple[str, bytes]]:
    """Every entry below p with its type and content (file) or target (link)."""
    out: dict[bytes, tuple[str, bytes]] = {}
    bp = os.fsencode(p)
    for dirpath, dirnames, filenames in os.walk(bp):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, bp)
            if os.path.islink(full):
                out[rel] = ("l", os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("d", b"")
            else:
                with open(full, "rb") as f:
                    out[rel] = ("f", f.read())
    return out


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return build_layout(tmp_path)


@pytest.fixture(autouse=True)
def private_instance(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test gets its own runtime directory, so instances never collide."""
    rt = tmp_path / "runtime"
    rt.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(rt))


def run_view(usvfs: Path, layout: Layout, cmd: list, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--", *cmd],
        cwd=cwd or layout.root,
        capture_output=True,
        timeout=120,
        **kw,
    )


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def nobody_with_fuse(scratch: Path) -> list[str] | None:
    """An argv prefix that runs a command as nobody with a /dev/fuse it may
    open, or None when that cannot be arranged here. Distributions make
    /dev/fuse 0666; where it is 0600 (as on some VMs) the command gets a node
    of its own, open to all, bound over /dev/fuse in a mount namespace of its
    own (made as root, before dropping to nobody)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return None
    if os.stat("/dev/fuse").st_mode & 0o006:
        return list(NOBODY)
    if not shutil.which("unshare"):
        return None
    node = scratch / "fuse"
    dev = os.stat("/dev/fuse").st_rdev
    return ["unshare", "-m", "sh", "-c",
            f'mknod -m 666 {node} c {os.major(dev)} {os.minor(dev)} && mount --bind {node} /dev/fuse && exec "$@"',
            "sh", *NOBODY]


def mount_engine_skip(usvfs: Path, root: Path) -> str | None:
    """Why the mount engine cannot run here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    (root / "src").mkdir(parents=True)
    (root / "dest").mkdir()
    r = subprocess.run([str(usvfs), "run", "--engine", "mount", "--dir", str(root / "src"), str(root / "dest"), "--", "true"],
                       capture_output=True, timeout=60)
    if r.returncode == 125:
        return r.stderr.decode(errors="replace")
    assert r.returncode == 0, r.stderr
    return None


@pytest.fixture(scope="session")
def mount_skip(usvfs: Path, tmp_path_factory: pytest.TempPathFactory) -> str | None:
    return mount_engine_skip(usvfs, tmp_path_factory.mktemp("scene-probe") / "p")
