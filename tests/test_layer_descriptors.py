"""The preload engine reaches a layer's files through a descriptor of the
layer's source directory (the kernel then walks only the path below it). The
program never notices: closing every descriptor it did not open, writing over
them with dup2, a vfork child, and a source directory replaced behind the
view's back all leave it reading exactly what a merged copy holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import Layout, run_view


def files(layout: Layout) -> list[str]:
    b = layout.base
    return [str(b / "shared.txt"), str(b / "textures" / "m1_tex.dds"), str(b / "only_m2" / "readme.txt"),
            str(b / "meshes" / "a" / "b" / "m1.nif"), str(b / "base_only.txt")]


def merged_lines(layout: Layout, tmp_path: Path) -> list[str]:
    merged = layout.merged_copy(tmp_path / "merged")
    out = []
    for f in files(layout):
        rel = Path(f).relative_to(layout.base)
        out.append((merged / rel).read_text().splitlines()[0])
    return out


@pytest.mark.parametrize("mode", ["closeall", "closefrom", "closerange"])
def test_closing_every_descriptor_keeps_the_view(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path, mode: str) -> None:
    expect = merged_lines(layout, tmp_path)
    r = run_view(usvfs, layout, [str(cbin["layerfd"]), mode, *files(layout)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == expect + expect


def test_dup2_over_every_descriptor_keeps_the_view(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    expect = merged_lines(layout, tmp_path)
    r = run_view(usvfs, layout, [str(cbin["layerfd"]), "dup2", *files(layout)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == expect * 3


def test_vfork_child_uses_the_view_and_leaves_the_parent_intact(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    expect = merged_lines(layout, tmp_path)
    r = run_view(usvfs, layout, [str(cbin["layerfd"]), "vfork", *files(layout)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [*expect, "child: 0", *expect]


def test_source_directory_replaced_while_running_shows_the_new_one(usvfs: Path, layout: Layout, cbin: dict) -> None:
    # m1 is renamed away and made again with the same files saying
    # "replaced": the view follows the path, as a merged copy rebuilt from
    # the new folder would.
    m1 = layout.mods[0]
    old = m1.parent / "m1.old"
    b = layout.base
    only_m1 = [str(b / "meshes" / "a" / "b" / "m1.nif"), str(b / "name with spaces.txt")]
    script = (f"{cbin['layerfd']} replace {m1} {old} '{only_m1[0]}' '{only_m1[1]}'")
    # The check against the source path runs at most every 100 ms: the
    # program waits that long between replacing and reading.
    r = run_view(usvfs, layout, ["sh", "-c", script],
                 env=dict(os.environ, LAYERFD_SETTLE_MS="150"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["m1 mesh", "spaces", "replaced", "replaced"]
    assert (old / "meshes" / "a" / "b" / "m1.nif").read_text() == "m1 mesh\n"
    assert (m1 / "meshes" / "a" / "b" / "m1.nif").read_text() == "replaced\n"


def test_one_descriptor_per_layer_read_numbered_high(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    # One descriptor per layer read from, numbered high (from 880 under a
    # descriptor limit of 1024, else from 1024), so the program's own low
    # numbers stay free.
    r = run_view(usvfs, layout, [str(cbin["layerfd"]), "fds", *files(layout)])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[:5] == merged_lines(layout, tmp_path)
    # shared.txt and m1_tex.dds come from m3, readme.txt from m2, m1.nif
    # from m1 (base_only.txt is the real folder's: no descriptor). Through
    # /proc/self/fd the program sees each layer's descriptor as the folder
    # the layer shows in, as for any descriptor on a layer's directory.
    # The others: the instance (the launcher's descriptor) and the process's
    # hold on it.
    instance = Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs" / "usvfs_instance"
    expect = [f"high: {layout.base}"] * 3 + [f"high: {instance}", f"high: {instance / 'procs'}"]
    assert sorted(lines[5:]) == sorted(expect)


def test_vfork_children_closing_descriptors_leave_the_parents_alone(usvfs: Path, layout: Layout, cbin: dict, tmp_path: Path) -> None:
    # A vfork child shares the parent's memory, not its descriptor table:
    # its closes must not make the parent forget (and reopen, and leak) its
    # layer descriptors or its hold.
    r = run_view(usvfs, layout, [str(cbin["layerfd"]), "vforkclose", *files(layout)])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    expect = merged_lines(layout, tmp_path)
    assert lines[:10] == expect + expect
    instance = Path(os.environ["XDG_RUNTIME_DIR"]) / "usvfs" / "usvfs_instance"
    high = [f"high: {layout.base}"] * 3 + [f"high: {instance}", f"high: {instance / 'procs'}"]
    assert sorted(lines[10:]) == sorted(high)


def _limit(soft: int):
    """A preexec function setting the soft descriptor limit to `soft`."""
    import resource

    def set_limit() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return set_limit


def test_a_high_descriptor_limit_grows_the_table_before_threads_start(usvfs: Path, layout: Layout) -> None:
    # Under a limit that places layer descriptors from 1024 up (Wine and
    # Proton raise it), the constructor grows the descriptor table past 1024
    # while the process has one thread: grown later, in a multi-threaded
    # program, the kernel makes the first layer descriptor wait for an RCU
    # grace period (10-20 ms on this VM). The table's size is FDSize.
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard descriptor limit here is {hard}, below 4096")
    sizes = {}
    for soft in (4096, 1024):
        r = run_view(usvfs, layout, ["grep", "FDSize", "/proc/self/status"], preexec_fn=_limit(soft))
        assert r.returncode == 0, r.stderr
        sizes[soft] = int(r.stdout.split()[1])
    # 2048 covers every layer descriptor (1024 + 1024 layers); under 1024
    # the hold on the instance (fd 860) sizes it, as without this.
    assert sizes == {4096: 2048, 1024: 1024}
