"""Benchmark: warm boot, a fully migrated database to the first 200 from /server/ping, with the real Directus.

    bare start: `directus start` alone, the floor;
    official image: `directus bootstrap && directus start`;
    supervisor run: `python -m supervisor run` (checks the records while Node loads Directus's modules: the early
    start, supervisor/early.py);
and with `--node22-bin DIR --directus22 DIR` (a Node 22 and a Directus installed for it) the same on Node 22:
    bare start, Node 22: no compile cache, as the official image runs it;
    bare start, Node 22 + compile cache: NODE_COMPILE_CACHE set by hand, warmed;
    supervisor run, Node 22: its default compile cache (SUPERVISOR_NODE_COMPILE_CACHE), warmed;
    supervisor run, Node 22, no early start: the same with SUPERVISOR_EARLY_START=off (Node starts after the checks).
The compile caches are warmed by an unmeasured boot each. The order rotates each round. Prints a Markdown table.

    .venv/bin/python bench/warm_boot.py [--runs 7] [--node22-bin DIR --directus22 DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bootlib import SUPERVISOR, Boot, boot, header, rig, table

BARE = "bare start"
BARE22 = "bare start, Node 22"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--node22-bin", type=Path, help="folder holding Node 22's `node`")
    ap.add_argument("--directus22", type=Path, help="a Directus install built for Node 22")
    args = ap.parse_args()
    if bool(args.node22_bin) != bool(args.directus22):
        ap.error("--node22-bin and --directus22 go together")
    print(header("Warm boot"), flush=True)
    with rig() as r:
        db = r.fresh()
        ways: dict[str, tuple[list[str], dict[str, str]]] = {
            BARE: (["bash", "-c", f"exec {r.cli} start"], r.env_for(db)),
            "official image": (["bash", "-c", f"{r.cli} bootstrap && exec {r.cli} start"], r.env_for(db)),
            "supervisor run": (SUPERVISOR, r.env_for(db, SUPERVISOR_NODE_COMPILE_CACHE=str(r.work / "cc20"))),
        }
        if args.node22_bin:
            n22 = {"install": args.directus22, "node_bin": args.node22_bin}
            cli22 = r.env_for(db, **n22)["SUPERVISOR_DIRECTUS_CMD"]
            ways[BARE22] = (["bash", "-c", f"exec {cli22} start"], r.env_for(db, **n22))
            ways["bare start, Node 22 + compile cache"] = (
                ["bash", "-c", f"exec {cli22} start"],
                r.env_for(db, **n22, NODE_COMPILE_CACHE=str(r.work / "cc-bare22")),
            )
            ways["supervisor run, Node 22"] = (
                SUPERVISOR, r.env_for(db, **n22, SUPERVISOR_NODE_COMPILE_CACHE=str(r.work / "cc22"))
            )  # fmt: skip
            ways["supervisor run, Node 22, no early start"] = (
                SUPERVISOR,
                r.env_for(
                    db,
                    **n22,
                    SUPERVISOR_NODE_COMPILE_CACHE=str(r.work / "cc22"),
                    SUPERVISOR_EARLY_START="off",
                ),
            )
        argv, env = ways["supervisor run"]
        first = boot(argv, env, r.project, r.port)  # migrates the database
        assert first.seconds is not None, "the first (cold) supervisor boot did not come up"
        for argv, env in ways.values():  # warms every compile cache
            assert boot(argv, env, r.project, r.port).seconds is not None, f"{argv} did not come up"
        runs: dict[str, list[Boot]] = {w: [] for w in ways}
        order = list(ways)
        for _ in range(args.runs):
            for way in order:
                argv, env = ways[way]
                runs[way].append(boot(argv, env, r.project, r.port))
            order = order[1:] + order[:1]
    bases = [BARE, BARE22] if args.node22_bin else [BARE]
    print()
    print(
        table(f"Warm boot, migrated database to 200 from /server/ping, medians of {args.runs}:", runs, bases)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
