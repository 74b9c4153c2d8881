"""Benchmark: upgrade boot, the Directus version changed on a database the fleet app is already on.

Simulated on one Directus (12.4.0) by making each side believe an upgrade happened: the supervisor's records say
the last bootstrap and apply were by 12.3.1, so it runs `bootstrap` (Directus's migrations), the guarded schema apply
and `start`; by hand, an operator upgrading runs `bootstrap && schema apply && start`. Both do the same Directus work:
Directus's own migrations find nothing pending (the database is on 12.4.0's already) and the snapshot is unchanged.
A real 11.x -> 12.x upgrade adds the same migration time to both sides. Each boot gets a copy of one migrated
database; the order rotates each round. Prints a Markdown table.

    .venv/bin/python bench/upgrade_boot.py [--runs 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from bootlib import SUPERVISOR, Boot, boot, header, rig, table

BY_HAND = "by hand"
OFFICIAL = "official image"
# Wherever the supervisor keeps supervisor_state (its schema depends on the tracking table setting).
_FORGET_VERSION = """DO $$ BEGIN EXECUTE format('UPDATE %s SET directus_version = ''12.3.1''',
  (SELECT c.oid::regclass FROM pg_class c WHERE c.relname = 'supervisor_state' AND c.relkind = 'r')); END $$"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(header("Upgrade boot"), flush=True)
    with rig() as r:
        migrated = r.fresh()
        subprocess.run([*SUPERVISOR[:-1], "migrate"], env=r.env_for(migrated), cwd=r.project, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        by_hand = (
            f"{r.cli} bootstrap && {r.cli} schema apply --yes snapshots/schema.yaml && exec {r.cli} start"
        )
        ways = {
            BY_HAND: ["bash", "-c", by_hand],
            OFFICIAL: ["bash", "-c", f"{r.cli} bootstrap && exec {r.cli} start"],
            "supervisor run": SUPERVISOR,
        }  # fmt: skip
        runs: dict[str, list[Boot]] = {w: [] for w in ways}
        order = list(ways)
        for _ in range(args.runs):
            for way in order:
                db = r.fresh(template=migrated)
                r.psql(_FORGET_VERSION, db)
                runs[way].append(boot(ways[way], r.env_for(db), r.project, r.port))
            order = order[1:] + order[:1]
    print()
    print(
        table(f"Upgrade boot (recorded Directus version changed), medians of {args.runs}:", runs, [BY_HAND])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
