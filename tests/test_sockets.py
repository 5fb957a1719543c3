"""Unix sockets named by a path of the view: `bind` creates the socket where
a new file at that path goes (the create target), `connect` and `sendto`
reach it by its virtual path; abstract sockets and other families pass
through."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from conftest import Layout, run_view

SERVER_CLIENT = r"""
import os, socket, sys
def pair(path):
    s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen()
    c = socket.socket(socket.AF_UNIX); c.connect(path)
    conn, _ = s.accept(); c.sendall(b"ping"); got = conn.recv(4)
    for x in (s, c, conn): x.close()
    return got.decode()
print(pair("data/only_m2/srv.sock"))        # a folder only a mod has
print(pair("data/top.sock"))                # the destination itself
os.chdir("data/textures")                   # relative, from a merged folder
print(pair("rel.sock"))
try:
    socket.socket(socket.AF_UNIX).bind("/" + os.path.relpath("../only_m2/srv.sock", "/"))
except OSError as e:
    print("rebind", e.errno == 98)
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d.bind(os.path.abspath("../dgram.sock"))
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"dg", os.path.abspath("../dgram.sock"))
print(d.recv(2).decode())
a = socket.socket(socket.AF_UNIX); a.bind("\0usvfs-abstract-%d" % os.getpid()); print("abstract ok")
print(sorted(n for n in os.listdir("..") if n.endswith(".sock")))
"""


def test_unix_sockets_bind_and_connect_in_the_view(usvfs: Path, layout: Layout) -> None:
    r = run_view(usvfs, layout, [sys.executable, "-c", SERVER_CLIENT], cwd=layout.base.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "ping", "ping", "ping", "rebind True", "dg", "abstract ok", "['dgram.sock', 'top.sock']",
    ]
    ow = layout.overwrite
    for rel in ("only_m2/srv.sock", "top.sock", "textures/rel.sock", "dgram.sock"):
        assert stat.S_ISSOCK(os.lstat(ow / rel).st_mode), rel
    # Nothing in the real folder or a mod.
    for d in [layout.base, *layout.mods]:
        socks = [p for p in d.rglob("*.sock")]
        assert socks == [], socks
