"""py-usvfs behaviour under every call (tracker issue 13): joining running
instances, several instances per process, atomic mappings, argument checks
before anything is stored, bytes paths, errors, logging, cleanup."""

from __future__ import annotations

import errno
import inspect
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import usvfs
from usvfs import dll

PYTHON_DIR = Path(usvfs.__file__).resolve().parent.parent


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "src" / "subfolder").mkdir(parents=True)
    (tmp_path / "src" / "source1.txt").write_text("one\n")
    (tmp_path / "src" / "source2.txt").write_text("two\n")
    (tmp_path / "src" / "subfolder" / "source3.txt").write_text("three\n")
    (tmp_path / "dest").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{time.monotonic_ns() % 10**9}"


def instance_dir(name: str) -> Path:
    return Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs" / name


def src_mapping(src: str = "src/", dest: str = "dest/") -> usvfs.Mapping:
    m = usvfs.Mapping()
    m.link(usvfs.VirtualDirectory(src, dest))
    return m


@pytest.fixture
def vfs(tree: Path):
    v = usvfs.UserspaceVFS(unique("compat"))
    v.initialize()
    v.set_mapping(src_mapping())
    yield v
    v.__exit__(None, None, None)


def cat(v: usvfs.UserspaceVFS, path: str) -> bytes:
    r = v.run(["cat", path], capture_output=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR)
    return env


# 1
def test_connect_from_a_second_process_joins_the_running_instance(vfs: usvfs.UserspaceVFS) -> None:
    code = (
        "import sys\nfrom usvfs import dll\n"
        "p = dll.USVFSParameters()\n"
        "dll.USVFSInitParameters(p, sys.argv[1], False, dll.LogLevel.ERROR, dll.CrashDumpsType.NONE, '')\n"
        "assert dll.ConnectVFS(p)\n"
        "print(dll.CreateVFSDump())\n"
        "dll.DisconnectVFS()\n"
    )
    r = subprocess.run([sys.executable, "-c", code, vfs.instance_name], capture_output=True, text=True,
                       env=child_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "source1.txt -> " in r.stdout
    # The controller's view is intact, and the instance still runs.
    assert cat(vfs, "dest/source1.txt") == b"one\n"
    assert instance_dir(vfs.instance_name).is_dir()


# 2
def test_two_instances_in_one_process_keep_their_mappings(tree: Path) -> None:
    (tree / "other").mkdir()
    (tree / "other" / "o.txt").write_text("other\n")
    (tree / "dest2").mkdir()
    with usvfs.UserspaceVFS(unique("first")) as a, usvfs.UserspaceVFS(unique("second")) as b:
        a.set_mapping(src_mapping())
        b.set_mapping(src_mapping("other", "dest2"))
        assert cat(a, "dest/source1.txt") == b"one\n"
        assert cat(b, "dest2/o.txt") == b"other\n"
        assert cat(a, "dest/source2.txt") == b"two\n"
        assert a.run(["ls", "dest2"], capture_output=True).stdout == b""
        assert "source1.txt" in a.dump() and "o.txt" not in a.dump()


# 3
def test_setting_a_mapping_again_never_shows_an_empty_view(vfs: usvfs.UserspaceVFS, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process another thread starts while set_mapping checks the new rules
    sees the old mapping (or the new one), never an empty one."""
    seen: list[bytes] = []
    real_check = usvfs._native.check_link

    def check_link(rule):  # type: ignore[no-untyped-def]
        real_check(rule)
        if not seen:
            t = threading.Thread(target=lambda: seen.append(
                vfs.run(["cat", "dest/source1.txt"], capture_output=True).stdout))
            t.start()
            t.join()

    monkeypatch.setattr(usvfs._native, "check_link", check_link)
    vfs.set_mapping(src_mapping())
    assert seen == [b"one\n"]
    monkeypatch.setattr(usvfs._native, "check_link", real_check)
    assert cat(vfs, "dest/source1.txt") == b"one\n"


# 4
def test_bad_arguments_are_refused_before_anything_is_stored(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    with pytest.raises(TypeError):
        vfs.blacklist_executable(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vfs.force_load_lib(1, tree / "lib.so")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vfs.force_load_lib("cat", 2)  # type: ignore[arg-type]
    vfs.set_mapping(src_mapping())
    assert cat(vfs, "dest/source1.txt") == b"one\n"
    assert vfs.is_active_instance()
    with pytest.raises(TypeError):
        dll.AddSkipFileSuffix(5)  # type: ignore[arg-type]
    assert dll.VirtualLinkFile(str(tree / "src" / "source2.txt"), str(tree / "dest" / "x.txt"), 0)
    assert "x.txt -> " in dll.CreateVFSDump()


# 5
def test_run_process_command_line_types(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    with pytest.raises(TypeError):
        vfs.run_process(None)  # type: ignore[arg-type]
    pid = vfs.run_process(b"sh -c 'cat dest/source2.txt > out.txt'")
    assert pid > 0
    assert (tree / "out.txt").read_text() == "two\n"


# 6
def test_run_takes_bytes_cwd_and_executable_like_subprocess(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    r = vfs.run(["pwd"], cwd=b"dest/subfolder", capture_output=True)
    assert r.stdout == os.fsencode(tree / "dest" / "subfolder") + b"\n"
    r = vfs.run(["my-ls", "dest"], executable="/bin/ls", capture_output=True)
    assert r.stdout.split() == [b"source1.txt", b"source2.txt", b"subfolder"]
    r = vfs.run(["name0", "-c", "echo $0; cat dest/source1.txt"], executable="/bin/sh", capture_output=True)
    assert r.stdout == b"name0\none\n"
    r = vfs.run([b"cat", Path("dest/source2.txt")], capture_output=True)
    assert r.stdout == b"two\n"


# 7
def test_program_errors_carry_oserror_fields(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    with pytest.raises(FileNotFoundError) as nf:
        vfs.run(["no-such-program-xyz"])
    assert isinstance(nf.value, usvfs.ProgramNotFound)
    assert (nf.value.errno, nf.value.filename, nf.value.path) == (errno.ENOENT, "no-such-program-xyz", "no-such-program-xyz")
    (tree / "src" / "noexec.sh").write_text("echo hi\n")
    vfs.set_mapping(src_mapping())
    with pytest.raises(PermissionError) as ne:
        vfs.run(["dest/noexec.sh"])
    assert isinstance(ne.value, usvfs.ProgramNotExecutable)
    want = str(tree / "dest" / "noexec.sh")
    assert (ne.value.errno, ne.value.filename, ne.value.path) == (errno.EACCES, want, want)


# 8
def test_instance_errors(tree: Path) -> None:
    for bad in ["a/b", "", "..", "."]:
        with pytest.raises(usvfs.InstanceError):
            usvfs.UserspaceVFS(bad)
    v = usvfs.UserspaceVFS(unique("uninit"))
    for call in [lambda: v.set_mapping(usvfs.Mapping()), lambda: v.run(["true"]), v.dump, v.close,
                 v.get_active_processes, lambda: v.blacklist_executable("x")]:
        with pytest.raises(usvfs.InstanceError):
            call()
    # A refused duplicate does not free the name of the object that holds it.
    with pytest.raises(usvfs.InstanceError):
        usvfs.UserspaceVFS(v.instance_name)
    import gc

    gc.collect()
    with pytest.raises(usvfs.InstanceError):
        usvfs.UserspaceVFS(v.instance_name)
    v.__exit__(None, None, None)
    usvfs.UserspaceVFS(v.instance_name).__exit__(None, None, None)
    dll.DisconnectVFS()
    with pytest.raises(usvfs.InstanceError):
        dll.ClearVirtualMappings()
    p = dll.USVFSParameters()
    dll.USVFSInitParameters(p, "bad/name", False, dll.LogLevel.ERROR, dll.CrashDumpsType.NONE, "")
    assert not dll.CreateVFS(p)


# 9
def test_bytes_and_pathlike_paths_and_a_refused_mapping_keeps_the_old_one(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    raw = os.fsencode(tree) + b"/mod\xff"
    os.mkdir(raw)
    with open(raw + b"/f\xfe.txt", "wb") as f:
        f.write(b"latin\n")
    m = usvfs.Mapping()
    m.link(usvfs.VirtualDirectory(b"src", b"dest"))
    m.link(usvfs.VirtualDirectory(raw, Path("dest")))
    vfs.set_mapping(m)
    assert vfs.run([b"cat", b"dest/f\xfe.txt"], capture_output=True).stdout == b"latin\n"
    assert cat(vfs, "dest/source1.txt") == b"one\n"
    bad = usvfs.Mapping()
    bad.link(usvfs.VirtualDirectory(b"missing", b"dest"))
    with pytest.raises(usvfs.LinkError) as e:
        vfs.set_mapping(bad)
    assert e.value.path == str(tree / "missing")
    assert vfs.run([b"cat", b"dest/f\xfe.txt"], capture_output=True).stdout == b"latin\n"


# 10
def test_logging_follows_the_library_convention(tree: Path) -> None:
    log = logging.getLogger("usvfs")
    assert [type(h) for h in log.handlers] == [logging.NullHandler]
    old = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with usvfs.UserspaceVFS(unique("lvl"), log_level=dll.LogLevel.DEBUG) as v:
            v.set_mapping(src_mapping())
            assert log.level == logging.CRITICAL
    finally:
        log.setLevel(old)
    with usvfs.UserspaceVFS(unique("dbg"), debug_mode=True) as v:
        assert len(log.handlers) == 2
    assert [type(h) for h in log.handlers] == [logging.NullHandler]
    assert log.level == old


# 11
def test_python_dash_m_usvfs_runs_the_cli(tree: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "usvfs", "run", "--dir", "src", "dest", "--", "cat", "dest/source1.txt"],
                       capture_output=True, env=child_env(), timeout=60)
    assert (r.returncode, r.stdout) == (0, b"one\n"), r.stderr


# 12
def test_instance_directory_goes_away_on_sigterm(tree: Path) -> None:
    name = unique("term")
    code = (
        "import sys, time, usvfs\n"
        "v = usvfs.UserspaceVFS(sys.argv[1]); v.initialize()\n"
        "m = usvfs.Mapping(); m.link(usvfs.VirtualDirectory('src', 'dest')); v.set_mapping(m)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code, name], stdout=subprocess.PIPE, env=child_env())
    assert p.stdout is not None
    assert p.stdout.readline() == b"ready\n"
    assert instance_dir(name).is_dir()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == -signal.SIGTERM
    assert not instance_dir(name).exists()


def test_close_of_an_instance_that_is_not_active_removes_it(tree: Path) -> None:
    a = usvfs.UserspaceVFS(unique("inactive"))
    b = usvfs.UserspaceVFS(unique("active"))
    a.initialize()
    b.initialize()
    assert b.is_active_instance() and not a.is_active_instance()
    assert instance_dir(a.instance_name).is_dir()
    a.close()
    assert not a.initialized
    assert not instance_dir(a.instance_name).exists()
    assert b.is_active_instance()
    b.close()
    assert not instance_dir(b.instance_name).exists()
    a.__exit__(None, None, None)
    b.__exit__(None, None, None)


# Differences from py-usvfs


def test_set_mapping_links_directories_then_files(vfs: usvfs.UserspaceVFS) -> None:
    m = usvfs.Mapping()
    m.link(usvfs.VirtualFile("src/source2.txt", "dest/source1.txt"))
    m.link(usvfs.VirtualDirectory("src", "dest"))
    vfs.set_mapping(m)
    assert cat(vfs, "dest/source1.txt") == b"two\n"


def test_link_fail_if_exists_follows_usvfs_h(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    f = usvfs.VirtualFile("src/source2.txt", "dest/source1.txt")
    f.link_fail_if_exists = True
    m = usvfs.Mapping()
    m.link(usvfs.VirtualDirectory("src", "dest"))
    m.link(f)
    with pytest.raises(usvfs.LinkError):
        vfs.set_mapping(m)
    f2 = usvfs.VirtualFile("src/source2.txt", "dest/new.txt")
    f2.link_fail_if_exists = True
    m2 = usvfs.Mapping()
    m2.link(usvfs.VirtualDirectory("src", "dest"))
    m2.link(f2)
    vfs.set_mapping(m2)
    assert cat(vfs, "dest/new.txt") == b"two\n"
    # A directory link: its destination must not exist, physically or virtually.
    d = usvfs.VirtualDirectory("src/subfolder", "dest")
    d.link_fail_if_exists = True
    m3 = usvfs.Mapping()
    m3.link(d)
    with pytest.raises(usvfs.LinkError) as e:
        vfs.set_mapping(m3)
    assert e.value.path == str(tree / "dest")
    d2 = usvfs.VirtualDirectory("src/subfolder", "dest/subfolder")
    d2.link_fail_if_exists = True
    m4 = usvfs.Mapping()
    m4.link(usvfs.VirtualDirectory("src", "dest"))
    m4.link(d2)
    with pytest.raises(usvfs.LinkError):
        vfs.set_mapping(m4)
    d3 = usvfs.VirtualDirectory("src/subfolder", "dest/more")
    d3.link_fail_if_exists = True
    m4.link(d3)
    m5 = usvfs.Mapping()
    m5.link(usvfs.VirtualDirectory("src", "dest"))
    m5.link(d3)
    vfs.set_mapping(m5)
    assert cat(vfs, "dest/more/source3.txt") == b"three\n"


def test_mapping_link_takes_any_link_like_object(vfs: usvfs.UserspaceVFS, tree: Path) -> None:
    class Link:
        is_directory = False
        real_path = str(tree / "src" / "source2.txt")
        virtual_path = str(tree / "dest" / "duck.txt")
        link_flags = 0

    m = usvfs.Mapping()
    m.link(Link())
    vfs.set_mapping(m)
    assert cat(vfs, "dest/duck.txt") == b"two\n"
    with pytest.raises(TypeError):
        m.link(object())


def test_exceptions_version_wrapper_and_parameters() -> None:
    e = usvfs.USVFSException("a", 2, 3)
    assert e.args == ("a", 2, 3) and e.path is None
    assert usvfs.USVFSException().args == ()
    assert usvfs.LinkError("m", path=b"/p").path == b"/p"
    assert str(usvfs.USVFSException("message")) == "message"
    assert usvfs.__version__ == "0.1.0"
    from usvfs import usvfs_wrapper

    assert usvfs_wrapper.UserspaceVFS is usvfs.UserspaceVFS and usvfs_wrapper.dll is dll
    p = dll.USVFSParameters()
    p.instanceName = "written"
    p.debugMode = True
    p.logLevel = dll.LogLevel.INFO
    p.crashDumpsType = dll.CrashDumpsType.MINI
    p.crashDumpsPath = "/tmp/dumps"
    p.currentSHMName = "shm"
    p.currentInverseSHMName = "shm_inverse"
    assert (p.instanceName, p.debugMode, p.logLevel, p.crashDumpsPath) == ("written", True, dll.LogLevel.INFO, "/tmp/dumps")
    assert set(dll.__all__) >= {"CreateVFS", "ConnectVFS", "USVFSParameters", "LINKFLAG_RECURSIVE", "LogLevel"}
    assert all(hasattr(dll, n) for n in dll.__all__)


def test_every_public_callable_has_a_docstring() -> None:
    missing = []
    for mod in (usvfs, dll):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                if not obj.__doc__:
                    missing.append(f"{mod.__name__}.{name}")
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                        continue
                    if not member.__doc__:
                        missing.append(f"{mod.__name__}.{name}.{attr}")
    assert missing == []
