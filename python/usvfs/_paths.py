"""Where the package's native parts live: the preload library and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import USVFSException

_HERE = Path(__file__).resolve().parent
_REPO_TARGET = _HERE.parent.parent / "target" / "release"


def _first(candidates: list[Path], what: str, env: str) -> Path:
    override = os.environ.get(env)
    if override:
        p = Path(override)
        if p.is_file():
            return p.resolve()
        raise USVFSException(f"{env} names {p}, which is not a file: point it at the {what}", path=p)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise USVFSException(
        f"cannot find the {what} (looked in {', '.join(map(str, candidates))}): reinstall the package, "
        f"or set {env}",
        path=candidates[0],
    )


def preload_library() -> Path:
    """The LD_PRELOAD engine shipped with the package."""
    name = "libusvfs_preload.so"
    return _first([_HERE / "_bin" / name, _REPO_TARGET / name], "usvfs preload library", "USVFS_PRELOAD")


def cli_binary() -> Path:
    """The `usvfs` command shipped with the package."""
    return _first([_HERE / "_bin" / "usvfs", _REPO_TARGET / "usvfs"], "usvfs command", "USVFS_CLI")
