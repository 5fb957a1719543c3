"""Mod Organizer 2 profiles and conflict reports for :class:`usvfs.Mapping`:
``Mapping.from_mo2(instance_dir, profile=None)`` and ``Mapping.conflicts()``.
The reading of MO2's files and the conflict computation are the CLI's own
(``usvfs run --mo2``, ``usvfs conflicts --json``), through ``_native``."""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

from . import _native

if TYPE_CHECKING:
    from ._api import Mapping

_log = logging.getLogger("usvfs")

StrPath = Union[str, "os.PathLike[str]"]


def from_mo2(cls: "type[Mapping]", instance_dir: StrPath, profile: Optional[str] = None,
             data_dir: Optional[StrPath] = None) -> "Mapping":
    """A mapping of a Mod Organizer 2 profile (default: the one selected in
    MO2): its enabled mods in MO2's priority order onto the game's data
    folder (or `data_dir`), the overwrite folder as create target, and the
    profile's INI files, saves and plugins.txt where the game reads them in
    the Wine prefix (``WINEPREFIX``, or the prefix the instance lives in).
    A mod without a folder is skipped with a warning on the ``"usvfs"``
    logger; an unreadable or malformed file raises :class:`USVFSException`
    whose ``path`` names it (and the message the line)."""
    from ._api import VirtualDirectory, VirtualFile

    rules, names, data, warnings = _native.mo2_rules(
        os.fspath(instance_dir), profile, os.fspath(data_dir) if data_dir is not None else None
    )
    for w in warnings:
        _log.warning("%s", w)
    m = cls()
    for (is_dir, src, dest, flags), name, is_mod in zip(rules, names, data):
        lnk = VirtualDirectory(src, dest) if is_dir else VirtualFile(src, dest)
        lnk.link_flags = flags
        lnk.mo2_name = name  # type: ignore[attr-defined]
        lnk.mo2_mod = is_mod  # type: ignore[attr-defined]
        m.link(lnk)
    return m


def conflicts(self: "Mapping", case_insensitive: bool = False) -> Dict[str, Any]:
    """Every virtual file more than one rule provides, as ``usvfs conflicts
    --json`` reports it: ``{"layers": [{"name", "source", "destination",
    "create_target", "files", "overwrites", "overwritten"}, ...] (lowest
    priority first), "conflicts": [{"path", "destination", "file", "winner",
    "hidden": [highest first]}, ...]}``. Layers are named by their MO2 mod
    name (``from_mo2``) or their source path."""
    links = list(self.links())
    rules = [(lnk.is_directory, lnk.real_path, lnk.virtual_path, lnk.link_flags, [], []) for lnk in links]
    names = [getattr(lnk, "mo2_name", "") for lnk in links]
    mods = [getattr(lnk, "mo2_mod", False) for lnk in links]
    return json.loads(_native.conflicts_json(rules, names, mods, case_insensitive))  # type: ignore[no-any-return]
