"""Low-level interface with usvfs's own names (the `usvfs.dll` module of
py-usvfs): module-level state stands for the connection to one instance, as
the usvfs DLL keeps it. Prefer :class:`usvfs.UserspaceVFS`.

Paths may be ``str``, ``bytes`` or :class:`os.PathLike`; names that are not
valid UTF-8 go through unchanged (as ``str`` they use the file system
encoding's ``surrogateescape``, like :func:`os.fsdecode`).
"""

from __future__ import annotations

import atexit
import collections
import enum
import logging
import os
import shlex
import signal
import subprocess
import threading
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple, Union

from . import _launch, _native
from ._errors import InstanceError, LinkError, USVFSException

__all__ = [
    "LINKFLAG_FAILIFEXISTS",
    "LINKFLAG_MONITORCHANGES",
    "LINKFLAG_CREATETARGET",
    "LINKFLAG_RECURSIVE",
    "LINKFLAG_FAILIFSKIPPED",
    "ENGINES",
    "LogLevel",
    "CrashDumpsType",
    "USVFSParameters",
    "USVFSInitParameters",
    "InitLogging",
    "CreateVFS",
    "ConnectVFS",
    "DisconnectVFS",
    "GetCurrentVFSName",
    "VirtualLinkDirectoryStatic",
    "VirtualLinkFile",
    "ClearVirtualMappings",
    "AddSkipFileSuffix",
    "ClearSkipFileSuffixes",
    "AddSkipDirectory",
    "ClearSkipDirectories",
    "BlacklistExecutable",
    "ClearExecutableBlacklist",
    "ForceLoadLibrary",
    "ClearLibraryForceLoads",
    "CreateProcessHooked",
    "GetVFSProcessList",
    "CreateVFSDump",
    "GetLogMessages",
    "VersionString",
]

StrPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

LINKFLAG_FAILIFEXISTS = 0x1
LINKFLAG_MONITORCHANGES = 0x2
LINKFLAG_CREATETARGET = 0x4
LINKFLAG_RECURSIVE = 0x8
LINKFLAG_FAILIFSKIPPED = 0x10

log: logging.Logger = logging.getLogger("usvfs")
# The library convention: messages go wherever the application configures
# logging, and nowhere else.
log.addHandler(logging.NullHandler())


class LogLevel(enum.IntEnum):
    """usvfs's log levels."""

    DEBUG = 0
    INFO = 1
    WARNING = 2
    ERROR = 3

    def to_logging(self) -> int:
        """The :mod:`logging` level of this level."""
        return {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}[int(self)]

    def to_instance(self) -> str:
        """The level name hooked processes log at (as `usvfs run --log-level`)."""
        return {0: "debug", 1: "info", 2: "warn", 3: "error"}[int(self)]


class CrashDumpsType(enum.IntEnum):
    """usvfs's crash dump kinds. Linux has no minidumps: kept for API
    compatibility; a crash dump path, if given, receives nothing."""

    NONE = 0
    MINI = 1
    DATA = 2
    FULL = 3


class USVFSParameters:
    """Parameters of an instance (fill with :func:`USVFSInitParameters`, or
    set the fields). The fields of usvfs's ``USVFSParameters``, plus
    `caseInsensitive` and `engine` (Linux additions)."""

    instanceName: str
    currentSHMName: str
    currentInverseSHMName: str
    debugMode: bool
    logLevel: LogLevel
    crashDumpsType: CrashDumpsType
    crashDumpsPath: str
    caseInsensitive: bool
    engine: str

    def __init__(self) -> None:
        self.instanceName = ""
        self.currentSHMName = ""
        self.currentInverseSHMName = ""
        self.debugMode = False
        self.logLevel = LogLevel.ERROR
        self.crashDumpsType = CrashDumpsType.NONE
        self.crashDumpsPath = ""
        self.caseInsensitive = False
        self.engine = "preload"

    def __repr__(self) -> str:
        return (
            f"USVFSParameters(instanceName={self.instanceName!r}, debugMode={self.debugMode}, "
            f"logLevel={self.logLevel!r}, crashDumpsType={self.crashDumpsType!r}, "
            f"crashDumpsPath={self.crashDumpsPath!r}, caseInsensitive={self.caseInsensitive}, "
            f"engine={self.engine!r})"
        )


def USVFSInitParameters(
    parameters: USVFSParameters,
    instanceName: str,
    debugMode: bool,
    logLevel: LogLevel,
    crashDumpsType: CrashDumpsType,
    crashDumpsPath: str,
    caseInsensitive: bool = False,
    engine: str = "preload",
) -> None:
    """Fills `parameters`. Linux additions: `caseInsensitive` makes the view
    match names in any case, as Windows programs expect; `engine` chooses
    how programs are shown the view (:data:`ENGINES`): ``"preload"`` (an
    ``LD_PRELOAD`` library) or ``"mount"`` (FUSE mounts in a private
    namespace, through the bundled ``usvfs run --engine mount``). ValueError
    for another engine name."""
    if not isinstance(instanceName, str):
        raise TypeError(f"instanceName must be a str, not {type(instanceName).__name__}")
    _check_engine(engine)
    parameters.instanceName = instanceName
    parameters.currentSHMName = instanceName
    parameters.currentInverseSHMName = instanceName + "_inverse"
    parameters.debugMode = bool(debugMode)
    parameters.logLevel = LogLevel(logLevel)
    parameters.crashDumpsType = CrashDumpsType(crashDumpsType)
    parameters.crashDumpsPath = os.fsdecode(crashDumpsPath)
    parameters.caseInsensitive = bool(caseInsensitive)
    parameters.engine = engine


# The engines an instance can run, as `usvfs run --engine` names them.
ENGINES: Tuple[str, ...] = ("preload", "mount")


def _check_engine(engine: Any) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, not {engine!r}")
    return str(engine)


# ---------------------------------------------------------------- arguments


def _path(value: Any, what: str) -> str:
    """An absolute path as ``str`` (lossless: surrogateescape) from str,
    bytes or os.PathLike; TypeError otherwise, before anything is stored."""
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{what} must be str, bytes or os.PathLike, not {type(value).__name__}")
    return os.fsdecode(os.path.abspath(os.fspath(value)))


def _name(value: Any, what: str) -> str:
    """A name (str or bytes) as ``str``; TypeError otherwise."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, (str, bytes)):
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")
    name = os.fsdecode(value)
    if not name or "\0" in name:
        raise ValueError(f"{what} must be a non-empty name without NUL, not {value!r}")
    return name


def _flags(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"link flags must be a non-negative int, not {value!r}")
    return int(value)


# ------------------------------------------------------------------ logging


class _Buffer:
    """Keeps the last log messages for :func:`GetLogMessages` (not a
    logging handler: the "usvfs" logger only has a NullHandler)."""

    def __init__(self) -> None:
        self.messages: Deque[str] = collections.deque(maxlen=1000)
        self.level = logging.WARNING


_buffer = _Buffer()


def _log(level: int, msg: str, *args: Any) -> None:
    """Logs to the "usvfs" logger and keeps the message for GetLogMessages."""
    if level >= _buffer.level:
        _buffer.messages.append(f"{logging.getLevelName(level).lower()}: {msg % args if args else msg}")
    log.log(level, msg, *args)


# The stderr handler `InitLogging(True)` (debug_mode) adds, and the logger
# level it replaced; both undone when the last connection closes.
_local_handler: Optional[logging.Handler] = None
_local_saved_level: Optional[int] = None


def InitLogging(toLocal: bool = False) -> None:
    """Sets up logging; with `toLocal`, the "usvfs" logger also prints to
    stderr (at DEBUG unless a level was set on it) until the last
    connection closes."""
    global _local_handler, _local_saved_level
    with _lock:
        if toLocal and _local_handler is None:
            _local_handler = logging.StreamHandler()
            log.addHandler(_local_handler)
            if log.level == logging.NOTSET:
                _local_saved_level = log.level
                log.setLevel(logging.DEBUG)


def _remove_local_handler() -> None:
    global _local_handler, _local_saved_level
    if _local_handler is not None:
        log.removeHandler(_local_handler)
        _local_handler = None
        if _local_saved_level is not None:
            log.setLevel(_local_saved_level)
            _local_saved_level = None


# How far each instance's log has been read (byte offsets), by instance name.
_log_offsets: Dict[str, int] = {}


def _drain_instance_log(name: str) -> None:
    """Moves the lines hooked processes of `name` logged since the last call
    into the message buffer."""
    try:
        text, _log_offsets[name] = _native.read_log(name, _log_offsets.get(name, 0))
    except USVFSException:
        return
    for line in os.fsdecode(text).splitlines():
        _buffer.messages.append(line)


def _log_messages(conn: Optional["_Connection"]) -> List[str]:
    with _lock:
        if conn is not None and conn.name in _connections:
            _drain_instance_log(conn.name)
        out = list(_buffer.messages)
        _buffer.messages.clear()
    return out


def GetLogMessages() -> List[str]:
    """Returns and forgets the buffered log messages: this process's (as
    ``"level: message"``), then the lines the hooked processes of the
    connected instance wrote to its log since the last call (as
    ``"<unix time> <pid> <LEVEL> <target>: <message> key=value..."``; their
    level is the instance's, see :class:`USVFSParameters`)."""
    return _log_messages(_current)


# -------------------------------------------------------------- connections

_Rule = Tuple[bool, str, str, int, List[str], List[str]]


class _Connection:
    """The state usvfs keeps per connected controller."""

    def __init__(self, params: USVFSParameters) -> None:
        self.params = params
        self.name = params.instanceName
        self.case_insensitive = bool(params.caseInsensitive)
        self.engine = _check_engine(getattr(params, "engine", "preload"))
        self.dir = ""
        self.rules: List[_Rule] = []
        self.skip_suffixes: List[str] = []
        self.skip_dirs: List[str] = []
        self.blacklist: List[str] = []
        self.force_loads: List[Tuple[str, str]] = []
        self.dirty = True
        self.lock = threading.RLock()
        # Watches the sources of links with LINKFLAG_MONITORCHANGES while connected.
        self.monitor: Optional[_native.SourceMonitor] = None

    def publish(self) -> None:
        """Publishes the rules if they changed since the last time."""
        with self.lock:
            if not self.dirty and self.dir:
                return
            self._publish(self.rules)

    def _publish(self, rules: List[_Rule]) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        d, nodes, self.monitor = _native.publish(self.name, rules, [], self.case_insensitive, self.engine)
        self.dir = os.fspath(d)
        _native.write_exec_rules(self.name, self.blacklist, self.force_loads)
        self.dirty = False
        _log(logging.INFO, "instance %s: mapping of %d rules published (%d nodes)", self.name, len(rules), nodes)

    def replace_rules(self, rules: List[_Rule]) -> None:
        """Publishes `rules` (checked already) in one step: every process
        started meanwhile sees the old mapping or the new one, never an
        empty one."""
        with self.lock:
            self._publish(rules)
            self.rules = rules

    def exec_rules_changed(self) -> None:
        with self.lock:
            if self.dir and not self.dirty:
                _native.write_exec_rules(self.name, self.blacklist, self.force_loads)


_current: Optional[_Connection] = None
# Every instance this process is connected to, by name.
_connections: Dict[str, _Connection] = {}
_lock = threading.RLock()


def _conn() -> _Connection:
    if _current is None:
        raise InstanceError("not connected to a virtual file system: call CreateVFS or ConnectVFS first")
    return _current


def _instance_log_level(parameters: USVFSParameters) -> str:
    return "debug" if parameters.debugMode else parameters.logLevel.to_instance()


def _open(parameters: USVFSParameters) -> _Connection:
    """This process's connection to the instance: joins it when it runs
    (its mapping stays), creates it with an empty mapping otherwise. Raises
    InstanceError for an invalid name."""
    name = parameters.instanceName
    if not isinstance(name, str):
        raise TypeError(f"instanceName must be a str, not {type(name).__name__}")
    _native.validate_instance_name(name)
    with _lock:
        conn = _connections.get(name)
        if conn is not None:
            return conn
        conn = _Connection(parameters)
        joined = _native.join(name, os.getpid(), conn.engine)
        if joined is not None:
            conn.dir = os.fspath(joined)
            conn.dirty = False
            _log(logging.INFO, "instance %s: joined the running instance", name)
        else:
            conn.publish()
            # Hooked processes started from now on log at this level to the
            # instance's log (GetLogMessages returns their lines).
            _native.set_log_level(name, _instance_log_level(parameters))
        _connections[name] = conn
        _install_cleanup()
        return conn


def _activate(parameters: USVFSParameters) -> bool:
    global _current
    with _lock:
        try:
            conn = _open(parameters)
        except USVFSException as e:
            _log(logging.ERROR, "%s", e)
            return False
        _current = conn
        _buffer.level = logging.DEBUG if parameters.debugMode else parameters.logLevel.to_logging()
        return True


def CreateVFS(parameters: USVFSParameters) -> bool:
    """Creates the instance (an empty mapping) and connects to it; if it
    already runs, joins it (as usvfs does)."""
    return _activate(parameters)


def ConnectVFS(parameters: USVFSParameters) -> bool:
    """Connects to the instance: joins it, keeping the mapping its processes
    see, or creates it if it does not run."""
    return _activate(parameters)


def _disconnect(conn: _Connection) -> None:
    """Leaves the instance; it goes away when its last process ends."""
    global _current
    with _lock:
        if _connections.get(conn.name) is not conn:
            return
        try:
            if conn.monitor is not None:
                conn.monitor.stop()
                conn.monitor = None
            # The instance (and its log) may go away with us: keep what
            # its processes logged for GetLogMessages.
            _drain_instance_log(conn.name)
            if _native.leave(conn.name, os.getpid()):
                _log_offsets.pop(conn.name, None)
        finally:
            del _connections[conn.name]
            if _current is conn:
                _current = None
            if not _connections:
                _remove_local_handler()


def DisconnectVFS() -> None:
    """Disconnects; the instance goes away when its last process ends."""
    with _lock:
        if _current is not None:
            _disconnect(_current)


def _disconnect_all() -> None:
    with _lock:
        for conn in list(_connections.values()):
            try:
                _disconnect(conn)
            except Exception:  # noqa: BLE001 - at exit, leave what can be left
                pass


_cleanup_installed = False


def _on_sigterm(signum: int, frame: Any) -> None:
    _disconnect_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_cleanup() -> None:
    """Leaves every instance at exit, and on SIGTERM/SIGHUP when nobody
    handles those (the handler leaves, then dies of the signal as before)."""
    global _cleanup_installed
    if _cleanup_installed:
        return
    _cleanup_installed = True
    atexit.register(_disconnect_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _on_sigterm)


def GetCurrentVFSName() -> str:
    """Name of the connected instance ('' when not connected)."""
    return _current.name if _current is not None else ""


# -------------------------------------------------------------------- links


def _provided(rules: Sequence[_Rule], destination: str) -> bool:
    """True if an earlier rule already puts something at `destination`."""
    for is_dir, src, dest, flags, _, _ in rules:
        if not is_dir:
            if dest == destination:
                return True
        elif dest == destination:
            return True
        elif destination.startswith(dest.rstrip("/") + "/"):
            rel = destination[len(dest.rstrip("/")) + 1 :]
            if (flags & LINKFLAG_RECURSIVE or "/" not in rel) and os.path.lexists(os.path.join(src, rel)):
                return True
    return False


def _make_rule(
    conn: _Connection, earlier: Sequence[_Rule], is_dir: bool, source: Any, destination: Any, flags: Any
) -> _Rule:
    """Checks a link like usvfs's VirtualLink* would, with the skip lists as
    they are now; raises LinkError naming the path, TypeError for bad
    arguments."""
    rule: _Rule = (
        bool(is_dir),
        _path(source, "source"),
        _path(destination, "destination"),
        _flags(flags),
        list(conn.skip_suffixes),
        list(conn.skip_dirs),
    )
    _native.check_link(rule)
    # usvfs.h: "if set, linking fails in case of an error": a file link
    # fails when its destination is linked already; a directory link when
    # its destination exists, virtually or physically.
    if rule[3] & LINKFLAG_FAILIFEXISTS:
        if _provided(earlier, rule[2]) or (is_dir and os.path.lexists(rule[2])):
            raise LinkError(f"destination {rule[2]!r} exists already (LINKFLAG_FAILIFEXISTS)", path=rule[2])
    return rule


def _link(is_dir: bool, source: StrPath, destination: StrPath, flags: int) -> bool:
    conn = _conn()
    try:
        rule = _make_rule(conn, conn.rules, is_dir, source, destination, flags)
    except USVFSException as e:
        _log(logging.ERROR, "link %s -> %s (flags %#x) failed: %s", source, destination, flags, e)
        return False
    with conn.lock:
        conn.rules.append(rule)
        conn.dirty = True
    return True


def VirtualLinkDirectoryStatic(source: StrPath, destination: StrPath, flags: int = 0) -> bool:
    """Links a directory (recursively with LINKFLAG_RECURSIVE). False (and
    an error message) if it cannot be linked."""
    return _link(True, source, destination, flags)


def VirtualLinkFile(source: StrPath, destination: StrPath, flags: int = 0) -> bool:
    """Links a single file. False (and an error message) if it cannot be
    linked."""
    return _link(False, source, destination, flags)


def ClearVirtualMappings() -> None:
    """Removes every link."""
    conn = _conn()
    with conn.lock:
        conn.rules = []
        conn.dirty = True


def AddSkipFileSuffix(suffix: Union[str, bytes]) -> None:
    """Files ending with `suffix` (case-insensitive) are not linked from now on."""
    s = _name(suffix, "suffix")
    _conn().skip_suffixes.append(s)


def ClearSkipFileSuffixes() -> None:
    """Forgets the skipped file suffixes (for links made from now on)."""
    _conn().skip_suffixes.clear()


def AddSkipDirectory(name: Union[str, bytes]) -> None:
    """Directories named `name` (case-insensitive) are not linked from now on."""
    n = _name(name, "directory name")
    _conn().skip_dirs.append(n)


def ClearSkipDirectories() -> None:
    """Forgets the skipped directory names (for links made from now on)."""
    _conn().skip_dirs.clear()


def _blacklist(conn: _Connection, executable: Any) -> None:
    name = _name(executable, "executable name")
    with conn.lock:
        conn.blacklist.append(name)
        conn.exec_rules_changed()


def BlacklistExecutable(executableName: Union[str, bytes]) -> None:
    """Processes of this executable (base name or full path) start outside the view."""
    _blacklist(_conn(), executableName)


def _clear_blacklist(conn: _Connection) -> None:
    with conn.lock:
        conn.blacklist.clear()
        conn.exec_rules_changed()


def ClearExecutableBlacklist() -> None:
    """Forgets the blacklisted executables."""
    _clear_blacklist(_conn())


def _force_load(conn: _Connection, process: Any, library: Any) -> None:
    entry = (_name(process, "process name"), _path(library, "library path"))
    with conn.lock:
        conn.force_loads.append(entry)
        conn.exec_rules_changed()


def ForceLoadLibrary(processName: Union[str, bytes], libraryPath: StrPath) -> None:
    """Preloads `libraryPath` into every hooked process of `processName`."""
    _force_load(_conn(), processName, libraryPath)


def _clear_force_loads(conn: _Connection) -> None:
    with conn.lock:
        conn.force_loads.clear()
        conn.exec_rules_changed()


def ClearLibraryForceLoads() -> None:
    """Forgets the forced libraries."""
    _clear_force_loads(_conn())


# ---------------------------------------------------------------- processes


def _popen(conn: _Connection, args: Any, cwd: Any = None, env: Any = None, shell: bool = False,
           executable: Any = None, **kwargs: Any) -> "subprocess.Popen[Any]":
    conn.publish()
    if conn.engine == "mount":
        cmd, cli_env = _launch.prepare_mount(conn.name, args, cwd, env, shell, executable)
        _log(logging.DEBUG, "starting %s in %s (mount engine)", cmd, cwd or os.getcwd())
        return subprocess.Popen(cmd, env=cli_env, **kwargs)
    exe, argv, pcwd, child_env = _launch.prepare(conn.name, conn.dir, args, cwd, env, shell, executable)
    _log(logging.DEBUG, "starting %s in %s", argv, cwd or os.getcwd())
    return subprocess.Popen(argv, executable=exe, cwd=pcwd, env=child_env, **_pass_instance(conn, kwargs))


def _run(conn: _Connection, args: Any, cwd: Any = None, env: Any = None, shell: bool = False,
         executable: Any = None, **kwargs: Any) -> "subprocess.CompletedProcess[Any]":
    conn.publish()
    if conn.engine == "mount":
        cmd, cli_env = _launch.prepare_mount(conn.name, args, cwd, env, shell, executable)
        return subprocess.run(cmd, env=cli_env, **kwargs)
    exe, argv, pcwd, child_env = _launch.prepare(conn.name, conn.dir, args, cwd, env, shell, executable)
    return subprocess.run(argv, executable=exe, cwd=pcwd, env=child_env, **_pass_instance(conn, kwargs))


def _pass_instance(conn: _Connection, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """`kwargs` with the instance directory's descriptor added to ``pass_fds``
    (see ``_launch.instance_fd``)."""
    fd = _launch.instance_fd(conn.dir)
    if fd is None:
        return kwargs
    return {**kwargs, "pass_fds": (*kwargs.get("pass_fds", ()), fd[0])}


def _split(command_line: Any) -> List[str]:
    """A command line split like a shell would (str or bytes)."""
    if not isinstance(command_line, (str, bytes)):
        # shlex.split(None) would read the command line from stdin.
        raise TypeError(f"the command line must be str or bytes, not {type(command_line).__name__}")
    return shlex.split(os.fsdecode(command_line))


_children: List["subprocess.Popen[Any]"] = []


def _start(conn: _Connection, command_line: Any, working_directory: Any, blocking: bool) -> int:
    p = _popen(conn, _split(command_line), cwd=working_directory)
    if blocking:
        p.wait()
    else:
        _children.append(p)
    return p.pid


def CreateProcessHooked(
    commandLineArgs: Union[str, bytes], fullPathToWorkingDir: Optional[StrPath] = None, blocking: bool = True
) -> int:
    """Starts a command line in the view; returns its pid (0 on failure).
    With `blocking`, waits for it to end (the GIL is released meanwhile)."""
    try:
        return _start(_conn(), commandLineArgs, fullPathToWorkingDir, blocking)
    except (USVFSException, OSError, ValueError) as e:
        _log(logging.ERROR, "cannot start %r: %s", commandLineArgs, e)
        return 0


def _process_list(conn: Optional[_Connection]) -> List[int]:
    if conn is None:
        return []
    for p in list(_children):
        if p.poll() is not None:
            _children.remove(p)
    me = os.getpid()
    return [pid for pid, _ in _native.processes(conn.name) if pid != me]


def GetVFSProcessList() -> List[int]:
    """Pids of the processes running in the view (the controller excluded)."""
    return _process_list(_current)


def _dump(conn: _Connection) -> str:
    conn.publish()
    return os.fsdecode(_native.dump(conn.name))


def CreateVFSDump() -> str:
    """The virtual tree, one line per node, `name -> source`."""
    return _dump(_conn())


def VersionString() -> str:
    """Version of the native library (the package's version)."""
    return _native.version()
