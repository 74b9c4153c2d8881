"""Reports against a real Postgres: per-file timing inside a batch, who applied what in `status`, `plan --check`."""

from __future__ import annotations

import itertools
import json
import socket

import asyncpg

from tests.conftest import Database, Layout, finish, start_supervisor, supervise

PRE = ("migrate", "--only", "pre-schema")


async def test_each_file_of_a_batch_gets_its_own_duration_and_applied_at(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Three files of 0.2 s each, in one batch, are recorded with about 200 ms each (not the batch's running total
    200/400/600) and with their own `applied_at`, also when a file SETs things the session reset undoes."""
    for i in range(3):
        layout.add(
            "pre", f"00{i}_slow.sql", f"SET search_path TO pg_catalog; SELECT pg_sleep(0.2); SELECT {i};"
        )
    run = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert run.code == 0, run.stderr
    rows = await conn.fetch(
        "SELECT filename, duration_ms, applied_at FROM migrations_applied ORDER BY filename"
    )
    durations = [r["duration_ms"] for r in rows]
    assert all(180 <= d < 350 for d in durations), durations
    assert [e["duration_ms"] for e in run.events("step.applied")] == durations  # the log says the same
    stamps = [r["applied_at"] for r in rows]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert all(g >= 0.18 for g in gaps), gaps


async def test_status_shows_who_applied_each_file_and_when(db: Database, layout: Layout):
    """`status --json` and the table name each applied file's `applied_at`, `applied_by` (host:pid) and duration."""
    layout.add("pre", "001_a.sql", "CREATE TABLE a (id int);")
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    assert (await finish(proc)).code == 0
    by = f"{socket.gethostname()}:{proc.pid}"[:63]

    report = await supervise("status", "--json", env=db.env(), cwd=layout.root)
    assert report.code == 0, report.stderr
    pre = next(p for p in json.loads(report.stdout)["phases"] if p["phase"] == "pre-schema")
    [entry] = pre["applied_files"]
    assert entry["file"] == "001_a.sql" and entry["applied_by"] == by
    assert entry["applied_at"].startswith("20") and isinstance(entry["duration_ms"], int)

    table = await supervise("status", env=db.env(), cwd=layout.root)
    assert table.code == 0, table.stderr
    line = next(ln for ln in table.stdout.splitlines() if "001_a.sql" in ln)
    assert by in line and entry["applied_at"] in line and f"{entry['duration_ms']} ms" in line
