"""inotify on the view: a watch on a merged directory reports creates,
deletes and renames made in the view, wherever they land physically (a
mod's directory, the real one, the create target, even one that does not
exist yet), under the one watch descriptor the program got — with either
engine (the mount engine's events come from the kernel's own file system
layer, for changes made through the mount)."""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import Layout

EVENTS = "create,delete,moved_from,moved_to,delete_self"


class Watcher:
    """`inotifywait -m` in the view, its output lines one at a time."""

    def __init__(self, usvfs: Path, layout: Layout, engine: str, watched: str, *options: str) -> None:
        self.usvfs, self.layout = usvfs, layout
        self.p = subprocess.Popen(
            [str(usvfs), "run", "--engine", engine, "--instance", "iw", *layout.mapping_args(), "--",
             "inotifywait", "-m", "-e", EVENTS, "--format", "%e %f", *options, watched],
            cwd=layout.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.ready: queue.Queue[bytes] = queue.Queue()
        self.seen: list[str] = []
        for stream, out in ((self.p.stdout, self.lines), (self.p.stderr, None)):
            threading.Thread(target=self._pump, args=(stream, out), daemon=True).start()
        assert self.ready.get(timeout=60) == b"Watches established.\n"

    def _pump(self, stream, out) -> None:
        for line in iter(stream.readline, b""):
            if out is None:
                if line.startswith(b"Watches established") or b"rror" in line or b"annot" in line:
                    self.ready.put(line)
            else:
                out.put(line)

    def do(self, script: str, *expected: str) -> None:
        """Runs `script` in another process of the view, then waits for the
        expected lines, which must be the next ones."""
        r = subprocess.run([str(self.usvfs), "run", "--instance", "iw", "--", "sh", "-ec", script],
                           cwd=self.layout.root, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        got = []
        for _ in expected:
            try:
                got.append(self.lines.get(timeout=30).decode().rstrip("\n"))
            except queue.Empty:
                break
        self.seen += got
        assert got == list(expected), f"after {script!r}: {self.seen}"

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=60)


@pytest.fixture(params=["preload", "mount"])
def watcher(request: pytest.FixtureRequest, usvfs: Path, layout: Layout):
    """A watcher in the view of either engine; the changes it sees are made
    by other processes joining the same instance."""
    if not shutil.which("inotifywait"):
        pytest.skip("inotifywait missing: scripts/setup.sh installs inotify-tools")
    if request.param == "mount" and request.getfixturevalue("mount_skip"):
        pytest.skip(f"the mount engine cannot run here: {request.getfixturevalue('mount_skip')}")
    made: list[Watcher] = []

    def start(watched: str, *options: str) -> Watcher:
        made.append(Watcher(usvfs, layout, request.param, watched, *options))
        return made[-1]

    yield start
    for w in made:
        w.stop()


def test_directory_only_in_a_mod(watcher, layout: Layout) -> None:
    """`only_m2` exists in one mod; new files land in `overwrite/only_m2`,
    which does not exist until the first one."""
    assert not (layout.overwrite / "only_m2").exists()
    w = watcher("game/data/only_m2")
    d = "game/data/only_m2"
    w.do(f"touch {d}/new.txt", "CREATE new.txt")
    assert (layout.overwrite / "only_m2" / "new.txt").exists()
    w.do(f"mv {d}/new.txt {d}/moved.txt", "MOVED_FROM new.txt", "MOVED_TO moved.txt")
    w.do(f"rm {d}/moved.txt", "DELETE moved.txt")
    w.do(f"rm {d}/readme.txt", "DELETE readme.txt")
    assert not (layout.mods[1] / "only_m2" / "readme.txt").exists()
    w.do(f"mkdir {d}/sub", "CREATE,ISDIR sub")
    w.do(f"rmdir {d}/sub", "DELETE,ISDIR sub")
    # A file moved in from another directory of the view.
    w.do(f"mv game/data/base_only.txt {d}/in.txt", "MOVED_TO in.txt")
    w.do(f"touch {d}/last", "CREATE last")


def test_destination_merged_from_the_real_directory_and_mods(watcher, layout: Layout) -> None:
    w = watcher("game/data")
    d = "game/data"
    w.do(f"touch {d}/new.txt", "CREATE new.txt")  # in overwrite
    w.do(f"rm {d}/shared.txt", "DELETE shared.txt")  # m3's
    w.do(f"rm {d}/ow_existing.txt", "DELETE ow_existing.txt")  # overwrite's
    w.do(f"mv {d}/base_only.txt {d}/renamed.txt", "MOVED_FROM base_only.txt", "MOVED_TO renamed.txt")
    w.do(f"mkdir {d}/newdir", "CREATE,ISDIR newdir")
    w.do(f"rmdir {d}/newdir", "DELETE,ISDIR newdir")
    # Changes below a subdirectory are not the watched directory's.
    w.do(f"touch {d}/textures/x.dds; touch {d}/last", "CREATE last")
    # Nor is the create target's copy of `textures` coming or going.
    w.do(f"rm {d}/textures/x.dds; rm {d}/last", "DELETE last")
    assert (layout.overwrite / "renamed.txt").read_text() == "base only\n"
    assert not (layout.base / "base_only.txt").exists()


def test_create_target_appearing_several_levels_down(watcher, layout: Layout) -> None:
    """`meshes/a` comes from two mods; its create target directory
    `overwrite/meshes/a` appears, parents and all, with the first create."""
    w = watcher("game/data/meshes/a")
    w.do("mkdir game/data/meshes/a/fresh", "CREATE,ISDIR fresh")
    assert (layout.overwrite / "meshes" / "a" / "fresh").is_dir()
    # Not the watched directory's own entries: no event.
    w.do("touch game/data/meshes/a/fresh/in.txt; touch game/data/meshes/a/after", "CREATE after")
    w.do("rm game/data/meshes/a/m2.nif", "DELETE m2.nif")


def test_recursive_watch(watcher, layout: Layout) -> None:
    """`inotifywait -r` watches every directory of the merged tree; a file
    created deep down reports once, in its own directory: the create
    target's new copies of the directories above it are not news."""
    w = watcher("game/data", "-r", "--format", "%w|%e|%f")
    w.do("touch game/data/meshes/a/b/deep.txt", "game/data/meshes/a/b/|CREATE|deep.txt")
    assert (layout.overwrite / "meshes" / "a" / "b" / "deep.txt").exists()
    w.do("mv game/data/meshes/a/b/deep.txt game/data/", "game/data/meshes/a/b/|MOVED_FROM|deep.txt",
         "game/data/|MOVED_TO|deep.txt")
    w.do("rm game/data/deep.txt", "game/data/|DELETE|deep.txt")
    w.do("rm game/data/only_m2/readme.txt", "game/data/only_m2/|DELETE|readme.txt")


def test_real_directory_below_a_create_target(watcher, layout: Layout) -> None:
    """A directory only the real disk has (not in the index) still gets its
    new entries in the create target: those report too."""
    (layout.base / "real_only").mkdir()
    (layout.base / "real_only" / "old.txt").write_text("old\n")
    w = watcher("game/data/real_only")
    w.do("touch game/data/real_only/new.txt", "CREATE new.txt")
    assert (layout.overwrite / "real_only" / "new.txt").exists()
    w.do("rm game/data/real_only/old.txt", "DELETE old.txt")
    w.do("rm game/data/real_only/new.txt", "DELETE new.txt")
    w.do("touch game/data/real_only/again.txt", "CREATE again.txt")


def test_c_program_sees_one_watch_descriptor(usvfs: Path, layout: Layout, cbin: dict) -> None:
    r = subprocess.run(
        [str(usvfs), "run", *layout.mapping_args(), "--", str(cbin["inotify_view"]),
         "game/data/only_m2", "game/data/shared.txt"],
        cwd=layout.root, capture_output=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.decode().splitlines() == [
        "dir CREATE c.txt",
        "dir MOVED_FROM c.txt",
        "dir MOVED_TO d.txt (same cookie)",
        "dir DELETE d.txt",
        "file MODIFY ",
        "rm_watch 0",
        "dir IGNORED ",
        "then -1 Resource temporarily unavailable",
        "rm_watch again -1 Invalid argument",
    ]
    # The file watch followed the winner (m3's), which the view appended to.
    assert (layout.mods[2] / "shared.txt").read_text() == "from m3\nmore\n"


SMALL_READS = r"""
import ctypes, os, select, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
IN_CREATE = 0x100
# The create target's parent, watched directly, and the merged directory.
pwd = libc.inotify_add_watch(fd, sys.argv[2].encode(), IN_CREATE)
wd = libc.inotify_add_watch(fd, sys.argv[1].encode(), IN_CREATE)
assert wd >= 0 and pwd >= 0 and wd != pwd, ctypes.get_errno()
for n in ("c1", "c2", "c3"):
    open(os.path.join(sys.argv[1], n), "w").close()
got = []
while len(got) < 4:
    # One event per read, poll before each, as an event loop does.
    if not select.select([fd], [], [], 20)[0]:
        print("timeout", got)
        sys.exit(1)
    try:
        b = os.read(fd, 32)
    except BlockingIOError:
        continue
    w, mask, cookie, ln = struct.unpack("iIII", b[:16])
    who = "merged" if w == wd else "plain" if w == pwd else w
    got.append((who, hex(mask), b[16:16 + ln].rstrip(b"\0").decode()))
print(got)
"""


def test_events_left_for_a_small_buffer_wake_the_poller(usvfs: Path, layout: Layout) -> None:
    """The create target's directory appears with three files in it: their
    creates are reported together, and a program reading one event at a
    time, polling before each read, gets them all (the overwrite folder
    itself is watched too, so no kernel event of ours is left to wake it)."""
    r = subprocess.run([str(usvfs), "run", *layout.mapping_args(), "--", "python3", "-c", SMALL_READS,
                        "game/data/only_m2", str(layout.overwrite)], cwd=layout.root, capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == (b"[('plain', '0x40000100', 'only_m2'), ('merged', '0x100', 'c1'), "
                        b"('merged', '0x100', 'c2'), ('merged', '0x100', 'c3')]\n")


REUSED = r"""
import ctypes, os, platform, sys
libc = ctypes.CDLL(None, use_errno=True)
SYS_close = {"x86_64": 3, "aarch64": 57}[platform.machine()]
fd = libc.inotify_init1(os.O_NONBLOCK)
assert libc.inotify_add_watch(fd, sys.argv[1].encode(), 0x100) >= 0
libc.syscall(SYS_close, fd)  # closed where no hook sees it
f = os.open(sys.argv[2], os.O_RDONLY)
assert f == fd, (f, fd)
print(os.read(f, 100))
os.close(f)
"""


def test_a_number_closed_behind_our_back_reads_its_new_file(usvfs: Path, layout: Layout) -> None:
    r = subprocess.run([str(usvfs), "run", *layout.mapping_args(), "--", "python3", "-c", REUSED,
                        "game/data/only_m2", "game/data/shared.txt"], cwd=layout.root, capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"b'from m3\\n'\n"


def test_c_program_outside_the_view_sees_the_real_disk(layout: Layout, cbin: dict) -> None:
    r = subprocess.run([str(cbin["inotify_view"]), "game/data/only_m2", "game/data/shared.txt"],
                       cwd=layout.root, capture_output=True, timeout=60)
    assert r.returncode == 1
    assert r.stdout == b"add_watch game/data/only_m2: No such file or directory\n"
