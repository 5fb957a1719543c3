"""Runs inside a view: kills (or stops) `oploop` writers at random points, and
after each fault checks that the view equals one of the states the model
allows and equals the layers physically merged. Prints the final tree as
JSON on its last line; exits 1 with the seed, round and difference on the
first violation.

usage: faultdriver.py --seed N --rounds N --oploop PATH --work DIR
                      --view DIR --other DIR --layer DIR... [--pidns-every N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultmodel as fm  # noqa: E402


class Violation(Exception):
    pass


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def check_reports(model: fm.Tree, ops: list[str], out: bytes, where: str) -> tuple[fm.Tree, int]:
    """Applies the reported results; returns the model and the first
    operation that did not report (the one a fault may have cut)."""
    nxt = 0
    for line in out.decode().splitlines():
        i, rc = (int(x) for x in line.split())
        assert i == nxt, f"{where}: report {i} out of order"
        allowed = fm.predict(model, ops[i])
        if allowed is not None and rc not in allowed:
            raise Violation(f"{where}: op {i} `{ops[i]}` returned {os.strerror(rc) if rc else 0}, expected one of {sorted(allowed)}")
        if rc == 0:
            model = fm.apply(model, ops[i])
        nxt = i + 1
    return model, nxt


def settle(model: fm.Tree, ops: list[str], cut: int, view: str, layers: list[str], where: str) -> fm.Tree:
    """The view after a fault: one of the states the cut operation allows,
    and equal to the disk."""
    seen = fm.read_tree(view)
    cands = fm.candidates(model, ops[cut]) if cut < len(ops) else [model]
    match = next((c for c in cands if c == seen), None)
    if match is None:
        raise Violation(
            f"{where}: view after a fault during `{ops[cut] if cut < len(ops) else '-'}` matches no allowed state: "
            + " | ".join(fm.diff(seen, c) for c in cands)
        )
    bad = fm.agrees_with_disk(seen, fm.merge(layers))
    if bad:
        raise Violation(f"{where}: view differs from the disk: {bad}")
    return match


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--oploop", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--view", required=True)
    ap.add_argument("--other", required=True)
    ap.add_argument("--layer", action="append", required=True)
    ap.add_argument("--pidns-every", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    model = fm.read_tree(a.view)
    if fm.agrees_with_disk(model, fm.merge(a.layer)):
        raise SystemExit(f"the view differs from the disk at start: {fm.diff(model, fm.merge(a.layer))}")
    stats = {"kills": 0, "stops": 0, "pidns": 0, "ops": 0, "cut_mid_op": 0}
    other_n = 0
    try:
        for rnd in range(a.rounds):
            where = f"seed {a.seed} round {rnd}"
            ops = fm.generate(rng, 400, f"r{rnd}-")
            opsfile = os.path.join(a.work, "ops.txt")
            with open(opsfile, "w") as f:
                f.write("\n".join(ops) + "\n")
            cmd = [a.oploop, a.view, opsfile]
            pidns = a.pidns_every and rnd % a.pidns_every == 1
            if pidns:
                cmd = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", *cmd]
                stats["pidns"] += 1
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True)
            time.sleep(rng.uniform(0.002, 0.03 if not pidns else 0.08))
            stop = rng.random() < 0.3
            if stop:
                # A stopped writer (maybe holding the journal lock): another
                # writer either finishes, or sleeps (no spinning) until the
                # stopped one dies.
                os.killpg(p.pid, signal.SIGSTOP)
                stats["stops"] += 1
                other_n += 1
                w = subprocess.Popen(
                    ["sh", "-c", f'echo x > "$1/w{other_n}" && mv "$1/w{other_n}" "$1/v{other_n}" && rm "$1/v{other_n}"', "sh", a.other],
                    stderr=subprocess.PIPE,
                )
                try:
                    w.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    t0 = cpu_ticks(w.pid)
                    time.sleep(1)
                    spun = cpu_ticks(w.pid) - t0
                    if spun > 10:
                        raise Violation(f"{where}: a writer waiting for a stopped one spins ({spun} ticks in 1 s)")
                os.killpg(p.pid, signal.SIGKILL)
                if w.wait(timeout=20) != 0:
                    raise Violation(f"{where}: a writer beside a stopped one failed: {w.stderr.read().decode()}")
            else:
                os.killpg(p.pid, signal.SIGKILL)
            stats["kills"] += 1
            out, _ = p.communicate(timeout=20)
            model, cut = check_reports(model, ops, out, where)
            stats["ops"] += cut
            if cut < len(ops):
                stats["cut_mid_op"] += 1
            model = settle(model, ops, cut, a.view, a.layer, where)
            if os.listdir(a.other):
                raise Violation(f"{where}: leftovers of the second writer: {os.listdir(a.other)}")
    except Violation as e:
        print(f"FAULT: {e}", file=sys.stderr)
        return 1
    print(json.dumps(stats), file=sys.stderr)
    print(json.dumps(model, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
