import os
from typing import Any, Dict, Optional, Union

from ._api import Mapping

StrPath = Union[str, "os.PathLike[str]"]

def from_mo2(
    cls: type[Mapping], instance_dir: StrPath, profile: Optional[str] = ..., data_dir: Optional[StrPath] = ...
) -> Mapping: ...
def conflicts(self: Mapping, case_insensitive: bool = ...) -> Dict[str, Any]: ...
