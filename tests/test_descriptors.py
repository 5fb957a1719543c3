"""Descriptors the view did not see opened map back to their virtual path:
one received over a unix socket (how Wine's server hands out every directory
it opens), one opened by a raw system call on a layer's physical directory,
one inherited across exec. A descriptor opened through the view on a mod's
own folder stays physical, and a recorded descriptor closed behind the
library's back and reused does not redirect later calls."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import Layout, run_view, write


def merged_names(layout: Layout, tmp_path: Path, rel: str) -> list[str]:
    merged = layout.merged_copy(tmp_path / "merged")
    return sorted(os.listdir(merged / rel))


def test_directory_received_over_a_socket_lists_the_view(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    names = merged_names(layout, tmp_path, "textures")
    tex = layout.base / "textures"
    r = run_view(usvfs, layout, [str(cbin["fdorigin"]), "recv", str(tex), "m1_tex.dds"])
    assert r.returncode == 0, r.stderr
    expect = [f"fd: {tex}", f"cwd: {tex}", *names, "m3 overrides m1", "m3 overrides m1"]
    assert r.stdout.decode().splitlines() == expect


def test_socket_descriptor_through_a_symlinked_prefix(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    # Wine opens every path through $WINEPREFIX/dosdevices/z: -> /.
    z = tmp_path / "dosdevices" / "z:"
    z.parent.mkdir()
    os.symlink("/", z)
    names = merged_names(layout, tmp_path, "only_m2")
    r = run_view(usvfs, layout, [str(cbin["fdorigin"]), "recv", f"{z}{layout.base}/only_m2", "readme.txt"])
    assert r.returncode == 0, r.stderr
    virt = layout.base / "only_m2"
    assert r.stdout.decode().splitlines() == [f"fd: {virt}", f"cwd: {virt}", *names, "only in m2", "only in m2"]


def test_raw_descriptor_on_a_layer_directory_is_the_view(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    names = merged_names(layout, tmp_path, "textures")
    # m2's own textures folder, opened where no hook sees it.
    r = run_view(usvfs, layout, [str(cbin["fdorigin"]), "raw", str(layout.mods[1] / "textures"), "m1_tex.dds"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["m3 overrides m1", *names]


def test_mod_folder_opened_through_the_view_stays_physical(usvfs: Path, layout: Layout, cbin: dict) -> None:
    # A mod manager inside the view browsing a mod's own folder sees just it.
    m1_tex = layout.mods[0] / "textures"
    r = run_view(usvfs, layout, [str(cbin["fdorigin"]), "open", str(m1_tex), "m1_tex.dds"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["m1 tex", *sorted(os.listdir(m1_tex))]


def test_stale_entry_does_not_redirect(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    write(other / "m1_tex.dds", "elsewhere\n")
    write(other / "plain.txt", "plain\n")
    r = run_view(
        usvfs, layout, [str(cbin["fdorigin"]), "stale", str(layout.base / "textures"), str(other), "m1_tex.dds"]
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["elsewhere", "m1_tex.dds", "plain.txt"]


def test_descriptor_inherited_across_exec(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    names = merged_names(layout, tmp_path, "textures")
    # The shell opens the merged directory on descriptor 7; the child lists
    # it through /dev/fd/7, a path the child never opened itself.
    # A doubled slash after the number still continues below the descriptor.
    script = (f'exec 7<"{layout.base}/textures"; ls /dev/fd/7/; cat /dev/fd/7/m1_tex.dds; '
              'cat /proc/self/fd/7//m1_tex.dds; readlink /proc/self/fd/7')
    r = run_view(usvfs, layout, ["bash", "-c", script])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [*names, "m3 overrides m1", "m3 overrides m1",
                                              str(layout.base / "textures")]
    # Relative to the inherited descriptor itself (fdopendir, openat).
    code = "import os; print(sorted(os.listdir(7))); print(os.read(os.open('m1_tex.dds', os.O_RDONLY, dir_fd=7), 99).decode(), end='')"
    r = run_view(usvfs, layout, ["bash", "-c", f'exec 7<"{layout.base}/textures"; python3 -c "{code}"'])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [str(names), "m3 overrides m1"]
