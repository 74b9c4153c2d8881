"""Fail closed in the SQL phases, against a real Postgres: transaction control inside a file is refused before
anything runs, no file's session state reaches the next one (batched and one statement per round trip, cold and
incremental boots alike), and a stop during a no-transaction file says what was committed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
import structlog

from phases.registry import build_phases
from supervisor.runner import run_phases
from supervisor.settings import Settings
from tests.conftest import Database, Layout, Result, finish, start_supervisor, supervise

PRE = ("migrate", "--only", "pre-schema")
POST = ("migrate", "--only", "post-schema")
APP_PW = "app-pw-123"


@dataclass
class Mode:
    """How the supervisor applies transactional files: `batched`, or `statementwise` (a role without TEMP)."""

    name: str
    user: str  # the supervisor's DB_USER
    role: str  # a role the files SET ROLE to
    env: dict[str, str]
    extra_databases: list[str] = field(default_factory=list)  # dropped with the roles


async def _prepare(conn: asyncpg.Connection, database: str, mode: str, app: str, other: str) -> None:
    """Schema `other`, role `other` allowed to create in public; for `statementwise`, `app` without TEMP."""
    await conn.execute("CREATE SCHEMA other")
    await conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public, other TO {other}")
    if mode == "statementwise":
        await conn.execute(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
        await conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public, other TO {app}")
        await conn.execute(f"CREATE SCHEMA supervisor AUTHORIZATION {app}")  # the ledger's schema


@pytest.fixture(params=["batched", "statementwise"])
async def mode(request: pytest.FixtureRequest, db: Database, conn: asyncpg.Connection) -> AsyncIterator[Mode]:
    """Both ways transactional files run: in batches, and one statement per round trip (no TEMP privilege)."""
    app, other = f"{db.name}_app", f"{db.name}_other"
    await conn.execute(f"CREATE ROLE {other}")
    await conn.execute(f"CREATE ROLE {app} LOGIN PASSWORD '{APP_PW}' IN ROLE {other}")
    await _prepare(conn, db.name, request.param, app, other)
    env = db.env() if request.param == "batched" else db.env(DB_USER=app, DB_PASSWORD=APP_PW)
    m = Mode(request.param, env["DB_USER"], other, env)
    try:
        yield m
    finally:
        for database in m.extra_databases:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.execute(f"DROP OWNED BY {app}, {other}")
        await conn.execute(f"DROP ROLE {app}, {other}")


async def _migrate(mode: Mode, layout: Layout, env: dict[str, str] | None = None) -> Result:
    r = await supervise(*PRE, env=env or mode.env, cwd=layout.root)
    assert r.code == 0, r.stderr
    if mode.name == "batched":
        assert not r.events("sql.batching_off")
    return r


async def _in_process(env: dict[str, str], layout: Layout, *names: str) -> dict[str, str]:
    """Run SQL phases in this process, on one connection, as `run_phases` does for a boot; their outcomes."""
    settings = Settings.load(
        {**env, "SUPERVISOR_DB_INIT_DIR": str(layout.pre), "SUPERVISOR_DB_INIT_POST_DIR": str(layout.post)}
    )
    phases = build_phases(settings)
    return await run_phases(settings, [phases[n] for n in names], structlog.get_logger())


async def _catalog(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
    """(schema, table, owner) of every table a file made, and the ledger's (file, status, done) rows."""
    tables = await conn.fetch(
        "SELECT schemaname, tablename, tableowner FROM pg_tables WHERE tablename LIKE 't\\_%' ORDER BY 1, 2"
    )
    rows = await conn.fetch(
        "SELECT filename, status, coalesce(statements_done, -1)::text FROM supervisor.migrations_applied ORDER BY 1"
    )
    return [tuple(r) for r in tables] + [tuple(r) for r in rows]


def _leaky_files(other_role: str) -> dict[str, str]:
    """Files that each change session state, each followed by one that would feel it."""
    return {
        "001_path.sql": "SET search_path = other;\nCREATE TABLE t_path (id int);",
        "002_after_path.sql": "CREATE TABLE t_after_path (id int);",
        "003_timeout.sql": "SET statement_timeout = '100ms';\nSELECT 1;",
        "004_slow.sql": "SELECT pg_sleep(0.3);\nCREATE TABLE t_slow (id int);",
        "005_dump.sql": "SELECT pg_catalog.set_config('search_path', '', false);\n"
        "CREATE TABLE public.t_dump (id int);",
        "006_after_dump.sql": "CREATE TABLE t_after_dump (id int);",
        "007_role.sql": f"SET ROLE {other_role};\nCREATE TABLE t_role (id int);",
        "008_after_role.sql": "CREATE TABLE t_after_role (id int);",
        "009_nt.sql": "-- supervisor: no-transaction\nSET search_path = other;\nSET statement_timeout = '100ms';\n"
        f"SET ROLE {other_role};\nCREATE TABLE t_nt (id int);\nSELECT pg_catalog.set_config('search_path', '', false);",
        "010_after_nt.sql": "SELECT pg_sleep(0.3);\nCREATE TABLE t_after_nt (id int);",
        "011_local.sql": "SET LOCAL search_path = other;\nCREATE TABLE t_local (id int);",
        "012_after_local.sql": "CREATE TABLE t_after_local (id int);",
    }


async def test_each_file_starts_from_the_same_session_state_cold_or_incremental(
    mode: Mode, db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path
):
    """A file's SET search_path, statement_timeout, pg_dump-style set_config('search_path', '', false) or SET ROLE
    (transactional or no-transaction) neither reaches the next file nor breaks the tracking row; SET LOCAL works.
    All files in one boot give exactly what one boot per file gives."""
    files = _leaky_files(mode.role)
    for name, sql in files.items():
        layout.add("pre", name, sql)
    r = await _migrate(mode, layout)
    assert bool(r.events("sql.batching_off")) == (mode.name == "statementwise")
    cold = await _catalog(conn)
    owner = mode.user
    assert cold == [
        ("other", "t_local", owner),
        ("other", "t_nt", mode.role),
        ("other", "t_path", owner),
        ("public", "t_after_dump", owner),
        ("public", "t_after_local", owner),
        ("public", "t_after_nt", owner),
        ("public", "t_after_path", owner),
        ("public", "t_after_role", owner),
        ("public", "t_dump", owner),
        ("public", "t_role", mode.role),
        ("public", "t_slow", owner),
        *[(name, "applied", "5" if name == "009_nt.sql" else "-1") for name in files],
    ]

    # The same files, one boot each, on a second database.
    second = f"t_{uuid.uuid4().hex[:12]}"
    await conn.execute(f'CREATE DATABASE "{second}"')
    mode.extra_databases.append(second)
    c2 = await asyncpg.connect(db.server.dsn(second))
    try:
        await _prepare(c2, second, mode.name, mode.user, mode.role)
        (tmp_path / "inc").mkdir()
        step = Layout(tmp_path / "inc")
        for name, sql in files.items():
            step.add("pre", name, sql)
            outcome = await _in_process({**mode.env, "DB_DATABASE": second}, step, "pre-schema")
            assert outcome == {"pre-schema": "applied"}
        assert await _catalog(c2) == cold
    finally:
        await c2.close()


async def test_session_state_does_not_cross_from_pre_schema_to_post_schema(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """The two SQL phases share a connection: a pre-schema file's SET search_path does not move a post-schema
    file's table, and DB_SEARCH_PATH (a session default from the startup packet) survives every reset."""
    await conn.execute("CREATE SCHEMA other; CREATE SCHEMA app")
    layout.add(
        "pre",
        "001_path.sql",
        "SET search_path = other;\nSET application_name = 'hijacked';\nCREATE TABLE t_pre (id int);",
    )
    layout.add("pre", "002_nt.sql", "-- supervisor: no-transaction\nSET search_path = other;\nSELECT 1;")
    layout.add(
        "post",
        "101_post.sql",
        "CREATE TABLE t_post AS SELECT current_setting('application_name') AS app, "
        "current_setting('search_path') AS path;",
    )
    env = db.env(DB_SEARCH_PATH="app,public", SUPERVISOR_TRACKING_TABLE="app.migrations_applied")
    outcomes = await _in_process(env, layout, "pre-schema", "post-schema")
    assert outcomes == {"pre-schema": "applied", "post-schema": "applied"}
    tables = {r["tablename"]: r["schemaname"] for r in await conn.fetch("SELECT * FROM pg_tables")}
    assert tables["t_pre"] == "other"
    assert tables["t_post"] == "app"  # DB_SEARCH_PATH's first schema, not the pre-schema file's
    seen = await conn.fetchrow("SELECT app, path FROM app.t_post")
    assert seen is not None
    assert seen["app"].endswith(f":{os.getpid()}")  # host:pid from the startup packet survived the resets
    assert seen["path"].replace(" ", "") == '"app","public"'
    assert await conn.fetchval("SELECT count(*) FROM app.migrations_applied") == 3


# --- transaction control ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "at", "command"),
    [
        # COMMIT part-way, then an error: the part before COMMIT would stay committed, reported as rolled back.
        ("CREATE TABLE t_a (id int);\nCOMMIT;\nCREATE TABLE t_b (id int);\nSELECT 1/0;", "2:1", "COMMIT"),
        # ROLLBACK at the end: recorded as applied with nothing applied.
        ("CREATE TABLE t_a (id int);\n  ROLLBACK;", "2:3", "ROLLBACK"),
        # A BEGIN/COMMIT wrapper: committed before the tracking row.
        ("BEGIN;\nCREATE TABLE t_a (id int);\nEND;", "1:1", "BEGIN"),
        ("CREATE TABLE t_a (id int);\nPREPARE TRANSACTION 'x';", "2:1", "PREPARE TRANSACTION"),
    ],
)
async def test_transaction_control_in_a_transactional_file_is_refused_before_the_phase_runs(
    db: Database, conn: asyncpg.Connection, layout: Layout, sql: str, at: str, command: str
):
    """BEGIN/COMMIT/ROLLBACK/PREPARE TRANSACTION in a transactional file: exit 4 at file:line:col, before any file
    of the phase ran (an earlier, good file included), with what to do."""
    layout.add("pre", "001_ok.sql", "CREATE TABLE t_ok (id int);")
    layout.add("pre", "002_tx.sql", sql)
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 4, r.stderr
    fail = r.failure
    assert fail["error_code"] == "TRANSACTION_CONTROL"
    assert fail["error"].startswith(f"db-init/002_tx.sql:{at}: {command} ")
    assert "Remove it" in fail["error"] and "-- supervisor: no-transaction" in fail["error"]
    assert "Nothing from the pre-schema phase was applied" in fail["error"]
    assert r.events("step.applied") == []
    assert await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 't\\_%'") == []
    assert await conn.fetchval("SELECT count(*) FROM pg_prepared_xacts") == 0


async def test_savepoints_inside_a_transactional_file_are_allowed(
    mode: Mode, conn: asyncpg.Connection, layout: Layout
):
    """SAVEPOINT / ROLLBACK TO / RELEASE nest inside the file's own transaction: the file runs, what was rolled back
    to the savepoint is gone, the rest is committed with the tracking row."""
    layout.add(
        "pre",
        "001.sql",
        "CREATE TABLE t_sp (id int);\nSAVEPOINT a;\nINSERT INTO t_sp VALUES (1);\nROLLBACK TO SAVEPOINT a;\n"
        "SAVEPOINT b;\nINSERT INTO t_sp VALUES (2);\nRELEASE SAVEPOINT b;",
    )
    await _migrate(mode, layout)
    assert [r["id"] for r in await conn.fetch("SELECT id FROM t_sp")] == [2]
    assert (
        await conn.fetchval("SELECT status FROM supervisor.migrations_applied WHERE filename = '001.sql'")
        == "applied"
    )


async def test_transaction_control_in_a_no_transaction_file(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """In a no-transaction file BEGIN is refused (it would span the progress records); a no-op COMMIT is not."""
    layout.add("pre", "001.sql", "-- supervisor: no-transaction\nCREATE TABLE t_a (id int);\nCOMMIT;")
    layout.add("pre", "002.sql", "-- supervisor: no-transaction\nBEGIN;\nCREATE TABLE t_b (id int);\nCOMMIT;")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 4
    assert r.failure["error_code"] == "TRANSACTION_CONTROL"
    assert r.failure["error"].startswith("db-init/002.sql:2:1: BEGIN would open a transaction spanning")
    assert await conn.fetchval("SELECT to_regclass('t_a')") is None  # refused before the phase ran
    (layout.pre / "002.sql").write_text("-- supervisor: no-transaction\nCREATE TABLE t_b (id int);")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert await conn.fetchval("SELECT to_regclass('t_a') IS NOT NULL AND to_regclass('t_b') IS NOT NULL")


async def test_commit_inside_a_procedure_or_do_block_cannot_break_the_file_transaction(
    mode: Mode, db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A COMMIT hidden in a DO block or in a procedure the file CALLs fails inside the file's transaction (2D000):
    the file is rolled back whole and reported; in a no-transaction file the same CALL may commit."""
    await conn.execute(
        "CREATE PROCEDURE public.commits() LANGUAGE plpgsql AS $$ BEGIN CREATE TABLE public.t_in_proc (id int); "
        "COMMIT; END $$"
    )
    await conn.execute(f"GRANT EXECUTE ON PROCEDURE public.commits() TO {mode.user}")
    layout.add("pre", "001.sql", "CREATE TABLE t_do (id int);\nDO $$ BEGIN COMMIT; END $$;")
    r = await supervise(*PRE, env=mode.env, cwd=layout.root)
    assert r.code == 4, r.stderr
    assert r.failure["error"].startswith("db-init/001.sql:2:")
    assert "ERROR 2D000: invalid transaction termination" in r.failure["error"]
    assert "rolled back" in r.failure["error"]
    assert await conn.fetchval("SELECT to_regclass('t_do')") is None

    (layout.pre / "001.sql").write_text("CREATE TABLE t_do (id int);\nCALL public.commits();")
    r = await supervise(*PRE, env=mode.env, cwd=layout.root)
    assert r.code == 4, r.stderr
    assert "ERROR 2D000: invalid transaction termination" in r.failure["error"]
    assert await conn.fetchval("SELECT to_regclass('t_do') IS NULL AND to_regclass('t_in_proc') IS NULL")
    assert await conn.fetchval("SELECT count(*) FROM supervisor.migrations_applied") == 0

    (layout.pre / "001.sql").write_text("-- supervisor: no-transaction\nCALL public.commits();")
    await _migrate(mode, layout)
    assert await conn.fetchval("SELECT to_regclass('t_in_proc') IS NOT NULL")


# --- stops during a no-transaction file -------------------------------------------------------------------------


async def _backend_sleeping(conn: asyncpg.Connection, proc: asyncio.subprocess.Process) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1 AND query LIKE '%pg_sleep%'",
            f"%:{proc.pid}",
        )
        if pid:
            return int(pid)
        await asyncio.sleep(0.05)
    raise AssertionError("the supervisor never reached the sleeping statement")


NT_FILE = (
    "-- supervisor: no-transaction\nCREATE TABLE t_one (id int);\n\nSELECT pg_sleep(60);\n"
    "CREATE TABLE t_two (id int);"
)


async def test_sigterm_during_a_no_transaction_file_tells_what_was_committed(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """SIGTERM part-way through a no-transaction file: exit 143 with a message that says statement 1 of 3 was
    committed, statement 2 (line 4) was interrupted and the row stays running 1/3; the next boot exits 5 with the
    instructions. Nothing claims that the file was rolled back."""
    layout.add("pre", "001.sql", "CREATE TABLE t_before (id int);")
    layout.add("pre", "002_nt.sql", NT_FILE)
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    await _backend_sleeping(conn, proc)
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=15)
    assert r.code == 143, r.stderr
    msg = r.failure["error"]
    assert r.failure["error_code"] == "INTERRUPTED"
    assert "nothing was left half-applied" not in msg and "rolled back" not in msg.replace(
        "NOT rolled back", ""
    )
    assert "db-init/002_nt.sql is a no-transaction file, so it was NOT rolled back" in msg
    assert "statement 1 of 3 was committed and recorded; statement 2 (line 4) was running" in msg
    assert (
        "stays marked running (1 of 3)" in msg and "next boot refuses the file (exit 5, HALF_APPLIED)" in msg
    )
    assert "DELETE FROM supervisor.migrations_applied WHERE filename = '002_nt.sql'" in msg
    row = await conn.fetchrow(
        "SELECT status, statements_done FROM supervisor.migrations_applied WHERE filename = '002_nt.sql'"
    )
    assert row is not None and tuple(row) == ("running", 1)
    assert await conn.fetchval("SELECT to_regclass('t_one') IS NOT NULL AND to_regclass('t_two') IS NULL")

    again = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert again.code == 5
    assert again.failure["error_code"] == "HALF_APPLIED"
    assert "only 1 of 3 statements" in again.failure["error"]
    assert "DELETE FROM supervisor.migrations_applied WHERE filename = '002_nt.sql'" in again.failure["error"]


async def test_sigterm_during_a_transactional_file_says_it_was_rolled_back(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """The generic stop message stays true for a transactional file: its transaction was rolled back."""
    layout.add("pre", "001.sql", "CREATE TABLE t_x (id int);\nSELECT pg_sleep(60);")
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    await _backend_sleeping(conn, proc)
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=15)
    assert r.code == 143, r.stderr
    assert "transaction was open, if any, was rolled back" in r.failure["error"]
    assert await conn.fetchval("SELECT to_regclass('t_x')") is None


async def test_connection_loss_during_a_no_transaction_file_tells_what_was_committed(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """The backend killed part-way through a no-transaction file: exit 3, and the message says what committed and
    that the next boot refuses the file, not that its transaction was rolled back."""
    layout.add("pre", "002_nt.sql", NT_FILE)
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    pid = await _backend_sleeping(conn, proc)
    await conn.execute("SELECT pg_terminate_backend($1)", pid)
    r = await finish(proc, timeout=15)
    assert r.code == 3, r.stderr
    msg = r.failure["error"]
    assert r.failure["error_code"] == "CONNECTION_LOST"
    assert "rolled back" not in msg.replace("NOT rolled back", "")
    assert "statement 1 of 3 was committed and recorded" in msg and "stays marked running (1 of 3)" in msg
    again = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert again.code == 5 and again.failure["error_code"] == "HALF_APPLIED"
