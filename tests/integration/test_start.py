"""Starting Directus (a stand-in here) and signals during a Directus CLI step, with a real Postgres."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import STANDIN, Database, Layout, finish, start_supervisor, supervise, wait_for_text


async def test_run_only_start_needs_no_database_and_passes_the_exit_status_on(layout: Layout, tmp_path: Path):
    """`run --only start` reads no DB_* settings and touches no database; Directus's exit code is the
    supervisor's."""
    env = {"SUPERVISOR_DIRECTUS_CMD": STANDIN, "STANDIN_EXIT_NOW": "7", "SUPERVISOR_LOG_FORMAT": "json",
           "STANDIN_LOG": str(tmp_path / "log"), "PATH": "/usr/bin:/bin"}  # fmt: skip
    r = await supervise("run", "--only", "start", env=env, cwd=layout.root)
    assert r.code == 7, r.stderr
    assert r.events("db.connected") == []
    assert r.events("directus.exited")[0]["exit_code"] == 7


async def test_term_and_int_reach_directus_and_its_signal_status_comes_back(layout: Layout, tmp_path: Path):
    """SIGTERM and SIGINT sent to the supervisor are forwarded to Directus; a Directus ended by signal N makes
    the supervisor exit 128+N."""
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        log = tmp_path / f"log-{sig.name}"
        env = {"SUPERVISOR_DIRECTUS_CMD": STANDIN, "STANDIN_LOG": str(log), "SUPERVISOR_LOG_FORMAT": "json",
               "PATH": "/usr/bin:/bin"}  # fmt: skip
        proc = await start_supervisor("run", "--only", "start", env=env, cwd=layout.root)
        await wait_for_text(log, "ready")  # its handlers installed: it can note the signal
        proc.send_signal(sig)
        r = await finish(proc, timeout=20)
        assert r.code == code, r.stderr
        assert f"signal {sig.name}" in log.read_text()
        assert r.events("signal.forwarded")[0]["signal"] == sig.name


async def test_a_directus_that_ignores_term_is_killed_after_the_stop_timeout(layout: Layout, tmp_path: Path):
    """After forwarding SIGTERM, SUPERVISOR_STOP_TIMEOUT later the child is SIGKILLed (exit 137)."""
    log = tmp_path / "log"
    env = {"SUPERVISOR_DIRECTUS_CMD": STANDIN, "STANDIN_LOG": str(log), "STANDIN_IGNORE_TERM": "1",
           "SUPERVISOR_STOP_TIMEOUT": "1", "SUPERVISOR_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}  # fmt: skip
    proc = await start_supervisor("run", "--only", "start", env=env, cwd=layout.root)
    await wait_for_text(log, "ignoring SIGTERM")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=20)
    assert r.code == 137, r.stderr
    assert 0.9 < time.monotonic() - t0 < 6
    assert r.events("directus.killed")


async def test_exec_replaces_the_process(layout: Layout, tmp_path: Path):
    """`--exec` replaces the supervisor with Directus: same pid, its exit status directly."""
    log = tmp_path / "log"
    env = {"SUPERVISOR_DIRECTUS_CMD": STANDIN, "STANDIN_LOG": str(log), "STANDIN_EXIT_NOW": "5",
           "SUPERVISOR_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}  # fmt: skip
    proc = await start_supervisor("run", "--only", "start", "--exec", env=env, cwd=layout.root)
    r = await finish(proc)
    assert r.code == 5
    assert log.read_text().startswith(f"pid {proc.pid} ")
    assert r.events("directus.exec")


async def test_term_during_a_directus_cli_step_stops_it_and_records_nothing(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
):
    """A signal while `directus bootstrap` runs is forwarded to it; the supervisor exits 143, the bootstrap is not
    recorded and the lock is free."""
    log = tmp_path / "log"
    env = db.env(SUPERVISOR_DIRECTUS_CMD=STANDIN, STANDIN_LOG=str(log), STANDIN_EXIT="0")
    proc = await start_supervisor("migrate", "--only", "bootstrap", env=env, cwd=layout.root)
    await wait_for_text(log, "bootstrap")
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=20)
    assert r.code == 143, r.stderr
    assert "signal SIGTERM" in log.read_text()
    # The stop message tells what a cut-off bootstrap leaves behind, not a story about SQL files.
    error = r.failure["error"]
    assert "`directus bootstrap` was running and was stopped" in error, error
    assert "those that finished stay" in error and "the next boot runs it again, under its lock" in error
    assert await conn.fetchval("SELECT to_regclass('supervisor.supervisor_state')") is None
    assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


async def test_a_failing_phase_means_directus_never_starts(db: Database, layout: Layout, tmp_path: Path):
    """`run` whose pre-schema fails exits with that phase's code (4) and never starts Directus."""
    log = tmp_path / "log"
    layout.add("pre", "001.sql", "SELECT * FROM missing_table;")
    (layout.root / "snapshots").mkdir()
    (layout.root / "snapshots" / "schema.yaml").write_text("version: 1\n")
    r = await supervise(
        "run", env=db.env(SUPERVISOR_DIRECTUS_CMD=STANDIN, STANDIN_LOG=str(log)), cwd=layout.root
    )
    assert r.code == 4, r.stderr
    assert r.events("directus.exec") == []
    assert not log.exists()


SNAPSHOT = "version: 1\ndirectus: 12.4.0\nvendor: postgres\ncollections: []\nfields: []\nsystemFields: []\nrelations: []\n"


@pytest.mark.parametrize("phase", ["pre-schema", "schema-apply", "post-schema", "bootstrap"])
async def test_term_during_each_phase(
    phase: str, db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
):
    """SIGTERM in the middle of each phase: exit 143 within seconds, nothing recorded, no lock left, and the
    next boot of that phase is clean (SQL phases: a sleeping statement; Directus phases: a stand-in CLI step)."""
    log = tmp_path / "log"
    folder = "pre" if phase == "pre-schema" else "post"
    layout.add(folder, "001.sql", "CREATE TABLE t (id int);\nSELECT pg_sleep(60);")
    (layout.root / "snapshots").mkdir()
    (layout.root / "snapshots" / "schema.yaml").write_text(SNAPSHOT)
    env = db.env(SUPERVISOR_DIRECTUS_CMD=STANDIN, STANDIN_LOG=str(log), STANDIN_EXIT="0")
    proc = await start_supervisor("migrate", "--only", phase, env=env, cwd=layout.root)
    if phase.endswith("-schema"):
        deadline = time.monotonic() + 20
        while not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
                                      "AND pid <> pg_backend_pid()"):  # fmt: skip
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    else:
        await wait_for_text(log, "bootstrap")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=20)
    assert r.code == 143, r.stderr
    assert time.monotonic() - t0 < 8
    assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    assert await conn.fetchval("SELECT to_regclass('t')") is None
    assert await conn.fetchval("SELECT to_regclass('supervisor.supervisor_state')") is None
    if phase.endswith("-schema"):
        (layout.root / f"db-init{'' if folder == 'pre' else '-post'}" / "001.sql").write_text(
            "CREATE TABLE t ();"
        )
        again = await supervise("migrate", "--only", phase, env=env, cwd=layout.root)
        assert again.code == 0, again.stderr
