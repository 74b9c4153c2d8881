"""A warm boot asks the database only what it must: each supervisor table's shape once per connection, the session's
backend once, and table verdicts are not trusted across anything a phase applies."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg
import structlog

from phases.registry import build_phases
from supervisor.runner import run_phases
from supervisor.settings import Settings
from tests.conftest import ROOT, Database, Layout, supervise

STANDIN = (
    f"{sys.executable} {ROOT / 'tests' / 'fault' / 'directus_standin.py'}"  # bootstrap and apply, for real
)
SNAPSHOT = "version: 1\ndirectus: 12.4.0\nvendor: postgres\ncollections: []\nfields: []\nsystemFields: []\nrelations: []\n"
PHASES = ("pre-schema", "schema-apply", "post-schema", "bootstrap")


def _env(db: Database, layout: Layout, tmp_path: Path) -> dict[str, str]:
    (layout.root / "snapshots").mkdir(exist_ok=True)
    (layout.root / "snapshots" / "schema.yaml").write_text(SNAPSHOT)
    (tmp_path / "standin").mkdir(exist_ok=True)
    return db.env(
        SUPERVISOR_DB_INIT_DIR=str(layout.pre),
        SUPERVISOR_DB_INIT_POST_DIR=str(layout.post),
        SUPERVISOR_SNAPSHOT=str(layout.root / "snapshots" / "schema.yaml"),
        SUPERVISOR_DIRECTUS_CMD=STANDIN,
        FAULT_STANDIN_DIR=str(tmp_path / "standin"),
        FAULT_STANDIN_SLEEP="0",
    )


async def test_a_warm_migrate_inspects_each_table_once_and_asks_the_backend_once(
    db: Database, layout: Layout, tmp_path: Path, monkeypatch
):
    """After a cold migrate, a warm one (all four phases, nothing to do) inspects the tracking and state tables in
    one query, never again under the phase locks, and asks for its backend only as each lock's check after taking
    it: 17 queries with a result and one SET in all (it was 28 and the SET: 6 inspections, 4 more backend
    look-ups, 2 separate `directus_collections` look-ups)."""
    layout.add("pre", "001.sql", "CREATE TABLE a (id int);")
    layout.add("post", "101.sql", "CREATE TABLE b (id int);")
    env = _env(db, layout, tmp_path)
    cold = await supervise("migrate", env=env, cwd=layout.root)
    assert cold.code == 0, cold.stderr

    import supervisor.db

    queries: list[str] = []
    real_connect = supervisor.db.connect

    async def connect(*args, **kwargs) -> asyncpg.Connection:
        c = await real_connect(*args, **kwargs)
        c.add_query_logger(lambda record: queries.append(record.query))
        return c

    monkeypatch.setattr(supervisor.db, "connect", connect)
    monkeypatch.chdir(layout.root)
    settings = Settings.load(env, {}, need_db=True)
    phases = build_phases(settings)
    outcomes = await run_phases(settings, [phases[p] for p in PHASES], structlog.get_logger())
    assert set(outcomes.values()) == {"skipped"}
    inspections = [q for q in queries if "AS backend" in q]
    backends = [q for q in queries if q.strip() == "SELECT pg_catalog.pg_backend_pid()"]
    assert len(inspections) == 1, queries
    assert len(backends) == 4, queries  # one check per lock, after taking it
    assert len(queries) <= 18, queries


async def test_a_state_table_made_foreign_by_a_file_is_refused_by_the_next_phase(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
):
    """The verdicts checked at connect are forgotten once a phase applies something: a pre-schema file that adds a
    NOT NULL column without a default to supervisor_state makes it not ours, and schema-apply refuses it (exit 2)
    instead of writing into it on an earlier verdict."""
    env = _env(db, layout, tmp_path)
    layout.add("pre", "001.sql", "CREATE TABLE a (id int);")
    assert (await supervise("migrate", env=env, cwd=layout.root)).code == 0
    layout.add(
        "pre",
        "002.sql",
        "ALTER TABLE supervisor.supervisor_state ADD COLUMN extra int NOT NULL DEFAULT 0;"
        "ALTER TABLE supervisor.supervisor_state ALTER COLUMN extra DROP DEFAULT;",
    )
    r = await supervise("migrate", "--force", env=env, cwd=layout.root)
    assert (r.code, r.failure["error_code"]) == (2, "TRACKING_TABLE_FOREIGN"), r.stderr
    assert "extra is NOT NULL without a default" in r.failure["error"]
    assert r.events("phase.finished")[0]["phase"] == "pre-schema"
