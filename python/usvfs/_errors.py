"""Exceptions raised by the usvfs package. Every one can carry the path it is
about, so callers can report it or act on it."""

from __future__ import annotations

import errno as _errno
import os
from typing import Any, Optional, Union

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


class USVFSException(Exception):
    """Generic error of the usvfs library (the py-usvfs name). Takes any
    arguments, like :class:`Exception`.

    :ivar path: the path the error is about (``str`` or ``bytes``), or None.
    """

    path: Optional[Union[str, bytes]]

    def __init__(self, *args: Any, path: Optional[PathLike] = None) -> None:
        super().__init__(*args)
        self.path = os.fspath(path) if path is not None else None

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class LinkError(USVFSException):
    """A link rule was refused: missing or unreadable source, a cycle between
    source and destination, or a flag it cannot satisfy."""


class InstanceError(USVFSException):
    """The instance is not set up, its name is invalid, or it is in use."""


class _ProgramError(USVFSException, OSError):
    """A program could not be started; carries OSError's fields."""

    _errno = 0

    def __init__(self, *args: Any, path: Optional[PathLike] = None) -> None:
        super().__init__(*args, path=path)
        # The OSError attributes, as `open` or `subprocess` would set them.
        for attr, value in (
            ("errno", self._errno),
            ("strerror", str(args[0]) if args else os.strerror(self._errno)),
            ("filename", self.path),
        ):
            setattr(self, attr, value)

    def __str__(self) -> str:
        return self.strerror or ""


class ProgramNotFound(_ProgramError, FileNotFoundError):
    """The program to start does not exist in the view (exit code 127).
    ``errno`` is ``ENOENT``, ``filename`` and ``path`` name the program."""

    _errno = _errno.ENOENT


class ProgramNotExecutable(_ProgramError, PermissionError):
    """The program exists but cannot be executed (exit code 126).
    ``errno`` is ``EACCES``, ``filename`` and ``path`` name the program."""

    _errno = _errno.EACCES


class ProgramNotHookable(USVFSException):
    """The preload engine cannot show this program the view (statically
    linked or set-user-ID); it would run on the real disk."""
