"""End to end with the real Directus: a field holding data is dropped by an allowed destructive apply, kept in
supervisor_backup, and restored with the logged SQL once the field is back."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import yaml

from tests.conftest import Database, supervise

NAMES = [(1, "Van 1"), (2, None), (3, "Van 'three'")]


async def test_a_dropped_field_is_kept_and_restored_with_the_logged_sql(
    fleet: Database, conn: asyncpg.Connection, project: Path
) -> None:
    """Shipped snapshot → data in vehicles.name → a snapshot without that field, applied with
    SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA: the column is gone and supervisor_backup holds every row's value beside its
    id, with Directus's field definition; `status` lists the backup. The shipped snapshot again re-creates the
    (empty) field, and the restore SQL the apply logged, run as is, puts every value back."""
    assert (await supervise("migrate", env=fleet.env(), cwd=project, timeout=240)).code == 0
    await conn.execute(
        "INSERT INTO vehicles (id, plate, name) VALUES ($1, 'B-1', $2), ($3, 'B-2', $4), ($5, 'B-3', $6)",
        *[v for row in NAMES for v in row],
    )
    snap = project / "snapshots" / "schema.yaml"
    shipped = snap.read_text()
    data = yaml.safe_load(shipped)
    data["fields"] = [f for f in data["fields"] if (f["collection"], f["field"]) != ("vehicles", "name")]
    snap.write_text(yaml.safe_dump(data, sort_keys=False))

    r = await supervise(
        "migrate", env=fleet.env(SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA="1"), cwd=project, timeout=240
    )
    assert r.code == 0, r.stderr
    [kept] = r.events("schema.backup_kept")
    assert (kept["source"], kept["rows"], kept["change"]) == (
        "public.vehicles.name",
        3,
        "Delete field vehicles.name",
    )
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'vehicles' AND column_name = 'name'"
        )
        == 0
    )
    backup = kept["backup"]
    assert backup.startswith("supervisor_backup.vehicles__name__")
    quoted = 'supervisor_backup."' + backup.split(".", 1)[1] + '"'
    assert [tuple(row) for row in await conn.fetch(f"SELECT id, name FROM {quoted} ORDER BY id")] == NAMES
    definition = json.loads(
        await conn.fetchval(
            "SELECT definition::text FROM supervisor_backup.backups WHERE backup = $1",
            backup.split(".", 1)[1],
        )
    )
    assert [(f["collection"], f["field"]) for f in definition["directus_fields"]] == [("vehicles", "name")]
    assert definition["columns"] == {"name": "character varying(255)"}

    status = await supervise("status", "--json", env=fleet.env(), cwd=project, timeout=120)
    assert status.code == 0, status.stderr
    [listed] = json.loads(status.stdout)["backups"]
    assert (listed["backup"], listed["rows"], listed["restore_sql"]) == (backup, 3, kept["restore"])

    snap.write_text(shipped)  # the field is back in the snapshot: Directus re-creates it, empty
    assert (await supervise("migrate", env=fleet.env(), cwd=project, timeout=240)).code == 0
    assert await conn.fetchval("SELECT count(name) FROM vehicles") == 0
    await conn.execute(kept["restore"])
    assert [tuple(row) for row in await conn.fetch("SELECT id, name FROM vehicles ORDER BY id")] == NAMES
