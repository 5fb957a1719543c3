"""Exceptions raised by the usvfs package. Every one can carry the path it is
about, so callers can report it or act on it."""

from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]", bytes]


class USVFSException(Exception):
    """Generic error of the usvfs library (the py-usvfs name).

    :ivar path: the path the error is about, if any.
    """

    def __init__(self, message: str, path: Optional[PathLike] = None) -> None:
        super().__init__(message)
        self.path = os.fspath(path) if path is not None else None


class LinkError(USVFSException):
    """A link rule was refused: missing or unreadable source, a cycle between
    source and destination, or a flag it cannot satisfy."""


class InstanceError(USVFSException):
    """The instance is not set up, its name is invalid, or it is in use."""


class ProgramNotFound(USVFSException, FileNotFoundError):
    """The program to start does not exist in the view (exit code 127)."""


class ProgramNotExecutable(USVFSException, PermissionError):
    """The program exists but cannot be executed (exit code 126)."""


class ProgramNotHookable(USVFSException):
    """The preload engine cannot show this program the view (statically
    linked or set-user-ID); it would run on the real disk."""
