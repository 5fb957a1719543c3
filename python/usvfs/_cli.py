"""Entry point of the `usvfs` command installed with the package: runs the
bundled Rust binary with the same arguments."""

from __future__ import annotations

import os
import sys

from ._paths import cli_binary


def main() -> None:
    """Runs the bundled `usvfs` command with this process's arguments."""
    exe = cli_binary()
    os.environ.setdefault("USVFS_PRELOAD", str(exe.parent / "libusvfs_preload.so"))
    if not os.path.exists(os.environ["USVFS_PRELOAD"]):
        del os.environ["USVFS_PRELOAD"]
    os.execv(exe, [str(exe), *sys.argv[1:]])


if __name__ == "__main__":
    main()
