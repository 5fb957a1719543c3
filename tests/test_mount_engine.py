"""The mount engine (`usvfs run --engine mount`): the view served through FUSE
in a private mount namespace. Real programs print what they print on a
physically merged copy; the same changes leave the disk as the preload engine
leaves it; and programs the preload engine cannot follow (static busybox, raw
system calls) see and change the view."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Layout, build_layout, nobody_with_fuse, snapshot_tree
from test_differential import PROGRAMS, merged  # noqa: F401 - the merged-copy fixture

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse: the mount engine needs FUSE")


def run_mount(usvfs: Path, layout: Layout, cmd: list, cwd: Path | None = None, engine: str = "mount", **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(usvfs), "run", "--engine", engine, *layout.mapping_args(), "--", *cmd],
        cwd=cwd or layout.root,
        capture_output=True,
        timeout=120,
        **kw,
    )


@pytest.fixture(scope="module")
def mount_works(usvfs: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skips the module where this machine refuses the namespaces or FUSE."""
    root = tmp_path_factory.mktemp("probe")
    layout = build_layout(root)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(root))
    r = run_mount(usvfs, layout, ["true"], env=env)
    if r.returncode == 125 and (b"namespace" in r.stderr or b"/dev/fuse" in r.stderr or b"mount" in r.stderr):
        pytest.skip(f"the mount engine cannot run here: {r.stderr.decode(errors='replace')}")
    assert r.returncode == 0, r.stderr


def layers(layout: Layout) -> dict:
    return {p.name: snapshot_tree(p) for p in [layout.base, *layout.mods, layout.overwrite]}


@pytest.mark.parametrize("name,argv,sort", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_program_matches_merged_copy(mount_works, usvfs: Path, layout: Layout, merged: Path, name: str, argv: list, sort: bool) -> None:
    before = layers(layout)
    view = run_mount(usvfs, layout, argv, cwd=layout.base.parent)
    real = subprocess.run(argv, cwd=merged.parent, capture_output=True, timeout=60)
    v_out = view.stdout.replace(bytes(layout.base.parent), bytes(merged.parent))
    r_out = real.stdout
    if sort:
        v_out, r_out = (b"\n".join(sorted(o.splitlines())) for o in (v_out, r_out))
    assert view.returncode == real.returncode, (view.stderr, real.stderr)
    assert v_out == r_out, f"view stderr: {view.stderr!r}"
    assert real.stdout.strip()
    assert layers(layout) == before, "a read-only program changed the disk"


# Changes of every kind, with the exit status of each (so the errno cases
# show): both engines must print the same and leave the same disk.
CHANGES = r"""
cd data
st() { echo "$1 -> $?"; }
echo new > new.txt; st create
echo more >> shared.txt; st append-winner
echo t > textures/new_tex.dds; st create-in-merged-dir
mkdir -p newdir/deep; st mkdir-p
echo d > newdir/deep/f.txt; st create-deep
rm base_only.txt; st unlink-base
rm textures/m1_tex.dds; st unlink-shadowing
cat textures/m1_tex.dds 2>/dev/null; st read-deleted
rm nothere 2>/dev/null; st unlink-missing
rmdir textures 2>/dev/null; st rmdir-nonempty
rmdir only_m2 2>/dev/null; st rmdir-nonempty-mod
mv only_m2/readme.txt moved.txt; st rename-file
mv textures moved_tex 2>/dev/null; st rename-merged-dir
mv newdir newdir2; st rename-new-dir
ln -s shared.txt newlink; st symlink
echo x > meshes/a/b/m1.nif; st overwrite-mod-file
truncate -s 3 shared.txt; st truncate
chmod 600 new.txt; st chmod
rm -r "dir with space"; st rm-r-merged
ls -1A . textures newdir2 newdir2/deep | cat; st list
cat shared.txt moved.txt newdir2/deep/f.txt; st read-back
"""


def test_changes_match_preload_engine(mount_works, usvfs: Path, tmp_path: Path) -> None:
    out = {}
    disk = {}
    for engine in ("preload", "mount"):
        layout = build_layout(tmp_path / engine)
        r = run_mount(usvfs, layout, ["sh", "-c", CHANGES], cwd=layout.base.parent, engine=engine)
        assert r.returncode == 0, r.stderr
        out[engine] = r.stdout
        disk[engine] = layers(layout)
        assert b"create -> 0" in r.stdout
    assert out["mount"] == out["preload"]
    assert disk["mount"] == disk["preload"]
    ow = disk["mount"]["overwrite"]
    assert ow[b"new.txt"] == ("f", b"new\n")
    assert ow[b"newdir2/deep/f.txt"] == ("f", b"d\n")


def test_static_busybox_sees_and_changes_the_view(mount_works, usvfs: Path, layout: Layout) -> None:
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("busybox-static is not installed (scripts/setup.sh installs it)")
    script = "ls data/textures; cat data/shared.txt data/only_m2/readme.txt; echo from-busybox > data/bb.txt; ls data | grep -c ."
    r = run_mount(usvfs, layout, [busybox, "sh", "-c", script], cwd=layout.base.parent)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == [b"base_tex.dds", b"m1_tex.dds", b"m2_tex.dds"]
    assert lines[3:5] == [b"from m3", b"only in m2"]
    # The 11 top-level entries of the view plus the new file.
    assert lines[5] == b"12"
    assert (layout.overwrite / "bb.txt").read_bytes() == b"from-busybox\n"
    assert not (layout.base / "bb.txt").exists()
    # The preload engine refuses it: it could not show it the view.
    p = run_mount(usvfs, layout, [busybox, "true"], engine="preload")
    assert p.returncode == 125 and b"statically linked" in p.stderr


RAW = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char buf[256];
    long fd = syscall(SYS_openat, AT_FDCWD, argv[1], O_RDONLY);
    if (fd < 0) { perror("openat read"); return 1; }
    long n = syscall(SYS_read, fd, buf, sizeof buf);
    syscall(SYS_write, 1, buf, n);
    syscall(SYS_close, fd);
    fd = syscall(SYS_openat, AT_FDCWD, argv[2], O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) { perror("openat create"); return 2; }
    syscall(SYS_write, fd, "raw\n", 4);
    syscall(SYS_close, fd);
    return 0;
}
"""


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_raw_syscalls_see_and_change_the_view(mount_works, usvfs: Path, layout: Layout, tmp_path: Path, static: bool) -> None:
    src = tmp_path / "raw.c"
    src.write_text(RAW)
    exe = tmp_path / "raw"
    r = subprocess.run(["gcc", *(["-static"] if static else []), "-O2", "-o", str(exe), str(src)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build the test program: {r.stderr.decode(errors='replace')}")
    r = run_mount(usvfs, layout, [str(exe), "data/only_m2/readme.txt", "data/made_raw.txt"], cwd=layout.base.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"only in m2\n"
    assert (layout.overwrite / "made_raw.txt").read_bytes() == b"raw\n"
    assert not (layout.base / "made_raw.txt").exists()


def test_no_mount_left_and_exit_status(mount_works, usvfs: Path, layout: Layout) -> None:
    r = run_mount(usvfs, layout, ["sh", "-c", "grep -c ' fuse.usvfs ' /proc/self/mountinfo; exit 7"])
    assert r.returncode == 7, r.stderr
    assert r.stdout == b"1\n"
    # Outside the namespace the real disk shows, during and after the run.
    assert b"fuse.usvfs" not in Path("/proc/self/mountinfo").read_bytes()
    assert not (layout.base / "only_m2").exists()
    r = run_mount(usvfs, layout, ["sh", "-c", "kill -TERM $$"])
    assert r.returncode == 128 + 15


def test_program_not_found_in_view(mount_works, usvfs: Path, layout: Layout) -> None:
    r = run_mount(usvfs, layout, ["data/no_such_program"], cwd=layout.base.parent)
    assert r.returncode == 127, r.stderr


def test_background_process_keeps_the_view(mount_works, usvfs: Path, layout: Layout) -> None:
    """A process the program leaves behind still sees the view after the
    program ended: the server lives as long as the namespace."""
    out = layout.root / "late.txt"
    script = f"(sleep 0.5; cat data/only_m2/readme.txt > {out}) & exit 0"
    r = run_mount(usvfs, layout, ["sh", "-c", script], cwd=layout.base.parent)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == b"only in m2\n"


@pytest.fixture
def nobody_layout():
    """A layout a normal user (nobody) owns, where nobody can reach it (the
    test's own directory is private to root), and a runtime directory."""
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="usvfs-mount-", dir="/tmp"))
    os.chmod(top, 0o755)
    layout = build_layout(top)
    rt = top / "rt"
    rt.mkdir(mode=0o700)
    for d, dirs, files in os.walk(top):
        os.chown(d, 65534, 65534)
        for f in dirs + files:
            os.chown(os.path.join(d, f), 65534, 65534, follow_symlinks=False)
    yield layout, rt
    shutil.rmtree(top, ignore_errors=True)


# Runs usvfs as nobody in a user namespace whose own limit of user
# namespaces is 0 (a child namespace's limit is its owner's to set), as on a
# system that forbids them. argv: runtime dir, usvfs, its arguments.
NO_USERNS = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    if libc.unshare(0x10000000) != 0:
        os._exit(99)
    os.read(r, 1)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0")
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    os.environ["XDG_RUNTIME_DIR"] = sys.argv[1]
    os.execv(sys.argv[2], [sys.argv[2], "run", "--engine", "mount", *sys.argv[3:]])
os.close(r)
import time
for _ in range(100):
    try:
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write("0 0 65536")
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write("0 0 65536")
        break
    except OSError:
        time.sleep(0.01)
os.write(w, b"x")
_, st = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(st))
"""


def test_refused_user_namespaces_exit_125(mount_works, usvfs: Path, nobody_layout) -> None:
    """Where user namespaces are not allowed, a normal user gets 125 and the
    remedy. Simulated in a user namespace of our own whose limit is 0."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root, unshare and setpriv")
    layout, rt = nobody_layout
    r = subprocess.run(
        [sys.executable, "-c", NO_USERNS, str(rt), str(usvfs), *layout.mapping_args(), "--", "true"],
        cwd=layout.root,
        capture_output=True,
        timeout=60,
    )
    if r.returncode != 125 and b"usvfs" not in r.stderr:
        pytest.skip(f"cannot simulate: {r.stderr!r}")
    assert r.returncode == 125, r.stderr
    assert b"user namespace" in r.stderr and b"--engine preload" in r.stderr


def test_unprivileged_user_sees_the_view(mount_works, usvfs: Path, nobody_layout) -> None:
    """A normal user (setpriv to nobody) runs the mount engine in a user
    namespace of its own."""
    layout, rt = nobody_layout
    prefix = nobody_with_fuse(layout.root)
    if prefix is None:
        pytest.skip("needs root (to become another user), setpriv, and unshare where /dev/fuse is 0600")
    argv = [
        *prefix,
        "env", f"XDG_RUNTIME_DIR={rt}",
        str(usvfs), "run", "--engine", "mount", *layout.mapping_args(), "--",
        "sh", "-c", "id -u; cat data/only_m2/readme.txt; echo u > data/by_user.txt",
    ]
    r = subprocess.run(argv, cwd=layout.root / "game", capture_output=True, timeout=60)
    if r.returncode == 125 and b"user namespace" in r.stderr:
        pytest.skip(f"unprivileged user namespaces are not allowed here: {r.stderr!r}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"65534\nonly in m2\n"
    assert (layout.overwrite / "by_user.txt").read_bytes() == b"u\n"
    assert (layout.overwrite / "by_user.txt").stat().st_uid == 65534


def test_killed_server_gives_enotconn_not_a_hang(mount_works, usvfs: Path, layout: Layout) -> None:
    """usvfs killed with SIGKILL: its FUSE server is gone, and a process of
    the view that survives (it ignores the SIGTERM it gets) sees ENOTCONN at
    once instead of hanging."""
    import signal
    import time

    script = 'trap "" TERM; echo ready; sleep 1; cat data/shared.txt; echo "cat=$?"'
    p = subprocess.Popen(
        [str(usvfs), "run", "--engine", "mount", *layout.mapping_args(), "--", "sh", "-c", script],
        cwd=layout.base.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGKILL)
    p.wait()
    t = time.monotonic()
    out, err = p.stdout.read(), p.stderr.read()
    assert b"cat=1" in out, (out, err)
    assert b"Transport endpoint is not connected" in err
    assert time.monotonic() - t < 10


def test_profile_chooses_the_engine(mount_works, usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    """A profile's `engine = "mount"` runs what the preload engine refuses;
    --engine on the command line overrides it; a bad name is refused."""
    links = "".join(f'[[link]]\ndir = "{m}"\nto = "{layout.base}"\n' for m in layout.mods)
    prof = tmp_path / "p.toml"
    prof.write_text(f'engine = "mount"\n{links}')
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("busybox-static is not installed")
    argv = [str(usvfs), "run", "--profile", str(prof), "--", busybox, "cat", "data/only_m2/readme.txt"]
    r = subprocess.run(argv, cwd=layout.base.parent, capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, b"only in m2\n"), r.stderr
    r = subprocess.run(argv[:2] + ["--engine", "preload"] + argv[2:], cwd=layout.base.parent, capture_output=True, timeout=60)
    assert r.returncode == 125 and b"statically linked" in r.stderr
    prof.write_text(f'engine = "fuse"\n{links}')
    r = subprocess.run(argv, cwd=layout.base.parent, capture_output=True, timeout=60)
    assert r.returncode == 125 and b"not an engine" in r.stderr


GO_VIEW = """package main

import (
	"fmt"
	"os"
)

func main() {
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Print(string(b))
	entries, err := os.ReadDir(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, e := range entries {
		fmt.Println(e.Name())
	}
	if err := os.WriteFile(os.Args[3], []byte("go\\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
"""


def test_static_go_program_sees_and_changes_the_view(mount_works, usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    go = shutil.which("go")
    if not go:
        pytest.skip("no Go toolchain (scripts/setup.sh installs golang)")
    d = tmp_path / "gosrc"
    d.mkdir()
    (d / "main.go").write_text(GO_VIEW)
    exe = tmp_path / "goview"
    env = dict(os.environ, GOCACHE=str(tmp_path / "gocache"), GOPATH=str(tmp_path / "gopath"), HOME=str(tmp_path), CGO_ENABLED="0")
    subprocess.run([go, "build", "-o", str(exe), "main.go"], cwd=d, env=env, check=True, capture_output=True, timeout=600)
    r = run_mount(usvfs, layout, [str(exe), "data/shared.txt", "data/textures", "data/made_by_go.txt"], cwd=layout.base.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"from m3\nbase_tex.dds\nm1_tex.dds\nm2_tex.dds\n"
    assert (layout.overwrite / "made_by_go.txt").read_bytes() == b"go\n"


def test_setuid_helper_sees_the_view(mount_works, usvfs: Path, layout: Layout, tmp_path: Path) -> None:
    """A set-user-ID program (here one that becomes nobody) reads the view:
    the mount lets every user of the namespace in (allow_other) and the
    kernel checks permissions on the attributes the view reports."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a set-user-ID program of another user")
    src = tmp_path / "suid.c"
    src.write_text(
        "#include <stdio.h>\n#include <unistd.h>\n"
        "int main(int c, char **v) { FILE *f = fopen(v[1], \"r\"); char b[64] = {0};\n"
        "  if (!f) { perror(v[1]); return 1; } fread(b, 1, 63, f); printf(\"%d %s\", (int)geteuid(), b); return 0; }\n"
    )
    helper = tmp_path / "suid"
    subprocess.run(["gcc", "-O2", "-o", str(helper), str(src)], check=True)
    os.chown(helper, 65534, 65534)
    os.chmod(helper, 0o4755)
    os.chmod(tmp_path, 0o755)
    r = run_mount(usvfs, layout, [str(helper), "data/only_m2/readme.txt"], cwd=layout.base.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"65534 only in m2\n"


def test_open_file_survives_its_path_being_reused(mount_works, usvfs: Path, layout: Layout) -> None:
    """A file still open after its name was deleted keeps reading its own
    data, whatever takes the name next (a file, a directory)."""
    script = (
        "cd data; echo a > f; exec 3< f; rm f; echo b > f; cat <&3; cat f; rm f; "
        "echo c > h; exec 4< h; rm h; mkdir h; echo d > h/x; cat <&4; cat h/x; stat -c %F h"
    )
    r = run_mount(usvfs, layout, ["bash", "-c", script], cwd=layout.base.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"a\nb\nc\nd\ndirectory\n"
    assert r.stderr == b""


XATTRS = r"""
import errno, os, sys
def e(f):
    try:
        r = f()
        return "ok" if r is None else repr(r)
    except OSError as x:
        return errno.errorcode[x.errno]
for p in ("data/shared.txt", "data/meshes/a/b/m1.nif"):
    print(p, e(lambda: os.setxattr(p, "user.dosattrib", b"0x2")), e(lambda: os.getxattr(p, "user.dosattrib")),
          e(lambda: sorted(os.listxattr(p))))
print(e(lambda: os.removexattr("data/shared.txt", "user.dosattrib")), e(lambda: os.getxattr("data/shared.txt", "user.dosattrib")))
print(e(lambda: os.setxattr("data/nothere", "user.x", b"1")))
"""


def physical_xattrs(layout: Layout) -> dict:
    out = {}
    for layer in [layout.base, *layout.mods, layout.overwrite]:
        for dirpath, _, files in os.walk(layer):
            for f in files:
                p = os.path.join(dirpath, f)
                names = os.listxattr(p, follow_symlinks=False)
                if names:
                    out[os.path.relpath(p, layout.root)] = {n: os.getxattr(p, n, follow_symlinks=False) for n in names}
    return out


def test_extended_attributes_change_in_place_as_with_the_preload_engine(mount_works, usvfs: Path, tmp_path: Path) -> None:
    """setxattr/removexattr through the mount act on the file's physical copy
    (where it lives, as an edit does), as under the preload engine."""
    probe = tmp_path / "probe"
    probe.write_text("")
    try:
        os.setxattr(probe, "user.t", b"1")
    except OSError:
        pytest.skip("this file system keeps no user extended attributes")
    out, disk = {}, {}
    for engine in ("preload", "mount"):
        layout = build_layout(tmp_path / engine)
        r = run_mount(usvfs, layout, [sys.executable, "-c", XATTRS], cwd=layout.base.parent, engine=engine)
        assert r.returncode == 0, r.stderr
        out[engine] = r.stdout
        disk[engine] = physical_xattrs(layout)
    assert out["mount"] == out["preload"], (out["mount"], out["preload"])
    assert b"'user.dosattrib'" in out["mount"] and b"ENOENT" in out["mount"]
    assert disk["mount"] == disk["preload"]
    # Only the winning copy of the mod file carries it; the removed one is gone.
    assert list(disk["mount"].values()) == [{"user.dosattrib": b"0x2"}]


def test_case_insensitive_view_one_file_per_name(mount_works, usvfs: Path, layout: Layout) -> None:
    """With --case-insensitive, a name spelled two ways is one file through
    the mount (same inode number; a rename through one spelling moves it)."""
    script = (
        'cd data && stat -c %i textures/m1_tex.dds > /tmp/.a$$ && stat -c %i TEXTURES/M1_Tex.DDS > /tmp/.b$$ && '
        'cmp -s /tmp/.a$$ /tmp/.b$$ && echo same-inode; rm -f /tmp/.a$$ /tmp/.b$$; '
        'echo new > Textures/NEW.txt && cat textures/new.TXT && mv TEXTURES/new.txt textures/renamed.txt && ls textures'
    )
    r = subprocess.run([str(usvfs), "run", "--engine", "mount", "--case-insensitive", *layout.mapping_args(), "--",
                        "sh", "-c", script], cwd=layout.base.parent, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[:2] == ["same-inode", "new"], r.stdout
    assert "renamed.txt" in lines[2:] and "NEW.txt" not in lines[2:] and "new.txt" not in lines[2:]
    assert (layout.overwrite / "textures" / "renamed.txt").read_text() == "new\n"


def test_extended_attributes_can_be_turned_off(mount_works, usvfs: Path, layout: Layout) -> None:
    """USVFS_MOUNT_XATTRS=off: every xattr call fails with EOPNOTSUPP (the
    kernel stops asking the server), the rest of the view is unchanged."""
    code = (
        "import errno, os\n"
        "for f in (lambda: os.getxattr('data/shared.txt', 'user.dosattrib'), lambda: os.listxattr('data/shared.txt'),\n"
        "          lambda: os.setxattr('data/shared.txt', 'user.x', b'1')):\n"
        "    try:\n        f(); print('ok')\n    except OSError as e:\n        print(errno.errorcode[e.errno])\n"
        "print(open('data/shared.txt').read(), end='')\n"
    )
    before = layers(layout)
    r = run_mount(usvfs, layout, [sys.executable, "-c", code], cwd=layout.base.parent,
                  env=dict(os.environ, USVFS_MOUNT_XATTRS="off"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ENOTSUP\nENOTSUP\nENOTSUP\nfrom m3\n"  # EOPNOTSUPP on Linux
    assert layers(layout) == before


CASE_CHANGES = r"""
cd data
cat shared.TXT; echo new > NEW_FILE.txt; cat new_file.TXT
cat only_m2/README.txt; rm ONLY_M2/readme.TXT; cat only_m2/readme.txt 2>&1 | sed 's/^.*: //'
ls -d newdir 2>&1 | sed 's/^.*: //'; mkdir NEWDIR; ls -d newdir
cat Base_Only.txt; mv base_only.TXT Moved.txt; cat BASE_ONLY.txt 2>&1 | sed 's/^.*: //'; cat moved.TXT
"""


def test_case_insensitive_changes_reach_every_spelling(mount_works, usvfs: Path, tmp_path: Path) -> None:
    """In a case-insensitive view a change made through one spelling shows
    through every other one the program used before (a create hides a
    missing spelling, a delete or rename the old ones), as with the preload
    engine."""
    out, disk = {}, {}
    for engine in ("preload", "mount"):
        layout = build_layout(tmp_path / engine)
        r = subprocess.run([str(usvfs), "run", "--engine", engine, "--case-insensitive", *layout.mapping_args(), "--",
                            "sh", "-c", CASE_CHANGES], cwd=layout.base.parent, capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out[engine], disk[engine] = r.stdout, layers(layout)
    assert out["mount"] == out["preload"]
    assert out["mount"].decode().splitlines() == [
        "from m3", "new", "only in m2", "No such file or directory", "No such file or directory", "newdir",
        "base only", "No such file or directory", "base only",
    ]
    assert disk["mount"] == disk["preload"]


def test_blacklist_is_refused_not_ignored(mount_works, usvfs: Path, layout: Layout) -> None:
    """Every program in the namespace sees the view, so a blacklist cannot
    be honoured: exit 125 naming it, nothing on disk changed."""
    before = layers(layout)
    r = subprocess.run([str(usvfs), "run", "--engine", "mount", "--blacklist", "ls", *layout.mapping_args(), "--",
                        "touch", "data/should_not_exist"], cwd=layout.base.parent, capture_output=True, timeout=60)
    assert r.returncode == 125
    assert b"blacklist: ls" in r.stderr and b"--engine preload" in r.stderr
    assert layers(layout) == before


def test_dev_fuse_closed_to_the_user_says_what_to_do(mount_works, usvfs: Path, nobody_layout) -> None:
    """Where /dev/fuse is not open to other users (0600), a normal user gets
    exit 125 and the remedy for a permission problem, not a module hint."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to become another user) and setpriv")
    if os.stat("/dev/fuse").st_mode & 0o006:
        pytest.skip("/dev/fuse is open to every user here")
    layout, rt = nobody_layout
    before = layers(layout)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", f"XDG_RUNTIME_DIR={rt}",
                        str(usvfs), "run", "--engine", "mount", *layout.mapping_args(), "--", "true"],
                       cwd=layout.root, capture_output=True, timeout=60)
    if b"user namespace" in r.stderr:
        pytest.skip(f"unprivileged user namespaces are not allowed here: {r.stderr!r}")
    assert r.returncode == 125
    assert b"cannot open /dev/fuse" in r.stderr and b"chmod 0666 /dev/fuse" in r.stderr, r.stderr
    assert layers(layout) == before
