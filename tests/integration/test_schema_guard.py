"""The schema guard against a stand-in Directus (tests/fake_directus.py) and a real Postgres: a dry-run it cannot
read completely stops the boot with exit 8, nothing applied, nothing recorded."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg

from tests.conftest import ROOT, Database, Layout, Result, supervise

FAKE = f"{sys.executable} {ROOT / 'tests' / 'fake_directus.py'}"
SNAPSHOT = "version: 1\ndirectus: 12.4.0\nvendor: postgres\ncollections: []\nfields: []\nsystemFields: []\nrelations: []\n"
HEAD = "[12:00:00.000] INFO: Extensions loaded\nThe following changes will be applied:\n\nCollections:\n"


async def _installed(conn: asyncpg.Connection) -> None:
    """Directus's tables as far as the supervisor checks them, so the guard's dry-run runs (not a fresh install)."""
    await conn.execute(
        "CREATE TABLE directus_collections (collection text PRIMARY KEY);"
        "CREATE TABLE directus_migrations (version text PRIMARY KEY);"
        "INSERT INTO directus_migrations VALUES ('20240101A')"
    )


async def _guard(db: Database, layout: Layout, tmp_path: Path, dry_run: str) -> tuple[Result, list[str]]:
    """`migrate --only schema-apply` with the stand-in printing `dry_run`; the result and the CLI calls made."""
    (layout.root / "snapshots").mkdir()
    (layout.root / "snapshots" / "schema.yaml").write_text(SNAPSHOT)
    (tmp_path / "dry-run.txt").write_text(dry_run)
    calls = tmp_path / "calls.log"
    env = db.env(
        SUPERVISOR_DIRECTUS_CMD=FAKE, FAKE_DRY_RUN=str(tmp_path / "dry-run.txt"), FAKE_LOG=str(calls)
    )
    r = await supervise("migrate", "--only", "schema-apply", env=env, cwd=layout.root)
    return r, calls.read_text().splitlines()


async def _recorded(conn: asyncpg.Connection) -> list[str]:
    return [r["phase"] for r in await conn.fetch("SELECT phase FROM supervisor_state ORDER BY phase")]


async def test_unreadable_dry_run_line_exits_8_and_records_nothing(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> None:
    """A deletion worded in a way the parser does not know (a new release, say) is a refusal: exit 8,
    SCHEMA_DIFF_UNREADABLE, quoting the line and its number; `schema apply` never runs and supervisor_state has no
    schema-apply row, so the next boot checks again. (Before: the line was skipped, the diff read as empty, and the
    snapshot was recorded as applied.)"""
    await _installed(conn)
    r, calls = await _guard(db, layout, tmp_path, HEAD + "  - Drop legacy\n")
    assert r.code == 8, r.stderr
    assert r.failure["error_code"] == "SCHEMA_DIFF_UNREADABLE"
    assert "line 5 of its output, '  - Drop legacy'" in r.failure["error"]
    assert "The snapshot was not applied and nothing was recorded" in r.failure["error"]
    assert [c for c in calls if c.startswith("schema apply")] == [c for c in calls if "--dry-run" in c] != []
    assert await _recorded(conn) == ["bootstrap"]


async def test_deleted_name_with_a_space_is_read_and_refused(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> None:
    """`  - Delete my table` (a collection whose name holds a space, printed verbatim) is a deletion: exit 7 and
    nothing recorded. (Before: the line did not match and was dropped, so the snapshot was recorded as applied.)"""
    await _installed(conn)
    r, calls = await _guard(db, layout, tmp_path, HEAD + "  - Delete my table\n")
    assert r.code == 7, r.stderr
    assert r.failure["error_code"] == "SCHEMA_DESTRUCTIVE"
    assert "Delete collection my table: drops the table and its rows" in r.failure["error"]
    assert all("--dry-run" in c for c in calls if c.startswith("schema apply"))
    assert await _recorded(conn) == ["bootstrap"]


async def test_a_refusal_after_an_upgrade_bootstrap_says_the_migrations_stay(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> None:
    """A Directus upgrade runs `directus bootstrap` (its own migrations) before the guard; when the guard then
    refuses, the message must not claim the database is untouched: it says bootstrap ran, why, and that its
    migrations stay. A refusal without a bootstrap in the same boot carries no such note."""
    await _installed(conn)
    r, _ = await _guard(db, layout, tmp_path, "[12:00:00.000] INFO: No changes to apply.\n")
    assert r.code == 0, r.stderr
    # The same refusal twice: once with Directus already bootstrapped at this version, once after an "upgrade".
    (tmp_path / "dry-run.txt").write_text(HEAD + "  - Delete legacy\n")
    (layout.root / "snapshots" / "schema.yaml").write_text(SNAPSHOT + "# changed\n")
    env = db.env(SUPERVISOR_DIRECTUS_CMD=FAKE, FAKE_DRY_RUN=str(tmp_path / "dry-run.txt"))
    plain = await supervise("migrate", "--only", "schema-apply", env=env, cwd=layout.root)
    assert plain.code == 7, plain.stderr
    assert "so it was not applied" in plain.failure["error"]
    assert "directus bootstrap` ran" not in plain.failure["error"]
    await conn.execute("UPDATE supervisor_state SET directus_version = '11.17.4' WHERE phase = 'bootstrap'")
    upgrade = await supervise("migrate", "--only", "schema-apply", env=env, cwd=layout.root)
    assert upgrade.code == 7, upgrade.stderr
    error = upgrade.failure["error"]
    assert "nothing was applied" not in error
    assert (
        "`directus bootstrap` ran in this boot (Directus 11.17.4 -> 12.4.0: its migrations must run)" in error
    )
    assert (
        "they are committed and recorded (bootstrap phase) and stay. Only the snapshot was not applied."
        in error
    )
    assert (
        await conn.fetchval("SELECT directus_version FROM supervisor_state WHERE phase = 'bootstrap'")
        == "12.4.0"
    )
