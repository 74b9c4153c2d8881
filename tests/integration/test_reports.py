"""Reports against a real Postgres: per-file timing inside a batch, who applied what in `status`, `plan --check`."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import sys
from pathlib import Path

import asyncpg
import structlog
from structlog.testing import capture_logs

from phases.registry import build_phases
from supervisor.runner import run_phases
from supervisor.settings import Settings
from tests.conftest import ROOT, STANDIN, Database, Layout, finish, start_supervisor, supervise

PRE = ("migrate", "--only", "pre-schema")


async def test_each_file_of_a_batch_gets_its_own_duration_and_applied_at(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Three files of 0.2 s each, in one batch, are recorded with about 200 ms each (not the batch's running total
    200/400/600) and with their own `applied_at`, also when a file SETs things the session reset undoes."""
    for i in range(3):
        layout.add(
            "pre", f"00{i}_slow.sql", f"SET search_path TO pg_catalog; SELECT pg_sleep(0.2); SELECT {i};"
        )
    run = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert run.code == 0, run.stderr
    rows = await conn.fetch(
        "SELECT filename, duration_ms, applied_at FROM supervisor.migrations_applied ORDER BY filename"
    )
    durations = [r["duration_ms"] for r in rows]
    assert all(180 <= d < 350 for d in durations), durations
    assert [e["duration_ms"] for e in run.events("step.applied")] == durations  # the log says the same
    stamps = [r["applied_at"] for r in rows]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert all(g >= 0.18 for g in gaps), gaps


async def test_status_shows_who_applied_each_file_and_when(db: Database, layout: Layout):
    """`status --json` and the table name each applied file's `applied_at`, `applied_by` (host:pid) and duration."""
    layout.add("pre", "001_a.sql", "CREATE TABLE a (id int);")
    proc = await start_supervisor(*PRE, env=db.env(), cwd=layout.root)
    assert (await finish(proc)).code == 0
    by = f"{socket.gethostname()}:{proc.pid}"[:63]

    report = await supervise("status", "--json", env=db.env(), cwd=layout.root)
    assert report.code == 0, report.stderr
    pre = next(p for p in json.loads(report.stdout)["phases"] if p["phase"] == "pre-schema")
    [entry] = pre["applied_files"]
    assert entry["file"] == "001_a.sql" and entry["applied_by"] == by
    assert entry["applied_at"].startswith("20") and isinstance(entry["duration_ms"], int)

    table = await supervise("status", env=db.env(), cwd=layout.root)
    assert table.code == 0, table.stderr
    line = next(ln for ln in table.stdout.splitlines() if "001_a.sql" in ln)
    assert by in line and entry["applied_at"] in line and f"{entry['duration_ms']} ms" in line


async def test_pid1_loop_honours_log_format_and_knows_whether_directus_started(
    layout: Layout, tmp_path: Path
):
    """`--log-format json` reaches the resident loop's own lines (the variable says console); a Directus command
    that cannot be exec'd ends the worker before Directus runs, which is `supervisor.worker_exited`, not
    `directus.exited`; a Directus that ran and exited is `directus.exited`."""
    env = {"SUPERVISOR_LOG_FORMAT": "console", "PATH": "/usr/bin:/bin", "STANDIN_LOG": str(tmp_path / "log")}
    missing = await supervise(
        "run", "--only", "start", "--log-format", "json",
        env={**env, "SUPERVISOR_DIRECTUS_CMD": str(tmp_path / "no-such-directus")}, cwd=layout.root,
    )  # fmt: skip
    assert missing.code == 2, missing.stderr
    assert missing.events("directus.exited") == []
    [exited] = missing.events(
        "supervisor.worker_exited"
    )  # a JSON line from the parent: the flag was honoured
    assert exited["exit_code"] == 2 and exited["directus_started"] is False

    ran = await supervise(
        "run", "--only", "start", "--log-format", "json",
        env={**env, "SUPERVISOR_DIRECTUS_CMD": STANDIN, "STANDIN_EXIT_NOW": "7"}, cwd=layout.root,
    )  # fmt: skip
    assert ran.code == 7, ran.stderr
    assert ran.events("directus.exited")[0]["exit_code"] == 7 and ran.events("supervisor.worker_exited") == []


async def test_own_notices_stay_out_of_the_log_and_warnings_log_at_warning(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Both SQL phases in one process, the tracking table's schema already there: the supervisor's own
    "already exists, skipping" NOTICEs are not logged; the files' NOTICE is (info) and their WARNING is (warning)."""
    await conn.execute("CREATE SCHEMA ledgers")
    layout.add(
        "pre",
        "001.sql",
        "CREATE TABLE IF NOT EXISTS mine (id int); CREATE TABLE IF NOT EXISTS mine (id int);",
    )
    layout.add("post", "101.sql", "DO $$ BEGIN RAISE WARNING 'careful: %', 42; END $$;")
    env = db.env(
        SUPERVISOR_DB_INIT_DIR=str(layout.pre),
        SUPERVISOR_DB_INIT_POST_DIR=str(layout.post),
        SUPERVISOR_TRACKING_TABLE="ledgers.applied",
    )
    settings = Settings.load(env, {}, need_db=True)
    phases = build_phases(settings)
    with capture_logs() as logs:
        await run_phases(settings, [phases["pre-schema"], phases["post-schema"]], structlog.get_logger())
    notices = [(e["log_level"], e["message"]) for e in logs if e["event"] == "db.notice"]
    assert notices == [
        ("info", 'relation "mine" already exists, skipping'),
        ("warning", "careful: 42"),
    ], notices


async def test_termination_log_names_the_changed_file_and_its_checksums(
    db: Database, layout: Layout, tmp_path: Path
):
    """A checksum refusal writes the file and both checksums to the termination log, not only the first line."""
    env = db.env(SUPERVISOR_DB_INIT_DIR=str(layout.pre), SUPERVISOR_DB_INIT_POST_DIR=str(layout.post))
    f = layout.add("pre", "001.sql", "SELECT 1;")
    assert (await supervise(*PRE, env=env, cwd=layout.root)).code == 0
    f.write_text("SELECT 2;")
    term = tmp_path / "termination-log"
    term.write_text("")
    # The supervisor's command line in a process of its own, with the termination log moved into the test's folder.
    script = (
        f"import sys\nfrom supervisor import cli\ncli.TERMINATION_LOG = {str(term)!r}\nsys.exit(cli.main())"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *PRE, env={**env, "PYTHONPATH": str(ROOT)}, cwd=layout.root,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    result = await finish(proc)
    assert result.code == 5, result.stderr
    text = term.read_text()
    assert text.startswith("CHECKSUM_MISMATCH (exit 5): 1 applied file(s) changed")
    assert f"{f}: applied as sha256:" in text and ", now sha256:" in text
    assert "restore the file" in text


FAKE = f"{sys.executable} {ROOT / 'tests' / 'fake_directus.py'}"
SNAPSHOT = "version: 1\ndirectus: 12.4.0\nvendor: postgres\ncollections: []\nfields: []\nsystemFields: []\nrelations: []\n"
NO_CHANGES = "[12:00:00.000] INFO: No changes to apply.\n"
DELETES = "[12:00:00.000] INFO: Extensions loaded\nThe following changes will be applied:\n\nCollections:\n  - Delete legacy\n"


async def _everything(conn: asyncpg.Connection) -> list[object]:
    """What a `plan` must leave as it found it: the tracking rows and state, and the tables of the schema."""
    tables = await conn.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN "
        "('pg_catalog', 'information_schema') ORDER BY 1, 2"
    )
    out: list[object] = [tuple(t) for t in tables]
    for table in ("supervisor.migrations_applied", "supervisor.supervisor_state"):
        if await conn.fetchval("SELECT to_regclass($1)", table):
            out += [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1")]
    return out


async def test_plan_check_exits_as_migrate_would_and_changes_nothing(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
):
    """`plan --check`: 9 while anything is pending, 0 after `migrate`; the refusal's own code (and error_code) for
    each refusal `migrate` makes before applying (transaction control and syntax: 4, changed and half-applied files:
    5, a destructive or misfitting snapshot: 7), the same code `migrate` then exits with; a refusal wins over
    pending work; `plan --force` plans what `migrate --force` does; and no `plan` changes anything."""
    await conn.execute(
        "CREATE TABLE directus_collections (collection text PRIMARY KEY);"
        "CREATE TABLE directus_migrations (version text PRIMARY KEY);"
        "INSERT INTO directus_migrations VALUES ('20240101A')"
    )
    (layout.root / "snapshots").mkdir()
    snapshot = layout.root / "snapshots" / "schema.yaml"
    snapshot.write_text(SNAPSHOT)
    dry = tmp_path / "dry-run.txt"
    dry.write_text(NO_CHANGES)
    env = db.env(SUPERVISOR_DIRECTUS_CMD=FAKE, FAKE_DRY_RUN=str(dry))
    applied = layout.add("pre", "001.sql", "CREATE TABLE one (id int);")
    layout.add("post", "101.sql", "CREATE TABLE two (id int);")

    async def check(*extra: str) -> tuple[int, dict[str, object]]:
        before = await _everything(conn)
        r = await supervise("plan", "--check", "--json", *extra, env=env, cwd=layout.root)
        assert await _everything(conn) == before, "plan changed the database"
        return r.code, json.loads(r.stdout)["check"]

    code, verdict = await check()
    assert (code, verdict["error_code"]) == (9, "PENDING"), verdict
    text = await supervise("plan", "--check", env=env, cwd=layout.root)
    assert text.code == 9 and "check: exit 9: migrate would apply something" in text.stdout

    assert (await supervise("migrate", env=env, cwd=layout.root)).code == 0
    assert (await check())[0] == 0

    # --force: migrate --force re-runs schema-apply and bootstrap, so plan --force says it would do something.
    code, verdict = await check("--force")
    assert code == 9 and "forced (SUPERVISOR_FORCE)" in str(verdict["reason"]), verdict
    forced = await supervise("migrate", "--force", env=env, cwd=layout.root)
    assert forced.code == 0 and {e["phase"] for e in forced.events("step.applied")} == {
        "schema-apply",
        "bootstrap",
    }

    refusals = [
        ("pre", "002_commit.sql", "CREATE TABLE t2 (id int);\nCOMMIT;", 4, "TRANSACTION_CONTROL"),
        ("post", "102_syntax.sql", "CREATE TABLE t3 (id int;", 4, "SQL_SYNTAX"),
    ]
    for folder, name, sql, want, error_code in refusals:
        path = layout.add(folder, name, sql)
        code, verdict = await check()
        assert (code, verdict["error_code"]) == (want, error_code), verdict
        assert name in str(verdict["reason"])
        assert (await supervise("migrate", env=env, cwd=layout.root)).code == want
        path.unlink()

    applied.write_text("CREATE TABLE one (id bigint);")
    layout.add("pre", "003_new.sql", "SELECT 1;")  # pending work does not hide the refusal
    code, verdict = await check()
    assert (code, verdict["error_code"], verdict["phase"]) == (5, "CHECKSUM_MISMATCH", "pre-schema"), verdict
    assert "001.sql: applied as sha256:" in str(verdict["reason"])
    assert (await supervise("migrate", env=env, cwd=layout.root)).code == 5
    applied.write_text("CREATE TABLE one (id int);")
    (layout.pre / "003_new.sql").unlink()

    await conn.execute(
        "UPDATE supervisor.migrations_applied SET status = 'running' WHERE filename = '101.sql'"
    )
    code, verdict = await check()
    assert (code, verdict["error_code"]) == (5, "HALF_APPLIED"), verdict
    await conn.execute(
        "UPDATE supervisor.migrations_applied SET status = 'applied' WHERE filename = '101.sql'"
    )

    snapshot.write_text(SNAPSHOT + "# changed\n")
    dry.write_text(DELETES)
    code, verdict = await check()
    assert (code, verdict["error_code"]) == (7, "SCHEMA_DESTRUCTIVE"), verdict
    assert "Delete collection legacy" in str(verdict["reason"])
    assert (await supervise("migrate", env=env, cwd=layout.root)).code == 7
    allowed = await supervise("plan", "--check", "--allow-destructive-schema", env=env, cwd=layout.root)
    assert allowed.code == 9, allowed.stdout

    snapshot.write_text(SNAPSHOT.replace("directus: 12.4.0", "directus: 10.1.0"))
    code, verdict = await check()
    assert code == 7 and verdict["phase"] == "schema-apply", verdict
    assert (await supervise("migrate", env=env, cwd=layout.root)).code == 7
