"""The Python package: py-usvfs 0.2's API with Linux paths, and the modern
additions (context manager, run/popen, typed errors, logging)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import usvfs
from usvfs import dll


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """py-usvfs's README layout: src/ with files, an empty dest/."""
    (tmp_path / "src" / "subfolder").mkdir(parents=True)
    (tmp_path / "src" / "source1.txt").write_text("one\n")
    (tmp_path / "src" / "source2.txt").write_text("two\n")
    (tmp_path / "src" / "subfolder" / "source3.txt").write_text("three\n")
    (tmp_path / "dest").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def vfs(tree: Path):
    v = usvfs.UserspaceVFS(f"test_{os.getpid()}_{time.monotonic_ns()}")
    v.initialize()
    m = usvfs.Mapping()
    m.link(usvfs.VirtualDirectory("src/", "dest/"))
    v.set_mapping(m)
    yield v
    if v.initialized:
        v.close()
    v.__exit__(None, None, None)


def test_readme_example_runs_unchanged(tree: Path) -> None:
    vdir = usvfs.VirtualDirectory("src/", "dest/")
    vfs_map = usvfs.Mapping()
    vfs_map.link(vdir)
    vfs = usvfs.UserspaceVFS()
    vfs.initialize()
    vfs.set_mapping(vfs_map)
    out = tree / "out.txt"
    pid = vfs.run_process(f"sh -c 'ls -R dest > {out}'")
    assert pid > 0
    assert out.read_text().split() == ["dest:", "source1.txt", "source2.txt", "subfolder", "dest/subfolder:", "source3.txt"]
    # The controlling process itself keeps seeing the real disk.
    assert os.listdir("dest") == []
    vfs.close()
    assert not vfs.initialized
    del vfs


def test_public_names() -> None:
    for name in ["dll", "USVFSException", "VirtualDirectory", "VirtualFile", "Mapping", "UserspaceVFS"]:
        assert hasattr(usvfs, name)
    assert (dll.LINKFLAG_FAILIFEXISTS, dll.LINKFLAG_MONITORCHANGES, dll.LINKFLAG_CREATETARGET,
            dll.LINKFLAG_RECURSIVE, dll.LINKFLAG_FAILIFSKIPPED) == (1, 2, 4, 8, 16)
    for fn in ["USVFSParameters", "USVFSInitParameters", "InitLogging", "CreateVFS", "ConnectVFS", "DisconnectVFS",
               "VirtualLinkDirectoryStatic", "VirtualLinkFile", "ClearVirtualMappings", "CreateProcessHooked",
               "GetCurrentVFSName", "GetVFSProcessList", "BlacklistExecutable", "ClearExecutableBlacklist",
               "ForceLoadLibrary", "ClearLibraryForceLoads", "AddSkipFileSuffix", "ClearSkipFileSuffixes",
               "AddSkipDirectory", "ClearSkipDirectories", "CreateVFSDump", "GetLogMessages", "VersionString"]:
        assert callable(getattr(dll, fn)), fn
    assert {e.name for e in dll.LogLevel} == {"DEBUG", "INFO", "WARNING", "ERROR"}
    assert {e.name for e in dll.CrashDumpsType} == {"NONE", "MINI", "DATA", "FULL"}
    assert dll.VersionString() == usvfs.__version__
    for obj in [usvfs.UserspaceVFS, usvfs.Mapping, usvfs.VirtualFile, usvfs.VirtualDirectory, dll.CreateProcessHooked]:
        assert obj.__doc__
    stubs = Path(usvfs.__file__).parent
    assert (stubs / "py.typed").exists() and (stubs / "__init__.pyi").exists() and (stubs / "_native.pyi").exists()


def test_link_objects(tree: Path) -> None:
    d = usvfs.VirtualDirectory("src", Path("dest"))
    assert d.real_path == str(tree / "src") and d.virtual_path == str(tree / "dest")
    assert d.is_directory and d.link_recursively and d.link_flags == dll.LINKFLAG_RECURSIVE
    d.redirect_create = True
    d.monitor_changes = True
    d.link_fail_if_exists = True
    assert d.link_flags == 0xF
    d.link_recursively = False
    assert d.link_flags == 0x7
    with pytest.raises(TypeError):
        d.redirect_create = 1  # type: ignore[assignment]
    with pytest.raises(AttributeError):
        d.is_directory = False  # type: ignore[misc]
    f = usvfs.VirtualFile("src/source1.txt", "dest/x.txt")
    assert not f.is_directory and f.link_flags == 0
    assert not hasattr(f, "link_recursively")
    m = usvfs.Mapping()
    m.link(d)
    m.link(f)
    assert list(m.directories()) == [d] and list(m.files()) == [f]


def test_error_cases(tree: Path) -> None:
    v = usvfs.UserspaceVFS("dupe_name")
    with pytest.raises(usvfs.USVFSException, match="already exists"):
        usvfs.UserspaceVFS("dupe_name")
    with pytest.raises(usvfs.USVFSException, match="64 characters"):
        usvfs.UserspaceVFS("x" * 65)
    with pytest.raises(usvfs.USVFSException, match="not initialized"):
        v.set_mapping(usvfs.Mapping())
    v.initialize()
    with pytest.raises(usvfs.USVFSException, match="already initialized"):
        v.initialize()
    m = usvfs.Mapping()
    m.link(usvfs.VirtualDirectory("missing_dir", "dest"))
    with pytest.raises(usvfs.LinkError) as e:
        v.set_mapping(m)
    msg = str(e.value)
    assert str(tree / "missing_dir") in msg and str(tree / "dest") in msg and "flags: 8" in msg
    assert e.value.path == str(tree / "missing_dir")
    assert isinstance(e.value, usvfs.USVFSException)
    with pytest.raises(TypeError):
        v.set_mapping("not a mapping")  # type: ignore[arg-type]
    with pytest.raises(usvfs.ProgramNotFound):
        v.run(["no-such-program-anywhere"])
    v.close()
    with pytest.raises(usvfs.USVFSException):
        v.close()
    v.__exit__(None, None, None)


def test_context_manager_closes_on_error(tree: Path) -> None:
    with pytest.raises(RuntimeError):
        with usvfs.UserspaceVFS("ctx_test") as v:
            assert v.initialized
            raise RuntimeError("boom")
    assert not v.initialized
    # The name is free again.
    with usvfs.UserspaceVFS("ctx_test") as v2:
        assert v2.is_active_instance()


def test_run_like_subprocess(vfs: usvfs.UserspaceVFS) -> None:
    r = vfs.run(["cat", "dest/source1.txt", "dest/subfolder/source3.txt"], capture_output=True)
    assert (r.returncode, r.stdout) == (0, b"one\nthree\n")
    r = vfs.run("cat > dest/new.txt && cat dest/new.txt", shell=True, input="typed\n", text=True, capture_output=True)
    assert r.stdout == "typed\n"
    assert (Path("src") / "new.txt").read_text() == "typed\n"  # created in the parent's physical directory
    with pytest.raises(subprocess.TimeoutExpired):
        vfs.run(["sleep", "5"], timeout=0.3)
    with pytest.raises(subprocess.CalledProcessError):
        vfs.run(["false"], check=True)
    r = vfs.run(["pwd"], cwd="dest/subfolder", capture_output=True, text=True)
    assert r.stdout.strip() == str(Path.cwd() / "dest" / "subfolder")
    r = vfs.run(["sh", "-c", "cat dest/source2.txt"], env={"PATH": "/usr/bin:/bin"}, capture_output=True)
    assert r.stdout == b"two\n"


def test_popen_with_pipes(vfs: usvfs.UserspaceVFS) -> None:
    p = vfs.popen(["sh", "-c", "read x; cat dest/$x"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = p.communicate(b"source2.txt\n", timeout=30)
    assert (p.returncode, out) == (0, b"two\n")


def test_blocking_run_process_releases_the_gil(vfs: usvfs.UserspaceVFS) -> None:
    ticks = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.01)

    t = threading.Thread(target=tick)
    t.start()
    vfs.run_process("sleep 0.5", blocking=True)
    stop.set()
    t.join()
    assert len(ticks) > 10


def test_active_processes_and_non_blocking_children(vfs: usvfs.UserspaceVFS) -> None:
    pid = vfs.run_process("sleep 30", blocking=False)
    try:
        deadline = time.time() + 10
        while pid not in vfs.get_active_processes() and time.time() < deadline:
            time.sleep(0.05)
        assert pid in vfs.get_active_processes()
        assert os.getpid() not in vfs.get_active_processes()
    finally:
        os.kill(pid, 9)


def test_blacklist_and_force_load(vfs: usvfs.UserspaceVFS, tmp_path: Path) -> None:
    vfs.blacklist_executable("head")
    r = vfs.run("cat dest/source1.txt; head dest/source1.txt 2>/dev/null || echo outside", shell=True,
                capture_output=True)
    assert r.stdout == b"one\noutside\n"
    vfs.clear_blacklist()
    assert vfs.run(["head", "-n1", "dest/source1.txt"], capture_output=True).stdout == b"one\n"
    src = tmp_path / "forced.c"
    src.write_text('#include <unistd.h>\n__attribute__((constructor)) static void f(void) { write(2, "forced\\n", 7); }\n')
    lib = tmp_path / "libforced.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    vfs.force_load_lib("cat", lib)
    r = vfs.run("cat dest/source1.txt; ls dest >/dev/null", shell=True, capture_output=True)
    assert r.stdout == b"one\n" and r.stderr == b"forced\n"
    vfs.clear_force_loads()
    r = vfs.run("cat dest/source1.txt", shell=True, capture_output=True)
    assert r.stderr == b""


def test_dump_logging_and_low_level_api(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    params = dll.USVFSParameters()
    dll.USVFSInitParameters(params, "lowlevel", False, dll.LogLevel.INFO, dll.CrashDumpsType.NONE, "")
    assert params.instanceName == "lowlevel" and params.logLevel == dll.LogLevel.INFO
    with caplog.at_level(logging.INFO, logger="usvfs"):
        assert dll.CreateVFS(params)
        assert dll.GetCurrentVFSName() == "lowlevel"
        dll.AddSkipFileSuffix(".TXT")
        assert dll.VirtualLinkDirectoryStatic(str(tree / "src"), str(tree / "dest"), dll.LINKFLAG_RECURSIVE)
        dll.ClearSkipFileSuffixes()
        assert dll.VirtualLinkFile(str(tree / "src" / "source2.txt"), str(tree / "dest" / "two.txt"), 0)
        assert not dll.VirtualLinkFile(str(tree / "nope.txt"), str(tree / "dest" / "n.txt"), 0)
        dump = dll.CreateVFSDump()
        assert "two.txt -> " in dump and "source1.txt" not in dump and "subfolder/ -> " in dump
        pid = dll.CreateProcessHooked("cat dest/two.txt", str(tree), True)
        assert pid > 0
        assert dll.CreateProcessHooked("no-such-binary-xyz", str(tree), True) == 0
        dll.DisconnectVFS()
    assert any("published" in r.getMessage() for r in caplog.records)
    msgs = dll.GetLogMessages()
    assert any("nope.txt" in m for m in msgs)
