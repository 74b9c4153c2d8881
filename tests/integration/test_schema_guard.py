"""The schema guard against a stand-in Directus (tests/fake_directus.py) and a real Postgres: a dry-run it cannot
read completely stops the boot with exit 8, nothing applied, nothing recorded."""

from __future__ import annotations

import json
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
    return [
        r["phase"] for r in await conn.fetch("SELECT phase FROM supervisor.supervisor_state ORDER BY phase")
    ]


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
    await conn.execute(
        "UPDATE supervisor.supervisor_state SET directus_version = '11.17.4' WHERE phase = 'bootstrap'"
    )
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
        await conn.fetchval(
            "SELECT directus_version FROM supervisor.supervisor_state WHERE phase = 'bootstrap'"
        )
        == "12.4.0"
    )


NINE_SYSTEM_INDEX_DROPS = HEAD.replace("Collections:", "System Fields:") + "".join(
    f"  - Update directus_{name}\n    - Set is_indexed to false\n"
    for name in (
        "oauth_clients.date_created",
        "oauth_codes.expires_at",
        "oauth_codes.used_at",
        "oauth_consents.client",
        "oauth_tokens.code_hash",
        "oauth_tokens.expires_at",
        "oauth_tokens.previous_session",
        "oauth_tokens.session",
        "sessions.oauth_client",
    )
)


async def _upgrade_pending(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> dict[str, str]:
    """A database on which Directus 11.17.4 was bootstrapped and the snapshot applied, now run by 12.4.0 (the
    stand-in's version): migrate runs bootstrap before schema-apply's dry-run. Returns the stand-in's env."""
    await _installed(conn)
    r, _ = await _guard(db, layout, tmp_path, "[12:00:00.000] INFO: No changes to apply.\n")
    assert r.code == 0, r.stderr
    await conn.execute("UPDATE supervisor.supervisor_state SET directus_version = '11.17.4'")
    return db.env(SUPERVISOR_DIRECTUS_CMD=FAKE, FAKE_DRY_RUN=str(tmp_path / "dry-run.txt"))


async def test_plan_says_an_upgrade_diff_is_computed_before_directus_migrations(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> None:
    """With a Directus upgrade pending, `plan`'s dry-run sees the database before `directus bootstrap` runs the new
    migrations, so its diff can differ from what `migrate` meets: the schema-apply entry carries a `note` saying so
    (JSON and text), and `plan --check` still gives its verdict. Without an upgrade there is no such note."""
    env = await _upgrade_pending(db, conn, layout, tmp_path)
    r = await supervise("plan", "--json", "--check", env=env, cwd=layout.root)
    assert r.code == 9, r.stderr
    report = json.loads(r.stdout)
    schema = next(p for p in report["phases"] if p["phase"] == "schema-apply")
    assert schema["diff"] == []
    assert schema["note"].startswith(
        "`directus bootstrap` runs first (Directus 11.17.4 -> 12.4.0: its migrations must run), so this diff is "
        "computed against the database before Directus's own migrations run"
    )
    assert report["check"]["exit_code"] == 9
    text = await supervise("plan", env=env, cwd=layout.root)
    assert text.code == 0, text.stderr
    assert "so this diff is computed against the database before Directus's own migrations run" in text.stdout
    # A destructive diff is still refused by the check, note and all.
    (tmp_path / "dry-run.txt").write_text(HEAD + "  - Delete legacy\n")
    refused = await supervise("plan", "--json", "--check", env=env, cwd=layout.root)
    assert refused.code == 7, refused.stderr
    assert "note" in next(p for p in json.loads(refused.stdout)["phases"] if p["phase"] == "schema-apply")
    # No upgrade pending (bootstrap recorded for 12.4.0): no note.
    await conn.execute(
        "UPDATE supervisor.supervisor_state SET directus_version = '12.4.0' WHERE phase = 'bootstrap'"
    )
    plain = await supervise("plan", "--json", env=env, cwd=layout.root)
    assert plain.code == 0, plain.stderr
    assert "note" not in next(p for p in json.loads(plain.stdout)["phases"] if p["phase"] == "schema-apply")


async def test_system_index_drops_after_an_upgrade_bootstrap_hint_at_a_snapshot_from_old_migrations(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
) -> None:
    """A snapshot made by the new Directus from a database still on the old migrations lacks the system indexes the
    new migrations add: after the upgrade's bootstrap the dry-run shows their drops. The refusal says what that
    probably means and how to re-make the snapshot; the same drops without a bootstrap in this boot get no hint."""
    env = await _upgrade_pending(db, conn, layout, tmp_path)
    (tmp_path / "dry-run.txt").write_text(NINE_SYSTEM_INDEX_DROPS)
    r = await supervise("migrate", "--only", "schema-apply", env=env, cwd=layout.root)
    assert r.code == 7, r.stderr
    error = r.failure["error"]
    assert error.count("Set is_indexed to false") == 9
    assert (
        "Hint: these are mostly index drops on Directus's own system fields, and `directus bootstrap` has just "
        "run Directus 12.4.0's migrations here. The snapshot was probably made with Directus 12.4.0 from a "
        "database still on the older version's migrations" in error
    )
    assert "`directus bootstrap`, then `directus schema snapshot schema.yaml`" in error
    # Bootstrap is recorded now: the same refusal in a later boot (no bootstrap in it) carries no hint.
    (layout.root / "snapshots" / "schema.yaml").write_text(SNAPSHOT + "# changed\n")
    again = await supervise("migrate", "--only", "schema-apply", env=env, cwd=layout.root)
    assert again.code == 7, again.stderr
    assert "Hint:" not in again.failure["error"]
