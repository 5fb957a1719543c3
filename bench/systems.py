"""The systems compared: each shows the same layers merged at some path, and
runs a command "inside" itself. Systems that cannot run here say why."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
USVFS = REPO / "target" / "release" / "usvfs"
LIB = REPO / "target" / "release" / "libusvfs_preload.so"


class Unavailable(Exception):
    """The system cannot run on this machine; the message says why."""


def ensure_packages(*pkgs: str) -> None:
    """Installs Debian packages the benchmark needs, when missing and allowed."""
    missing = [p for p in pkgs if shutil.which(p) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(f"{', '.join(missing)} not installed (and cannot install as non-root)")
    subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if r.returncode != 0 or any(shutil.which(p) is None for p in missing):
        raise Unavailable(f"could not install {', '.join(missing)}")


class System:
    name = "?"
    #: Workloads this system takes part in.
    workloads = {"walk", "read", "miss", "list", "spawn"}

    def __init__(self, base: Path, mods: List[Path], merged: Path, work: Path) -> None:
        self.base, self.mods, self.merged, self.work = base, mods, merged, work
        self.root: Path = merged

    def start(self) -> float:
        """Sets the system up; returns the seconds it took (the setup cost)."""
        return 0.0

    def wrap(self, argv: List[str]) -> List[str]:
        return argv

    def env(self) -> Optional[dict]:
        return None

    def stop(self) -> None:
        pass

    def layers_top_first(self) -> List[Path]:
        return [*reversed(self.mods), self.base]


class Merged(System):
    name = "merged copy"


class Usvfs(System):
    name = "usvfs (preload)"
    workloads = System.workloads | {"memory"}

    def start(self) -> float:
        rt = self.work / "runtime"
        shutil.rmtree(rt, ignore_errors=True)
        rt.mkdir(mode=0o700)
        self._env = dict(os.environ, XDG_RUNTIME_DIR=str(rt))
        mapping = [x for m in self.mods for x in ("--dir", str(m), str(self.base))]
        t = time.perf_counter()
        # Ready when a process inside the view runs: index built and published.
        self.holder = subprocess.Popen(
            [str(USVFS), "run", "--instance", "bench", *mapping, "--", "sh", "-c", "echo ready; exec sleep 86400"],
            env=self._env, start_new_session=True, stdout=subprocess.PIPE,
        )
        if self.holder.stdout.readline().strip() != b"ready":
            raise Unavailable("usvfs run failed")
        elapsed = time.perf_counter() - t
        inst = rt / "usvfs" / "bench"
        self.root = self.base
        self.hooked = dict(self._env, LD_PRELOAD=str(LIB), USVFS_INSTANCE_DIR=str(inst))
        self.index_bytes = (inst / "index").stat().st_size
        return elapsed

    def env(self) -> Optional[dict]:
        return self.hooked

    def stop(self) -> None:
        os.killpg(self.holder.pid, 15)
        self.holder.wait()


class UsvfsMount(System):
    name = "usvfs (mount)"

    def start(self) -> float:
        rt = self.work / "runtime-mount"
        shutil.rmtree(rt, ignore_errors=True)
        rt.mkdir(mode=0o700)
        env = dict(os.environ, XDG_RUNTIME_DIR=str(rt))
        mapping = [x for m in self.mods for x in ("--dir", str(m), str(self.base))]
        t = time.perf_counter()
        # Ready when a process in the namespace runs: index built, view mounted.
        self.holder = subprocess.Popen(
            [str(USVFS), "run", "--engine", "mount", "--instance", "bench-mount", *mapping, "--",
             "sh", "-c", "echo $$; exec sleep 86400"],
            env=env, start_new_session=True, stdout=subprocess.PIPE,
        )
        line = self.holder.stdout.readline().strip()
        if not line.isdigit():
            raise Unavailable("usvfs run --engine mount failed")
        elapsed = time.perf_counter() - t
        self.inner = line.decode()
        self.root = self.base
        return elapsed

    def wrap(self, argv: List[str]) -> List[str]:
        if os.geteuid() == 0:
            return ["nsenter", "-t", self.inner, "-m", *argv]
        return ["nsenter", "-t", self.inner, "-U", "-m", "--preserve-credentials", *argv]

    def stop(self) -> None:
        os.killpg(self.holder.pid, 15)
        self.holder.wait()


class UsvfsMountFresh(UsvfsMount):
    """The mount engine on a view mounted afresh for every run: nothing the
    kernel cached for the view (entries, attributes, pages of the view's
    files) helps; the physical files stay in the page cache, as for the
    merged copy."""

    name = "usvfs (mount, fresh view)"
    workloads = {"walk", "read", "miss", "list"}
    fresh = True

    def restart(self) -> None:
        self.stop()
        self.start()


class Overlay(System):
    name = "kernel overlayfs"

    def start(self) -> float:
        if len(self.mods) + 1 > 500:
            raise Unavailable(f"{len(self.mods) + 1} layers exceed overlayfs's stack of 500 lower layers")
        mnt = self.work / "ovl"
        mnt.mkdir(exist_ok=True)
        lower = ":".join(str(p) for p in self.layers_top_first())
        # A private mount namespace (of an unprivileged user namespace when not root).
        ns = ["unshare", "-m", "--propagation", "private"] if os.geteuid() == 0 else ["unshare", "-Urm"]
        t = time.perf_counter()
        self.holder = subprocess.Popen(
            [*ns, "sh", "-c", f'mount -t overlay overlay -o "lowerdir={lower}" "{mnt}" && echo ok && exec sleep 86400'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        line = self.holder.stdout.readline()
        elapsed = time.perf_counter() - t
        if line.strip() != b"ok":
            err = self.holder.stderr.read().decode(errors="replace").strip()
            raise Unavailable(f"mount failed: {err}")
        self.root = mnt
        return elapsed

    def wrap(self, argv: List[str]) -> List[str]:
        pid = str(self.holder.pid)
        if os.geteuid() == 0:
            return ["nsenter", "-t", pid, "-m", *argv]
        return ["nsenter", "-t", pid, "-U", "-m", "--preserve-credentials", *argv]

    def stop(self) -> None:
        os.killpg(self.holder.pid, 9)
        self.holder.wait()


class FuseSystem(System):
    binary = ""
    package = ""

    def mount_argv(self, mnt: Path) -> List[str]:
        raise NotImplementedError

    def start(self) -> float:
        ensure_packages(self.binary)
        if not os.path.exists("/dev/fuse"):
            raise Unavailable("/dev/fuse is missing")
        mnt = self.work / self.binary
        mnt.mkdir(exist_ok=True)
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        t = time.perf_counter()
        r = subprocess.run(self.mount_argv(mnt), capture_output=True)
        if r.returncode != 0:
            raise Unavailable(f"mount failed: {r.stderr.decode(errors='replace').strip()}")
        while not os.path.ismount(mnt):
            time.sleep(0.001)
        os.listdir(mnt)
        elapsed = time.perf_counter() - t
        self.root = mnt
        self.mnt = mnt
        return elapsed

    def stop(self) -> None:
        subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True)


class FuseOverlayfs(FuseSystem):
    name = "fuse-overlayfs"
    binary = "fuse-overlayfs"

    def mount_argv(self, mnt: Path) -> List[str]:
        lower = ":".join(str(p) for p in self.layers_top_first())
        return ["fuse-overlayfs", "-o", f"lowerdir={lower}", str(mnt)]


class Mergerfs(FuseSystem):
    name = "mergerfs"
    binary = "mergerfs"

    def mount_argv(self, mnt: Path) -> List[str]:
        branches = ":".join(str(p) for p in self.layers_top_first())
        return ["mergerfs", "-o", "category.search=ff,cache.files=off,func.getattr=ff", branches, str(mnt)]


class Proot(System):
    """proot translates paths with ptrace; it cannot merge layers, so it
    runs the spawn and lookup workloads on the merged copy, bound in."""

    name = "proot"
    workloads = {"miss", "spawn"}

    def start(self) -> float:
        ensure_packages("proot")
        self.root = Path("/mnt/merged")
        return 0.0

    def wrap(self, argv: List[str]) -> List[str]:
        return ["proot", "-b", f"{self.merged}:/mnt/merged", *argv]


class Fakechroot(System):
    """fakechroot is an LD_PRELOAD path translator like us, without merging:
    spawn and lookup workloads on the merged copy."""

    name = "fakechroot"
    workloads = {"miss", "spawn"}

    def start(self) -> float:
        ensure_packages("fakechroot")
        return 0.0

    def wrap(self, argv: List[str]) -> List[str]:
        return ["fakechroot", *argv]


ALL = [Merged, Usvfs, UsvfsMount, UsvfsMountFresh, Overlay, FuseOverlayfs, Mergerfs, Proot, Fakechroot]
