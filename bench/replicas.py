"""Benchmark: N replicas migrating one fresh database at once, against one replica alone.

Each replica is `python -m supervisor migrate` (the init container's command: all four phases, then exit), started
together; the time is from the first spawn to the last exit, every one exiting 0. One replica alone gets another
fresh database. Alternating, the order rotating each round. Prints a Markdown table.

    .venv/bin/python bench/replicas.py [--replicas 20 | --replicas 5,10,20] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bootlib import SUPERVISOR, header, rig, supervisor_ms


def _together(n: int, env: dict[str, str], cwd: Path) -> tuple[float, list[int]]:
    """Seconds from the first spawn to the last exit of `n` migrates, and each one's supervisor_ms."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*SUPERVISOR[:-1], "migrate"], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(n)]  # fmt: skip
    logs = [p.communicate()[1].decode("utf-8", "replace") for p in procs]
    elapsed = time.perf_counter() - t0
    failed = [i for i, p in enumerate(procs) if p.returncode != 0]
    if failed:
        raise SystemExit(
            f"{len(failed)} replica(s) of {n} failed; the first one's log:\n{logs[failed[0]][-3000:]}"
        )
    return elapsed, [ms for log in logs if (ms := supervisor_ms(log)) is not None]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--replicas", default="20", help="how many at once; a comma-separated list shows the scaling"
    )
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    counts = sorted({1, *(int(n) for n in args.replicas.split(","))})
    print(header("Replicas"), flush=True)
    times: dict[int, list[float]] = {n: [] for n in counts}
    own: dict[int, list[int]] = {n: [] for n in counts}
    with rig() as r:
        order = list(times)
        for _ in range(args.runs):
            for n in order:
                t, ms = _together(n, r.env_for(r.fresh()), r.project)
                times[n].append(t)
                own[n] += ms
            order = order[1:] + order[:1]
    one = statistics.median(times[1])
    print(
        f"\nFresh database, `migrate` by N replicas at once, first spawn to last exit, medians of {args.runs}:\n"
    )
    print("| replicas | time (s) | min-max (s) | vs one | supervisor_ms (median of all) |")
    print("|---:|---:|---:|---:|---:|")
    for n, ts in times.items():
        m = statistics.median(ts)
        mine = f"{statistics.median(own[n]):.0f}" if own[n] else ""
        print(f"| {n} | {m:.2f} | {min(ts):.2f}-{max(ts):.2f} | {m / one:.2f}x | {mine} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
