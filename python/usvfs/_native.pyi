"""Type stubs of the PyO3 extension module (a thin layer over usvfs-core)."""

import os
from typing import List, Optional, Sequence, Tuple, Union, final

__all__ = [
    "check_link",
    "mo2_rules",
    "conflicts_json",
    "publish",
    "SourceMonitor",
    "write_exec_rules",
    "register",
    "join",
    "leave",
    "processes",
    "dump",
    "prepare_command",
    "physical_dir",
    "set_log_level",
    "read_log",
    "validate_instance_name",
    "version",
    "child_env",
]

_Path = Union[str, "os.PathLike[str]"]
_Rule = Tuple[bool, _Path, _Path, int, Sequence[str], Sequence[str]]

def check_link(rule: _Rule) -> None: ...
@final
class SourceMonitor:
    """Watches a published mapping's monitored sources until stopped."""

    @property
    def watched(self) -> int: ...
    def stop(self) -> None: ...

def publish(
    instance: str,
    rules: Sequence[_Rule],
    blacklist: Sequence[str],
    case_insensitive: bool = False,
    engine: str = "preload",
) -> Tuple[str, int, Optional[SourceMonitor]]: ...
def write_exec_rules(instance: str, blacklist: Sequence[str], force_loads: Sequence[Tuple[str, _Path]]) -> None: ...
def register(instance: str, pid: int) -> None: ...
def join(instance: str, pid: int, engine: str = "preload") -> Optional[str]: ...
def leave(instance: str, pid: int) -> bool: ...
def processes(instance: str) -> List[Tuple[int, bytes]]: ...
def dump(instance: str) -> bytes: ...
def prepare_command(instance: str, argv: Sequence[_Path], engine: str = "preload") -> Tuple[str, List[str]]: ...
def physical_dir(instance: str, path: _Path) -> Optional[str]: ...
def set_log_level(instance: str, level: Optional[str]) -> None: ...
def read_log(instance: str, offset: int) -> Tuple[bytes, int]: ...
def validate_instance_name(name: str) -> None: ...
def version() -> str: ...
def child_env(
    envp: Sequence[bytes],
    lib: bytes,
    instance_dir: bytes,
    vcwd: Optional[bytes] = None,
    instance_fd: Optional[bytes] = None,
) -> List[bytes]: ...
def mo2_rules(
    instance_dir: _Path, profile: Optional[str] = None, data_dir: Optional[_Path] = None
) -> Tuple[List[Tuple[bool, str, str, int]], List[str], List[bool], List[str]]: ...
def conflicts_json(
    rules: Sequence[_Rule], names: Sequence[str], mo2_data: Sequence[bool] = ..., case_insensitive: bool = False
) -> str: ...
