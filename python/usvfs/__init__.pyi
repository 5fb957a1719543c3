"""usvfs: a user-space virtual file system for Linux (py-usvfs 0.2 API).

The classes are typed (and documented) where they are defined, in
``usvfs._api``; this stub names the package's public interface."""

from typing import List

from . import dll as dll
from . import usvfs_wrapper as usvfs_wrapper
from ._api import Mapping as Mapping
from ._api import UserspaceVFS as UserspaceVFS
from ._api import VirtualDirectory as VirtualDirectory
from ._api import VirtualFile as VirtualFile
from ._errors import InstanceError as InstanceError
from ._errors import LinkError as LinkError
from ._errors import ProgramNotExecutable as ProgramNotExecutable
from ._errors import ProgramNotFound as ProgramNotFound
from ._errors import ProgramNotHookable as ProgramNotHookable
from ._errors import USVFSException as USVFSException

__version__: str
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
