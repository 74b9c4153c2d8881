"""End to end: a real Directus upgrade, 11.17.4 to 12.4.0, on one database, each version with its own snapshot."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import asyncpg
import pytest

from supervisor.ledger import quote_table
from supervisor.settings import Settings
from tests.conftest import Database, finish, start_supervisor, supervise
from tests.directus_env import directus_env, install_directus, make_project, snapshot_for
from tests.e2e.conftest import wait_for_ping
from tests.pg import free_port


@pytest.mark.directus_versions
async def test_upgrade_from_directus_11_bootstraps_then_reapplies_the_new_snapshot_once(
    db: Database, conn: asyncpg.Connection, tmp_path: Path
):
    """A database booted by Directus 11.17.4 with its snapshot, then booted by 12.4.0 with its own: the upgrade's
    bootstrap runs 12's migrations, the 12 snapshot is applied and verified, Directus 12 serves; no SQL file runs
    twice, and a boot after that does nothing. `status` then records 12.4.0 for both Directus steps."""
    project = make_project(tmp_path / "directus", directus=11)
    files = sorted(p.name for d in ("db-init", "db-init-post") for p in (project / d).glob("*.sql"))
    port = free_port()

    def env(major: int) -> dict[str, str]:
        settings = directus_env(install_directus(major), port, {}, project)
        return db.env(**settings, SUPERVISOR_WAIT_TIMEOUT="30")

    old = await supervise("migrate", env=env(11), cwd=project, timeout=300)
    assert old.code == 0, old.stderr
    assert await conn.fetchval(
        "SELECT directus_version FROM supervisor.supervisor_state WHERE phase = 'bootstrap'"
    ) == ("11.17.4")
    migrations_11 = await conn.fetchval("SELECT count(*) FROM directus_migrations")

    shutil.copyfile(snapshot_for(12), project / "snapshots" / "schema.yaml")
    proc = await start_supervisor("run", env=env(12), cwd=project)
    await wait_for_ping(port, timeout=240)
    proc.send_signal(signal.SIGTERM)
    new = await finish(proc, timeout=60)
    assert new.code == 143, new.stderr
    assert (
        new.events("bootstrap.running")[0]["reason"] == "Directus 11.17.4 -> 12.4.0: its migrations must run"
    )
    assert await conn.fetchval("SELECT count(*) FROM directus_migrations") > migrations_11
    assert new.events("directus.exec")[0]["outcomes"] == {
        "pre-schema": "skipped", "schema-apply": "applied", "post-schema": "skipped", "bootstrap": "skipped",
    }  # fmt: skip
    assert [e for e in new.events("step.applied") if e["phase"] != "schema-apply"] == []
    table = quote_table(Settings.load(env(12)).tracking_table)
    rows = await conn.fetch(f"SELECT filename, count(*) AS n FROM {table} GROUP BY filename")
    assert {r["filename"]: r["n"] for r in rows} == dict.fromkeys(files, 1)

    warm = await supervise("migrate", env=env(12), cwd=project)
    assert warm.code == 0, warm.stderr
    assert warm.events("directus.step_started") == []
    assert set(warm.events("supervisor.finished")[0]["outcomes"].values()) == {"skipped"}
    status = json.loads((await supervise("status", "--json", env=env(12), cwd=project)).stdout)
    by_phase = {p["phase"]: p for p in status["phases"]}
    assert by_phase["schema-apply"]["state"] == "up to date"
    assert by_phase["schema-apply"]["applied_with"] == "12.4.0"
    assert by_phase["bootstrap"]["bootstrapped_version"] == "12.4.0"
    assert by_phase["bootstrap"]["would_run"] is None
