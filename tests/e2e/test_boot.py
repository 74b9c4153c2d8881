"""End to end: the real Directus and a real Postgres, through the supervisor."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from tests.conftest import Database, PgServer, expected_pg_major, finish, start_supervisor, supervise
from tests.directus_env import ADMIN_EMAIL, ADMIN_PASSWORD, install_node
from tests.e2e.conftest import child_executable, wait_for_ping

CONSTRAINTS = {
    "organization_users_org_user_unique",
    "organization_vehicles_org_vehicle_unique",
    "organization_devices_org_device_unique",
    "event_participation_event_vehicle_unique",
}


def _request(url: str, body: dict[str, str] | None = None, token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=10) as r:  # noqa: S310
        return json.loads(r.read())  # type: ignore[no-any-return]


async def _collections_as_admin(port: int) -> set[str]:
    """The collections Directus's API lists to the first admin (GET /collections)."""
    base = f"http://127.0.0.1:{port}"
    login = await asyncio.to_thread(
        _request, f"{base}/auth/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    listed = await asyncio.to_thread(_request, f"{base}/collections", None, login["data"]["access_token"])
    return {c["collection"] for c in listed["data"]}


@pytest.mark.smoke
@pytest.mark.directus_versions
async def test_fresh_database_boots_then_warm_boot_skips_directus_steps(
    fleet: Database, conn: asyncpg.Connection, project: Path, pg: PgServer, installed_version: str
):
    """Fresh database → `run` → /server/ping answers → the post-schema constraints exist on the real junction
    tables → SIGTERM → Directus's status 143 passed on, well within the stop timeout. A second boot runs no
    Directus CLI step at all. The matrix's smoke boot: Directus runs under the requested Node, on the requested
    PostgreSQL, and the requested Directus version is what the supervisor recorded."""
    expected_pg = expected_pg_major(pg)
    if expected_pg is not None:
        assert int(await conn.fetchval("SHOW server_version_num")) // 10000 == expected_pg
    proc = await start_supervisor("run", env=fleet.env(SUPERVISOR_STOP_TIMEOUT="25"), cwd=project)
    await wait_for_ping(int(fleet.extra_env["PORT"]))
    assert child_executable(proc.pid) == (install_node() / "bin" / "node").resolve()
    names = {r["conname"] for r in await conn.fetch("SELECT conname FROM pg_constraint WHERE contype = 'u'")}
    assert names >= CONSTRAINTS
    assert await conn.fetchval("SELECT count(*) FROM directus_users WHERE email = 'admin@example.com'") == 1
    # The supervisor's tables are out of Directus's sight: its API lists every table of public (the pre-schema
    # `positions`, which no snapshot mentions, included), but not the ledger nor the state table.
    collections = await _collections_as_admin(int(fleet.extra_env["PORT"]))
    assert "positions" in collections and "organizations" in collections
    assert not {"migrations_applied", "supervisor_state"} & collections, collections
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    first = await finish(proc, timeout=30)
    stopped_s = time.monotonic() - t0
    assert first.code == 143, first.stderr  # Directus re-raises SIGTERM after its clean shutdown
    assert stopped_s < 25 and first.events("directus.killed") == [], stopped_s
    assert first.events("signal.forwarded")[0]["signal"] == "SIGTERM"
    assert first.events("directus.exited")[0]["exit_code"] == 143
    outcomes = first.events("directus.exec")[0]["outcomes"]
    assert outcomes == {"pre-schema": "applied", "schema-apply": "applied", "post-schema": "applied",
                        "bootstrap": "skipped"}  # fmt: skip

    second = await supervise("migrate", env=fleet.env(), cwd=project)
    assert second.code == 0, second.stderr
    assert second.events("directus.step_started") == []
    assert set(second.events("supervisor.finished")[0]["outcomes"].values()) == {"skipped"}
    status = json.loads((await supervise("status", "--json", env=fleet.env(), cwd=project)).stdout)
    by_phase = {p["phase"]: p for p in status["phases"]}
    assert by_phase["schema-apply"]["applied_with"] == installed_version
    assert by_phase["bootstrap"]["bootstrapped_version"] == installed_version


async def test_plan_on_a_fresh_database_changes_nothing(
    fleet: Database, conn: asyncpg.Connection, project: Path
):
    """`plan` lists the pending SQL files, says bootstrap runs first, and leaves the database untouched."""
    r = await supervise("plan", env=fleet.env(), cwd=project)
    assert r.code == 0, r.stderr
    assert "001_positions.sql" in r.stdout
    assert "bootstrap runs first" in r.stdout
    assert "runs: Directus is not installed on this database" in r.stdout
    tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert tables == 0


async def test_three_replicas_migrate_together_where_directus_alone_fails(
    fleet: Database, pg, project: Path, directus_install: Path
):
    """Three `migrate` processes started together on a fresh database all succeed, each step once. Three bare
    `directus bootstrap` started together on another fresh database trip over each other (directus#23707)."""
    procs = [await start_supervisor("migrate", env=fleet.env(), cwd=project) for _ in range(3)]
    results = await asyncio.gather(*(finish(p, timeout=240) for p in procs))
    assert [r.code for r in results] == [0, 0, 0], [r.stderr[-3000:] for r in results if r.code]
    applied = [e for r in results for e in r.events("step.applied") if e["phase"] == "schema-apply"]
    assert len(applied) == 1
    boots = [e for r in results for e in r.events("bootstrap.running")]
    assert len(boots) == 1

    admin = await asyncpg.connect(pg.dsn())
    raw_db = f"{fleet.name}_raw"
    await admin.execute(f'CREATE DATABASE "{raw_db}"')
    try:
        env = {**fleet.env(DB_DATABASE=raw_db), "LOG_LEVEL": "info"}
        cli = env["SUPERVISOR_DIRECTUS_CMD"].split()
        raw = [
            await asyncio.create_subprocess_exec(*cli, "bootstrap", env=env, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(3)
        ]  # fmt: skip
        codes = [await asyncio.wait_for(p.wait(), 120) for p in raw]
        assert any(code != 0 for code in codes), f"all three bare bootstraps succeeded this time: {codes}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{raw_db}" WITH (FORCE)')
        await admin.close()


@pytest.mark.directus_versions
async def test_destructive_snapshot_is_refused_with_data_intact_then_applied_when_allowed(
    fleet: Database, conn: asyncpg.Connection, project: Path
):
    """A snapshot that drops a populated column exits 7, lists the item with its row count and changes nothing;
    with SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA it is applied."""
    assert (await supervise("migrate", env=fleet.env(), cwd=project, timeout=240)).code == 0
    await conn.execute("INSERT INTO vehicles (plate, name) VALUES ('B-FL 1', 'Van 1'), ('B-FL 2', 'Van 2')")
    snap = project / "snapshots" / "schema.yaml"
    data = yaml.safe_load(snap.read_text())
    data["fields"] = [f for f in data["fields"] if (f["collection"], f["field"]) != ("vehicles", "name")]
    snap.write_text(yaml.safe_dump(data, sort_keys=False))

    plan = await supervise("plan", "--json", env=fleet.env(), cwd=project, timeout=240)
    assert plan.code == 0, plan.stderr
    schema = next(p for p in json.loads(plan.stdout)["phases"] if p["phase"] == "schema-apply")
    assert schema["refused"] is True
    assert {"change": "Delete field vehicles.name", "destructive": "drops the column",
            "rows_at_risk": " (2 row(s) hold data)",
            "backup": "copied first into supervisor_backup: column public.vehicles.name with its primary key (id)",
            } in schema["diff"]  # fmt: skip
    check = await supervise("plan", "--check", "--json", env=fleet.env(), cwd=project, timeout=240)
    assert check.code == 7, check.stderr  # what migrate does next
    verdict = json.loads(check.stdout)["check"]
    assert verdict["error_code"] == "SCHEMA_DESTRUCTIVE" and "Delete field vehicles.name" in verdict["reason"]

    r = await supervise("migrate", env=fleet.env(), cwd=project, timeout=240)
    assert r.code == 7, r.stderr
    assert r.failure["error_code"] == "SCHEMA_DESTRUCTIVE"
    assert "Delete field vehicles.name: drops the column (2 row(s) hold data)" in r.failure["error"]
    assert await conn.fetchval("SELECT count(name) FROM vehicles") == 2

    r = await supervise(
        "migrate", env=fleet.env(SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA="1"), cwd=project, timeout=240
    )
    assert r.code == 0, r.stderr
    assert r.events("schema.destructive_allowed")
    cols = {
        c["column_name"]
        for c in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'vehicles'"
        )
    }
    assert "name" not in cols and "plate" in cols


async def test_snapshot_for_another_vendor_or_version_is_refused(
    fleet: Database, conn: asyncpg.Connection, project: Path, installed_version: str
):
    """A MySQL snapshot, or one from another Directus version, exits 7 before Directus touches the schema."""
    snap = project / "snapshots" / "schema.yaml"
    original = snap.read_text()
    snap.write_text(original.replace("vendor: postgres", "vendor: mysql", 1))
    r = await supervise("migrate", "--only", "schema-apply", env=fleet.env(), cwd=project)
    assert (r.code, r.failure["error_code"]) == (7, "SNAPSHOT_VENDOR")
    snap.write_text(original.replace(f"directus: {installed_version}", "directus: 11.9.0", 1))
    r = await supervise("migrate", "--only", "schema-apply", env=fleet.env(), cwd=project)
    assert (r.code, r.failure["error_code"]) == (7, "SNAPSHOT_VERSION")
    assert "Directus 11.9.0" in r.failure["error"] and f"Directus {installed_version}" in r.failure["error"]
    assert await conn.fetchval("SELECT to_regclass('vehicles')") is None


async def test_schema_apply_on_an_uninstalled_database_is_never_reported_as_success(
    fleet: Database, conn: asyncpg.Connection, project: Path
):
    """Bare `directus schema apply` on an empty database exits 0 having applied nothing; the supervisor's
    schema-apply bootstraps first and verifies, so the collections really exist afterwards."""
    env = {**fleet.env(), "LOG_LEVEL": "info"}
    cli = env["SUPERVISOR_DIRECTUS_CMD"].split()
    bare = await asyncio.create_subprocess_exec(
        *cli, "schema", "apply", "--yes", str(project / "snapshots" / "schema.yaml"),
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(bare.communicate(), 120)
    assert bare.returncode == 0 and b"isn't installed" in out  # the lie
    assert await conn.fetchval("SELECT to_regclass('vehicles')") is None

    r = await supervise("migrate", "--only", "schema-apply", env=fleet.env(), cwd=project, timeout=240)
    assert r.code == 0, r.stderr
    assert await conn.fetchval("SELECT to_regclass('vehicles')") is not None
    assert r.events("bootstrap.running")[0]["reason"] == "Directus is not installed on this database"
