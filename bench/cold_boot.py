"""Benchmark: cold boot, an empty database to the first 200 from /server/ping, with the real Directus.

    official image: `directus bootstrap && directus start` (applies no schema and no SQL);
    by hand: psql over db-init/, bootstrap, schema apply, psql over db-init-post/, start (bench/by-hand-boot.sh);
    supervisor run: `python -m supervisor run` (its early Node is killed when pre-schema finds work);
    supervisor run, no early start: the same with SUPERVISOR_EARLY_START=off, to show what the early start costs.
Each boot gets a fresh database; the order rotates each round. Prints a Markdown table.

    .venv/bin/python bench/cold_boot.py [--runs 3]
"""

from __future__ import annotations

import argparse
import sys

from bootlib import ROOT, SUPERVISOR, Boot, boot, header, rig, table

OFFICIAL = "official image"  # bootstrap && start
BY_HAND = "by hand"  # psql, bootstrap, schema apply, psql, start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(header("Cold boot"), flush=True)
    with rig() as r:
        ways: dict[str, tuple[list[str], dict[str, str]]] = {
            OFFICIAL: (["bash", "-c", f"{r.cli} bootstrap && exec {r.cli} start"], {}),
            BY_HAND: (["bash", str(ROOT / "bench" / "by-hand-boot.sh")], {}),
            "supervisor run": (SUPERVISOR, {}),
            "supervisor run, no early start": (SUPERVISOR, {"SUPERVISOR_EARLY_START": "off"}),
        }  # fmt: skip
        runs: dict[str, list[Boot]] = {w: [] for w in ways}
        order = list(ways)
        for _ in range(args.runs):
            for way in order:
                db = r.fresh()
                argv, extra = ways[way]
                runs[way].append(boot(argv, {**r.env_for(db), **extra}, r.project, r.port))
            order = order[1:] + order[:1]
    print()
    print(table(f"Cold boot, empty database to 200 from /server/ping, medians of {args.runs}:", runs,
                [BY_HAND, OFFICIAL]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
