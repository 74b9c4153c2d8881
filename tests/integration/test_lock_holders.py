"""Advisory locks are per database: on a server shared by several databases, the supervisor names (and offers to
`pg_terminate_backend`) only holders of its lock in its own database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from supervisor.lock import CLASSID, _timeout
from tests.conftest import Database, Layout, PgServer, supervise

PRE = ("migrate", "--only", "pre-schema")


@pytest.fixture
async def other_db(pg: PgServer) -> AsyncIterator[str]:
    """A second database on the same server (another project's)."""
    name = f"other_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _hold(pg: PgServer, database: str, app: str) -> asyncpg.Connection:
    c = await asyncpg.connect(pg.dsn(database), server_settings={"application_name": app})
    await c.execute(f"SELECT pg_advisory_lock({CLASSID}, 1)")
    return c


async def test_the_same_lock_in_another_database_does_not_block(
    db: Database, conn: asyncpg.Connection, layout: Layout, pg: PgServer, other_db: str
):
    """The pre-schema lock held in another database of the server is a different lock: the supervisor takes its own
    at once, waits for nobody, and applies its file."""
    layout.add("pre", "001.sql", "CREATE TABLE t (id int);")
    other = await _hold(pg, other_db, "other-project:7")
    try:
        r = await supervise(*PRE, env=db.env(SUPERVISOR_LOCK_TIMEOUT="5"), cwd=layout.root)
    finally:
        await other.close()
    assert r.code == 0, r.stderr
    assert not r.events("lock.waiting")
    assert await conn.fetchval("SELECT to_regclass('t')") is not None


async def test_only_holders_in_this_database_are_named(
    db: Database, conn: asyncpg.Connection, layout: Layout, pg: PgServer, other_db: str
):
    """With the lock held both in another database and in this one, the waiting log and the timeout message name
    only this database's holder, and only its pid is offered to pg_terminate_backend."""
    layout.add("pre", "001.sql", "CREATE TABLE t (id int);")
    other = await _hold(pg, other_db, "other-project:7")
    mine = await _hold(pg, db.name, "stuck-replica:9")
    try:
        other_pid = await other.fetchval("SELECT pg_backend_pid()")
        mine_pid = await mine.fetchval("SELECT pg_backend_pid()")
        r = await supervise(*PRE, env=db.env(SUPERVISOR_LOCK_TIMEOUT="1.5"), cwd=layout.root)
    finally:
        await other.close()
        await mine.close()
    assert r.code == 6, r.stderr
    waiting = r.events("lock.waiting")
    assert waiting
    for event in waiting:
        assert [h["pid"] for h in event["holders"]] == [mine_pid]
        assert [h["application_name"] for h in event["holders"]] == ["stuck-replica:9"]
    error = r.failure["error"]
    assert f"pid {mine_pid} (stuck-replica:9" in error and "pg_terminate_backend" in error
    assert str(other_pid) not in error and "other-project" not in error
    assert await conn.fetchval("SELECT to_regclass('t')") is None


def test_timeout_without_a_visible_holder_suggests_no_termination():
    """When no holder can be seen in this database (it let go just now), the message offers no pid to end."""
    message = _timeout("pre-schema", 2.0, []).message
    assert "pg_terminate_backend" not in message
    assert "another session of this database" in message
