"""Reaching Postgres: waiting for a late server, failing fast on a rejected login, `_FILE` secrets, and
configuration errors, all as whole processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import Database, Layout, PgServer, finish, start_supervisor, supervise
from tests.pg import LocalCluster, free_port

PRE = ("migrate", "--only", "pre-schema")


async def test_waits_for_a_late_starting_postgres(db: Database, layout: Layout):
    """Connection refused is retried with backoff (logged as db.retrying) until the server comes up."""
    layout.add("pre", "001.sql", "CREATE TABLE t (id int);")
    late = LocalCluster(port=free_port()).init()
    try:
        env = db.env(
            DB_PORT=str(late.port),
            DB_DATABASE="postgres",
            DB_PASSWORD=late.password,
            SUPERVISOR_WAIT_TIMEOUT="40",
        )
        proc = await start_supervisor(*PRE, env=env, cwd=layout.root)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(late.start)
        r = await finish(proc)
        assert r.code == 0, r.stderr
        retries = r.events("db.retrying")
        assert retries and retries[0]["attempt"] == 1
        assert "Connect call failed" in retries[0]["error"] or "refused" in retries[0]["error"].lower()
        assert r.events("step.applied")
    finally:
        await asyncio.to_thread(late.destroy)


async def test_gives_up_after_the_wait_timeout(db: Database, layout: Layout):
    """Nothing listening: exit 3 (DB_UNREACHABLE) once SUPERVISOR_WAIT_TIMEOUT is spent, naming the target."""
    port = free_port()
    t0 = time.monotonic()
    r = await supervise(*PRE, env=db.env(DB_PORT=str(port), SUPERVISOR_WAIT_TIMEOUT="1.5"), cwd=layout.root)
    assert r.code == 3
    assert r.failure["error_code"] == "DB_UNREACHABLE"
    assert f"127.0.0.1:{port}" in r.failure["error"]
    assert 1.0 < time.monotonic() - t0 < 10


async def test_unresolvable_host_is_retried_until_the_timeout(db: Database, layout: Layout):
    """A DNS name that does not resolve (yet) is retried like a refused connection, then exits 3."""
    r = await supervise(*PRE, env=db.env(DB_HOST="db.does-not-exist.invalid", SUPERVISOR_WAIT_TIMEOUT="1"),
                        cwd=layout.root)  # fmt: skip
    assert r.code == 3
    assert r.failure["error_code"] == "DB_UNREACHABLE"
    assert r.events("db.retrying")
    assert "db.does-not-exist.invalid" in r.failure["error"]


async def test_wrong_password_fails_fast_without_leaking_it(db: Database, layout: Layout):
    """A rejected password exits 3 at once (no retries), naming host, port, database and user, never the password."""
    t0 = time.monotonic()
    r = await supervise(
        *PRE, env=db.env(DB_PASSWORD="not-the-password-123", SUPERVISOR_WAIT_TIMEOUT="30"), cwd=layout.root
    )
    assert r.code == 3
    assert time.monotonic() - t0 < 5
    assert r.events("db.retrying") == []
    msg = r.failure["error"]
    assert r.failure["error_code"] == "DB_AUTH_FAILED"
    assert f"database {db.name!r} as user 'postgres' at 127.0.0.1:{db.server.port}" in msg
    assert "28P01" in msg
    assert "not-the-password-123" not in r.stderr + r.stdout


async def test_missing_database_fails_fast(db: Database, layout: Layout):
    """A database that does not exist exits 3 (DB_MISSING) at once with the fix."""
    r = await supervise(
        *PRE, env=db.env(DB_DATABASE="nope_not_here", SUPERVISOR_WAIT_TIMEOUT="30"), cwd=layout.root
    )
    assert r.code == 3
    assert r.failure["error_code"] == "DB_MISSING"
    assert "nope_not_here" in r.failure["error"] and "CREATE DATABASE" in r.failure["error"]


async def test_password_file_is_read_verbatim_and_a_trailing_newline_is_explained(
    db: Database, layout: Layout, tmp_path: Path, pg: PgServer
):
    """DB_PASSWORD_FILE works; with a trailing newline it warns by variable name and the auth failure repeats
    the printf hint (Directus would fail the same way)."""
    layout.add("pre", "001.sql", "SELECT 1;")
    good = tmp_path / "pw"
    good.write_text(pg.password)
    r = await supervise(*PRE, env=db.env(DB_PASSWORD="", DB_PASSWORD_FILE=str(good)), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert r.events("config.secret_file_trailing_newline") == []

    good.write_text(pg.password + "\n")
    r = await supervise(*PRE, env=db.env(DB_PASSWORD="", DB_PASSWORD_FILE=str(good)), cwd=layout.root)
    assert r.code == 3
    warn = r.events("config.secret_file_trailing_newline")
    assert warn and warn[0]["variable"] == "DB_PASSWORD_FILE" and "printf %s" in warn[0]["hint"]
    assert "DB_PASSWORD_FILE ends in a newline" in r.failure["error"]
    assert pg.password not in r.stderr


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"DB_CLIENT": "sqlite3"}, "DB_CLIENT='sqlite3' is not Postgres"),
        ({"DB_CLIENT": ""}, "DB_CLIENT is not set"),
        ({"DB_PORT": "54x"}, "DB_PORT='54x'"),
        ({"DB_HOST": ""}, "DB_HOST not set"),
        ({"DB_PASSWORD_FILE": "/etc/hostname"}, "both DB_PASSWORD and DB_PASSWORD_FILE are set"),
        ({"SUPERVISOR_WAIT_TIMEOUT": "soon"}, "SUPERVISOR_WAIT_TIMEOUT='soon' is not a duration"),
        ({"SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA": "maybe"}, "SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA='maybe'"),
        ({"SUPERVISOR_TRACKING_TABLE": "a;drop"}, "SUPERVISOR_TRACKING_TABLE='a;drop' is not a table name"),
        ({"SUPERVISOR_DB_INIT_DIR": "nowhere"}, "SUPERVISOR_DB_INIT_DIR: the folder nowhere"),
    ],
)
async def test_configuration_errors_exit_2_naming_the_variable(db: Database, layout: Layout, env, needle):
    """Bad or missing values exit 2 with a message that names the variable, before touching the database."""
    r = await supervise(*PRE, env=db.env(**env), cwd=layout.root)
    assert r.code == 2, r.stderr
    assert needle in r.failure["error"]
    assert r.events("db.connected") == []


async def test_missing_snapshot_is_refused_up_front(db: Database, layout: Layout):
    """`migrate` without the snapshot file exits 2 (SNAPSHOT_MISSING) before any connection."""
    r = await supervise("migrate", env=db.env(), cwd=layout.root)
    assert r.code == 2
    assert r.failure["error_code"] == "SNAPSHOT_MISSING"
    assert "snapshots/schema.yaml" in r.failure["error"]
    assert r.events("db.connected") == []


async def test_bad_flag_is_a_usage_error(db: Database, layout: Layout):
    """An unknown phase or flag exits 2."""
    assert (await supervise("migrate", "--only", "start", env=db.env(), cwd=layout.root)).code == 2
    assert (await supervise("migrate", "--bogus", env=db.env(), cwd=layout.root)).code == 2
