"""How a process is started inside an instance's view: the program is found in
the view, the preload library goes into LD_PRELOAD, and a virtual working
directory is handed down so `getcwd` reports it."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from . import _native
from ._errors import USVFSException
from ._paths import preload_library

StrPath = Union[str, "os.PathLike[str]"]


def child_env(instance_dir: str, base: Optional[Mapping[str, str]], virtual_cwd: Optional[str] = None) -> dict:
    """`base` (default: our environment) plus what a hooked child needs, from
    the launcher the CLI and the preload engine share."""
    env = os.environ if base is None else base
    entries = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    out = _native.child_env(
        entries,
        os.fsencode(str(preload_library())),
        os.fsencode(instance_dir),
        None if virtual_cwd is None else os.fsencode(virtual_cwd),
    )
    return dict(os.fsdecode(e).split("=", 1) for e in out)


def prepare(
    instance: str,
    instance_dir: str,
    args: Union[str, Sequence[Any]],
    cwd: Optional[StrPath] = None,
    env: Optional[Mapping[str, str]] = None,
    shell: bool = False,
) -> Tuple[str, list, str, dict]:
    """Returns (executable, argv, physical cwd, environment) for subprocess."""
    if shell:
        argv = ["/bin/sh", "-c", args if isinstance(args, str) else " ".join(map(str, args))]
    elif isinstance(args, (str, bytes, os.PathLike)):
        argv = [os.fsdecode(args)]
    else:
        argv = [os.fsdecode(a) for a in args]
    virtual_cwd = os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd()
    physical_cwd = _native.physical_dir(instance, virtual_cwd)
    if physical_cwd is None:
        raise USVFSException(f"working directory {virtual_cwd!r} does not exist in the view", virtual_cwd)
    # Relative program paths are taken from the (virtual) working directory.
    if "/" in argv[0] and not os.path.isabs(argv[0]):
        program = os.path.join(virtual_cwd, argv[0])
    else:
        program = argv[0]
    exe, new_argv = _native.prepare_command(instance, [program, *argv[1:]])
    new_argv = [os.fsdecode(a) for a in new_argv]
    if new_argv and new_argv[0] == program and program != argv[0]:
        new_argv[0] = argv[0]
    vcwd = virtual_cwd if os.fspath(physical_cwd) != virtual_cwd else None
    child = child_env(instance_dir, env, vcwd)
    return os.fspath(exe), new_argv, os.fspath(physical_cwd), child
