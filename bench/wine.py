"""Windows workloads under Wine: the same setup seen through usvfs (preload),
through the original usvfs (ModOrganizer2's usvfs_x64.dll from the py-usvfs
0.2.0 wheel, driven by bench/win/usvfs_run.c), and by plain Wine on the
physically merged copy (the reference).

Every system runs the same Windows program (bench/win/workload.c, built with
mingw-w64) on the same Windows paths, in one Wine prefix kept in the output
folder. A drive letter (U:) points at the output folder: the original usvfs
cannot link below Z: (Wine reports Z:\\ as a reparse point, which its path
check refuses). Before each measured run no wineserver of the prefix is left
running: a lingering server would serve the next system's process (the view's
server must be hooked; the others' must not). The programs time their own
work, so Wine's start and usvfs's injection stay out of the figures."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from systems import USVFS, Unavailable, ensure_packages  # noqa: E402

DRIVE = "u"
ORIG_WHEEL = "py-usvfs==0.2.0"
WORKLOADS = [
    ("walk", "walk: FindFirstFile/FindNextFile + GetFileAttributesEx every entry"),
    ("read", "open + read every file (CreateFile + ReadFile)"),
    ("attrs", "GetFileAttributesEx on every file's path (a list)"),
    ("case", "GetFileAttributesEx on 2,000 paths spelled in upper case"),
]
CASE_PATHS = 2000
PLAIN, OURS, ORIG = "plain Wine on the merged copy", "usvfs (preload)", "original usvfs (py-usvfs 0.2.0 DLL)"
OURS_MOUNT = "usvfs (mount)"


def ensure_tools() -> None:
    """Installs Wine and mingw-w64 (Debian packages) when missing."""
    need = {"wine": ["wine", "wine64"], "wineserver": ["wine", "wine64"], "x86_64-w64-mingw32-gcc": ["mingw-w64"]}
    missing = [b for b in need if shutil.which(b) is None]
    if not missing:
        return
    pkgs = sorted({p for b in missing for p in need[b]})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(f"{', '.join(missing)} not installed (and cannot install {' '.join(pkgs)} as non-root)")
    print(f"[wine] installing {' '.join(pkgs)} ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs], capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if r.returncode != 0 or any(shutil.which(b) is None for b in missing):
        raise Unavailable(f"could not install {' '.join(pkgs)}: {r.stderr.decode(errors='replace').strip()[-300:]}")


class Wine:
    """One Wine prefix (cached in OUT/wineprefix), the drive letter, the
    built programs, and the wineserver discipline between runs."""

    def __init__(self, out: Path) -> None:
        self.out = out.resolve()
        self.prefix = self.out / "wineprefix"
        self.bin = self.out / "win"
        self.env = dict(os.environ, WINEPREFIX=str(self.prefix), WINEDEBUG="-all",
                        WINEDLLOVERRIDES="mscoree,mshtml=", WINEARCH="win64")
        self.env.pop("DISPLAY", None)

    def prepare(self) -> None:
        ensure_tools()
        self.bin.mkdir(parents=True, exist_ok=True)
        for name in ("workload", "usvfs_run"):
            src, exe = HERE / "win" / f"{name}.c", self.bin / f"{name}.exe"
            if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
                subprocess.run(["x86_64-w64-mingw32-gcc", "-O2", "-municode", "-o", str(exe), str(src)], check=True)
        marker = self.prefix / ".bench-ready"
        if not marker.exists():
            print(f"[wine] creating the prefix {self.prefix} ...", flush=True)
            shutil.rmtree(self.prefix, ignore_errors=True)
            r = run(self, ["wineboot", "-i"], self.env, 600)
            if not (self.prefix / "system.reg").exists():
                raise Unavailable(f"wineboot failed: {r.stderr.strip()[-300:]}")
            marker.write_text("ok")
        link = self.prefix / "dosdevices" / f"{DRIVE}:"
        if not link.is_symlink() or os.readlink(link) != str(self.out):
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(self.out)
        self.version = subprocess.run(["wine", "--version"], env=self.env, capture_output=True,
                                      text=True).stdout.strip()

    def win(self, p: Path) -> str:
        """The Windows path of P (which lies below the output folder)."""
        rel = p.resolve().relative_to(self.out)
        return f"{DRIVE.upper()}:\\" + "\\".join(rel.parts)

    def quiesce(self) -> None:
        """No wineserver of the prefix runs when this returns."""
        subprocess.run(["wineserver", "-k"], env=self.env, capture_output=True, timeout=60)
        subprocess.run(["wineserver", "-w"], env=self.env, capture_output=True, timeout=60)


def fetch_orig(out: Path) -> Path:
    """usvfs_x64.dll from the py-usvfs 0.2.0 Windows wheel (downloaded here,
    never committed)."""
    dest = out / "usvfs-orig"
    dll = dest / "usvfs_x64.dll"
    if dll.exists():
        return dll
    wheels = dest / "wheel"
    wheels.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", ORIG_WHEEL, "--no-deps", "--only-binary=:all:",
                        "--platform", "win_amd64", "--python-version", "3.7", "-d", str(wheels)],
                       capture_output=True, text=True)
    found = sorted(wheels.glob("*.whl"))
    if r.returncode != 0 or not found:
        raise Unavailable(f"pip download {ORIG_WHEEL} (win_amd64) failed: {r.stderr.strip()[-300:]}")
    with zipfile.ZipFile(found[0]) as z:
        for name in z.namelist():
            if name.endswith((".dll", ".exe")) and "x64" in name:
                (dest / Path(name).name).write_bytes(z.read(name))
    if not dll.exists():
        raise Unavailable(f"{found[0].name} has no usvfs_x64.dll")
    return dll


def parse(out: str) -> tuple[str, float]:
    check = re.search(r"entries=\d+ bytes=\d+", out)
    names = re.search(r"names=[0-9a-f]+", out)
    ns = re.search(r"elapsed_ns=(\d+)", out)
    if not check or not names or not ns:
        raise RuntimeError(f"unexpected workload output: {out.strip()[-300:]!r}")
    return f"{check.group(0)} {names.group(0)}", int(ns.group(1)) / 1e9


def stats(times: List[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "runs": len(times)}


class Setup:
    """The generated setup seen from Wine: roots and the path lists."""

    def __init__(self, wine: Wine, base: Path, mods: List[Path], merged: Path) -> None:
        self.wine, self.base, self.mods, self.merged = wine, base, mods, merged
        # The create target: emptied, so nothing a run wrote lingers.
        self.overwrite = base.parent.parent / "overwrite"
        shutil.rmtree(self.overwrite, ignore_errors=True)
        self.overwrite.mkdir()
        files = sorted(
            os.path.relpath(os.path.join(d, f), merged) for d, _, fs in os.walk(merged) for f in fs
        )
        self.files = len(files)
        # Every file, and 2,000 of them spread over the tree in upper case
        # (Windows programs and mods spell names in any case; Wine then
        # matches case-insensitively by reading the directories).
        step = max(1, len(files) // CASE_PATHS)
        picks = {"attrs": files, "case": [f.upper() for f in files[::step][:CASE_PATHS]]}
        self.lists: Dict[tuple, str] = {}
        for key, chosen in picks.items():
            for view, root in ((False, merged), (True, base)):
                lst = wine.bin / f"{key}-{base.parent.parent.name}-{'view' if view else 'merged'}.txt"
                wroot = wine.win(root)
                lst.write_text("\n".join([wroot] + [wroot + "\\" + f.replace("/", "\\") for f in chosen]) + "\n")
                self.lists[key, view] = wine.win(lst)

    def args(self, key: str, view: bool) -> List[str]:
        if key in ("attrs", "case"):
            return ["attrs", self.lists[key, view]]
        return [key, self.wine.win(self.base if view else self.merged)]


class WineSystem:
    """ARGV of a measured run: in the system's context, start a persistent
    wineserver, let a no-op program bring up the prefix's services
    (services.exe, winedevice.exe, plugplay.exe, ...: they would otherwise
    start during the timed work and compete for the CPU), run the workload,
    end the server."""

    name = "?"

    def __init__(self, setup: Setup, work: Path) -> None:
        self.s, self.work, self.wine = setup, work, setup.wine

    def start(self) -> None:
        pass

    def inner(self, key: str) -> List[str]:
        raise NotImplementedError

    def argv(self, key: str, wrap: Optional[List[str]] = None) -> List[str]:
        """WRAP (e.g. strace) goes in front of the measured program only."""
        cmd = " ".join(shlex.quote(a) for a in [*(wrap or []), *self.inner(key)])
        nop = shlex.quote(str(self.wine.bin / "workload.exe"))
        quiet = ">/dev/null 2>&1 </dev/null"
        # The server is ended from inside too: the view's is private to it.
        return self.outer(["sh", "-c", f"trap 'wineserver -k {quiet}' EXIT; "
                                       f"wineserver -p {quiet} && wine {nop} nop {quiet} && {cmd}"])

    def outer(self, argv: List[str]) -> List[str]:
        return argv

    def env(self) -> dict:
        return self.wine.env


class PlainWine(WineSystem):
    name = PLAIN

    def inner(self, key: str) -> List[str]:
        return ["wine", str(self.wine.bin / "workload.exe"), *self.s.args(key, view=False)]


class OursWine(WineSystem):
    """`usvfs run MAPPING -- wine workload.exe ...`, a new view per run (its
    setup is outside the timed part); the wineserver starts inside the view."""

    name = OURS

    def start(self) -> None:
        if not USVFS.exists():
            raise Unavailable(f"{USVFS} is missing (make build)")
        rt = self.work / "runtime-wine"
        shutil.rmtree(rt, ignore_errors=True)
        rt.mkdir(mode=0o700, parents=True)
        self._env = dict(self.wine.env, XDG_RUNTIME_DIR=str(rt))

    def mapping(self) -> List[str]:
        m = [x for mod in self.s.mods for x in ("--dir", str(mod), str(self.s.base))]
        return [*m, "--create-target", str(self.s.overwrite), str(self.s.base)]

    def outer(self, argv: List[str]) -> List[str]:
        return [str(USVFS), "run", "--instance", "bench-wine", *self.mapping(), "--", *argv]

    def inner(self, key: str) -> List[str]:
        return ["wine", str(self.wine.bin / "workload.exe"), *self.s.args(key, view=True)]

    def env(self) -> dict:
        return self._env


class OursMountWine(OursWine):
    """The same through the mount engine: `usvfs run --engine mount MAPPING
    -- wine workload.exe ...` (Wine and its server inside the namespace that
    holds the FUSE mounts)."""

    name = OURS_MOUNT

    def outer(self, argv: List[str]) -> List[str]:
        return [str(USVFS), "run", "--engine", "mount", "--instance", "bench-wine-mount", *self.mapping(), "--", *argv]


class OrigWine(WineSystem):
    """The original usvfs: usvfs_run.exe creates its VFS, links every mod
    (recursive static links, overwrite as create target) and starts
    workload.exe with CreateProcessHooked."""

    name = ORIG

    def start(self) -> None:
        self.dll = fetch_orig(self.wine.out)

    def inner(self, key: str) -> List[str]:
        w, base = self.wine.win, self.wine.win(self.s.base)
        links = [x for mod in self.s.mods for x in ("--link", w(mod), base)]
        return ["wine", str(self.wine.bin / "usvfs_run.exe"), w(self.dll), *links,
                "--create", w(self.s.overwrite), base, "--", w(self.wine.bin / "workload.exe"),
                *self.s.args(key, view=True)]


def kill_leftovers(env: dict) -> None:
    """Ends the Wine processes a timed-out run left behind: a view's
    wineserver is private to the view (`wineserver -k` outside cannot reach
    it), so they are found by the environment this script gave them."""
    mark = f"XDG_RUNTIME_DIR={env.get('XDG_RUNTIME_DIR', '')}".encode()
    if "XDG_RUNTIME_DIR" not in env:
        return
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if mark in environ and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass


def run(wine: Wine, argv: List[str], env: dict, timeout: int = 3600) -> subprocess.CompletedProcess:
    """Runs ARGV with no wineserver of the prefix before or after. Output
    goes through files, not pipes: the persistent wineserver and the services
    it starts would keep a pipe open."""
    wine.quiesce()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            rc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            if env.get("XDG_RUNTIME_DIR", "").startswith(str(wine.out)):
                kill_leftovers(env)
            raise
        finally:
            wine.quiesce()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, rc, out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))


def run_once(wine: Wine, sysobj: WineSystem, key: str, timeout: int = 3600) -> tuple[str, float, str]:
    r = run(wine, sysobj.argv(key), sysobj.env(), timeout)
    if r.returncode != 0:
        raise RuntimeError(f"exit {r.returncode}: {(r.stderr.strip() or r.stdout.strip())[-500:]}")
    check, secs = parse(r.stdout)
    return check, secs, r.stderr


def bench(size: str, files_per_layer: int, runs: int, out: Path, prepare: Callable, only: Optional[set] = None,
          profile: bool = True) -> dict:
    base, mods, merged = prepare(size, out)
    wine = Wine(out)
    result: dict = {"kind": "wine", "size": size, "layers": len(mods), "files_per_layer": files_per_layer,
                    "systems": {}, "date": time.strftime("%Y-%m-%d")}
    try:
        wine.prepare()
    except (Unavailable, subprocess.SubprocessError, OSError) as e:
        result["skipped"] = f"Wine unavailable: {e}"
        print(f"[wine] {result['skipped']}", flush=True)
        return result
    result["wine"] = wine.version
    setup = Setup(wine, base, mods, merged)
    result["merged_files"] = setup.files
    work = out / f"wine-work-{size}"
    work.mkdir(parents=True, exist_ok=True)

    systems: List[WineSystem] = []
    for cls in (PlainWine, OursWine, OursMountWine, OrigWine):
        sysobj = cls(setup, work)
        if only and sysobj.name not in only and cls is not PlainWine:
            continue
        entry: dict = {"workloads": {}}
        result["systems"][sysobj.name] = entry
        try:
            sysobj.start()
            systems.append(sysobj)
        except (Unavailable, subprocess.SubprocessError, OSError) as e:
            entry["skipped"] = str(e)
            print(f"[wine] {sysobj.name}: skipped: {e}", flush=True)

    # Runs interleave the systems (plain, ours, original, plain, ...) so a
    # slow spell on a busy machine hits all of them alike.
    for key, _label in WORKLOADS:
        samples: Dict[str, List[float]] = {s.name: [] for s in systems}
        checks: Dict[str, str] = {}
        setup_ns: List[float] = []
        for i in range(runs + 1):
            for sysobj in systems:
                entry = result["systems"][sysobj.name]
                if "skipped" in entry or key in entry.get("failed", {}):
                    continue
                # The original usvfs takes 4-15x plain Wine's time on the
                # walks: at most 3 runs.
                if sysobj.name == ORIG and i > min(runs, 3):
                    continue
                try:
                    check, secs, err = run_once(wine, sysobj, key)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    entry.setdefault("failed", {})[key] = str(e)
                    print(f"[wine] {sysobj.name}: {key} failed: {e}", flush=True)
                    continue
                ref = checks.get(PLAIN)
                if sysobj.name != PLAIN and ref and ref != check:
                    entry.setdefault("wrong", {})[key] = f"{check} (plain Wine: {ref})"
                    print(f"[wine] {sysobj.name} {key}: the view disagrees with the merged copy: {check} vs {ref}",
                          flush=True)
                checks[sysobj.name] = check
                m = re.search(r"setup_ns=(\d+)", err)
                if m and i > 0:
                    setup_ns.append(int(m.group(1)) / 1e9)
                if i > 0:
                    samples[sysobj.name].append(secs)
        for sysobj in systems:
            entry = result["systems"][sysobj.name]
            if samples[sysobj.name] and key not in entry.get("wrong", {}):
                w = stats(samples[sysobj.name])
                w["check"] = checks[sysobj.name]
                entry["workloads"][key] = w
                print(f"[wine] {sysobj.name:38} {key:6} {w['median'] * 1000:10.1f} ms  ({w['check']})", flush=True)
        if setup_ns:
            result["systems"][ORIG].setdefault("link_setup", []).extend(setup_ns)
    if result["systems"].get(ORIG, {}).get("link_setup"):
        result["systems"][ORIG]["setup"] = stats(result["systems"][ORIG].pop("link_setup"))

    ours = next((s for s in systems if s.name == OURS), None)
    plain = next((s for s in systems if s.name == PLAIN), None)
    if profile and ours and plain and "skipped" not in result["systems"][OURS]:
        try:
            result["profile"] = where_time_goes(wine, plain, ours, work)
        except (RuntimeError, subprocess.SubprocessError, OSError) as e:
            result["profile"] = {"error": str(e)}
            print(f"[wine] profile failed: {e}", flush=True)
    return result


# --- Where the time goes ---------------------------------------------------

def parse_strace_c(path: Path) -> Dict[str, dict]:
    """strace -c table: syscall -> calls, errors, seconds."""
    out: Dict[str, dict] = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) < 5 or not f[0][0].isdigit() or f[-1] == "total":
            continue
        try:
            secs, calls = float(f[1]), int(f[3])
            errors = int(f[4]) if len(f) == 6 else 0
        except ValueError:
            continue
        out[f[-1]] = {"calls": calls, "errors": errors, "seconds": secs}
    return out


def perf_top(data: Path, env: dict, sort: str, limit: int = 12) -> List[tuple]:
    r = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", sort, "--percent-limit", "1"],
                       capture_output=True, text=True, env=env)
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*\S)", line)
        if m:
            rows.append((float(m.group(1)), re.sub(r"\s{2,}", "  ", m.group(2))))
    return rows[:limit]


def where_time_goes(wine: Wine, plain: WineSystem, ours: OursWine, work: Path, keys=("walk", "attrs")) -> dict:
    """Where the time goes, per workload: `strace -c -f` of the measured
    program's Wine processes (the wineserver and the prefix's services run
    already and are not counted), in the view and on the merged copy; then, if
    perf works, `perf record -e cpu-clock` of the same processes."""
    prof: dict = {}
    perf_ok = shutil.which("perf") and subprocess.run(
        ["perf", "stat", "-e", "cpu-clock", "true"], capture_output=True).returncode == 0
    if not perf_ok:
        prof["perf"] = "perf is not available here"
    if shutil.which("strace") is None:
        try:
            ensure_packages("strace")
        except Unavailable as e:
            prof["strace"] = str(e)
    for key in keys:
        print(f"[wine] profiling {key} (strace -c, perf) ...", flush=True)
        p: dict = {}
        for name, sysobj in (("plain", plain), ("ours", ours)):
            tools = []
            if "strace" not in prof:
                trace = work / f"wine-strace-{key}-{name}.txt"
                tools.append(("strace", ["strace", "-c", "-f", "-o", str(trace)], trace))
            if perf_ok:
                data = work / f"wine-perf-{key}-{name}.data"
                tools.append(("perf", ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-o", str(data)], data))
            for tool, wrap, path in tools:
                r = run(wine, sysobj.argv(key, wrap), sysobj.env())
                if r.returncode != 0:
                    raise RuntimeError(f"{tool} run ({name}, {key}) failed: {r.stderr.strip()[-300:]}")
                check, secs = parse(r.stdout)
                if tool == "strace":
                    p[f"strace_{name}"] = {"calls": parse_strace_c(path), "check": check, "elapsed": secs}
                else:
                    p[f"perf_{name}"] = {"elapsed": secs, "by_dso": perf_top(path, sysobj.env(), "comm,dso"),
                                         "by_symbol": perf_top(path, sysobj.env(), "dso,sym", 25)}
        prof[key] = p
    return prof


# --- Report ----------------------------------------------------------------

def fmt_ms(s: float) -> str:
    ms = s * 1000
    return f"{ms:.1f} ms" if ms < 10000 else f"{ms / 1000:.1f} s"


def report_lines(res: dict) -> List[str]:
    lines = [f"## Windows programs under Wine: {res['layers']} layers x {res['files_per_layer']} files ({res.get('merged_files', 0):,} files merged)", ""]
    if "skipped" in res:
        return lines + [f"Not measured: {res['skipped']}", ""]
    lines += [
        f"{res.get('wine', 'Wine')}, one prefix, measured on {res['date']}. The same Windows program "
        "(`bench/win/workload.c`, mingw-w64) runs under plain Wine on the physically merged copy (the "
        "reference), under Wine in our view with each engine (`usvfs run [--engine mount] MAPPING -- wine "
        "workload.exe ...`; the wineserver starts inside the view), and in the original usvfs's view (its `usvfs_x64.dll` from the py-usvfs "
        "0.2.0 wheel, driven through its C API by `bench/win/usvfs_run.c`: `CreateVFS`, "
        "`VirtualLinkDirectoryStatic` per mod, `CreateProcessHooked`). Paths are `U:\\...`, a drive letter "
        "on the output folder, for all of them (the original refuses links below `Z:\\`, which Wine reports "
        "as a reparse point). The programs time their own work with "
        "`QueryPerformanceCounter` (Wine's start and the original's injection excluded); no wineserver is "
        "left running between runs. Checksums (entries, bytes, a hash of the names) agree with plain Wine "
        "unless said below.",
        "",
    ]
    ref = res["systems"].get(PLAIN, {}).get("workloads", {})
    names = list(res["systems"])
    lines += ["| workload | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
    for key, label in WORKLOADS:
        row = [label.replace("a list", f"a list of {res.get('merged_files', 0):,}")]
        for name in names:
            w = res["systems"][name].get("workloads", {}).get(key)
            if not w:
                row.append("—")
                continue
            r = ref.get(key)
            ratio = f" **{w['median'] / r['median']:.2f}×**" if r and r["median"] > 0 else ""
            row.append(f"{fmt_ms(w['median'])}{ratio} [{fmt_ms(w['min'])}–{fmt_ms(w['max'])}]")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    orig = res["systems"].get(ORIG, {})
    if "setup" in orig:
        lines += [f"The original usvfs took {fmt_ms(orig['setup']['median'])} to link the "
                  f"{res['layers']} mods (recursive static links into its shared-memory tree), before each run.", ""]
    targets = []
    for engine in (OURS, OURS_MOUNT):
        ours = res["systems"].get(engine, {}).get("workloads", {})
        for key, label in (("attrs", "GetFileAttributesEx on every path"), ("walk", "walk + attributes"),
                           ("read", "open + read")):
            if key in ours and key in ref:
                r = ours[key]["median"] / ref[key]["median"]
                targets.append(f"* {engine}, {label}: {r:.2f}× plain Wine (target ≤ 1.3×): "
                               f"{'met' if r <= 1.3 else '**missed**'}")
    if targets:
        lines += ["Targets (reported, never asserted):", "", *targets, ""]
    lines += profile_lines(res.get("profile"), res.get("merged_files", 1))
    lines += analysis_lines(res)
    bad = [(n, e) for n, e in res["systems"].items() if "skipped" in e or "wrong" in e or "failed" in e]
    if bad:
        lines += ["Not measured or wrong:", ""]
        for n, e in bad:
            if "skipped" in e:
                lines.append(f"* {n}: {e['skipped']}")
            for key, why in e.get("failed", {}).items():
                lines.append(f"* {n}: {key} failed: {why}")
            for key, why in e.get("wrong", {}).items():
                lines.append(f"* {n}: **{key} gave a wrong checksum**: {why}")
        lines.append("")
    return lines


def profile_lines(prof: Optional[dict], files: int) -> List[str]:
    if not prof:
        return []
    if "error" in prof:
        return [f"Profile: failed ({prof['error']}).", ""]
    out = ["### Where the time goes", ""]
    for note in ("strace", "perf"):
        if isinstance(prof.get(note), str):
            out += [f"* {note}: {prof[note]}", ""]
    labels = dict(WORKLOADS)
    for key in ("walk", "attrs", "read"):
        p = prof.get(key)
        if not p:
            continue
        out += [f"**{labels[key]}**", ""]
        sp, so = p.get("strace_plain"), p.get("strace_ours")
        if sp and so:
            n = int(re.search(r"entries=(\d+)", sp["check"]).group(1))
            out += [f"System calls per entry ({n:,} entries) of the measured program's Wine processes "
                    "(`strace -c -f`; the wineserver and the prefix's services are not counted); under strace "
                    f"the work took {fmt_ms(so['elapsed'])} in the view vs {fmt_ms(sp['elapsed'])} plain. Calls "
                    "made at least once per ten entries:", "",
                    "| system call | plain Wine | usvfs (preload) | of which failed, in the view |",
                    "| --- | --- | --- | --- |"]
            pc, oc = sp["calls"], so["calls"]
            for call in sorted(set(pc) | set(oc), key=lambda c: -max(oc.get(c, {}).get("calls", 0),
                                                                      pc.get(c, {}).get("calls", 0))):
                a, b = pc.get(call, {}).get("calls", 0), oc.get(call, {}).get("calls", 0)
                if max(a, b) * 10 < n:
                    continue
                out.append(f"| `{call}` | {a / n:.2f} | {b / n:.2f} | {oc.get(call, {}).get('errors', 0) / n:.2f} |")
            tot = lambda c: sum(v["calls"] for v in c.values())  # noqa: E731
            out += [f"| all | {tot(pc) / n:.1f} | {tot(oc) / n:.1f} | |", ""]
        for name, label in (("perf_ours", "in the view"), ("perf_plain", "plain")):
            q = p.get(name)
            if q:
                top = "; ".join(f"{what} {pct:.1f}%" for pct, what in q["by_dso"][:6])
                out.append(f"* `perf record -e cpu-clock`, {label} (process, object): {top}")
        q = p.get("perf_ours")
        if q:
            top = "; ".join(f"`{what.split()[-1]}` {pct:.1f}%" for pct, what in q["by_symbol"][:10])
            out.append(f"* hottest symbols in the view: {top}")
        out.append("")
    return out


def case_lines(res: dict) -> List[str]:
    """The upper-case lookups, in words."""
    ref = res["systems"].get(PLAIN, {}).get("workloads", {}).get("case")
    if not ref:
        return []
    r = {n: e["workloads"]["case"]["median"] / ref["median"] for n, e in res["systems"].items()
         if "case" in e.get("workloads", {})}
    out = ["* **Names in another case**: plain Wine misses the exact name and lists each directory on the way to "
           "match it case-insensitively (`getdents64` over the merged copy's directories)."]
    if OURS in r:
        out.append(f"In our view that listing comes from the index (plus the destination's own directory), "
                   f"{r[OURS]:.2f}× plain Wine.")
    if ORIG in r:
        out.append(f"The original usvfs ({r[ORIG]:.2f}×) matches names case-insensitively in its own tree and "
                   "hands Wine the exact physical path, so Wine never lists a directory.")
    return [" ".join(out)]


def analysis_lines(res: dict) -> List[str]:
    """What the profile says, in words (only what the figures support)."""
    lines, case = _analysis(res), case_lines(res)
    if not case:
        return lines
    if not lines:
        return ["Reading of the figures:", "", *case, ""]
    return [*lines[:-1], *case, ""]


def _analysis(res: dict) -> List[str]:
    prof = res.get("profile") or {}
    p = prof.get("attrs") or prof.get("walk") or {}
    sp, so = p.get("strace_plain"), p.get("strace_ours")
    if not sp or not so:
        return []
    n = int(re.search(r"entries=(\d+)", sp["check"]).group(1))
    rl = lambda c: c["calls"].get("readlink", {})  # noqa: E731
    ours_rl, plain_rl = rl(so).get("calls", 0) / n, rl(sp).get("calls", 0) / n
    if ours_rl < 5 or ours_rl < 10 * max(plain_rl, 0.01):
        return []
    fails = rl(so).get("errors", 0) / n
    other = lambda c: sum(v["calls"] for k, v in c["calls"].items() if k != "readlink") / n  # noqa: E731
    hooked = sum(so["calls"].get(c, {}).get("calls", 0) for c in ("newfstatat", "getxattr", "lgetxattr")) / n
    out = ["Reading of the figures:", "",
           f"* **A symlinked prefix resolved on every call.** Each path Wine hands the C library starts with the "
           f"prefix's drive link (`$WINEPREFIX/dosdevices/{DRIVE}:` → the output folder). It lies outside every "
           "layer, so for every hooked call (`stat`, `lstat`, and `getxattr` of Wine's `user.DOSATTRIB`) the "
           "resolver looks for a symlinked prefix (`resolve_in` → `probe_alias` → `SysFs::realpath`, i.e. the C "
           "library's `realpath(3)` on a fresh 4 KiB heap buffer), and `realpath` reads every component with "
           f"`readlink`: {ours_rl:.0f} `readlink`s per path here ({fails:.0f} of them failing with `EINVAL`) for "
           f"{hooked:.0f} hooked calls, i.e. {ours_rl / max(hooked, 1):.0f} per call — the components up to the "
           "drive link, then again along its target up to the destination. That is where the kernel time "
           "(`link_path_walk`, `__d_lookup_rcu`, `do_readlinkat`) goes; the engine's own code is a few percent. "
           f"All other system calls: {other(sp):.1f} per path plain, {other(so):.1f} in the view.",
           ]
    out += ["* Closing the gap: resolve a symlinked prefix once per process and reuse it while the link is "
            "unchanged (keyed by the prefix; checked with one `readlink` of the link itself, or its device and "
            "inode), instead of a full `realpath` per call.", ""]
    return out


def chart_panel(ax, res: dict) -> None:
    ref = res["systems"].get(PLAIN, {}).get("workloads", {})
    systems = [n for n, e in res["systems"].items() if e.get("workloads") and n != PLAIN]
    keys = [k for k, _ in WORKLOADS]
    width = 0.8 / max(1, len(systems))
    for i, name in enumerate(systems):
        w = res["systems"][name]["workloads"]
        vals = [w[k]["median"] / ref[k]["median"] if k in w and k in ref else 0 for k in keys]
        ax.bar([x + i * width for x in range(len(keys))], vals, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(keys))])
    ax.set_xticklabels(["walk+attrs", "open+read", "attrs of a list", "upper-case attrs"])
    ax.set_ylabel("time / plain Wine on merged copy")
    ax.set_yscale("log")
    ax.set_title(f"Wine: {res['layers']} layers, {res.get('merged_files', 0):,} files")
    ax.legend(fontsize=8)
