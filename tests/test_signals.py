"""Signal handlers see the view: a handler that interrupts a hooked call and
itself calls open/access gets the view like any other caller (the re-entrancy
guard covers only the library's own internal sections, not hook bodies)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import Layout, run_view

HANDLER_CALLS = 400


def test_signal_handler_calls_during_hooks_see_the_view(usvfs: Path, layout: Layout, cbin: dict) -> None:
    base_before = sorted(p.name for p in layout.base.iterdir())
    r = run_view(usvfs, layout, [str(cbin["sighandler"]), str(layout.base), str(HANDLER_CALLS)])
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    m = re.fullmatch(
        rb"created=(\d+) create_fail=(\d+) access_fail=(\d+) errno_clobbered=(\d+) main_wrong=(\d+) iters=(\d+)\n",
        r.stdout,
    )
    assert m, r.stdout
    created, create_fail, access_fail, clobbered, wrong, iters = map(int, m.groups())
    assert (created, create_fail, access_fail, clobbered, wrong) == (HANDLER_CALLS, 0, 0, 0, 0), r.stdout
    assert iters > 0
    # Every file the handler created landed in the create target...
    want = sorted(f"sig_{i}.txt" for i in range(HANDLER_CALLS))
    assert sorted(p.name for p in layout.overwrite.glob("sig_*.txt")) == want
    # ...and none in the real game folder.
    assert sorted(p.name for p in layout.base.iterdir()) == base_before
    assert not list(layout.base.rglob("sig_*"))
