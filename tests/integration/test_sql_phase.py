"""The SQL phases against a real Postgres, driven as a whole process: ordering, transactions, checksums, the
no-transaction directive, error reports, the legacy table, status."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket

import asyncpg

from tests.conftest import ROOT, Database, Layout, finish, start_supervisor, supervise

PRE = ("migrate", "--only", "pre-schema")
POST = ("migrate", "--only", "post-schema")


async def _rows(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    return {r["filename"]: r for r in await conn.fetch("SELECT * FROM supervisor.migrations_applied")}


async def test_applies_in_order_once_and_rerun_is_a_noop(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Pending files run in byte-wise lexical order, each recorded with checksum, phase, timing and host:pid; a
    second run applies nothing."""
    await conn.execute("CREATE TABLE seen (n serial, name text)")
    for name in ("10_b.sql", "9_a.sql", "B.sql", "a.sql"):
        layout.add("pre", name, f"INSERT INTO seen (name) VALUES ('{name}');")
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    first = await finish(proc)
    assert first.code == 0, first.stderr
    assert [r["name"] for r in await conn.fetch("SELECT name FROM seen ORDER BY n")] == [
        "10_b.sql", "9_a.sql", "B.sql", "a.sql",
    ]  # fmt: skip
    rows = await _rows(conn)
    assert (
        rows["a.sql"]["checksum"]
        == "sha256:" + hashlib.sha256(b"INSERT INTO seen (name) VALUES ('a.sql');").hexdigest()
    )
    assert rows["a.sql"]["phase"] == "pre-schema"
    assert rows["a.sql"]["applied_by"] == f"{socket.gethostname()}:{proc.pid}"[:63]  # host:pid of the run
    assert rows["a.sql"]["duration_ms"] is not None
    assert [e["file"] for e in first.events("step.applied")] == ["10_b.sql", "9_a.sql", "B.sql", "a.sql"]
    assert all(e["phase"] == "pre-schema" and "duration_ms" in e for e in first.events("step.applied"))

    second = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert second.code == 0
    assert second.events("step.applied") == []
    assert second.events("phase.finished")[0]["outcome"] == "skipped"
    assert await conn.fetchval("SELECT count(*) FROM seen") == 4


async def test_failed_file_is_rolled_back_and_reported_with_location(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """An SQL error rolls back its whole file (and its row), keeps earlier files, exits 4 with file:line:col,
    SQLSTATE, message, detail, hint and a caret; after the fix the next run applies it."""
    layout.add("pre", "001_ok.sql", "CREATE TABLE ok (id int PRIMARY KEY);")
    bad = layout.add(
        "pre",
        "002_bad.sql",
        "CREATE TABLE half (id int);\n-- a comment\nINSERT INTO ok VALUES (1);\nINSERT INTO ok VALUES (1);\n",
    )
    layout.add("pre", "003_later.sql", "CREATE TABLE later (id int);")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 4
    fail = r.failure
    assert fail["error_code"] == "SQL_ERROR" and fail["exit_code"] == 4
    msg = fail["error"]
    assert msg.startswith(
        "db-init/002_bad.sql:4:1: ERROR 23505: duplicate key value violates unique constraint"
    )
    assert "DETAIL: Key (id)=(1) already exists." in msg
    assert "  4 | INSERT INTO ok VALUES (1);\n    | ^" in msg
    assert "rolled back" in msg
    assert await conn.fetchval("SELECT to_regclass('half')") is None
    assert await conn.fetchval("SELECT to_regclass('later')") is None
    assert set(await _rows(conn)) == {"001_ok.sql"}
    assert [e["file"] for e in r.events("step.applied")] == ["001_ok.sql"]

    bad.write_text("CREATE TABLE half (id int);\nINSERT INTO ok VALUES (1);\n")
    again = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert again.code == 0, again.stderr
    assert set(await _rows(conn)) == {"001_ok.sql", "002_bad.sql", "003_later.sql"}


async def test_error_position_points_into_the_statement(db: Database, layout: Layout):
    """Postgres's error position inside a statement becomes the file's line and column, with the hint."""
    layout.add("pre", "001.sql", "SELECT 1;\n\nSELECT *\n  FROM no_such_table;\n")
    layout.add(
        "pre",
        "002.sql",
        "DO $$ BEGIN\n  RAISE EXCEPTION 'boom' USING HINT = 'try again', DETAIL = 'why';\nEND $$;",
    )
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.failure["error"].startswith(
        'db-init/001.sql:4:8: ERROR 42P01: relation "no_such_table" does not exist'
    )
    assert "  4 |   FROM no_such_table;\n    |        ^" in r.failure["error"]
    assert "belongs in the post-schema folder" in r.failure["error"]
    (layout.pre / "001.sql").write_text("SELECT 1;")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    msg = r.failure["error"]
    assert msg.startswith("db-init/002.sql:2:3: ERROR P0001: boom"), msg
    assert "DETAIL: why" in msg and "HINT: try again" in msg


async def test_syntax_error_in_a_later_file_applies_nothing(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Pending files are parsed before the first is applied: a syntax error anywhere stops the phase untouched."""
    layout.add("pre", "001.sql", "CREATE TABLE first (id int);")
    layout.add("pre", "002.sql", "CREATE TABLE second (id int);\nCREAT TABLE oops (id int);")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 4
    assert r.failure["error_code"] == "SQL_SYNTAX"
    assert r.failure["error"].startswith('db-init/002.sql:2:1: syntax error: syntax error at or near "CREAT"')
    assert await conn.fetchval("SELECT to_regclass('first')") is None


async def test_no_transaction_file_runs_statement_by_statement(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """`-- supervisor: no-transaction` files may hold CREATE INDEX CONCURRENTLY among other statements."""
    layout.add("pre", "001.sql", "CREATE TABLE big (id int, v text);")
    layout.add(
        "pre",
        "002_idx.sql",
        "-- supervisor: no-transaction\nCREATE INDEX CONCURRENTLY big_id ON big (id);\n"
        "CREATE INDEX CONCURRENTLY big_v ON big (v);\nVACUUM big;\n",
    )
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    row = (await _rows(conn))["002_idx.sql"]
    assert (row["status"], row["statements_done"], row["statements_total"]) == ("applied", 3, 3)
    assert await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 'big'") == 2


async def test_no_transaction_failure_midway_is_refused_next_run(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A no-transaction file failing after committed statements exits 4 now and 5 (HALF_APPLIED, with
    instructions) on every later run, instead of re-running what was committed."""
    layout.add(
        "pre",
        "001.sql",
        "-- supervisor: no-transaction\nCREATE TABLE t1 (id int);\nSELECT 1/0;\nCREATE TABLE t2 ();",
    )
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 4
    assert "statements 1-1 were committed" in r.failure["error"]
    row = (await _rows(conn))["001.sql"]
    assert (row["status"], row["statements_done"], row["statements_total"]) == ("failed", 1, 3)
    again = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert again.code == 5
    assert again.failure["error_code"] == "HALF_APPLIED"
    assert "DELETE FROM supervisor.migrations_applied WHERE filename = '001.sql'" in again.failure["error"]
    assert await conn.fetchval("SELECT to_regclass('t2')") is None


async def test_no_transaction_failure_on_first_statement_leaves_no_row(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """When the first statement fails nothing was committed, so the file is simply pending again."""
    f = layout.add("pre", "001.sql", "-- supervisor: no-transaction\nSELECT 1/0;\n")
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 4
    assert await _rows(conn) == {}
    f.write_text("-- supervisor: no-transaction\nSELECT 1;\n")
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0


async def test_changed_file_is_refused_but_line_endings_and_bom_are_not_changes(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Every applied file is validated on every run: CRLF, CR or a BOM is not a change; an edit exits 5
    (CHECKSUM_MISMATCH) before anything else is applied."""
    f = layout.add("pre", "001.sql", "CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n")
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0
    f.write_bytes(b"\xef\xbb\xbfCREATE TABLE a (id int);\r\nCREATE TABLE b (id int);\r")
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0
    f.write_text("CREATE TABLE a (id bigint);\nCREATE TABLE b (id int);\n")
    layout.add("pre", "002.sql", "CREATE TABLE c (id int);")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 5
    assert r.failure["error_code"] == "CHECKSUM_MISMATCH"
    assert "db-init/001.sql: applied as sha256:" in r.failure["error"]
    assert await conn.fetchval("SELECT to_regclass('c')") is None


async def test_changed_post_schema_file_stops_the_pre_schema_phase(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Checksums of both folders are validated in each SQL phase, so the boot stops before new pre-schema work."""
    layout.add("pre", "001.sql", "SELECT 1;")
    post = layout.add("post", "101.sql", "SELECT 2;")
    assert (await supervise("migrate", "--only", "post-schema", env=db.env(), cwd=layout.root)).code == 0
    post.write_text("SELECT 3;")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 5
    assert "db-init-post/101.sql" in r.failure["error"]
    assert "001.sql" not in await _rows(conn)


async def test_legacy_table_is_upgraded_in_place_and_its_checksums_accepted(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """The old shell runner's (filename, checksum, applied_at) table with plain sha256 hex of the raw bytes is
    upgraded in place; its files are not re-run; new files are applied and recorded with the new columns."""
    raw = b"CREATE TABLE legacy (id int);\r\n"
    layout.add("pre", "001_legacy.sql", raw)
    layout.add("pre", "002_new.sql", "CREATE TABLE newer (id int);")
    await conn.execute("CREATE TABLE legacy (id int)")
    await conn.execute(
        "CREATE TABLE migrations_applied (filename text PRIMARY KEY, checksum text NOT NULL, applied_at timestamp)"
    )
    await conn.execute(
        "INSERT INTO migrations_applied VALUES ('001_legacy.sql', $1, now())", hashlib.sha256(raw).hexdigest()
    )
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert [e["file"] for e in r.events("step.applied")] == ["002_new.sql"]
    cols = {
        c["column_name"]
        for c in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'migrations_applied'"
        )
    }
    assert {"phase", "duration_ms", "applied_by", "status", "statements_done", "statements_total"} <= cols
    rows = await _rows(conn)
    assert rows["001_legacy.sql"]["status"] == "applied"
    assert rows["002_new.sql"]["phase"] == "pre-schema"
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0


async def test_same_basename_in_both_folders_is_refused_before_the_database(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A basename in both folders exits 5 (BASENAME_COLLISION) without even creating the tracking table."""
    layout.add("pre", "001.sql", "SELECT 1;")
    layout.add("post", "001.sql", "SELECT 2;")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 5
    assert r.failure["error_code"] == "BASENAME_COLLISION"
    assert r.events("db.connected") == []
    assert await conn.fetchval("SELECT to_regclass('migrations_applied')") is None


async def test_orphan_rows_are_warnings(db: Database, layout: Layout):
    """A recorded file that no longer exists is a warning (rolling deploys), never a failure."""
    f = layout.add("pre", "001_gone.sql", "SELECT 1;")
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0
    f.unlink()
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0
    assert [e["file"] for e in r.events("migration.orphaned")] == ["001_gone.sql"]
    assert r.events("migration.orphaned")[0]["level"] == "warning"


async def test_schema_qualified_tracking_table(db: Database, conn: asyncpg.Connection, layout: Layout):
    """SUPERVISOR_TRACKING_TABLE may name a schema; it is created when missing."""
    layout.add("pre", "001.sql", "SELECT 1;")
    r = await supervise(*PRE, env=db.env(SUPERVISOR_TRACKING_TABLE="ops.boot_log"), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert await conn.fetchval("SELECT filename FROM ops.boot_log") == "001.sql"
    assert await conn.fetchval("SELECT to_regclass('public.migrations_applied')") is None


async def test_status_reports_each_state(db: Database, conn: asyncpg.Connection, layout: Layout):
    """`status --json` lists applied, pending, changed, half-applied and orphaned files per SQL phase."""
    layout.add("pre", "001_applied.sql", "SELECT 1;")
    changed = layout.add("pre", "002_changed.sql", "SELECT 2;")
    gone = layout.add("pre", "003_gone.sql", "SELECT 3;")
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0
    layout.add("post", "101_half.sql", "-- supervisor: no-transaction\nSELECT 1;\nSELECT 1/0;")
    assert (await supervise(*POST, env=db.env(), cwd=layout.root)).code == 4
    changed.write_text("SELECT 22;")
    gone.unlink()
    layout.add("pre", "004_pending.sql", "SELECT 4;")
    r = await supervise("status", "--json", env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    report = json.loads(r.stdout)
    pre, post = (p for p in report["phases"] if p["phase"] in ("pre-schema", "post-schema"))
    assert [h["file"] for h in pre.pop("applied_files")] == ["001_applied.sql", "002_changed.sql"]
    assert pre == {
        "phase": "pre-schema",
        "folder": "db-init",
        "applied": ["001_applied.sql", "002_changed.sql"],
        "pending": ["004_pending.sql"],
        "rerun": [],
        "changed": ["002_changed.sql"],
        "repeatable": [],
        "half_applied": [],
        "orphaned": ["003_gone.sql"],
    }
    assert post["half_applied"] == [{"file": "101_half.sql", "done": 1, "total": 2}]
    text = await supervise("status", env=db.env(), cwd=layout.root)
    assert "pre-schema" in text.stdout and "004_pending.sql" in text.stdout


async def test_shipped_content(db: Database, conn: asyncpg.Connection, tmp_path):
    """The shipped pre-schema makes `positions` (plain table here, and says so) with its faulty column; the
    post-schema files fail clearly without the junction tables and add their constraints once they exist."""
    shutil.copytree(ROOT / "db-init", tmp_path / "db-init")
    shutil.copytree(ROOT / "db-init-post", tmp_path / "db-init-post")
    r = await supervise(*PRE, env=db.env(), cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert any("plain table" in e["message"] for e in r.events("db.notice"))
    cols = {
        c["column_name"]
        for c in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'positions'"
        )
    }
    assert {"time", "device_id", "latitude", "longitude", "faulty"} <= cols

    r = await supervise(*POST, env=db.env(), cwd=tmp_path)
    assert r.code == 4
    assert r.failure["error"].startswith("db-init-post/001_junction_unique_constraints.sql:")
    assert 'relation "organization_users" does not exist' in r.failure["error"]

    await conn.execute(
        """
        CREATE TABLE organization_users (id serial PRIMARY KEY, organizations_id int, directus_users_id uuid);
        CREATE TABLE organization_vehicles (id serial PRIMARY KEY, organizations_id int, vehicles_id int);
        CREATE TABLE organization_devices (id serial PRIMARY KEY, organizations_id int, devices_id int);
        CREATE TABLE event_participation (id serial PRIMARY KEY, events_id int, vehicles_id int);
        """
    )
    r = await supervise(*POST, env=db.env(), cwd=tmp_path)
    assert r.code == 0, r.stderr
    names = {c["conname"] for c in await conn.fetch("SELECT conname FROM pg_constraint WHERE contype = 'u'")}
    assert {
        "organization_users_org_user_unique",
        "organization_vehicles_org_vehicle_unique",
        "organization_devices_org_device_unique",
        "event_participation_event_vehicle_unique",
    } <= names
    assert (await supervise(*POST, env=db.env(), cwd=tmp_path)).events("step.applied") == []


async def test_without_temp_privilege_files_run_one_statement_per_round_trip(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Batching needs a session counter (a TEMP sequence); a role without TEMP still gets every behaviour, one
    statement per round trip, errors still attributed to file:line:col."""
    role = f"{db.name}_app"
    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'app-pw-123'")
    await conn.execute(f'REVOKE TEMPORARY ON DATABASE "{db.name}" FROM PUBLIC')
    await conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
    await conn.execute(
        f"CREATE SCHEMA supervisor AUTHORIZATION {role}"
    )  # the ledger's; the role may not create it
    try:
        layout.add("pre", "001.sql", "CREATE TABLE ok (id int PRIMARY KEY);\nINSERT INTO ok VALUES (1);")
        bad = layout.add("pre", "002.sql", "INSERT INTO ok VALUES (2);\nINSERT INTO ok VALUES (1);")
        env = db.env(DB_USER=role, DB_PASSWORD="app-pw-123")
        r = await supervise(*PRE, env=env, cwd=layout.root)
        assert r.code == 4, r.stderr
        assert r.events("sql.batching_off")
        assert r.failure["error"].startswith("db-init/002.sql:2:1: ERROR 23505")
        assert await conn.fetchval("SELECT count(*) FROM ok") == 1
        bad.write_text("INSERT INTO ok VALUES (2);")
        r = await supervise(*PRE, env=env, cwd=layout.root)
        assert r.code == 0, r.stderr
        assert [e["file"] for e in r.events("step.applied")] == ["002.sql"]
    finally:
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.execute(f"DROP ROLE {role}")
