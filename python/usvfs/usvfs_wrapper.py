"""py-usvfs's ``usvfs.usvfs_wrapper`` module: the object API under its
original module name."""

from . import dll
from ._api import Mapping, UserspaceVFS, VirtualDirectory, VirtualFile
from ._errors import USVFSException

__all__ = ["dll", "USVFSException", "VirtualFile", "VirtualDirectory", "Mapping", "UserspaceVFS"]
