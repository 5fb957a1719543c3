"""usvfs: a user-space virtual file system for Linux.

Shows chosen processes a merged view of many directories without touching the
disk. The API is a drop-in for py-usvfs 0.2 (``dll``, ``USVFSException``,
``VirtualDirectory``, ``VirtualFile``, ``Mapping``, ``UserspaceVFS``), with
Linux paths, plus context managers and subprocess-style ``run``/``popen``.
"""

from . import dll
from ._api import Mapping, UserspaceVFS, VirtualDirectory, VirtualFile
from ._errors import (
    InstanceError,
    LinkError,
    ProgramNotExecutable,
    ProgramNotFound,
    ProgramNotHookable,
    USVFSException,
)

__version__ = dll.VersionString()

__all__ = [
    "dll",
    "USVFSException",
    "LinkError",
    "InstanceError",
    "ProgramNotFound",
    "ProgramNotExecutable",
    "ProgramNotHookable",
    "VirtualDirectory",
    "VirtualFile",
    "Mapping",
    "UserspaceVFS",
]
