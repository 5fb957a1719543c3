"""Helpers for the Wine suite (tests/test_wine.py): finding Wine and MinGW, one
cached Wine prefix cloned per session, running Windows programs under plain
Wine and in the view with no wineserver left between runs, the Windows layout
and the check of the physical trees after writes."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO, Layout, build_layout, snapshot_tree, write

MINGW_CC = "x86_64-w64-mingw32-gcc"


def find_tools() -> dict[str, str] | None:
    """The Wine loader (64-bit), wineserver, wineboot and the MinGW compiler,
    or None when one is missing."""
    loader = shutil.which("wine") or shutil.which("wine64") or next(
        (p for p in ("/usr/lib/wine/wine64", "/usr/lib64/wine/wine64") if os.access(p, os.X_OK)), None
    )
    server = shutil.which("wineserver") or next(
        (p for p in ("/usr/lib/wine/wineserver64", "/usr/lib/wine/wineserver") if os.access(p, os.X_OK)), None
    )
    cc = shutil.which(MINGW_CC)
    if not (loader and server and cc):
        return None
    return {"wine": loader, "wineserver": server, "cc": cc}


def tools_or_reason() -> tuple[dict[str, str] | None, str]:
    """Finds the tools; when missing and this is root with apt-get, installs them
    the way `make test` does (scripts/setup.sh) and looks again."""
    tools = find_tools()
    if tools:
        return tools, ""
    if os.geteuid() == 0 and shutil.which("apt-get"):
        r = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], capture_output=True, text=True)
        tools = find_tools()
        if tools:
            return tools, ""
        return None, f"wine64/mingw-w64 missing and scripts/setup.sh could not install them: {r.stderr[-500:]}"
    return None, "wine64 and mingw-w64 (x86_64-w64-mingw32-gcc) are not installed and cannot be (not root or no apt-get)"


def base_env(prefix: Path) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "WINESERVER", "WINELOADER", "WINEARCH"):
        env.pop(k, None)
    env.update(WINEPREFIX=str(prefix), WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml=")
    return env


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "usvfs-tests"


def wine_version(tools: dict[str, str]) -> str:
    r = subprocess.run([tools["wine"], "--version"], capture_output=True, text=True, env=base_env(Path("/nonexistent")))
    return r.stdout.strip()


def session_prefix(tools: dict[str, str], dest: Path, fallback: Path) -> Path:
    """A private prefix for one session at dest (its own wineserver, so sessions
    running at once cannot disturb each other), cloned from a template cached
    across sessions (`wineboot -i` once per Wine version, ~10 s): the big,
    read-only system folders hard-linked, everything Wine may rewrite copied.
    The template is built beside its final name and renamed into place, all
    under a lock; without a writable cache the template lives in fallback."""
    cache = cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        lock = open(cache / "wineprefix.lock", "w")
    except OSError:
        cache = fallback
        cache.mkdir(parents=True, exist_ok=True)
        lock = open(cache / "wineprefix.lock", "w")
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        template = cache / "wineprefix"
        stamp = template / ".usvfs-tests-ready"
        version = wine_version(tools)
        if not (stamp.exists() and stamp.read_text() == version):
            build_template(tools, template, version)
        return clone_prefix(template, dest)


def build_template(tools: dict[str, str], template: Path, version: str) -> None:
    tmp = template.with_name(f"wineprefix.new-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    env = base_env(tmp)
    boot = ["wineboot", "-i"] if shutil.which("wineboot") else [tools["wine"], "wineboot", "-i"]
    r = subprocess.run(boot, env=env, capture_output=True, timeout=300)
    subprocess.run([tools["wineserver"], "-w"], env=env, timeout=120)
    if not (tmp / "system.reg").exists() or not (tmp / "drive_c" / "windows" / "system32").is_dir():
        raise RuntimeError(f"wineboot -i did not create a prefix (exit {r.returncode}): {r.stderr[-2000:]!r}")
    (tmp / ".usvfs-tests-ready").write_text(version)
    shutil.rmtree(template, ignore_errors=True)
    os.rename(tmp, template)


def clone_prefix(template: Path, dest: Path) -> Path:
    linked = {template / "drive_c" / "windows", template / "drive_c" / "Program Files",
              template / "drive_c" / "Program Files (x86)"}

    def copy(src: str, dst: str) -> None:
        if any(Path(src).is_relative_to(d) for d in linked):
            try:
                os.link(src, dst)
                return
            except OSError:
                pass
        shutil.copy2(src, dst)

    shutil.copytree(template, dest, symlinks=True, copy_function=copy)
    return dest


def server_pids(prefix: Path) -> list[int]:
    """wineserver processes holding the prefix directory open (any server of
    this prefix: started by plain Wine, by Wine in the view, or by hand)."""
    real = os.path.realpath(prefix)
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if not os.path.basename(os.readlink(f"/proc/{d}/exe")).startswith("wineserver"):
                continue
            for fd in os.listdir(f"/proc/{d}/fd"):
                try:
                    if os.readlink(f"/proc/{d}/fd/{fd}") == real:
                        pids.append(int(d))
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return pids


@dataclass
class Wine:
    tools: dict[str, str]
    prefix: Path
    exe: dict[str, Path]

    @property
    def env(self) -> dict[str, str]:
        return base_env(self.prefix)

    def stop_server(self, timeout: float = 20) -> None:
        """No wineserver of the prefix left: ask it to go (`wineserver -k`), wait
        until every server process of the prefix (also one the view started
        privately) has ended, kill what remains."""
        subprocess.run([self.tools["wineserver"], "-k"], env=self.env, capture_output=True, timeout=30)
        deadline = time.time() + timeout
        while (pids := server_pids(self.prefix)) and time.time() < deadline:
            time.sleep(0.05)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while server_pids(self.prefix) and time.time() < deadline:
            time.sleep(0.05)

    def command(self, program: str | Path, *args: str) -> list[str]:
        return [self.tools["wine"], str(program), *args]

    def run(self, argv: list[str], cwd: Path, timeout: float = 120, fresh: bool = True) -> subprocess.CompletedProcess:
        """argv (a Wine command line) under plain Wine, outside any view."""
        if fresh:
            self.stop_server()
        try:
            return run_to_files(argv, cwd, self.env, timeout)
        finally:
            if fresh:
                self.stop_server()

    def run_view(self, usvfs: Path, layout: Layout, argv: list[str], cwd: Path, extra: list[str] = (),
                 timeout: float = 120, fresh: bool = True) -> subprocess.CompletedProcess:
        """argv under Wine in the view of the layout's mapping."""
        return self.run_usvfs(usvfs, [*layout.mapping_args(), *extra], argv, cwd, timeout, fresh)

    def run_usvfs(self, usvfs: Path, options: list[str], argv: list[str], cwd: Path, timeout: float = 120,
                  fresh: bool = True) -> subprocess.CompletedProcess:
        """`usvfs run OPTIONS -- argv`."""
        if fresh:
            self.stop_server()
        try:
            return run_to_files([str(usvfs), "run", *options, "--", *argv], cwd, self.env, timeout)
        finally:
            if fresh:
                self.stop_server()


def run_to_files(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """subprocess.run with the output captured in files, not pipes: a wineserver
    the program started inherits them and would hold a pipe open for its 3 s of
    persistence after the program ended."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        r = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, r.returncode, out.read(), err.read())


def winpath(p: Path | str) -> str:
    """The Windows spelling of a Unix path through Wine's Z: drive."""
    return "Z:" + str(p).replace("/", "\\")


def compile_programs(cc: str, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    exes = {}
    for src in sorted((REPO / "tests" / "win").glob("*.c")):
        exe = out / (src.stem + ".exe")
        subprocess.run([cc, "-O2", "-Wall", "-municode", "-o", str(exe), str(src)], check=True)
        exes[src.stem] = exe
    return exes


# ---------------------------------------------------------------- layouts


def build_wine_layout(root: Path) -> Layout:
    """conftest's layout (`build_layout`: a game's data folder, three mods, an
    overwrite folder with a file of its own and a single linked file) in the
    shapes Windows mods come in: a CRLF text file, an .ini two layers have, a
    read-only file, hidden and Unicode names, empty directories, deeper
    trees, more files in the overwrite folder; without the non-UTF-8 name and
    the link `links/to_shared`."""
    layout = build_layout(root)
    base, (m1, m2, m3), ow = layout.base, layout.mods, layout.overwrite
    os.unlink(os.path.join(os.fsencode(m1), b"caf\xe9 latin1.txt"))
    os.unlink(m1 / "links" / "to_shared")
    write(base / "base_only.txt", "base only\r\n")
    write(base / "settings.ini", "[General]\r\nbase=1\r\n")
    write(base / "textures" / "sky" / "base_sky.dds", "base sky\n")
    write(base / "readonly.txt", "read only\n")
    os.chmod(base / "readonly.txt", 0o444)
    (base / "empty_base_dir").mkdir()
    write(m1 / "plugin.esp", "TES4 plugin\n")
    write(m1 / ".hidden_cfg", "hidden\n")
    write(m1 / "textures" / "sky" / "m1_sky.dds", "m1 sky\n")
    write(m1 / "caf\u00e9 \u65e5\u672c.txt", "unicode name\n")
    write(m2 / "settings.ini", "[General]\r\nm2=1\r\n")
    (m2 / "only_m2" / "empty").mkdir()
    write(m3 / "only_m3" / "deep" / "er" / "leaf.txt", "leaf\n")
    write(ow / "textures" / "ow_tex.dds", "ow tex\n")
    return layout


# ------------------------------------------------- physical trees after writes

Tree = dict[bytes, tuple[str, bytes]]


def layer_trees(layout: Layout, fold: bool = False) -> list[Tree]:
    """The physical trees in priority order: base, mods, overwrite, the single
    linked file (relative to the data folder); with fold, names lower-cased."""
    trees = [snapshot_tree(p) for p in [layout.base, *layout.mods, layout.overwrite]]
    rel = os.fsencode(layout.single_dest.relative_to(layout.base))
    trees.append({rel: ("f", layout.single.read_bytes())} if layout.single.exists() else {})
    return [folded(t) for t in trees] if fold else trees


def folded(t: Tree) -> Tree:
    return {k.lower(): v for k, v in t.items()}


def merge_trees(trees: list[Tree]) -> tuple[Tree, dict[bytes, int]]:
    """What copying the layers in order gives (as Layout.merged_copy does), and
    for each path the index of the highest layer that provides it."""
    merged: Tree = {}
    origin: dict[bytes, int] = {}
    for i, t in enumerate(trees):
        for p in sorted(t):
            old = merged.get(p)
            if old is not None and old[0] == "d" and t[p][0] != "d":
                for q in [q for q in merged if q.startswith(p + b"/")]:
                    del merged[q], origin[q]
            merged[p] = t[p]
            origin[p] = i
    return merged, origin


def check_physical(layout: Layout, before: list[Tree], oracle_after: Tree, fold: bool = False) -> list[str]:
    """Problems of the physical trees after a view run, judged against the
    oracle's merged copy after the same run:
      * no new entry anywhere but in the overwrite folder (mods and the game
        folder only change in place or lose entries);
      * an entry whose content changed was the winning one;
      * every entry of the oracle is, merging the layers again, what the oracle
        has; an entry the oracle lost was removed from its winning layer (a lower
        copy may remain: the view hides it until the mapping is set again).
    With fold, names compare case-insensitively (before must be folded too)."""
    after = layer_trees(layout, fold)
    if fold:
        oracle_after = folded(oracle_after)
    names = ["game/data", *(f"mods/{m.name}" for m in layout.mods), "overwrite", "single"]
    ow = len(layout.mods) + 1
    problems = []
    merged_before, origin_before = merge_trees(before)
    for i, (b, a) in enumerate(zip(before, after)):
        if i != ow:
            for p in sorted(set(a) - set(b)):
                problems.append(f"new entry outside the overwrite folder: {names[i]}/{p.decode(errors='replace')}")
        for p in sorted(set(a) & set(b)):
            if a[p] != b[p] and a[p][0] == "f" and origin_before.get(p) != i:
                problems.append(f"{names[i]}/{p.decode(errors='replace')} changed but it was not the winning copy")
    merged_after, origin_after = merge_trees(after)
    for p, v in sorted(oracle_after.items()):
        got = merged_after.get(p)
        if got is None:
            problems.append(f"{p.decode(errors='replace')}: in the oracle, in no layer")
        elif got[0] != v[0] or (v[0] != "d" and got != v):
            problems.append(f"{p.decode(errors='replace')}: oracle {v!r}, layers give {got!r} from {names[origin_after[p]]}")
    for p in sorted(set(merged_after) - set(oracle_after)):
        if p not in merged_before:
            problems.append(f"{p.decode(errors='replace')}: in {names[origin_after[p]]}, not in the oracle")
        elif p in after[origin_before[p]]:
            # A lower copy may show again later; the winning one must be gone.
            problems.append(f"{p.decode(errors='replace')}: gone in the oracle, still in the layer it came from "
                            f"({names[origin_before[p]]})")
    return problems
