"""Postgres restarted (`pg_ctl restart -m immediate`: a crash and recovery) in the middle of each phase: the run ends
with a clear exit (3, saying the connection or the lock was lost) or recovers, then a clean boot follows and
nothing was applied twice.

These tests own a Postgres cluster (the session's is shared by every test and must not be restarted).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import Database, PgServer
from tests.fault.conftest import (
    Launched,
    Project,
    assert_clean_end_state,
    assert_nothing_half_applied,
    launch,
    rerun_until_clean,
    wait_locks_free,
)
from tests.pg import LocalCluster

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PgServer]:
    """A cluster of this module's own, to restart at will."""
    cluster = LocalCluster().init().start()
    try:
        yield PgServer("127.0.0.1", cluster.port, cluster.user, cluster.password, cluster)
    finally:
        cluster.destroy()


@pytest.fixture
async def own_db(own_pg: PgServer) -> AsyncIterator[Database]:
    """A fresh database on the module's cluster."""
    name = f"r_{os.urandom(6).hex()}"
    admin = await asyncpg.connect(own_pg.dsn())
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield Database(own_pg, name)
    finally:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            admin = await asyncpg.connect(own_pg.dsn())
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


def _restart(server: PgServer) -> None:
    """pg_ctl stop -m immediate, then start: every session dies without a goodbye, then crash recovery."""
    assert server.cluster is not None
    server.cluster.stop()
    server.cluster.start()


@dataclass(frozen=True)
class Moment:
    """Where in the boot to restart: a statement seen running (`fx:NNN` in pg_stat_activity) or a stand-in step."""

    name: str
    args: tuple[str, ...]
    statement: str | None = None  # the marker of a statement of the project's files
    standin: str | None = None  # a stand-in step that has started


MOMENTS = [
    Moment("pre-schema, a transactional file", ("migrate",), statement="fx:002"),
    Moment("pre-schema, a no-transaction file", ("migrate",), statement="fx:003"),
    Moment("schema-apply, directus bootstrap", ("migrate",), standin="bootstrap"),
    Moment("schema-apply, directus schema apply", ("migrate",), standin="schema apply --yes"),
    Moment("post-schema, a transactional file", ("migrate",), statement="fx:102"),
    Moment("post-schema, a no-transaction file", ("migrate",), statement="fx:103"),
    Moment("bootstrap, directus bootstrap", ("migrate", "--only", "bootstrap"), standin="bootstrap"),
]


async def _reached(moment: Moment, launched: Launched, project: Project, watch: asyncpg.Connection) -> bool:
    if moment.standin:
        return any(args.startswith(moment.standin) for _, args in project.started())
    running = await watch.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1 AND query LIKE $2",
        f"%:{launched.proc.pid}",
        f"%{moment.statement}%",
    )
    return bool(running)


@pytest.mark.parametrize("moment", [pytest.param(m, id=m.name) for m in MOMENTS])
async def test_postgres_restarted_mid_phase(
    moment: Moment, own_pg: PgServer, own_db: Database, tmp_path: Path
):
    """Restart Postgres while the phase runs a statement or a Directus step: exit 3 (CONNECTION_LOST for SQL) saying
    what was lost, or success; a Directus step is stopped within 3 s; then a clean boot applies every file
    exactly once."""
    project = Project(tmp_path, slow=moment.statement.removeprefix("fx:") if moment.statement else "")
    env = project.env(own_db, FAULT_STANDIN_SLEEP="6")
    watch = await own_db.connect()
    launched = await launch(list(moment.args), env, project.root, "restarted")
    try:
        deadline = time.monotonic() + 60
        while not await _reached(moment, launched, project, watch):
            assert launched.proc.returncode is None, f"ended before {moment.name}:\n{launched.output()}"
            assert time.monotonic() < deadline, f"never reached {moment.name}:\n{launched.output()}"
            await asyncio.sleep(0.02)
        await watch.close()
        await asyncio.to_thread(_restart, own_pg)
        restarted = time.monotonic()
        if moment.standin:
            while project.standins_left():
                assert time.monotonic() - restarted < 3.0, (
                    "the Directus step ran on after its lock session died"
                )
                await asyncio.sleep(0.05)
        code = await launched.wait(60)
        output = launched.output()
        # A statement may finish before the restart (then the run recovers); a Directus step lost its lock for sure.
        assert code in ((3,) if moment.standin else (0, 3)), (
            f"exit {code} after a Postgres restart:\n{output}"
        )
        if code == 3:
            failed = [e for e in launched.logs() if e.get("event") == "supervisor.failed"]
            assert failed, output
            if moment.statement:
                assert failed[-1]["error_code"] == "CONNECTION_LOST", output
            # A Directus step stopped because its lock session died may word it as a lost lock: either way, lost.
            assert "lost" in failed[-1]["error"], output
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launched.pgid, signal.SIGKILL)
        for pid, _ in project.standins_left():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    conn = await own_db.connect()
    try:
        await wait_locks_free(conn)
        await assert_nothing_half_applied(conn, moment.name)
        await rerun_until_clean(["migrate"], project.env(own_db), project, conn, moment.name)
        await assert_clean_end_state(conn, project, moment.name)
    finally:
        await conn.close()


async def test_postgres_down_at_start_then_up(own_pg: PgServer, own_db: Database, tmp_path: Path):
    """Postgres is down when the supervisor starts and comes up within the wait timeout: it waits, connects and
    boots cleanly."""
    project = Project(tmp_path)
    assert own_pg.cluster is not None
    await asyncio.to_thread(own_pg.cluster.stop)
    try:
        launched = await launch(["migrate"], project.env(own_db), project.root, "waiting")
        await asyncio.sleep(1.5)
        assert launched.proc.returncode is None, launched.output()
    finally:
        await asyncio.to_thread(own_pg.cluster.start)
    try:
        code = await launched.wait(60)
        assert code == 0, launched.output()
        assert any(e.get("event") == "db.retrying" for e in launched.logs()), launched.output()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launched.pgid, signal.SIGKILL)
    conn = await own_db.connect()
    try:
        await assert_clean_end_state(conn, project, "postgres down at start")
    finally:
        await conn.close()
