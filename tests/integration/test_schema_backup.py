"""An allowed destructive apply keeps what it drops (supervisor.backup), against a stand-in Directus whose "apply"
really drops the tables and columns (tests/fake_directus.py, FAKE_APPLY_SQL) and a real Postgres."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from tests.conftest import ROOT, Database, Layout, Result, supervise
from tests.integration.test_schema_guard import FAKE, SNAPSHOT, _installed

DIFF = """[12:00:00.000] INFO: Extensions loaded
The following changes will be applied:

Collections:
  - Delete legacy

Fields:
  - Delete legacy.note
  - Delete vehicles.name
  - Delete pairs.extra
  - Delete events.vehicles
"""
HEAD_FIELDS = "[12:00:00.000] INFO: Extensions loaded\nThe following changes will be applied:\n\nFields:\n"
DROPS = "DROP TABLE legacy; ALTER TABLE vehicles DROP COLUMN name; ALTER TABLE pairs DROP COLUMN extra;"


async def _content(conn: asyncpg.Connection) -> None:
    """The tables the diff drops from, with data; `events.vehicles` is an alias field (no column)."""
    await _installed(conn)
    await conn.execute(
        """CREATE TABLE legacy (id integer PRIMARY KEY, note text);
        INSERT INTO legacy VALUES (1, 'old'), (2, 'older');
        CREATE TABLE vehicles (id serial PRIMARY KEY, plate text, name text);
        INSERT INTO vehicles (plate, name) VALUES ('B-1', 'Van 1'), ('B-2', NULL), ('B-3', 'Van ''3''');
        CREATE TABLE pairs (a integer, b integer, extra text, PRIMARY KEY (a, b));
        INSERT INTO pairs VALUES (1, 1, 'x'), (1, 2, 'y');
        CREATE TABLE events (id serial PRIMARY KEY, title text)"""
    )


def _setup(db: Database, layout: Layout, tmp_path: Path, diff: str = DIFF, **env: str) -> dict[str, str]:
    (layout.root / "snapshots").mkdir(exist_ok=True)
    (layout.root / "snapshots" / "schema.yaml").write_text(SNAPSHOT)
    (tmp_path / "dry-run.txt").write_text(diff)
    (tmp_path / "apply.sql").write_text(DROPS)
    return db.env(
        SUPERVISOR_DIRECTUS_CMD=FAKE,
        FAKE_DRY_RUN=str(tmp_path / "dry-run.txt"),
        FAKE_APPLY_SQL=str(tmp_path / "apply.sql"),
        FAKE_LOG=str(tmp_path / "calls.log"),
        SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA="1",
        **env,
    )


async def _migrate(env: dict[str, str], layout: Layout) -> Result:
    return await supervise("migrate", "--only", "schema-apply", env=env, cwd=layout.root)


def _applied(tmp_path: Path) -> bool:
    """Whether the stand-in's real (not dry-run) `schema apply` ran."""
    calls = (tmp_path / "calls.log").read_text().splitlines()
    return any(c.startswith("schema apply") and "--dry-run" not in c for c in calls)


async def _backup_tables(conn: asyncpg.Connection) -> list[str]:
    return [
        r["tablename"]
        for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'supervisor_backup' ORDER BY tablename"
        )
    ]


async def test_deleted_table_and_columns_are_copied_before_the_drop_and_restore_as_logged(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> None:
    """With the allow flag, the deleted collection's table and each dropped column (with the primary key, composite
    too) are copied into supervisor_backup before `schema apply` drops them: the copies hold every row, the index
    table records each with its row count and restore SQL, the log says what was kept and how to restore it, and an
    alias field or a field of a deleted collection is logged as nothing to copy. The logged SQL puts the data back
    once the field or collection exists again. `plan` says so beforehand; `status` lists the backups."""
    await _content(conn)
    env = _setup(db, layout, tmp_path)
    plan = await supervise("plan", "--json", env=env, cwd=layout.root)
    assert plan.code == 0, plan.stderr
    diff = next(p for p in json.loads(plan.stdout)["phases"] if p["phase"] == "schema-apply")["diff"]
    notes = {c["change"]: c["backup"] for c in diff}
    assert notes == {
        "Delete collection legacy": "copied first into supervisor_backup: table public.legacy",
        "Delete field legacy.note": "nothing to copy: its collection legacy is deleted too: the table copy holds it",
        "Delete field vehicles.name": "copied first into supervisor_backup: column public.vehicles.name with its "
        "primary key (id)",
        "Delete field pairs.extra": "copied first into supervisor_backup: column public.pairs.extra with its "
        "primary key (a, b)",
        "Delete field events.vehicles": "nothing to copy: an alias field (o2m, m2m or presentation): it has no "
        "column, nothing is stored",
    }
    text = await supervise("plan", env=env, cwd=layout.root)
    assert "backup: copied first into supervisor_backup: column public.vehicles.name" in text.stdout
    assert await _backup_tables(conn) == []  # plan changes nothing

    r = await _migrate(env, layout)
    assert r.code == 0, r.stderr
    assert _applied(tmp_path)
    assert await conn.fetchval("SELECT to_regclass('legacy')") is None  # the stand-in's apply dropped it
    kept = {e["source"]: e for e in r.events("schema.backup_kept")}
    assert {s: e["rows"] for s, e in kept.items()} == {
        "public.legacy": 2,
        "public.vehicles.name": 3,
        "public.pairs.extra": 2,
    }
    nothing = {e["change"]: e["reason"] for e in r.events("schema.backup_nothing_to_keep")}
    assert set(nothing) == {"Delete field legacy.note", "Delete field events.vehicles"}
    assert r.events("schema.backup_finished")[0]["backups"] == 3

    index = {
        r["source"]: r
        for r in await conn.fetch(
            "SELECT backup, kind, row_count, restore_sql, snapshot_checksum, directus_version, key_columns, "
            "concat_ws('.', source_schema, source_table, source_column) AS source FROM supervisor_backup.backups"
        )
    }
    assert set(index) == set(kept)
    for source, row in index.items():
        assert kept[source]["backup"] == f"supervisor_backup.{row['backup']}"
        assert kept[source]["restore"] == row["restore_sql"]
        assert row["directus_version"] == "12.4.0" and row["snapshot_checksum"].startswith("sha256:")
    assert index["public.pairs.extra"]["key_columns"] == ["a", "b"]
    name_copy = index["public.vehicles.name"]["backup"]
    assert name_copy.startswith("vehicles__name__")
    assert [
        tuple(r) for r in await conn.fetch(f'SELECT * FROM supervisor_backup."{name_copy}" ORDER BY id')
    ] == [
        (1, "Van 1"),
        (2, None),
        (3, "Van '3'"),
    ]
    assert sorted(await _backup_tables(conn)) == sorted(["backups", *(r["backup"] for r in index.values())])

    # The field and the collection come back (re-added to the snapshot); the logged SQL restores the data.
    await conn.execute(
        "ALTER TABLE vehicles ADD COLUMN name text; ALTER TABLE pairs ADD COLUMN extra text;"
        "CREATE TABLE legacy (id serial PRIMARY KEY, note text)"
    )
    for source in ("public.vehicles.name", "public.pairs.extra", "public.legacy"):
        await conn.execute(kept[source]["restore"])
    assert [tuple(r) for r in await conn.fetch("SELECT id, name FROM vehicles ORDER BY id")] == [
        (1, "Van 1"),
        (2, None),
        (3, "Van '3'"),
    ]
    assert [tuple(r) for r in await conn.fetch("SELECT * FROM pairs ORDER BY a, b")] == [
        (1, 1, "x"),
        (1, 2, "y"),
    ]
    assert [tuple(r) for r in await conn.fetch("SELECT * FROM legacy ORDER BY id")] == [
        (1, "old"),
        (2, "older"),
    ]
    assert await conn.fetchval("SELECT nextval('legacy_id_seq')") == 3  # the restore moved the sequence on

    status = await supervise("status", "--json", env=env, cwd=layout.root)
    assert status.code == 0, status.stderr
    listed = {b["source"]: b for b in json.loads(status.stdout)["backups"]}
    assert {s: (b["rows"], b["kind"], b["present"]) for s, b in listed.items()} == {
        "public.legacy": (2, "table", True),
        "public.vehicles.name": (3, "column", True),
        "public.pairs.extra": (2, "column", True),
    }
    text = await supervise("status", env=env, cwd=layout.root)
    assert f"supervisor_backup.{name_copy}" in text.stdout
    assert "public.vehicles.name" in text.stdout and "3 row(s)" in text.stdout

    # The documented clean-up of backups older than 30 days drops exactly those, with their index rows.
    docs = (ROOT / "docs" / "operations.md").read_text()
    cleanup = docs.split("or every backup older than 30 days:\n\n```sql\n", 1)[1].split("```", 1)[0]
    await conn.execute(cleanup)
    assert len(await _backup_tables(conn)) == 4
    await conn.execute(
        "UPDATE supervisor_backup.backups SET created_at = created_at - interval '31 days' "
        "WHERE source_table = 'legacy'"
    )
    await conn.execute(cleanup)
    assert sorted(await _backup_tables(conn)) == sorted(
        ["backups", name_copy, index["public.pairs.extra"]["backup"]]
    )
    assert await conn.fetchval("SELECT count(*) FROM supervisor_backup.backups") == 2


async def test_a_backup_that_cannot_be_made_stops_the_apply_with_nothing_dropped(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> None:
    """A `supervisor_backup.backups` that is not ours makes the backup fail part-way (after the first copies):
    exit 7 SCHEMA_BACKUP_FAILED, `schema apply` never ran, every column and table is still there, no copy was left
    behind (one transaction), and nothing was recorded as applied."""
    await _content(conn)
    await conn.execute("CREATE SCHEMA supervisor_backup; CREATE TABLE supervisor_backup.backups (x integer)")
    env = _setup(db, layout, tmp_path)
    r = await _migrate(env, layout)
    assert r.code == 7, r.stderr
    assert r.failure["error_code"] == "SCHEMA_BACKUP_FAILED"
    error = r.failure["error"]
    assert (
        "could not copy public.legacy into supervisor_backup before a destructive schema apply: 42703"
        in error
    )
    assert "Nothing was dropped: the snapshot was not applied" in error
    assert not _applied(tmp_path)
    assert await conn.fetchval("SELECT count(name) FROM vehicles") == 2
    assert await conn.fetchval("SELECT count(*) FROM legacy") == 2
    assert await _backup_tables(conn) == ["backups"]
    assert (
        await conn.fetchval("SELECT count(*) FROM supervisor.supervisor_state WHERE phase = 'schema-apply'")
        == 0
    )


async def test_a_role_that_may_not_create_the_backup_schema_gets_exit_3_and_nothing_dropped(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> None:
    """A role without CREATE on the database cannot create supervisor_backup: exit 3 DB_PRIVILEGE naming the GRANT,
    the apply never ran, nothing dropped, no schema left behind."""
    await _content(conn)
    role = f"r_{db.name}"
    env = _setup(db, layout, tmp_path)
    # First a clean apply as the owner, so the supervisor's own tables exist; then hand the role what it needs.
    (tmp_path / "dry-run.txt").write_text("[12:00:00.000] INFO: No changes to apply.\n")
    assert (await _migrate(env, layout)).code == 0
    (tmp_path / "dry-run.txt").write_text(DIFF)
    (layout.root / "snapshots" / "schema.yaml").write_text(SNAPSHOT + "# changed\n")
    await conn.execute(
        f"""CREATE ROLE "{role}" LOGIN PASSWORD 'pw';
        REVOKE CREATE ON DATABASE "{db.name}" FROM PUBLIC;
        DO $$ DECLARE s text; BEGIN
          FOR s IN SELECT nspname FROM pg_namespace WHERE nspname IN ('public', 'supervisor') LOOP
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO "{role}"', s);
            EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %I TO "{role}"', s);
          END LOOP; END $$"""
    )
    try:
        r = await _migrate({**env, "DB_USER": role, "DB_PASSWORD": "pw"}, layout)
        assert r.code == 3, r.stderr
        assert r.failure["error_code"] == "DB_PRIVILEGE"
        assert f'GRANT USAGE, CREATE ON SCHEMA "supervisor_backup" TO "{role}"' in r.failure["error"]
        assert "Nothing was dropped" in r.failure["error"]
        assert not _applied(tmp_path)
        assert await conn.fetchval("SELECT count(name) FROM vehicles") == 2
        assert await conn.fetchval("SELECT to_regnamespace('supervisor_backup')") is None
    finally:
        await conn.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')


async def test_a_column_of_a_table_without_primary_key_is_refused_before_anything(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> None:
    """A dropped column whose table has no primary key could not be matched back to its rows: exit 7
    SCHEMA_BACKUP_REFUSED naming it, nothing copied, the apply never ran; `plan --check` says the same."""
    await _content(conn)
    await conn.execute("ALTER TABLE pairs DROP CONSTRAINT pairs_pkey")
    env = _setup(db, layout, tmp_path)
    check = await supervise("plan", "--check", "--json", env=env, cwd=layout.root)
    assert check.code == 7, check.stderr
    assert json.loads(check.stdout)["check"]["error_code"] == "SCHEMA_BACKUP_REFUSED"
    r = await _migrate(env, layout)
    assert r.code == 7, r.stderr
    assert r.failure["error_code"] == "SCHEMA_BACKUP_REFUSED"
    assert "Delete field pairs.extra: the table public.pairs has no primary key" in r.failure["error"]
    assert not _applied(tmp_path)
    assert await conn.fetchval("SELECT to_regnamespace('supervisor_backup')") is None
    assert await conn.fetchval("SELECT count(extra) FROM pairs") == 2


async def test_an_index_drop_alone_copies_nothing_and_creates_no_backup_schema(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> None:
    """An allowed diff that only drops an index loses no stored value: the apply runs, the log says there was
    nothing to copy, and no supervisor_backup schema is created (a role without CREATE on the database is fine)."""
    await _content(conn)
    env = _setup(
        db, layout, tmp_path, HEAD_FIELDS + "  - Update vehicles.plate\n    - Set is_indexed to false\n"
    )
    (tmp_path / "apply.sql").write_text("SELECT 1")
    r = await _migrate(env, layout)
    assert r.code == 0, r.stderr
    assert _applied(tmp_path)
    [nothing] = r.events("schema.backup_nothing_to_keep")
    assert nothing["change"] == "Update field vehicles.plate (Set is_indexed to false)"
    assert not r.events("schema.backup_kept") and not r.events("schema.backup_finished")
    assert await conn.fetchval("SELECT to_regnamespace('supervisor_backup')") is None


async def test_a_type_change_keeps_the_old_values_first(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> None:
    """A type change rewrites the column (an Update of max_length) or drops and re-creates it (Delete + Create of
    the same field): either way the column's values are copied with the key before the apply."""
    await _content(conn)
    diff = (
        HEAD_FIELDS + "  - Create pairs.extra\n  - Update vehicles.name\n    - Set max_length to 10\n"
        "  - Delete pairs.extra\n"
    )
    env = _setup(db, layout, tmp_path, diff)
    (tmp_path / "apply.sql").write_text(
        "ALTER TABLE vehicles ALTER COLUMN name TYPE varchar(10); ALTER TABLE pairs DROP COLUMN extra; "
        "ALTER TABLE pairs ADD COLUMN extra integer"
    )
    r = await _migrate(env, layout)
    assert r.code == 0, r.stderr
    kept = {e["source"]: (e["rows"], e["change"]) for e in r.events("schema.backup_kept")}
    assert kept == {
        "public.vehicles.name": (3, "Update field vehicles.name (Set max_length to 10)"),
        "public.pairs.extra": (2, "Delete field pairs.extra"),
    }
    assert await conn.fetchval("SELECT count(extra) FROM pairs") == 0
