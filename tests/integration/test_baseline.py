"""`baseline [--until FILE]` (issue 12, item 4) against a real Postgres, the supervisor run as a process: pending
files recorded as applied without running them, under the locks, once; `migrate` then applies only the rest."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from tests.conftest import Database, Layout, finish, start_supervisor, supervise

# Each file fails if it runs: a baselined file must never run.
BOOM = "SELECT 1/0;"


def _layout(layout: Layout) -> None:
    layout.add("pre", "001_a.sql", BOOM)
    layout.add("pre", "002_b.sql", "-- supervisor: no-transaction\nSELECT 1/0;")
    layout.add("post", "101_c.sql", BOOM)
    layout.add("post", "102_d.sql", "CREATE TABLE d (id int);")


async def _rows(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    if not await conn.fetchval("SELECT to_regclass('supervisor.migrations_applied')"):
        return {}
    return {r["filename"]: r for r in await conn.fetch("SELECT * FROM supervisor.migrations_applied")}


async def test_baseline_records_everything_pending_without_running_it(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """All pending files of both folders are recorded (checksum, phase, NULL duration, applied_by marked) without
    running any; the no-transaction file is recorded as fully applied; stdout lists them; `status` marks them
    baselined; a second baseline records nothing; `migrate` then applies only a file added since."""
    _layout(layout)
    r = await supervise("baseline", env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == [
        "pre-schema   recorded         001_a.sql",
        "pre-schema   recorded         002_b.sql",
        "post-schema  recorded         101_c.sql",
        "post-schema  recorded         102_d.sql",
        "4 file(s) recorded as applied without running them; ledger: supervisor.migrations_applied",
    ]
    rows = await _rows(conn)
    assert sorted(rows) == ["001_a.sql", "002_b.sql", "101_c.sql", "102_d.sql"]
    assert {n: r["phase"] for n, r in rows.items()} == {
        "001_a.sql": "pre-schema", "002_b.sql": "pre-schema", "101_c.sql": "post-schema", "102_d.sql": "post-schema",
    }  # fmt: skip
    assert all(r["status"] == "applied" and r["duration_ms"] is None for r in rows.values())
    assert all(
        r["applied_by"].endswith(" (baseline)") and r["checksum"].startswith("sha256:") for r in rows.values()
    )
    assert await conn.fetchval("SELECT to_regclass('d')") is None  # nothing ran

    st = json.loads((await supervise("status", "--json", env=db.env(), cwd=layout.root)).stdout)
    history = [h for p in st["phases"] for h in p.get("applied_files", [])]
    assert [(h["file"], h["baselined"]) for h in history] == [
        ("001_a.sql", True), ("002_b.sql", True), ("101_c.sql", True), ("102_d.sql", True),
    ]  # fmt: skip
    text = (await supervise("status", env=db.env(), cwd=layout.root)).stdout
    assert text.count(" baselined\n") == 4

    again = await supervise("baseline", env=db.env(), cwd=layout.root)
    assert again.code == 0, again.stderr
    assert "pre-schema   already applied  001_a.sql" in again.stdout
    assert again.stdout.endswith("0 file(s) recorded as applied without running them; ledger: "
                                 "supervisor.migrations_applied\n")  # fmt: skip

    layout.add("post", "103_e.sql", "CREATE TABLE e (id int);")
    m = await supervise("migrate", "--only", "post-schema", env=db.env(), cwd=layout.root)
    assert m.code == 0, m.stderr
    assert [e["file"] for e in m.events("step.applied")] == ["103_e.sql"]
    m = await supervise("migrate", "--only", "pre-schema", env=db.env(), cwd=layout.root)
    assert m.code == 0, m.stderr  # the no-transaction file is not half-applied
    assert m.events("step.applied") == []


async def test_baseline_until_a_file_then_migrate_applies_the_rest(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """`--until FILE` of the post-schema folder records every pre-schema file and the post-schema files up to and
    including FILE (given as a path here); `migrate` then runs only the file after it."""
    _layout(layout)
    r = await supervise("baseline", "--until", "db-init-post/101_c.sql", env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert sorted(await _rows(conn)) == ["001_a.sql", "002_b.sql", "101_c.sql"]
    assert "(up to and including 101_c.sql)" in r.stdout
    m = await supervise("migrate", "--only", "pre-schema", env=db.env(), cwd=layout.root)
    assert m.code == 0 and m.events("step.applied") == [], m.stderr
    m = await supervise("migrate", "--only", "post-schema", env=db.env(), cwd=layout.root)
    assert m.code == 0, m.stderr
    assert [e["file"] for e in m.events("step.applied")] == ["102_d.sql"]
    assert await conn.fetchval("SELECT to_regclass('d')") == "d"


async def test_baseline_until_a_pre_schema_file_leaves_post_schema_alone(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """`--until 001_a.sql` (a basename): just that file; the pre-schema file after it and the post-schema folder stay
    pending."""
    _layout(layout)
    r = await supervise("baseline", "--until", "001_a.sql", env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert sorted(await _rows(conn)) == ["001_a.sql"]
    pre = json.loads((await supervise("status", "--json", env=db.env(), cwd=layout.root)).stdout)["phases"]
    assert {p["phase"]: p["pending"] for p in pre if "pending" in p} == {
        "pre-schema": ["002_b.sql"], "post-schema": ["101_c.sql", "102_d.sql"],
    }  # fmt: skip


async def test_baseline_until_a_file_that_does_not_exist_is_refused(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A FILE in neither folder (a typo, or a path elsewhere with a matching name) exits 2 before connecting;
    nothing is recorded, no ledger created."""
    _layout(layout)
    (layout.root / "elsewhere").mkdir()
    (layout.root / "elsewhere" / "001_a.sql").write_text(BOOM)
    for until in ("003_nope.sql", "elsewhere/001_a.sql"):
        r = await supervise("baseline", "--until", until, env=db.env(), cwd=layout.root)
        assert r.code == 2, r.stderr
        assert r.failure["error_code"] == "BASELINE_FILE_MISSING"
        assert r.failure["error"].startswith(
            f"baseline --until {until}: no such file in db-init or db-init-post."
        )
        assert r.events("db.connected") == []
    assert await conn.fetchval("SELECT to_regnamespace('supervisor')") is None


async def test_baseline_refuses_a_changed_applied_file(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """An applied file changed since: exit 5 (CHECKSUM_MISMATCH) as `migrate` would, and nothing is recorded (a
    baseline must not hide the change)."""
    layout.add("pre", "001.sql", "SELECT 1;")
    assert (await supervise("migrate", "--only", "pre-schema", env=db.env(), cwd=layout.root)).code == 0
    layout.add("pre", "001.sql", "SELECT 11;")
    layout.add("pre", "002.sql", BOOM)
    r = await supervise("baseline", env=db.env(), cwd=layout.root)
    assert r.code == 5, r.stderr
    assert r.failure["error_code"] == "CHECKSUM_MISMATCH"
    assert sorted(await _rows(conn)) == ["001.sql"]


async def test_two_baselines_at_once_record_each_file_once(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Two baselines started together: both exit 0, each file is recorded by exactly one of them."""
    for i in range(20):
        layout.add("pre" if i < 10 else "post", f"{i:03d}.sql", BOOM)
    procs = [await start_supervisor("baseline", env=db.env(), cwd=layout.root) for _ in range(2)]
    results = await asyncio.gather(*(finish(p) for p in procs))
    assert [r.code for r in results] == [0, 0], [r.stderr for r in results]
    recorded = [e["file"] for r in results for e in r.events("baseline.recorded")]
    assert sorted(recorded) == [f"{i:03d}.sql" for i in range(20)]
    assert await conn.fetchval("SELECT count(*) FROM supervisor.migrations_applied") == 20


async def test_baseline_records_a_changed_repeatable_file_without_running_it(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A repeatable file changed since it ran is pending for `migrate` (a re-run); `baseline` records its new
    version without running it, so `migrate` then re-runs nothing. An unchanged repeatable file is left alone."""
    layout.add("pre", "001_v.sql", "-- supervisor: repeatable\nCREATE OR REPLACE VIEW v AS SELECT 1 AS one;")
    layout.add("pre", "002_w.sql", "-- supervisor: repeatable\nCREATE OR REPLACE VIEW w AS SELECT 2 AS two;")
    assert (await supervise("migrate", "--only", "pre-schema", env=db.env(), cwd=layout.root)).code == 0
    before = await _rows(conn)
    layout.add("pre", "001_v.sql", "-- supervisor: repeatable\n" + BOOM)
    r = await supervise("baseline", env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    after = await _rows(conn)
    assert [e["file"] for e in r.events("baseline.recorded")] == ["001_v.sql"]
    assert after["001_v.sql"]["checksum"] != before["001_v.sql"]["checksum"]
    assert after["001_v.sql"]["duration_ms"] is None
    assert after["002_w.sql"]["checksum"] == before["002_w.sql"]["checksum"]
    assert after["002_w.sql"]["applied_at"] == before["002_w.sql"]["applied_at"]
    assert await conn.fetchval("SELECT one FROM v") == 1  # the new version (a division by zero) never ran
    m = await supervise("migrate", "--only", "pre-schema", env=db.env(), cwd=layout.root)
    assert m.code == 0 and m.events("step.applied") == [], m.stderr
