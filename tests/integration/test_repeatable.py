"""Repeatable files (`-- supervisor: repeatable`) against a real Postgres: re-run when changed and only then, in
folder order, in one transaction with their tracking row; batched and one statement per round trip."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import ROOT, Database, Layout, finish, start_supervisor, supervise

PRE = ("migrate", "--only", "pre-schema")
LEDGER = "supervisor.migrations_applied"  # the default tracking table
RUNS = "CREATE TABLE runs (n serial PRIMARY KEY, name text NOT NULL);"
VIEW_1 = (
    "-- supervisor: repeatable\n"
    "CREATE OR REPLACE VIEW item_view AS SELECT id FROM items;\n"
    "INSERT INTO runs (name) VALUES ('002');\n"
)
# The new version adds a column (which CREATE OR REPLACE VIEW allows at the end), and leaves a SET behind that must
# not reach the next file.
VIEW_2 = (
    "-- supervisor: repeatable\n"
    "CREATE OR REPLACE VIEW item_view AS SELECT id, label FROM items;\n"
    "INSERT INTO runs (name) VALUES ('002');\n"
    "SET search_path TO pg_catalog;\n"
)


@pytest.fixture
def env(sql_paths_env: dict[str, str]) -> dict[str, str]:
    """Both ways transactional files run (tests/integration/conftest.py)."""
    return sql_paths_env


def _base(layout: Layout) -> None:
    """001 plain (a table and the side-effect log), 002 repeatable (a view on it), 003 plain (adds a column)."""
    layout.add(
        "pre",
        "001_items.sql",
        f"{RUNS}\nCREATE TABLE items (id int);\nINSERT INTO runs (name) VALUES ('001');",
    )
    layout.add("pre", "002_item_view.sql", VIEW_1)
    layout.add(
        "pre",
        "003_label.sql",
        "ALTER TABLE items ADD COLUMN label text;\nINSERT INTO runs (name) VALUES ('003');",
    )


async def _runs(conn: asyncpg.Connection) -> list[str]:
    return [r["name"] for r in await conn.fetch("SELECT name FROM runs ORDER BY n")]


async def _row(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT * FROM {LEDGER} WHERE filename = $1", name)
    assert row is not None
    return row


async def _view_columns(conn: asyncpg.Connection) -> list[str]:
    return [
        r["column_name"]
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'item_view' ORDER BY ordinal_position"
        )
    ]


async def test_a_repeatable_file_reruns_when_changed_and_only_then_in_folder_order(
    env: dict[str, str], conn: asyncpg.Connection, layout: Layout
):
    """First boot: 001, 002 (repeatable), 003 in order. Unchanged: nothing runs. 002 changed and a new 004 that
    reads the view's new column: 002 re-runs first (its place in the folder among the pending files), then 004; its
    row carries the new checksum, a later time and this run's pid; its SET does not reach 004; the out-of-order
    check (refuse) does not fire for the re-run. Unchanged again: nothing runs."""
    _base(layout)
    first = await supervise(*PRE, env=env, cwd=layout.root)
    assert first.code == 0, first.stderr
    assert await _runs(conn) == ["001", "002", "003"]
    assert [(e["file"], e.get("repeatable")) for e in first.events("step.applied")] == [
        ("001_items.sql", None), ("002_item_view.sql", "first run"), ("003_label.sql", None),
    ]  # fmt: skip
    before = await _row(conn, "002_item_view.sql")

    same = await supervise(*PRE, env=env, cwd=layout.root)
    assert same.code == 0, same.stderr
    assert same.events("step.applied") == []
    assert await _runs(conn) == ["001", "002", "003"]
    assert await _row(conn, "002_item_view.sql") == before

    view = layout.add("pre", "002_item_view.sql", VIEW_2)
    layout.add("pre", "004_labels.sql", "CREATE VIEW labels AS SELECT label FROM item_view;")
    changed = await supervise(*PRE, env={**env, "SUPERVISOR_OUT_OF_ORDER": "refuse"}, cwd=layout.root)
    assert changed.code == 0, changed.stderr
    assert [(e["file"], e.get("repeatable")) for e in changed.events("step.applied")] == [
        ("002_item_view.sql", "re-run"), ("004_labels.sql", None),
    ]  # fmt: skip
    assert changed.events("migration.out_of_order") == []
    assert await _runs(conn) == ["001", "002", "003", "002"]
    assert await _view_columns(conn) == ["id", "label"]
    after = await _row(conn, "002_item_view.sql")
    assert after["checksum"] != before["checksum"]
    assert after["checksum"] == "sha256:" + hashlib.sha256(view.read_bytes()).hexdigest()
    assert after["applied_at"] > before["applied_at"]
    assert after["applied_by"] != before["applied_by"]  # host:pid of the run that re-ran it
    assert (after["status"], after["phase"]) == ("applied", "pre-schema")
    assert after["duration_ms"] is not None
    assert await conn.fetchval(f"SELECT count(*) FROM {LEDGER}") == 4

    again = await supervise(*PRE, env=env, cwd=layout.root)
    assert again.code == 0, again.stderr
    assert again.events("step.applied") == []
    assert await _runs(conn) == ["001", "002", "003", "002"]


async def test_a_failing_rerun_rolls_back_and_keeps_the_old_version_and_row(
    env: dict[str, str], conn: asyncpg.Connection, layout: Layout
):
    """A changed repeatable file that fails (exit 4) is rolled back whole: the view keeps its old definition, its
    row its old checksum and time, and the new file after it does not run; the message names the repeatable file
    and says the previous version stays. The next boot tries it again."""
    _base(layout)
    assert (await supervise(*PRE, env=env, cwd=layout.root)).code == 0
    before = await _row(conn, "002_item_view.sql")
    layout.add("pre", "002_item_view.sql", VIEW_2 + "SELECT 1/0;\n")
    layout.add("pre", "004_after.sql", "INSERT INTO runs (name) VALUES ('004');")
    r = await supervise(*PRE, env=env, cwd=layout.root)
    assert r.code == 4, r.stderr
    fail = r.failure
    assert fail["error_code"] == "SQL_ERROR"
    assert fail["error"].startswith("db-init/002_item_view.sql:5:")
    assert "the previous version (and its tracking row) stays in place" in fail["error"]
    assert r.events("step.applied") == []
    assert await _view_columns(conn) == ["id"]
    assert await _runs(conn) == ["001", "002", "003"]
    assert await _row(conn, "002_item_view.sql") == before
    assert await conn.fetchval(f"SELECT count(*) FROM {LEDGER} WHERE filename = '004_after.sql'") == 0

    layout.add("pre", "002_item_view.sql", VIEW_2)
    fixed = await supervise(*PRE, env=env, cwd=layout.root)
    assert fixed.code == 0, fixed.stderr
    assert [e["file"] for e in fixed.events("step.applied")] == ["002_item_view.sql", "004_after.sql"]
    assert await _view_columns(conn) == ["id", "label"]


async def test_a_rerun_before_a_failing_file_of_the_same_batch_stays_applied(
    env: dict[str, str], conn: asyncpg.Connection, layout: Layout
):
    """A re-run that commits before a later file fails is reported as applied and stays so; the failure is the
    later file's (exit 4)."""
    _base(layout)
    assert (await supervise(*PRE, env=env, cwd=layout.root)).code == 0
    layout.add("pre", "002_item_view.sql", VIEW_2)
    layout.add("pre", "004_bad.sql", "INSERT INTO runs (name) VALUES ('004');\nSELECT 1/0;")
    r = await supervise(*PRE, env=env, cwd=layout.root)
    assert r.code == 4, r.stderr
    assert r.failure["error"].startswith("db-init/004_bad.sql:2:")
    assert [(e["file"], e["repeatable"]) for e in r.events("step.applied")] == [
        ("002_item_view.sql", "re-run")
    ]
    assert await _view_columns(conn) == ["id", "label"]
    assert await _runs(conn) == ["001", "002", "003", "002"]


async def test_a_changed_plain_file_is_still_refused_and_nothing_reruns(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A changed plain file is exit 5 (CHECKSUM_MISMATCH) even beside a changed repeatable file, which then does
    not run either; a repeatable file whose directive was removed is a changed plain file (exit 5)."""
    _base(layout)
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0
    layout.add("pre", "002_item_view.sql", VIEW_2)
    plain = layout.add("pre", "003_label.sql", "ALTER TABLE items ADD COLUMN label varchar;")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert (r.code, r.failure["error_code"]) == (5, "CHECKSUM_MISMATCH")
    assert "003_label.sql" in r.failure["error"] and "002_item_view.sql" not in r.failure["error"]
    assert await _runs(conn) == ["001", "002", "003"]
    assert await _view_columns(conn) == ["id"]

    plain.unlink()
    layout.add(
        "pre",
        "003_label.sql",
        "ALTER TABLE items ADD COLUMN label text;\nINSERT INTO runs (name) VALUES ('003');",
    )
    layout.add("pre", "002_item_view.sql", VIEW_1.replace("-- supervisor: repeatable\n", ""))
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert (r.code, r.failure["error_code"]) == (5, "CHECKSUM_MISMATCH")
    assert "002_item_view.sql" in r.failure["error"]
    assert await _runs(conn) == ["001", "002", "003"]


async def test_a_plain_file_made_repeatable_reruns_once(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Adding the directive to an applied plain file changes its checksum: it runs once more, as a repeatable file,
    then stays put until it changes again."""
    layout.add("pre", "001_items.sql", f"{RUNS}\nCREATE TABLE items (id int);")
    layout.add("pre", "002_item_view.sql", VIEW_1.replace("-- supervisor: repeatable\n", ""))
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0
    layout.add("pre", "002_item_view.sql", VIEW_1)
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert [(e["file"], e["repeatable"]) for e in r.events("step.applied")] == [
        ("002_item_view.sql", "re-run")
    ]
    assert await _runs(conn) == ["002", "002"]
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0 and r.events("step.applied") == []
    assert await _runs(conn) == ["002", "002"]


async def test_two_replicas_rerun_a_changed_file_exactly_once(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Two supervisors started together on a changed repeatable file: both succeed, the file runs once (the second
    re-reads the ledger under the lock and finds it current)."""
    _base(layout)
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0
    # Slow enough that the second replica really waits for the lock while the first runs it.
    layout.add("pre", "002_item_view.sql", VIEW_2 + "SELECT pg_sleep(1);\n")
    procs = [await start_supervisor(*PRE, env=db.env(), cwd=layout.root) for _ in range(2)]
    results = await asyncio.gather(*(finish(p) for p in procs))
    assert [r.code for r in results] == [0, 0], [r.stderr for r in results]
    assert sorted(len(r.events("step.applied")) for r in results) == [0, 1]
    assert await _runs(conn) == ["001", "002", "003", "002"]


FAKE = f"{sys.executable} {ROOT / 'tests' / 'fake_directus.py'}"
SNAPSHOT = "version: 1\ndirectus: 12.4.0\nvendor: postgres\ncollections: []\nfields: []\nsystemFields: []\nrelations: []\n"


async def test_status_and_plan_show_a_rerun_and_plan_check_exits_9(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
):
    """`status --json` lists the changed repeatable file under `rerun` (not `changed`), the text says it will
    re-run; `plan` lists it in folder order among the pending files; `plan --check` exits 9 and changes nothing;
    after `migrate`, `status` lists nothing to re-run and `plan --check` exits 0."""
    # Directus installed and the snapshot applied, as far as the schema phases can tell (a fake Directus CLI).
    await conn.execute(
        "CREATE TABLE directus_collections (collection text PRIMARY KEY);"
        "CREATE TABLE directus_migrations (version text PRIMARY KEY);"
        "INSERT INTO directus_migrations VALUES ('20240101A')"
    )
    (layout.root / "snapshots").mkdir()
    (layout.root / "snapshots" / "schema.yaml").write_text(SNAPSHOT)
    dry = tmp_path / "dry-run.txt"
    dry.write_text("[12:00:00.000] INFO: No changes to apply.\n")
    env = db.env(SUPERVISOR_DIRECTUS_CMD=FAKE, FAKE_DRY_RUN=str(dry))
    _base(layout)
    assert (await supervise("migrate", env=env, cwd=layout.root)).code == 0
    assert (await supervise("plan", "--check", env=env, cwd=layout.root)).code == 0
    layout.add("pre", "002_item_view.sql", VIEW_2)
    layout.add("pre", "004_new.sql", "SELECT 4;")
    status = await supervise("status", "--json", env=env, cwd=layout.root)
    assert status.code == 0, status.stderr
    pre = next(p for p in json.loads(status.stdout)["phases"] if p["phase"] == "pre-schema")
    assert (pre["rerun"], pre["changed"], pre["pending"], pre["repeatable"]) == (
        ["002_item_view.sql"], [], ["004_new.sql"], ["002_item_view.sql"],
    )  # fmt: skip
    text = await supervise("status", env=env, cwd=layout.root)
    assert "rerun         pre-schema   002_item_view.sql (repeatable: changed, will re-run)" in text.stdout

    plan = await supervise("plan", "--check", env=env, cwd=layout.root)
    assert plan.code == 9, plan.stderr
    lines = plan.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("pre-schema"))
    assert lines[head : head + 3] == [
        "pre-schema    2 file(s) to apply",
        f"{'':<16}002_item_view.sql (repeatable: changed, will re-run)",
        f"{'':<16}004_new.sql",
    ]
    plan_json = await supervise("plan", "--json", "--check", env=env, cwd=layout.root)
    assert json.loads(plan_json.stdout)["check"]["reason"].startswith(
        "pre-schema: 2 file(s) to apply (1 of them repeatable, changed, to re-run)"
    )
    assert await _runs(conn) == ["001", "002", "003"]  # plan changed nothing

    assert (await supervise("migrate", env=env, cwd=layout.root)).code == 0
    status = await supervise("status", "--json", env=env, cwd=layout.root)
    pre = next(p for p in json.loads(status.stdout)["phases"] if p["phase"] == "pre-schema")
    assert (pre["rerun"], pre["pending"]) == ([], [])
    assert (await supervise("plan", "--check", env=env, cwd=layout.root)).code == 0


@pytest.mark.parametrize(
    ("first_file", "error_start"),
    [
        ("-- supervisor: repeateable\nSELECT 1;", "db-init/002_x.sql:1:1: unknown directive `repeateable`"),
        (
            "-- supervisor: repeatable, no-transaction\nSELECT 1;",
            "db-init/002_x.sql:1:1: a file cannot be both",
        ),
        (
            "-- views\n-- supervisor: repeatable\nSELECT 1;",
            "db-init/002_x.sql:2:1: `-- supervisor: repeatable` is not",
        ),
    ],
)
async def test_a_bad_directive_is_refused_before_anything_runs(
    db: Database, conn: asyncpg.Connection, layout: Layout, first_file: str, error_start: str
):
    """An unknown, misspelt or combined directive, or one on a later line, is refused with exit 2 (BAD_DIRECTIVE)
    before any file of the phase runs; `plan --check` gives the same verdict."""
    layout.add("pre", "001_ok.sql", RUNS)
    layout.add("pre", "002_x.sql", first_file)
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert (r.code, r.failure["error_code"]) == (2, "BAD_DIRECTIVE"), r.stderr
    assert r.failure["error"].startswith(error_start)
    assert await conn.fetchval("SELECT to_regclass('runs')") is None
    plan = await supervise("plan", "--check", "--json", env=db.env(), cwd=layout.root)
    assert plan.code == 2, plan.stdout + plan.stderr
    check = json.loads(plan.stdout)["check"]
    assert (check["phase"], check["error_code"]) == ("pre-schema", "BAD_DIRECTIVE"), check
