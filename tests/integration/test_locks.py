"""Advisory locks and concurrency against a real Postgres: waiting with the holder named, timeouts, a lost
lock, many replicas at once, kill -9 and SIGTERM mid-run."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import asyncpg
import pytest

from supervisor.lock import CLASSID
from tests.conftest import Database, Layout, finish, start_supervisor, supervise

PRE = ("migrate", "--only", "pre-schema")


async def _backend_of(
    conn: asyncpg.Connection, proc: asyncio.subprocess.Process, query: str = "pg_sleep"
) -> int:
    """The pid of the supervisor's backend once it runs `query` (application_name is host:pid)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1 AND query LIKE $2",
            f"%:{proc.pid}",
            f"%{query}%",
        )
        if pid:
            return int(pid)
        await asyncio.sleep(0.05)
    raise AssertionError("the supervisor never reached the sleeping statement")


async def test_waits_naming_the_holder_then_times_out(db: Database, conn: asyncpg.Connection, layout: Layout):
    """While another session holds the phase lock the supervisor logs who (pid, application_name, client_addr,
    since) and exits 6 (LOCK_TIMEOUT) after the lock timeout, having applied nothing."""
    layout.add("pre", "001.sql", "CREATE TABLE t (id int);")
    holder = await asyncpg.connect(db.dsn, server_settings={"application_name": "other-replica:42"})
    try:
        await holder.execute("SELECT pg_advisory_lock($1, 1)", CLASSID)
        r = await supervise(*PRE, env=db.env(SUPERVISOR_LOCK_TIMEOUT="1.5"), cwd=layout.root)
        assert r.code == 6
        assert r.failure["error_code"] == "LOCK_TIMEOUT"
        waiting = r.events("lock.waiting")
        assert waiting and waiting[0]["lock"] == "pre-schema"
        who = waiting[0]["holders"][0]
        assert who["application_name"] == "other-replica:42"
        assert who["pid"] == await holder.fetchval("SELECT pg_backend_pid()")
        assert who["client_addr"] == "127.0.0.1" and who["since"]
        assert "other-replica:42" in r.failure["error"]
        assert await conn.fetchval("SELECT to_regclass('t')") is None
    finally:
        await holder.close()


async def test_waits_then_proceeds_when_the_holder_lets_go(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A replica that finds the lock taken waits, then runs once it is free."""
    layout.add("pre", "001.sql", "CREATE TABLE t (id int);")
    holder = await asyncpg.connect(db.dsn)
    await holder.execute("SELECT pg_advisory_lock($1, 1)", CLASSID)
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    await _backend_of(conn, proc, "pg_try_advisory_lock")  # it is polling (on a loaded machine, not at once)
    await asyncio.sleep(0.3)
    await holder.close()
    r = await finish(proc)
    assert r.code == 0, r.stderr
    assert r.events("lock.waiting")
    assert await conn.fetchval("SELECT to_regclass('t')") is not None


async def test_session_settings_and_lock_are_visible_while_running(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """The supervisor's session is named host:pid, holds (CLASSID, phase) and runs with keepalives and
    client_connection_check_interval, so a killed supervisor does not keep the lock."""
    layout.add(
        "pre",
        "001.sql",
        "DO $$ BEGIN\n"
        "  IF current_setting('client_connection_check_interval') <> '2s'\n"
        "     OR current_setting('tcp_keepalives_idle') <> '10' THEN\n"
        "    RAISE EXCEPTION 'session settings missing';\n"
        "  END IF;\nEND $$;\nSELECT pg_sleep(1.5);",
    )
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    pid = await _backend_of(conn, proc)
    name = await conn.fetchval("SELECT application_name FROM pg_stat_activity WHERE pid = $1", pid)
    assert name.endswith(f":{proc.pid}")
    held = await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = 1 AND pid = $2",
        CLASSID,
        pid,
    )
    assert held == 1
    r = await finish(proc)
    assert r.code == 0, r.stderr


async def test_lost_connection_stops_the_phase(db: Database, conn: asyncpg.Connection, layout: Layout):
    """If the session (and so the lock) is killed mid-file, the phase stops with exit 3 (CONNECTION_LOST) and the
    file's work is rolled back; the next run applies it."""
    layout.add("pre", "001.sql", "CREATE TABLE first (id int);")
    layout.add("pre", "002.sql", "CREATE TABLE second (id int);\nSELECT pg_sleep(30);")
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    backend = await _backend_of(conn, proc)
    # Both files travel in one batch, whose whole text is the backend's query from the start: wait for 001.sql's
    # commit (its table visible here) so the kill lands in 002.sql's sleep, not before 001.sql ran.
    deadline = time.monotonic() + 20
    while await conn.fetchval("SELECT to_regclass('first')") is None:
        assert time.monotonic() < deadline, "001.sql never committed"
        await asyncio.sleep(0.02)
    await conn.execute("SELECT pg_terminate_backend($1)", backend)
    r = await finish(proc)
    assert r.code == 3, r.stderr
    assert r.failure["error_code"] == "CONNECTION_LOST"
    assert "002.sql" in r.failure["error"]
    assert await conn.fetchval("SELECT to_regclass('second')") is None
    assert await conn.fetchval("SELECT count(*) FROM supervisor.migrations_applied") == 1


async def test_lock_released_under_the_phase_is_reported(db: Database, layout: Layout):
    """If the lock is found released when the phase ends (here a migration released it by its number;
    `pg_advisory_unlock_all()` is refused before the phase runs), the run fails with exit 2 (LOCK_NOT_HELD) and says
    the work may have run unprotected."""
    from supervisor.lock import CLASSID

    layout.add("pre", "001.sql", f"SELECT pg_advisory_unlock({CLASSID}, 1);")
    layout.add("pre", "002.sql", "CREATE TABLE t (id int);")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 2
    assert r.failure["error_code"] == "LOCK_NOT_HELD"
    assert "may have run unprotected" in r.failure["error"]


async def test_a_file_on_another_backend_than_the_lock_is_rolled_back(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Each file's transaction proves it runs on the backend that holds the lock (what PgBouncer transaction
    pooling breaks); if not, the file is rolled back and the error says why (exit 2, TRANSACTION_POOLER)."""
    from phases.base import PhaseContext
    from phases.sql import SqlFolders, SqlPhase
    from supervisor.errors import ConfigError
    from supervisor.lock import PhaseLock
    from supervisor.log import get_logger
    from supervisor.settings import Settings

    layout.add("pre", "001.sql", "CREATE TABLE t (id int);")
    settings = Settings.load(db.env())
    phase = SqlPhase("pre-schema", layout.pre, "SUPERVISOR_DB_INIT_DIR", SqlFolders(layout.pre, layout.post),
                     "supervisor.migrations_applied")  # fmt: skip
    elsewhere = PhaseLock(conn, "pre-schema", 1, backend_pid=1)  # as if the lock were on another backend
    ctx = PhaseContext(settings=settings, conn=conn, lock=elsewhere, log=get_logger())
    steps = await phase.pending(ctx)
    with pytest.raises(ConfigError, match="not held by the backend this statement ran on") as e:
        _ = [done async for done in phase.apply(ctx, steps)]
    assert e.value.error_code == "TRANSACTION_POOLER"
    assert "pool_mode = session" in e.value.message
    assert await conn.fetchval("SELECT to_regclass('t')") is None
    assert await conn.fetchval("SELECT count(*) FROM supervisor.migrations_applied") == 0
    assert not conn.is_in_transaction()


async def test_ten_concurrent_replicas_apply_each_file_exactly_once(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Ten `migrate` processes started together on a fresh database (no tracking table yet) all succeed, and
    every file of both SQL phases runs exactly once."""
    layout.add("pre", "000_log.sql", "CREATE TABLE ran (file text);")
    for i in range(1, 6):
        layout.add("pre", f"00{i}_pre.sql", f"INSERT INTO ran VALUES ('pre{i}'); SELECT pg_sleep(0.05);")
        layout.add("post", f"10{i}_post.sql", f"INSERT INTO ran VALUES ('post{i}');")
    for phase in ("pre-schema", "post-schema"):
        procs = [
            await start_supervisor("migrate", "--only", phase, env=db.env(), cwd=layout.root)
            for _ in range(10)
        ]
        results = await asyncio.gather(*(finish(p) for p in procs))
        assert [r.code for r in results] == [0] * 10, [r.stderr for r in results if r.code]
        assert sum(len(r.events("step.applied")) for r in results) == (6 if phase == "pre-schema" else 5)
    counts = {r["file"]: r["count"] for r in await conn.fetch("SELECT file, count(*) FROM ran GROUP BY file")}
    assert counts == {**{f"pre{i}": 1 for i in range(1, 6)}, **{f"post{i}": 1 for i in range(1, 6)}}
    assert await conn.fetchval("SELECT count(*) FROM supervisor.migrations_applied") == 11


async def test_kill_9_mid_run_then_clean_recovery(db: Database, conn: asyncpg.Connection, layout: Layout):
    """A supervisor killed with SIGKILL mid-file leaves no partial file and no lock for long: the next run
    takes the lock and applies each file exactly once."""
    layout.add("pre", "001.sql", "CREATE TABLE ran (file text); INSERT INTO ran VALUES ('001');")
    layout.add("pre", "002.sql", "INSERT INTO ran VALUES ('002');\nSELECT pg_sleep(60);")
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    await _backend_of(conn, proc)
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    (layout.pre / "002.sql").write_text("INSERT INTO ran VALUES ('002');\nSELECT pg_sleep(0);")
    # The checksum of 002 changed, but it was never recorded, so this is a plain pending file.
    t0 = time.monotonic()
    r = await supervise(*PRE, env=db.env(SUPERVISOR_LOCK_TIMEOUT="30"), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert time.monotonic() - t0 < 15  # the dead session's lock went away within seconds
    rows = await conn.fetch("SELECT file, count(*) FROM ran GROUP BY file")
    assert {r["file"]: r["count"] for r in rows} == {"001": 1, "002": 1}


async def test_kill_9_inside_a_no_transaction_file_is_refused_next_run(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A crash part-way through a no-transaction file is detected next boot: exit 5 with instructions, and the
    committed statements are not re-run."""
    layout.add(
        "pre",
        "001.sql",
        "-- supervisor: no-transaction\nCREATE TABLE t1 (id int);\nSELECT pg_sleep(60);\n"
        "CREATE TABLE t2 (id int);",
    )
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    await _backend_of(conn, proc)
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    r = await supervise(*PRE, env=db.env(SUPERVISOR_LOCK_TIMEOUT="30"), cwd=layout.root)
    assert r.code == 5
    assert r.failure["error_code"] == "HALF_APPLIED"
    assert "only 1 of 3 statements" in r.failure["error"]
    assert await conn.fetchval("SELECT to_regclass('t2')") is None


async def test_sigterm_mid_file_rolls_back_and_releases_the_lock(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """SIGTERM during a file exits 143 within seconds, rolls the file back and leaves the lock free."""
    layout.add("pre", "001.sql", "CREATE TABLE t (id int);\nSELECT pg_sleep(60);")
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    await _backend_of(conn, proc)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=15)
    assert r.code == 143, r.stderr
    assert time.monotonic() - t0 < 6
    assert r.failure["error_code"] == "INTERRUPTED"
    assert await conn.fetchval("SELECT to_regclass('t')") is None
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1", CLASSID
        )
        == 0
    )
