"""End to end through a real PgBouncer in session mode: the supervisor and Directus both connect through it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from supervisor.ledger import quote_table
from supervisor.settings import Settings
from tests.conftest import Database, PgServer, finish, start_supervisor
from tests.pgbouncer import PgBouncer


@pytest.fixture
def session_pool(pg: PgServer) -> Iterator[PgBouncer]:
    """PgBouncer in front of the test server, pool_mode = session."""
    bouncer = PgBouncer(pg.host, pg.port, pg.user, pg.password, pool_mode="session", pool_size=40).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


async def test_three_replicas_migrate_through_a_session_pool(
    fleet: Database, conn: asyncpg.Connection, project: Path, session_pool: PgBouncer
):
    """Three full `migrate` runs at once (SQL phases, bootstrap, schema apply) through PgBouncer in session mode
    all succeed; bootstrap and the schema apply run once, and every SQL file is recorded once."""
    env = fleet.env(DB_HOST="127.0.0.1", DB_PORT=str(session_pool.port))
    procs = [await start_supervisor("migrate", env=env, cwd=project) for _ in range(3)]
    results = await asyncio.gather(*(finish(p, timeout=300) for p in procs))
    assert [r.code for r in results] == [0, 0, 0], [r.stderr[-3000:] for r in results if r.code]
    assert len([e for r in results for e in r.events("step.applied") if e["phase"] == "schema-apply"]) == 1
    assert len([e for r in results for e in r.events("bootstrap.running")]) == 1
    files = sorted(p.name for d in ("db-init", "db-init-post") for p in (project / d).glob("*.sql"))
    applied = [e["file"] for r in results for e in r.events("step.applied") if e["phase"].endswith("-schema")]
    assert sorted(applied) == files
    table = quote_table(Settings.load(env).tracking_table)
    rows = await conn.fetch(f"SELECT filename, count(*) AS n FROM {table} GROUP BY filename")
    assert {r["filename"]: r["n"] for r in rows} == dict.fromkeys(files, 1)
    assert await conn.fetchval("SELECT count(*) FROM directus_collections") > 0
