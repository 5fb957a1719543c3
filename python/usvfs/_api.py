"""The py-usvfs 0.2 object API (VirtualFile, VirtualDirectory, Mapping,
UserspaceVFS), on Linux, plus context management and subprocess-style
`run`/`popen`."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from typing import Any, Dict, Iterator, List, Literal, Optional, Sequence, Union

from . import _mo2  # Mod Organizer 2 profiles and conflict reports
from . import _native, dll
from ._errors import InstanceError, LinkError, USVFSException

StrPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def _check_bool(value: object) -> bool:
    if type(value) is not bool:
        raise TypeError(f"this property takes a bool, not {type(value).__name__}")
    return value


class _VirtualLink:
    """A link rule: `real_path` appears at `virtual_path` in the view.
    Paths may be str, bytes or os.PathLike; they are kept absolute, as str
    (bytes that are not UTF-8 go through :func:`os.fsdecode` unchanged)."""

    def __init__(self, real_path: StrPath, virtual_path: StrPath, is_directory: bool, link_flags: int = 0) -> None:
        self.real_path: str = dll._path(real_path, "real_path")
        self.virtual_path: str = dll._path(virtual_path, "virtual_path")
        self._is_directory = is_directory
        self.link_flags: int = link_flags

    @property
    def is_directory(self) -> bool:
        """True for a directory link (read-only)."""
        return self._is_directory

    def _set_flag(self, flag: int, value: object) -> None:
        on = _check_bool(value)
        self.link_flags = (self.link_flags | flag) if on else (self.link_flags & ~flag)

    @property
    def link_fail_if_exists(self) -> bool:
        """LINKFLAG_FAILIFEXISTS: linking fails in case of an error (usvfs.h): a
        file link fails when its destination is already linked, by an earlier
        file link or a file of an earlier directory link; a directory link
        when its destination exists, virtually or physically."""
        return bool(self.link_flags & dll.LINKFLAG_FAILIFEXISTS)

    @link_fail_if_exists.setter
    def link_fail_if_exists(self, value: bool) -> None:
        self._set_flag(dll.LINKFLAG_FAILIFEXISTS, value)

    @property
    def redirect_create(self) -> bool:
        """LINKFLAG_CREATETARGET: files created below the destination land in
        the source (the innermost wins)."""
        return bool(self.link_flags & dll.LINKFLAG_CREATETARGET)

    @redirect_create.setter
    def redirect_create(self, value: bool) -> None:
        self._set_flag(dll.LINKFLAG_CREATETARGET, value)

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

    @property
    def link_recursively(self) -> bool:
        """LINKFLAG_RECURSIVE: link subdirectories too."""
        return bool(self.link_flags & dll.LINKFLAG_RECURSIVE)

    @link_recursively.setter
    def link_recursively(self, value: bool) -> None:
        self._set_flag(dll.LINKFLAG_RECURSIVE, value)

    @property
    def monitor_changes(self) -> bool:
        """LINKFLAG_MONITORCHANGES: files added to or removed from the real
        directory while the mapping is published appear or disappear in the
        view (inotify), until the VFS is closed or the mapping set again."""
        return bool(self.link_flags & dll.LINKFLAG_MONITORCHANGES)

    @monitor_changes.setter
    def monitor_changes(self, value: bool) -> None:
        self._set_flag(dll.LINKFLAG_MONITORCHANGES, value)


class Mapping:
    """An ordered collection of link rules. :meth:`UserspaceVFS.set_mapping`
    links every directory, then every file (as py-usvfs does); among rules
    of one kind, later rules win."""

    def __init__(self) -> None:
        self._links: List[Any] = []

    def link(self, virtual_link: Any) -> None:
        """Adds a rule: a VirtualFile, a VirtualDirectory, or any object with
        `is_directory`, `real_path`, `virtual_path` and `link_flags` (duck
        typing, as py-usvfs)."""
        for attr in ("is_directory", "real_path", "virtual_path", "link_flags"):
            if not hasattr(virtual_link, attr):
                raise TypeError(f"link() takes a VirtualFile or a VirtualDirectory (this object has no {attr!r})")
        self._links.append(virtual_link)

    def directories(self) -> Iterator[VirtualDirectory]:
        """The directory rules, in order."""
        yield from (lnk for lnk in self._links if lnk.is_directory)

    def files(self) -> Iterator[VirtualFile]:
        """The file rules, in order."""
        yield from (lnk for lnk in self._links if not lnk.is_directory)

    def links(self) -> Iterator[_VirtualLink]:
        """Every rule, in the order they were added."""
        yield from self._links

    # Mod Organizer 2 profiles and conflict reports (see _mo2.py).
    @classmethod
    def from_mo2(
        cls,
        instance_dir: Union[str, "os.PathLike[str]"],
        profile: Optional[str] = None,
        data_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    ) -> "Mapping":
        """A mapping of a Mod Organizer 2 profile (default: the one selected
        in MO2): its enabled mods in MO2's order onto the game's data folder
        (or `data_dir`), the overwrite folder as create target, and the
        profile's INI files, saves and plugins.txt where the game reads them
        in the Wine prefix. A mod without a folder is skipped with a warning
        on the ``"usvfs"`` logger; an unreadable or malformed file raises
        :class:`USVFSException` naming the file and line."""
        return _mo2.from_mo2(cls, instance_dir, profile, data_dir)

    def conflicts(self, case_insensitive: bool = False) -> Dict[str, Any]:
        """Every virtual path more than one rule provides, its winner and the
        rules it hides, and per-rule counts (as ``usvfs conflicts --json``)."""
        return _mo2.conflicts(self, case_insensitive)


class UserspaceVFS:
    """A virtual file system instance: give it a mapping, then start
    processes in it. Usable as a context manager (closed on exit).

    One object per instance name and process, as with py-usvfs; objects of
    different names in one process each keep their own mapping. If another
    process runs the instance already, :meth:`initialize` joins it.

    `case_insensitive=True` (a Linux addition) makes the view match names in
    any case below the destinations, as Windows programs under Wine or Proton
    expect: names that differ only in case merge across the layers and the
    real destination, and any spelling finds the winner.

    `engine` (a Linux addition) chooses how programs see the view:
    ``"preload"`` (the default: an ``LD_PRELOAD`` library in every process
    of the view) or ``"mount"`` (FUSE mounts over the destinations in a
    private user + mount namespace, so statically linked, Go and set-id
    programs and raw system calls see it too). With ``"mount"``, :meth:`run`,
    :meth:`popen` and :meth:`run_process` start the program through the
    bundled ``usvfs run``, which enters the namespace of the instance's
    running programs or makes one (served until its last process exits),
    waits for the program and exits with its status: a :class:`subprocess.Popen`
    and the pid returned are that command's. Another name raises
    :class:`ValueError`; joining a running instance of the other engine
    raises :class:`InstanceError`.
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
        engine: Literal["preload", "mount"] = "preload",
    ) -> None:
        dll._check_engine(engine)
        self._conn: Optional[dll._Connection] = None
        self._owns_name = False
        self._parameters = dll.USVFSParameters()
        if not isinstance(instance_name, str):
            raise TypeError(f"instance_name must be a str, not {type(instance_name).__name__}")
        if len(instance_name) > 64:
            raise InstanceError("instance names may not exceed 64 characters")
        _native.validate_instance_name(instance_name)
        with self._names_lock:
            if instance_name in self._instance_names:
                raise InstanceError(f"a usvfs instance named {instance_name!r} already exists in this process")
            self._instance_names.append(instance_name)
            self._owns_name = True
        dll.USVFSInitParameters(
            self._parameters, instance_name, debug_mode, log_level, crash_dumps_type, crash_dump_path, case_insensitive,
            engine,
        )

    def _release_name(self) -> None:
        # Only the object that took the name gives it back (not one whose
        # __init__ refused it as a duplicate).
        with self._names_lock:
            if self._owns_name and self.instance_name in self._instance_names:
                self._instance_names.remove(self.instance_name)
            self._owns_name = False

    def __del__(self) -> None:
        try:
            if self._conn is not None:
                self.close()
            self._release_name()
        except Exception:
            pass

    def __enter__(self) -> "UserspaceVFS":
        if self._conn is None:
            self.initialize()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._conn is not None:
            self.close()
        self._release_name()

    def _connect(self) -> dll._Connection:
        if self._conn is None:
            raise InstanceError(f"VFS {self.instance_name!r} is not initialized: call initialize() first")
        return self._conn

    def initialize(self) -> None:
        """Creates the instance, or joins it if another process runs it, and
        makes it the active one. Raises :class:`InstanceError` if already
        initialized, :class:`USVFSException` on failure."""
        if self._conn is not None:
            raise InstanceError(f"VFS {self.instance_name!r} is already initialized")
        dll.InitLogging(self._parameters.debugMode)
        with dll._lock:
            self._conn = dll._open(self._parameters)
            dll._current = self._conn
            p = self._parameters
            dll._buffer.level = logging.DEBUG if p.debugMode else p.logLevel.to_logging()

    def close(self) -> None:
        """Disconnects, active instance or not; the instance goes away when
        its last process ends (processes still running keep their view)."""
        conn = self._connect()
        self._conn = None
        dll._disconnect(conn)

    def is_active_instance(self) -> bool:
        """True if this object's instance is the one :mod:`usvfs.dll` uses."""
        return self._conn is not None and dll._current is self._conn

    def set_mapping(self, mapping: Mapping) -> None:
        """Replaces the mapping: links every directory, then every file, and
        publishes them in one step (processes started meanwhile see the old
        mapping or the new one). Raises :class:`LinkError` naming the paths
        and flags of the first rule that cannot be linked; the mapping in
        place then stays."""
        if not isinstance(mapping, Mapping):
            raise TypeError("set_mapping() takes a Mapping")
        conn = self._connect()
        rules: List[dll._Rule] = []
        for lnk in [*mapping.directories(), *mapping.files()]:
            try:
                rules.append(dll._make_rule(conn, rules, lnk.is_directory, lnk.real_path, lnk.virtual_path, lnk.link_flags))
            except USVFSException as e:
                kind = "directory" if lnk.is_directory else "file"
                raise LinkError(
                    f"Failed to link virtual {kind}\nreal path: {os.fsdecode(lnk.real_path)}\n"
                    f"virtual path: {os.fsdecode(lnk.virtual_path)}\nflags: {lnk.link_flags}\n{e}",
                    path=e.path if e.path is not None else lnk.real_path,
                ) from e
        # Processes already running in the view switch to it.
        conn.replace_rules(rules)

    def clear_mapping(self) -> None:
        """Removes every link (published with the next process or dump)."""
        conn = self._connect()
        with conn.lock:
            conn.rules = []
            conn.dirty = True

    def blacklist_executable(self, executable_name: Union[str, bytes]) -> None:
        """Processes of this executable (base name or full path) start outside the view."""
        dll._blacklist(self._connect(), executable_name)

    def clear_blacklist(self) -> None:
        """Forgets the blacklisted executables."""
        dll._clear_blacklist(self._connect())

    def force_load_lib(self, process_name: Union[str, bytes], library_path: StrPath) -> None:
        """Preloads `library_path` into hooked processes named `process_name`."""
        dll._force_load(self._connect(), process_name, library_path)

    def clear_force_loads(self) -> None:
        """Forgets the forced libraries."""
        dll._clear_force_loads(self._connect())

    def run_process(
        self, command_line: Union[str, bytes], working_directory: Optional[StrPath] = None, blocking: bool = True
    ) -> int:
        """Starts a command line (str or bytes, split like a shell would) in
        the view and returns its pid; with `blocking`, waits for it to end.
        The working directory defaults to the current one at call time."""
        return dll._start(self._connect(), command_line, working_directory, blocking)

    def get_active_processes(self) -> List[int]:
        """Pids of the processes running in the view."""
        return dll._process_list(self._connect())

    def run(self, args: Union[StrPath, Sequence[StrPath]], **kwargs: Any) -> "subprocess.CompletedProcess[Any]":
        """Like :func:`subprocess.run` (same arguments, `cwd` and
        `executable` included), with the process and its children in the view."""
        return dll._run(self._connect(), args, **kwargs)

    def popen(self, args: Union[StrPath, Sequence[StrPath]], **kwargs: Any) -> "subprocess.Popen[Any]":
        """Like :class:`subprocess.Popen` (same arguments), with the process
        and its children in the view."""
        return dll._popen(self._connect(), args, **kwargs)

    def dump(self) -> str:
        """The virtual tree, one line per node, `name -> source`."""
        return dll._dump(self._connect())

    def get_log_messages(self) -> List[str]:
        """Returns and forgets the log messages: this process's, then the
        lines the processes running in the view wrote to the instance's log
        since the last call (``"<unix time> <pid> <LEVEL> <target>: <message>
        key=value..."``), at the level given as `log_level` (`debug_mode`
        means DEBUG). ``usvfs log --instance NAME`` prints the same log."""
        return dll._log_messages(self._conn)

    @property
    def instance_name(self) -> str:
        """The instance name (read-only)."""
        return self._parameters.instanceName

    @property
    def case_insensitive(self) -> bool:
        """True when the view matches names in any case (read-only)."""
        return self._parameters.caseInsensitive

    @property
    def engine(self) -> str:
        """The engine programs see the view through: ``"preload"`` or
        ``"mount"`` (read-only)."""
        return self._parameters.engine

    @property
    def initialized(self) -> bool:
        """True between initialize() and close()."""
        return self._conn is not None
