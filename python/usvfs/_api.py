"""The py-usvfs 0.2 object API (VirtualFile, VirtualDirectory, Mapping,
UserspaceVFS), on Linux, plus context management and subprocess-style
`run`/`popen`."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from typing import Any, Iterator, List, Optional, Sequence, Union

from . import dll
from . import _mo2  # Mod Organizer 2 profiles and conflict reports
from ._errors import LinkError, USVFSException

StrPath = Union[str, "os.PathLike[str]"]


def _flag_property(flag: int, doc: str) -> property:
    def get(self: "_VirtualLink") -> bool:
        return bool(self.link_flags & flag)

    def set_(self: "_VirtualLink", value: bool) -> None:
        if type(value) is not bool:
            raise TypeError(f"this property takes a bool, not {type(value).__name__}")
        self.link_flags = (self.link_flags | flag) if value else (self.link_flags & ~flag)

    return property(get, set_, doc=doc)


class _VirtualLink:
    """A link rule: `real_path` appears at `virtual_path` in the view."""

    def __init__(self, real_path: StrPath, virtual_path: StrPath, is_directory: bool, link_flags: int = 0) -> None:
        self.real_path = os.path.abspath(os.fspath(real_path))
        self.virtual_path = os.path.abspath(os.fspath(virtual_path))
        self._is_directory = is_directory
        self.link_flags = link_flags

    @property
    def is_directory(self) -> bool:
        """True for a directory link (read-only)."""
        return self._is_directory

    link_fail_if_exists = _flag_property(dll.LINKFLAG_FAILIFEXISTS, "LINKFLAG_FAILIFEXISTS: fail if the destination is already linked.")
    redirect_create = _flag_property(
        dll.LINKFLAG_CREATETARGET,
        "LINKFLAG_CREATETARGET: files created below the destination land in the source (the innermost wins).",
    )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.real_path!r}, {self.virtual_path!r}, flags={self.link_flags:#x})"


class VirtualFile(_VirtualLink):
    """A file link: the real file appears at the virtual path."""

    def __init__(self, real_path: StrPath, virtual_path: StrPath) -> None:
        super().__init__(real_path, virtual_path, is_directory=False)


class VirtualDirectory(_VirtualLink):
    """A directory link: the real directory's contents are merged into the
    virtual directory (recursively unless `link_recursively` is False)."""

    def __init__(self, real_path: StrPath, virtual_path: StrPath) -> None:
        super().__init__(real_path, virtual_path, is_directory=True, link_flags=dll.LINKFLAG_RECURSIVE)

    link_recursively = _flag_property(dll.LINKFLAG_RECURSIVE, "LINKFLAG_RECURSIVE: link subdirectories too.")
    monitor_changes = _flag_property(
        dll.LINKFLAG_MONITORCHANGES,
        "LINKFLAG_MONITORCHANGES: files added to or removed from the real directory while the mapping is "
        "published appear or disappear in the view (inotify), until the VFS is closed or the mapping set again.",
    )


class Mapping:
    """An ordered collection of link rules; later rules win."""

    def __init__(self) -> None:
        self._links: List[_VirtualLink] = []

    def link(self, virtual_link: _VirtualLink) -> None:
        """Adds a rule."""
        if not isinstance(virtual_link, _VirtualLink):
            raise TypeError("link() takes a VirtualFile or a VirtualDirectory")
        self._links.append(virtual_link)

    def directories(self) -> Iterator[VirtualDirectory]:
        """The directory rules, in order."""
        yield from (lnk for lnk in self._links if lnk.is_directory)  # type: ignore[misc]

    def files(self) -> Iterator[VirtualFile]:
        """The file rules, in order."""
        yield from (lnk for lnk in self._links if not lnk.is_directory)  # type: ignore[misc]

    def links(self) -> Iterator[_VirtualLink]:
        """Every rule, in priority order."""
        yield from self._links

    # Mod Organizer 2 profiles and conflict reports (see _mo2.py).
    from_mo2 = classmethod(_mo2.from_mo2)
    conflicts = _mo2.conflicts


class UserspaceVFS:
    """A virtual file system instance: give it a mapping, then start
    processes in it. Usable as a context manager (closed on exit).

    One object per instance name and process, as with py-usvfs.

    `case_insensitive=True` (a Linux addition) makes the view match names in
    any case below the destinations, as Windows programs under Wine or Proton
    expect: names that differ only in case merge across the layers and the
    real destination, and any spelling finds the winner.
    """

    _instance_names: List[str] = []
    _names_lock = threading.Lock()

    def __init__(
        self,
        instance_name: str = "pyusvfs_instance",
        debug_mode: bool = False,
        log_level: dll.LogLevel = dll.LogLevel.ERROR,
        crash_dumps_type: dll.CrashDumpsType = dll.CrashDumpsType.NONE,
        crash_dump_path: str = "",
        case_insensitive: bool = False,
    ) -> None:
        if len(instance_name) > 64:
            raise USVFSException("instance names may not exceed 64 characters")
        with self._names_lock:
            if instance_name in self._instance_names:
                raise USVFSException(f"a usvfs instance named {instance_name!r} already exists in this process")
            self._instance_names.append(instance_name)
        self._initialized = False
        self._parameters = dll.USVFSParameters()
        dll.USVFSInitParameters(
            self._parameters, instance_name, debug_mode, log_level, crash_dumps_type, crash_dump_path, case_insensitive
        )

    def __del__(self) -> None:
        try:
            if self._initialized:
                self.close()
            with self._names_lock:
                if self.instance_name in self._instance_names:
                    self._instance_names.remove(self.instance_name)
        except Exception:
            pass

    def __enter__(self) -> "UserspaceVFS":
        if not self._initialized:
            self.initialize()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._initialized:
            self.close()
        with self._names_lock:
            if self.instance_name in self._instance_names:
                self._instance_names.remove(self.instance_name)

    def _connect(self) -> None:
        if not self._initialized:
            raise USVFSException("VFS is not initialized: call initialize() first")
        if not dll.ConnectVFS(self._parameters):
            raise USVFSException(f"could not connect to instance {self.instance_name!r}")

    def initialize(self) -> None:
        """Creates the instance. Raises if already initialized or on failure."""
        if self._initialized:
            raise USVFSException("VFS is already initialized")
        dll.InitLogging(self._parameters.debugMode)
        if not dll.CreateVFS(self._parameters):
            msgs = dll.GetLogMessages()
            raise USVFSException("failed to initialize the VFS: " + (msgs[-1] if msgs else "unknown error"))
        self._initialized = True

    def close(self) -> None:
        """Disconnects; processes still running keep their view."""
        if not self._initialized:
            raise USVFSException("VFS is not initialized")
        if self.is_active_instance():
            dll.DisconnectVFS()
        self._initialized = False

    def is_active_instance(self) -> bool:
        """True if this object's instance is the connected one."""
        return self._initialized and dll.GetCurrentVFSName() == self.instance_name

    def set_mapping(self, mapping: Mapping) -> None:
        """Replaces the mapping. Raises :class:`LinkError` naming the paths and
        flags of the first rule that cannot be linked."""
        if not isinstance(mapping, Mapping):
            raise TypeError("set_mapping() takes a Mapping")
        self._connect()
        dll.ClearVirtualMappings()
        for lnk in mapping.links():
            link = dll.VirtualLinkDirectoryStatic if lnk.is_directory else dll.VirtualLinkFile
            if not link(lnk.real_path, lnk.virtual_path, lnk.link_flags):
                msgs = dll.GetLogMessages()
                kind = "directory" if lnk.is_directory else "file"
                raise LinkError(
                    f"Failed to link virtual {kind}\nreal path: {lnk.real_path}\nvirtual path: {lnk.virtual_path}\n"
                    f"flags: {lnk.link_flags}\n" + (msgs[-1] if msgs else ""),
                    lnk.real_path,
                )
        # Publish now: processes already running in the view switch to it.
        dll._conn().publish()

    def clear_mapping(self) -> None:
        """Removes every link."""
        self._connect()
        dll.ClearVirtualMappings()

    def blacklist_executable(self, executable_name: str) -> None:
        """Processes of this executable (base name or full path) start outside the view."""
        self._connect()
        dll.BlacklistExecutable(executable_name)

    def clear_blacklist(self) -> None:
        self._connect()
        dll.ClearExecutableBlacklist()

    def force_load_lib(self, process_name: str, library_path: StrPath) -> None:
        """Preloads `library_path` into hooked processes named `process_name`."""
        self._connect()
        dll.ForceLoadLibrary(process_name, os.path.abspath(os.fspath(library_path)))

    def clear_force_loads(self) -> None:
        self._connect()
        dll.ClearLibraryForceLoads()

    def run_process(self, command_line: str, working_directory: Optional[StrPath] = None, blocking: bool = True) -> int:
        """Starts a command line (split like a shell would) in the view and
        returns its pid; with `blocking`, waits for it to end. The working
        directory defaults to the current one at call time."""
        self._connect()
        p = self.popen(shlex.split(command_line), cwd=working_directory)
        if blocking:
            p.wait()
        else:
            dll._children.append(p)
        return p.pid

    def get_active_processes(self) -> List[int]:
        """Pids of the processes running in the view."""
        self._connect()
        return dll.GetVFSProcessList()

    def run(self, args: Union[str, Sequence[Any]], **kwargs: Any) -> "subprocess.CompletedProcess[Any]":
        """Like :func:`subprocess.run`, with the process (and its children) in the view."""
        self._connect()
        return dll._run(args, **kwargs)

    def popen(self, args: Union[str, Sequence[Any]], **kwargs: Any) -> "subprocess.Popen[Any]":
        """Like :class:`subprocess.Popen`, with the process (and its children) in the view."""
        self._connect()
        return dll._popen(args, **kwargs)

    def dump(self) -> str:
        """The virtual tree, one line per node, `name -> source`."""
        self._connect()
        return dll.CreateVFSDump()

    def get_log_messages(self) -> List[str]:
        """Returns and forgets the log messages: this process's, then the
        lines the processes running in the view wrote to the instance's log
        since the last call (``"<unix time> <pid> <LEVEL> <target>: <message>
        key=value..."``), at the level given as `log_level` (`debug_mode`
        means DEBUG). ``usvfs log --instance NAME`` prints the same log."""
        if self._initialized:
            self._connect()
        return dll.GetLogMessages()

    @property
    def instance_name(self) -> str:
        """The instance name (read-only)."""
        return self._parameters.instanceName

    @property
    def case_insensitive(self) -> bool:
        """True when the view matches names in any case (read-only)."""
        return self._parameters.caseInsensitive

    @property
    def initialized(self) -> bool:
        """True between initialize() and close()."""
        return self._initialized
