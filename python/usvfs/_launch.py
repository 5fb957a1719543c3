"""How a process is started inside an instance's view: the program is found in
the view, the preload library goes into LD_PRELOAD, and a virtual working
directory is handed down so `getcwd` reports it. With the mount engine the
bundled `usvfs run` starts it in the instance's namespace instead."""

from __future__ import annotations

import fcntl
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import _native
from ._errors import ProgramNotFound, USVFSException, _ProgramError
from ._paths import cli_binary, preload_library

# The first descriptor number tried for an instance directory handed down.
_INSTANCE_FD_MIN = 900
_instance_fds: Dict[str, Tuple[int, bytes]] = {}


def instance_fd(instance_dir: str) -> Optional[Tuple[int, bytes]]:
    """The instance directory as a descriptor (kept open, number 900 or
    above) that children get with ``pass_fds``, and its ``USVFS_INSTANCE_FD``
    value: a child in a container with a private /tmp or its own mount
    namespace still reaches the instance through it. None when it cannot
    be opened (the path alone then leads to the instance)."""
    try:
        st = os.stat(instance_dir)
    except OSError:
        return None
    cached = _instance_fds.pop(instance_dir, None)
    if cached is not None:
        try:
            fst = os.fstat(cached[0])
            if (fst.st_dev, fst.st_ino) == (st.st_dev, st.st_ino):
                _instance_fds[instance_dir] = cached
                return cached
        except OSError:
            pass
        try:
            os.close(cached[0])
        except OSError:
            pass
    try:
        raw = os.open(instance_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = fcntl.fcntl(raw, fcntl.F_DUPFD_CLOEXEC, _INSTANCE_FD_MIN)
        finally:
            os.close(raw)
    except OSError:
        return None
    out = (fd, f"{fd}:{st.st_dev}:{st.st_ino}".encode())
    _instance_fds[instance_dir] = out
    return out


def child_env(instance_dir: str, base: Optional[Mapping[Any, Any]], virtual_cwd: Optional[str] = None) -> Dict[str, str]:
    """`base` (default: our environment) plus what a hooked child needs, from
    the launcher the CLI and the preload engine share."""
    env = os.environ if base is None else base
    entries = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    fd = instance_fd(instance_dir)
    out = _native.child_env(
        entries,
        os.fsencode(str(preload_library())),
        os.fsencode(instance_dir),
        None if virtual_cwd is None else os.fsencode(virtual_cwd),
        None if fd is None else fd[1],
    )
    return dict(os.fsdecode(e).split("=", 1) for e in out)


def prepare(
    instance: str,
    instance_dir: str,
    args: Any,
    cwd: Any = None,
    env: Optional[Mapping[Any, Any]] = None,
    shell: bool = False,
    executable: Any = None,
) -> Tuple[str, List[str], str, Dict[str, str]]:
    """Returns (executable, argv, physical cwd, environment) for subprocess.
    `args`, `cwd` and `executable` as :class:`subprocess.Popen` takes them
    (str, bytes or os.PathLike)."""
    argv, virtual_cwd, physical_cwd, program = _locate(instance, args, cwd, shell, executable, "preload")
    try:
        exe, new_argv_raw = _native.prepare_command(instance, [program, *argv[1:]])
    except _ProgramError as e:
        e.path = e.filename = program
        raise
    new_argv = [os.fsdecode(a) for a in new_argv_raw]
    if new_argv and new_argv[0] == program and program != argv[0]:
        new_argv[0] = argv[0]
    vcwd = virtual_cwd if os.fspath(physical_cwd) != virtual_cwd else None
    child = child_env(instance_dir, env, vcwd)
    return os.fspath(exe), new_argv, os.fspath(physical_cwd), child


def _locate(
    instance: str, args: Any, cwd: Any, shell: bool, executable: Any, engine: str
) -> Tuple[List[str], str, str, str]:
    """(argv, virtual cwd, physical cwd, program path) of a command line as
    :class:`subprocess.Popen` takes it; checks the program is in the view
    and `engine` can show it the view (ProgramNotFound, ...)."""
    if shell:
        command = os.fsdecode(args) if isinstance(args, (str, bytes, os.PathLike)) else " ".join(os.fsdecode(a) for a in args)
        argv = ["/bin/sh", "-c", command]
        if executable is not None:
            argv[0] = os.fsdecode(executable)
            executable = None
    elif isinstance(args, (str, bytes, os.PathLike)):
        argv = [os.fsdecode(args)]
    else:
        argv = [os.fsdecode(a) for a in args]
    if not argv:
        raise ProgramNotFound("empty command line")
    virtual_cwd = os.fsdecode(os.path.abspath(os.fspath(cwd))) if cwd is not None else os.getcwd()
    physical_cwd = _native.physical_dir(instance, virtual_cwd)
    if physical_cwd is None:
        raise USVFSException(f"working directory {virtual_cwd!r} does not exist in the view", path=virtual_cwd)
    # The program: `executable` if given (argv[0] is then only its name),
    # relative paths taken from the (virtual) working directory.
    wanted = os.fsdecode(executable) if executable is not None else argv[0]
    if "/" in wanted and not os.path.isabs(wanted):
        program = os.path.join(virtual_cwd, wanted)
    else:
        program = wanted
    if engine != "preload":
        try:
            _native.prepare_command(instance, [program, *argv[1:]], engine)
        except _ProgramError as e:
            e.path = e.filename = program
            raise
    return argv, virtual_cwd, os.fspath(physical_cwd), program


def prepare_mount(
    instance: str,
    args: Any,
    cwd: Any = None,
    env: Optional[Mapping[Any, Any]] = None,
    shell: bool = False,
    executable: Any = None,
) -> Tuple[List[str], Dict[str, str]]:
    """The command line and environment that run a program through the mount
    engine: the bundled ``usvfs run --instance NAME --cwd DIR -- PROGRAM``,
    which enters the instance's running namespace or starts one over its
    published mapping, forwards signals and exits with the program's
    status. With `executable`, the program runs under that path as its
    ``argv[0]``."""
    argv, virtual_cwd, _, program = _locate(instance, args, cwd, shell, executable, "mount")
    cmd = [os.fspath(cli_binary()), "run", "--instance", instance, "--cwd", virtual_cwd, "--", program, *argv[1:]]
    base = os.environ if env is None else env
    out = {os.fsdecode(k): os.fsdecode(v) for k, v in base.items()}
    # The command finds the instance where this process made it.
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime is None:
        out.pop("XDG_RUNTIME_DIR", None)
    else:
        out["XDG_RUNTIME_DIR"] = runtime
    return cmd, out
