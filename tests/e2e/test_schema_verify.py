"""How schema-apply proves its apply, with the real Directus: in the database after a fresh apply (no second Node
start), with a second dry-run where something of the snapshot existed before. A stand-in `schema apply` that claims
success and changes nothing (tests/noop_apply.py, the real CLI for every other step) is refused either way."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg
import yaml

from tests.conftest import ROOT, Database, Result, supervise

NOOP = f"{sys.executable} {ROOT / 'tests' / 'noop_apply.py'}"


def _dry_runs(r: Result) -> list[str]:
    return [e["argv"] for e in r.events("directus.step_started") if "--dry-run" in e["argv"]]


def _noop_env(fleet: Database, calls: Path) -> dict[str, str]:
    real = fleet.env()["SUPERVISOR_DIRECTUS_CMD"]
    return fleet.env(SUPERVISOR_DIRECTUS_CMD=NOOP, REAL_DIRECTUS_CMD=real, NOOP_LOG=str(calls))


async def _recorded(conn: asyncpg.Connection) -> list[str]:
    return [
        r["phase"] for r in await conn.fetch("SELECT phase FROM supervisor.supervisor_state ORDER BY phase")
    ]


async def test_a_fresh_apply_is_verified_in_the_database_without_a_dry_run(
    fleet: Database, conn: asyncpg.Connection, project: Path
):
    """Empty database: bootstrap, apply, and the check in the database; no dry-run at all (two Node starts
    instead of three), and the apply is recorded."""
    r = await supervise("migrate", "--only", "schema-apply", env=fleet.env(), cwd=project, timeout=240)
    assert r.code == 0, r.stderr
    assert _dry_runs(r) == []
    verified = r.events("schema.verified")
    assert len(verified) == 1 and verified[0]["how"] == "database" and verified[0]["items"] > 50
    assert await _recorded(conn) == ["bootstrap", "schema-apply"]


async def test_a_fresh_apply_that_creates_nothing_is_refused(
    fleet: Database, conn: asyncpg.Connection, project: Path, tmp_path: Path
):
    """Empty database, an apply that exits 0 having done nothing: exit 8 SCHEMA_NOT_APPLIED naming what is missing,
    and only the bootstrap is recorded, so the next boot applies again."""
    calls = tmp_path / "calls.log"
    r = await supervise(
        "migrate", "--only", "schema-apply", env=_noop_env(fleet, calls), cwd=project, timeout=240
    )
    assert (r.code, r.failure["error_code"]) == (8, "SCHEMA_NOT_APPLIED"), r.stderr
    assert "reported success but" in r.failure["error"]
    assert "collection devices" in r.failure["error"] and "table devices" in r.failure["error"]
    assert any(c.startswith("schema apply --yes") for c in calls.read_text().splitlines())
    assert _dry_runs(r) == []
    assert await _recorded(conn) == ["bootstrap"]


async def test_where_something_existed_an_apply_that_changes_nothing_is_caught_by_a_second_dry_run(
    fleet: Database, conn: asyncpg.Connection, project: Path, tmp_path: Path
):
    """After a real apply, a snapshot with one more field, and an apply that exits 0 having done nothing: the
    second dry-run still shows the field to create, so exit 8 SCHEMA_NOT_APPLIED, and the new snapshot is not
    recorded."""
    first = await supervise("migrate", "--only", "schema-apply", env=fleet.env(), cwd=project, timeout=240)
    assert first.code == 0, first.stderr
    recorded = await conn.fetchval(
        "SELECT snapshot_checksum FROM supervisor.supervisor_state WHERE phase = 'schema-apply'"
    )
    snap = project / "snapshots" / "schema.yaml"
    data = yaml.safe_load(snap.read_text())
    extra = next(f for f in data["fields"] if (f["collection"], f["field"]) == ("devices", "serial"))
    extra = yaml.safe_load(yaml.safe_dump(extra).replace("serial", "serial_two"))
    extra["schema"]["is_nullable"], extra["meta"]["required"] = True, False
    data["fields"].append(extra)
    snap.write_text(yaml.safe_dump(data, sort_keys=False))
    r = await supervise("migrate", "--only", "schema-apply", env=_noop_env(fleet, tmp_path / "c"), cwd=project,
                        timeout=240)  # fmt: skip
    assert (r.code, r.failure["error_code"]) == (8, "SCHEMA_NOT_APPLIED"), r.stderr
    assert "1 change(s) remain" in r.failure["error"] and "devices.serial_two" in r.failure["error"]
    assert len(_dry_runs(r)) == 2  # the guard's, and the check after the apply
    assert (
        await conn.fetchval(
            "SELECT snapshot_checksum FROM supervisor.supervisor_state WHERE phase = 'schema-apply'"
        )
        == recorded
    )


async def test_a_table_of_the_snapshot_made_before_the_first_apply_brings_the_guard_back(
    fleet: Database, conn: asyncpg.Connection, project: Path
):
    """Directus not installed yet, but a table of the snapshot exists (made by pre-schema SQL, say): the database
    is not empty of the snapshot, so the guard's dry-run runs before the apply (it could have dropped that table's
    columns). Directus 12.4.0 then refuses to create the collection (exit 8), and the row stays."""
    await conn.execute("CREATE TABLE devices (id serial PRIMARY KEY, keep_me text)")
    await conn.execute("INSERT INTO devices (keep_me) VALUES ('data')")
    r = await supervise("migrate", "--only", "schema-apply", env=fleet.env(), cwd=project, timeout=240)
    found = r.events("schema.found_before_apply")
    assert found and "table devices" in found[0]["first"], r.stderr
    assert r.events("schema.fresh_database") == []
    started = [e["argv"] for e in r.events("directus.step_started")]
    first_apply = next(i for i, a in enumerate(started) if " schema apply " in a)
    assert "--dry-run" in started[first_apply], started
    assert (r.code, r.failure["error_code"]) == (8, "SCHEMA_APPLY_FAILED"), r.stderr
    assert 'Collection "devices" already exists' in r.failure["error"]
    assert await conn.fetchval("SELECT keep_me FROM devices") == "data"
