"""Behind a real PgBouncer (Debian's `pgbouncer`): session pooling works; transaction pooling breaks session advisory
locks, so the supervisor refuses it (exit 2, TRANSACTION_POOLER) and, whatever the timing, never applies a file twice
or outside its lock, and never crashes on a driver error (exit 1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import pytest

from supervisor.lock import CLASSID
from tests.conftest import Database, Layout, PgServer, finish, start_supervisor, supervise
from tests.pgbouncer import PgBouncer

PRE = ("migrate", "--only", "pre-schema")
FILES = 6


def _bouncer(pg: PgServer, mode: str) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(pg.host, pg.port, pg.user, pg.password, pool_mode=mode).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="module")
def transaction_pool(pg: PgServer) -> Iterator[PgBouncer]:
    """PgBouncer in front of the test server, pool_mode = transaction."""
    yield from _bouncer(pg, "transaction")


@pytest.fixture(scope="module")
def session_pool(pg: PgServer) -> Iterator[PgBouncer]:
    """PgBouncer in front of the test server, pool_mode = session."""
    yield from _bouncer(pg, "session")


def _via(db: Database, bouncer: PgBouncer, **overrides: str) -> dict[str, str]:
    return db.env(DB_HOST="127.0.0.1", DB_PORT=str(bouncer.port), **overrides)


# Each file records the backend it ran on and whether that backend held its phase's lock (CLASSID, 1 pre-schema or
# 3 post-schema) in this database while the file ran. The row commits only with the file.
_RECORD = (
    "INSERT INTO ran SELECT '{name}', pg_backend_pid(), EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = {classid} "
    "AND objid = {objid} AND objsubid = 2 AND granted AND pid = pg_backend_pid());\n"
)
PHASES = ("pre-schema", "post-schema")
ALL_FILES = [f"00{i}.sql" for i in range(1, FILES + 1)] + [f"10{i}.sql" for i in range(1, FILES + 1)]


async def _arrange(conn: asyncpg.Connection, layout: Layout) -> None:
    await conn.execute("CREATE TABLE ran (file text, backend int, held bool)")
    for folder, prefix, objid in (("pre", "00", 1), ("post", "10", 3)):
        for i in range(1, FILES + 1):
            name = f"{prefix}{i}.sql"
            sql = (
                f"CREATE TABLE t{prefix}{i} (id int);\n"
                + _RECORD.format(name=name, classid=CLASSID, objid=objid)
                + "SELECT pg_sleep(0.05);"
            )
            layout.add(folder, name, sql)


async def _replicas(
    env: dict[str, str], layout: Layout, n: int = 3, phases: tuple[str, ...] = ("pre-schema",)
) -> list[tuple[int, str, str]]:
    """`n` replicas at once per phase, phase after phase, as init containers of one rollout would run them."""
    out = []
    for phase in phases:
        procs = [
            await start_supervisor("migrate", "--only", phase, env=env, cwd=layout.root) for _ in range(n)
        ]
        out += await _finish_all(procs)
    return out


async def _finish_all(procs: list[asyncio.subprocess.Process]) -> list[tuple[int, str, str]]:
    results = await asyncio.gather(*(finish(p, timeout=90) for p in procs))
    return [
        (r.code, r.failure["error_code"] if r.code else "", r.failure["error"] if r.code else "")
        for r in results
    ]


async def _applied(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], dict[str, int]]:
    ran = await conn.fetch("SELECT file, backend, held FROM ran ORDER BY file")
    recorded: dict[str, int] = {}
    if await conn.fetchval("SELECT to_regclass('supervisor.migrations_applied')"):
        rows = await conn.fetch(
            "SELECT filename, count(*) AS n FROM supervisor.migrations_applied GROUP BY filename"
        )
        recorded = {r["filename"]: r["n"] for r in rows}
    return ran, recorded


@pytest.mark.parametrize("trial", range(3))
async def test_transaction_pooling_never_applies_twice_or_unlocked(
    db: Database, conn: asyncpg.Connection, layout: Layout, transaction_pool: PgBouncer, trial: int
):
    """Three replicas `migrate` at once through PgBouncer in transaction mode (where the asyncpg prepared statements
    of two of them used to clash: exit 1). Each exits 0 or 2; a refusal is TRANSACTION_POOLER and says what to do;
    no file ran twice; every file that ran did so on the backend that held the lock, and is recorded exactly once."""
    await _arrange(conn, layout)
    results = await _replicas(_via(db, transaction_pool, SUPERVISOR_LOCK_TIMEOUT="60"), layout, phases=PHASES)
    # Exit 3 is allowed only as a connection the pooler closed: a refused replica ends the idle pooled server
    # connection that keeps its lock (else every replica would wait for it), and the pooler may be handing that
    # connection to another replica at that instant. Nothing is applied twice or unlocked either way (below).
    odd = [r for r in results if r[0] not in (0, 2) and not (r[0] == 3 and r[1] == "CONNECTION_LOST")]
    assert not odd, odd
    assert any(code == 2 for code, _, _ in results) or all(code == 0 for code, _, _ in results), results
    for code, error_code, error in results:
        if code == 2:
            assert error_code == "TRANSACTION_POOLER", error
            assert "pool_mode = session" in error and "DB_HOST" in error, error
            assert "PgBouncer" in error and "advisory locks" in error, error
    ran, recorded = await _applied(conn)
    files = [r["file"] for r in ran]
    assert len(files) == len(set(files)), ran  # at most once
    assert all(r["held"] for r in ran), ran  # never outside the lock
    assert recorded == dict.fromkeys(files, 1), (ran, recorded)  # what ran is recorded; nothing else is
    tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename ~ '^t[0-9]+$'")
    assert tables == len(files)  # no file's work outlived its refusal


async def test_a_pooled_backend_holding_the_lock_is_refused_before_any_file(
    db: Database, conn: asyncpg.Connection, layout: Layout, transaction_pool: PgBouncer
):
    """A client that took the phase lock through the transaction pool and went away leaves it on a pooled server
    connection, which the pool hands to the next client. A session lock is re-entrant, so taking it there would
    "succeed" while the lock belongs to someone else: the supervisor sees that this backend already holds it and
    refuses (exit 2, TRANSACTION_POOLER) before any file, naming the backend."""
    await _arrange(conn, layout)
    other = await asyncpg.connect(
        host="127.0.0.1",
        port=transaction_pool.port,
        user=db.server.user,
        password=db.server.password,
        database=db.name,
        statement_cache_size=0,
    )
    await other.execute(f"SELECT pg_advisory_lock({CLASSID}, 1)")
    holder = await other.fetchval("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 1")
    await other.close()  # PgBouncer keeps the server connection, and the lock with it, for the next client
    [(code, error_code, error)] = await _replicas(_via(db, transaction_pool), layout, n=1)
    assert (code, error_code) == (2, "TRANSACTION_POOLER"), error
    assert f"ran on backend {holder}, which already held the pre-schema lock" in error
    assert "pre-schema phase did not start" in error
    ran, recorded = await _applied(conn)
    assert not ran and not recorded


async def test_session_pooling_three_replicas_apply_each_file_once(
    db: Database, conn: asyncpg.Connection, layout: Layout, session_pool: PgBouncer
):
    """Through PgBouncer in session mode the locks hold: three replicas at once all exit 0, and each file runs
    once, on the backend that held the lock."""
    await _arrange(conn, layout)
    results = await _replicas(_via(db, session_pool), layout, phases=PHASES)
    assert [code for code, _, _ in results] == [0] * 6, results
    ran, recorded = await _applied(conn)
    assert [r["file"] for r in ran] == ALL_FILES
    assert all(r["held"] for r in ran)
    assert recorded == dict.fromkeys(ALL_FILES, 1)


async def test_a_pgbouncer_refusing_startup_parameters_is_a_config_error(
    db: Database, layout: Layout, pg: PgServer
):
    """PgBouncer's default configuration refuses the login because of the keepalive settings the supervisor sends:
    exit 2 at once (POOLER_STARTUP_PARAMETER) with the line to add to pgbouncer.ini, not a minute of retries."""
    layout.add("pre", "001.sql", "CREATE TABLE t (id int);")
    bouncer = PgBouncer(
        pg.host, pg.port, pg.user, pg.password, pool_mode="session", ignore_startup_parameters=""
    )
    bouncer.start()
    try:
        t0 = time.monotonic()
        r = await supervise(*PRE, env=_via(db, bouncer, SUPERVISOR_WAIT_TIMEOUT="30"), cwd=layout.root)
        elapsed = time.monotonic() - t0
    finally:
        bouncer.stop()
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "POOLER_STARTUP_PARAMETER"
    assert "unsupported startup parameter" in r.failure["error"]
    assert "ignore_startup_parameters = tcp_keepalives_idle,tcp_keepalives_interval" in r.failure["error"]
    assert elapsed < 15  # no retries until the wait budget is spent


@pytest.mark.parametrize(
    "sql",
    [
        "PREPARE s AS SELECT 1; PREPARE s AS SELECT 1",  # 42P05, as when two clients' statements share a backend
        "EXECUTE never_prepared",  # 26000, as when a statement's backend changed under it
    ],
)
async def test_prepared_statement_errors_are_refused_as_a_pooler(db: Database, sql: str):
    """A prepared statement that clashes or vanishes can only come from a pooler sharing backends between clients:
    whatever raises it on the supervisor's connection ends as exit 2 (TRANSACTION_POOLER), never exit 1."""
    from supervisor.db import connection
    from supervisor.errors import ConfigError
    from supervisor.log import get_logger
    from supervisor.settings import Settings

    settings = Settings.load(db.env())
    assert settings.db is not None
    with pytest.raises(ConfigError) as e:
        async with connection(settings.db, 10, get_logger()) as c:
            await c.execute(sql)
    assert e.value.error_code == "TRANSACTION_POOLER"
    assert e.value.code == 2
    assert "prepared statement" in e.value.message and "pool_mode = session" in e.value.message


async def test_a_batch_that_finds_no_progress_counter_is_refused_as_a_pooler(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A batch whose statements do not find the session's temporary progress counter ran on another backend than
    the session's (what a transaction pooler does between the counter's creation and the batch; simulated here by
    a file that drops the counter; `DISCARD` itself is refused before the phase runs): exit 2, TRANSACTION_POOLER, quoting the error, not a misattributed SQL
    error (exit 4) or a crash (exit 1). The file before it stays applied; the failing one was rolled back."""
    layout.add("pre", "001.sql", "CREATE TABLE first (id int);")
    layout.add(
        "pre",
        "002.sql",
        "CREATE TABLE second (id int);\nDROP SEQUENCE pg_temp.supervisor_progress;\nCREATE TABLE third (id int);",
    )
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "TRANSACTION_POOLER"
    assert "supervisor_progress" in r.failure["error"] and "pool_mode = session" in r.failure["error"]
    assert [e["file"] for e in r.events("step.applied")] == ["001.sql"]
    assert await conn.fetchval("SELECT to_regclass('second')") is None
    assert await conn.fetchval("SELECT array_agg(filename) FROM supervisor.migrations_applied") == ["001.sql"]


async def test_a_backend_without_temporary_objects_reads_as_a_missing_counter(db: Database):
    """On a backend where the session never made a temporary object, `pg_temp` itself does not exist (3F000, not
    42P01): what a transaction pooler hands a batch's follow-up query. It reads as a missing counter (the pooler
    refusal), never an internal error."""
    from phases.sql import _counter

    fresh = await asyncpg.connect(db.dsn)
    try:
        assert await _counter(fresh) is None
    finally:
        await fresh.close()
