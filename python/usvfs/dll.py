"""Low-level interface with usvfs's own names (the `usvfs.dll` module of
py-usvfs): module-level state stands for the connection to one instance, as
the usvfs DLL keeps it. Prefer :class:`usvfs.UserspaceVFS`."""

from __future__ import annotations

import collections
import enum
import logging
import os
import shlex
import subprocess
import threading
from typing import Deque, Dict, List, Optional, Tuple

from . import _launch, _native
from ._errors import USVFSException

LINKFLAG_FAILIFEXISTS = 0x1
LINKFLAG_MONITORCHANGES = 0x2
LINKFLAG_CREATETARGET = 0x4
LINKFLAG_RECURSIVE = 0x8
LINKFLAG_FAILIFSKIPPED = 0x10

log = logging.getLogger("usvfs")


class LogLevel(enum.IntEnum):
    """usvfs's log levels."""

    DEBUG = 0
    INFO = 1
    WARNING = 2
    ERROR = 3

    def to_logging(self) -> int:
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
    """Parameters of an instance (fill with :func:`USVFSInitParameters`)."""

    def __init__(self) -> None:
        self._instance_name = ""
        self._debug_mode = False
        self._log_level = LogLevel.ERROR
        self._crash_dumps_type = CrashDumpsType.NONE
        self._crash_dumps_path = ""
        self._case_insensitive = False

    instanceName = property(lambda self: self._instance_name, doc="Instance name.")
    currentSHMName = property(lambda self: self._instance_name, doc="Name of the shared index (the instance name).")
    currentInverseSHMName = property(lambda self: self._instance_name + "_inverse", doc="Kept for compatibility.")
    debugMode = property(lambda self: self._debug_mode, doc="Debug mode.")
    logLevel = property(lambda self: self._log_level, doc="Log level.")
    crashDumpsType = property(lambda self: self._crash_dumps_type, doc="Crash dump kind.")
    crashDumpsPath = property(lambda self: self._crash_dumps_path, doc="Crash dump path.")
    caseInsensitive = property(
        lambda self: self._case_insensitive,
        doc="Names match case-insensitively below the destinations (Linux addition, as `usvfs run --case-insensitive`).",
    )


def USVFSInitParameters(
    parameters: USVFSParameters,
    instanceName: str,
    debugMode: bool,
    logLevel: LogLevel,
    crashDumpsType: CrashDumpsType,
    crashDumpsPath: str,
    caseInsensitive: bool = False,
) -> None:
    """Fills `parameters`. `caseInsensitive` (a Linux addition) makes the
    view match names in any case, as Windows programs expect."""
    parameters._instance_name = instanceName
    parameters._debug_mode = bool(debugMode)
    parameters._log_level = LogLevel(logLevel)
    parameters._crash_dumps_type = CrashDumpsType(crashDumpsType)
    parameters._crash_dumps_path = crashDumpsPath
    parameters._case_insensitive = bool(caseInsensitive)


class _Buffer(logging.Handler):
    """Keeps the last log messages for :func:`GetLogMessages`."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: Deque[str] = collections.deque(maxlen=1000)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname.lower()}: {record.getMessage()}")


_buffer = _Buffer()
log.addHandler(_buffer)


def InitLogging(toLocal: bool = False) -> None:
    """Sets up logging; with `toLocal`, the "usvfs" logger also prints to stderr."""
    if toLocal and not any(isinstance(h, logging.StreamHandler) and h is not _buffer for h in log.handlers):
        log.addHandler(logging.StreamHandler())


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


def GetLogMessages() -> List[str]:
    """Returns and forgets the buffered log messages: this process's (as
    ``"level: message"``), then the lines the hooked processes of the
    connected instance wrote to its log since the last call (as
    ``"<unix time> <pid> <LEVEL> <target>: <message> key=value..."``; their
    level is the instance's, see :class:`USVFSParameters`)."""
    with _lock:
        if _current is not None:
            _drain_instance_log(_current.name)
        out = list(_buffer.messages)
        _buffer.messages.clear()
    return out


class _Connection:
    """The state usvfs keeps per connected controller."""

    def __init__(self, params: USVFSParameters) -> None:
        self.params = params
        self.name = params.instanceName
        self.dir = ""
        self.rules: List[Tuple[bool, str, str, int, List[str], List[str]]] = []
        self.skip_suffixes: List[str] = []
        self.skip_dirs: List[str] = []
        self.blacklist: List[str] = []
        self.force_loads: List[Tuple[str, str]] = []
        self.dirty = True
        self.lock = threading.RLock()
        # Watches the sources of links with LINKFLAG_MONITORCHANGES while connected.
        self.monitor: Optional[_native.SourceMonitor] = None

    def publish(self) -> None:
        with self.lock:
            if not self.dirty and self.dir:
                return
            if self.monitor is not None:
                self.monitor.stop()
            d, nodes, self.monitor = _native.publish(self.name, self.rules, [], self.params.caseInsensitive)
            self.dir = os.fspath(d)
            _native.write_exec_rules(self.name, self.blacklist, self.force_loads)
            _native.register(self.name, os.getpid())
            self.dirty = False
            log.info("instance %s: mapping of %d rules published (%d nodes)", self.name, len(self.rules), nodes)

    def exec_rules_changed(self) -> None:
        with self.lock:
            if self.dir and not self.dirty:
                _native.write_exec_rules(self.name, self.blacklist, self.force_loads)


_current: Optional[_Connection] = None
_lock = threading.RLock()


def _conn() -> _Connection:
    if _current is None:
        raise USVFSException("not connected to a virtual file system: call CreateVFS or ConnectVFS first")
    return _current


def CreateVFS(parameters: USVFSParameters) -> bool:
    """Creates the instance (an empty mapping) and connects to it."""
    global _current
    with _lock:
        try:
            _native.validate_instance_name(parameters.instanceName)
            conn = _Connection(parameters)
            conn.publish()
            # Hooked processes started from now on log at this level to the
            # instance's log (GetLogMessages returns their lines).
            _native.set_log_level(conn.name, _instance_log_level(parameters))
        except USVFSException as e:
            log.error("%s", e)
            return False
        _current = conn
        log.setLevel(parameters.logLevel.to_logging() if not parameters.debugMode else logging.DEBUG)
        return True


def _instance_log_level(parameters: USVFSParameters) -> str:
    return "debug" if parameters.debugMode else parameters.logLevel.to_instance()


def ConnectVFS(parameters: USVFSParameters) -> bool:
    """Connects to the instance, creating it if needed."""
    with _lock:
        if _current is not None and _current.name == parameters.instanceName:
            return True
        return CreateVFS(parameters)


def DisconnectVFS() -> None:
    """Disconnects; the instance goes away when its last process ends."""
    global _current
    with _lock:
        if _current is not None:
            try:
                if _current.monitor is not None:
                    _current.monitor.stop()
                    _current.monitor = None
                # The instance (and its log) may go away with us: keep what
                # its processes logged for GetLogMessages.
                _drain_instance_log(_current.name)
                if _native.leave(_current.name, os.getpid()):
                    _log_offsets.pop(_current.name, None)
            finally:
                _current = None


def GetCurrentVFSName() -> str:
    """Name of the connected instance ('' when not connected)."""
    return _current.name if _current is not None else ""


def _link(is_dir: bool, source: str, destination: str, flags: int) -> bool:
    conn = _conn()
    # Skip lists apply to links made from now on, as in usvfs.
    rule = (is_dir, os.path.abspath(source), os.path.abspath(destination), int(flags),
            list(conn.skip_suffixes), list(conn.skip_dirs))
    try:
        _native.check_link(rule)
        if flags & LINKFLAG_FAILIFEXISTS and not is_dir and any(r[2] == rule[2] for r in conn.rules):
            raise USVFSException(f"destination {rule[2]!r} is already linked", rule[2])
    except USVFSException as e:
        log.error("link %s -> %s (flags %#x) failed: %s", source, destination, flags, e)
        return False
    with conn.lock:
        conn.rules.append(rule)
        conn.dirty = True
    return True


def VirtualLinkDirectoryStatic(source: str, destination: str, flags: int = 0) -> bool:
    """Links a directory (recursively with LINKFLAG_RECURSIVE)."""
    return _link(True, source, destination, flags)


def VirtualLinkFile(source: str, destination: str, flags: int = 0) -> bool:
    """Links a single file."""
    return _link(False, source, destination, flags)


def ClearVirtualMappings() -> None:
    """Removes every link."""
    conn = _conn()
    with conn.lock:
        conn.rules.clear()
        conn.dirty = True


def AddSkipFileSuffix(suffix: str) -> None:
    """Files ending with `suffix` (case-insensitive) are not linked from now on."""
    _conn().skip_suffixes.append(suffix)


def ClearSkipFileSuffixes() -> None:
    _conn().skip_suffixes.clear()


def AddSkipDirectory(name: str) -> None:
    """Directories named `name` (case-insensitive) are not linked from now on."""
    _conn().skip_dirs.append(name)


def ClearSkipDirectories() -> None:
    _conn().skip_dirs.clear()


def BlacklistExecutable(executableName: str) -> None:
    """Processes of this executable start outside the view."""
    conn = _conn()
    conn.blacklist.append(executableName)
    conn.exec_rules_changed()


def ClearExecutableBlacklist() -> None:
    conn = _conn()
    conn.blacklist.clear()
    conn.exec_rules_changed()


def ForceLoadLibrary(processName: str, libraryPath: str) -> None:
    """Preloads `libraryPath` into every hooked process of `processName`."""
    conn = _conn()
    conn.force_loads.append((processName, os.path.abspath(libraryPath)))
    conn.exec_rules_changed()


def ClearLibraryForceLoads() -> None:
    conn = _conn()
    conn.force_loads.clear()
    conn.exec_rules_changed()


def _popen(args, cwd=None, env=None, shell=False, **kwargs) -> subprocess.Popen:
    conn = _conn()
    conn.publish()
    exe, argv, pcwd, child_env = _launch.prepare(conn.name, conn.dir, args, cwd, env, shell)
    log.debug("starting %s in %s", argv, cwd or os.getcwd())
    return subprocess.Popen(argv, executable=exe, cwd=pcwd, env=child_env, **kwargs)


def _run(args, cwd=None, env=None, shell=False, **kwargs) -> subprocess.CompletedProcess:
    conn = _conn()
    conn.publish()
    exe, argv, pcwd, child_env = _launch.prepare(conn.name, conn.dir, args, cwd, env, shell)
    return subprocess.run(argv, executable=exe, cwd=pcwd, env=child_env, **kwargs)


def CreateProcessHooked(commandLineArgs: str, fullPathToWorkingDir: Optional[str] = None, blocking: bool = True) -> int:
    """Starts a command line in the view; returns its pid (0 on failure).
    With `blocking`, waits for it to end (the GIL is released meanwhile)."""
    try:
        p = _popen(shlex.split(commandLineArgs), cwd=fullPathToWorkingDir)
    except (USVFSException, OSError) as e:
        log.error("cannot start %r: %s", commandLineArgs, e)
        return 0
    if blocking:
        p.wait()
    else:
        _children.append(p)
    return p.pid


_children: List[subprocess.Popen] = []


def GetVFSProcessList() -> List[int]:
    """Pids of the processes running in the view (the controller excluded)."""
    if _current is None:
        return []
    for p in list(_children):
        if p.poll() is not None:
            _children.remove(p)
    me = os.getpid()
    return [pid for pid, _ in _native.processes(_current.name) if pid != me]


def CreateVFSDump() -> str:
    """The virtual tree, one line per node, `name -> source`."""
    conn = _conn()
    conn.publish()
    return os.fsdecode(_native.dump(conn.name))


def VersionString() -> str:
    """Version of the native library."""
    return _native.version()
