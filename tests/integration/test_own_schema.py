"""The supervisor's tables in their own schema (issue 12, item 1): an earlier release's ledger in `public` is moved
there once, under the locks; an older replica still looking in `public` refuses instead of applying everything again;
two ledgers are refused, never merged; `status` and `plan` say where the ledger is and change nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json

import asyncpg

from supervisor.lock import CLASSID
from supervisor.state import StateTable
from tests.conftest import Database, Layout, finish, start_supervisor, supervise

PRE = ("migrate", "--only", "pre-schema")
EARLIER = {"SUPERVISOR_TRACKING_TABLE": "migrations_applied"}  # how the earlier release resolved its default


async def _kind(conn: asyncpg.Connection, name: str) -> str | None:
    """pg_class.relkind of what `name` resolves to (`r` a table, `c` a composite type), or None."""
    kind: str | None = await conn.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", name
    )
    return kind


async def _earlier_release(db: Database, conn: asyncpg.Connection, layout: Layout) -> None:
    """A database as the earlier release left it: its ledger and state table in public, two files applied."""
    await conn.execute("CREATE TABLE seen (name text)")
    layout.add("pre", "001.sql", "INSERT INTO seen VALUES ('001');")
    layout.add("pre", "002.sql", "INSERT INTO seen VALUES ('002');")
    r = await supervise(*PRE, env=db.env(**EARLIER), cwd=layout.root)
    assert r.code == 0, r.stderr
    await StateTable(conn, "migrations_applied").put("bootstrap", "12.4.0", None, 5)
    assert await _kind(conn, "public.migrations_applied") == "r"
    assert await _kind(conn, "public.supervisor_state") == "r"


async def test_earlier_ledger_is_moved_once_and_older_replicas_refuse(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """`status` and `plan` read the ledger in public and say it will move, changing nothing; `migrate` moves ledger
    and state into the schema `supervisor` (rows intact, applied files not re-run, the new file run once) and leaves
    a stub in public; an older replica (the earlier default, `migrations_applied` on the search path) then refuses
    with exit 2 and applies nothing (before: it created an empty ledger and ran every file again)."""
    await _earlier_release(db, conn, layout)
    layout.add("pre", "003.sql", "INSERT INTO seen VALUES ('003');")

    st = await supervise("status", "--json", env=db.env(), cwd=layout.root)
    assert st.code == 0, st.stderr
    report = json.loads(st.stdout)
    assert report["ledger"] == {
        "table": "public.migrations_applied",
        "legacy": True,
        "moves_to": "supervisor.migrations_applied",
        "note": "legacy, will be moved to supervisor.migrations_applied on the next migrate",
    }
    pre = next(p for p in report["phases"] if p["phase"] == "pre-schema")
    assert pre["applied"] == ["001.sql", "002.sql"] and pre["pending"] == ["003.sql"]
    text = await supervise("status", env=db.env(), cwd=layout.root)
    assert text.stdout.startswith(
        "ledger: public.migrations_applied (legacy, will be moved to supervisor.migrations_applied on the next "
        "migrate)\n"
    )
    plan = await supervise("plan", "--json", env=db.env(), cwd=layout.root)
    assert plan.code == 0, plan.stderr
    assert json.loads(plan.stdout)["ledger"]["moves_to"] == "supervisor.migrations_applied"
    assert (
        await conn.fetchval("SELECT to_regnamespace('supervisor')") is None
    )  # status and plan changed nothing

    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    adopted = r.events("ledger.adopted")
    assert [(e["ledger"], e["state"], e["to"]) for e in adopted] == [
        ("public.migrations_applied", "public.supervisor_state", "supervisor")
    ]
    assert [e["file"] for e in r.events("step.applied")] == ["003.sql"]
    assert [x["name"] for x in await conn.fetch("SELECT name FROM seen ORDER BY 1")] == ["001", "002", "003"]
    assert await conn.fetchval(
        "SELECT array_agg(filename ORDER BY filename) FROM supervisor.migrations_applied"
    ) == ["001.sql", "002.sql", "003.sql"]
    assert await conn.fetchval("SELECT directus_version FROM supervisor.supervisor_state") == "12.4.0"
    assert await _kind(conn, "public.migrations_applied") == "c"  # the stub: a composite type
    assert await _kind(conn, "public.supervisor_state") is None
    assert "refuses to start" in await conn.fetchval(
        "SELECT obj_description('public.migrations_applied'::regtype, 'pg_type')"
    )
    report = json.loads((await supervise("status", "--json", env=db.env(), cwd=layout.root)).stdout)
    assert report["ledger"] == {
        "table": "supervisor.migrations_applied",
        "legacy": False,
        "moves_to": None,
        "note": None,
    }
    plan = await supervise("plan", env=db.env(), cwd=layout.root)
    assert plan.stdout.startswith("ledger: supervisor.migrations_applied\n"), plan.stdout

    layout.add("pre", "004.sql", "INSERT INTO seen VALUES ('004');")
    older = await supervise(*PRE, env=db.env(**EARLIER), cwd=layout.root)
    assert older.code == 2, older.stderr
    assert older.failure["error_code"] == "TRACKING_TABLE_FOREIGN"
    assert older.failure["error"].startswith(
        "public.migrations_applied is not a tracking table of this supervisor: it is a composite type, not a table"
    )
    assert await conn.fetchval("SELECT count(*) FROM seen") == 3
    again = await supervise(*PRE, env=db.env(), cwd=layout.root)  # the stub is not an earlier ledger
    assert again.code == 0, again.stderr
    assert again.events("ledger.adopted") == []
    assert [e["file"] for e in again.events("step.applied")] == ["004.sql"]


async def test_shell_runner_ledger_is_moved_and_upgraded_in_one_go(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """The old shell runner's three-column table is moved and given our columns in the same transaction; its
    plain-hex checksums are accepted and rewritten."""
    raw = b"SELECT 1;\r\n"
    await conn.execute(
        "CREATE TABLE migrations_applied (filename text PRIMARY KEY, checksum text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now())"
    )
    await conn.execute(
        "INSERT INTO migrations_applied VALUES ('001.sql', $1)", hashlib.sha256(raw).hexdigest()
    )
    layout.add("pre", "001.sql", raw)
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert r.events("step.applied") == []
    row = await conn.fetchrow("SELECT * FROM supervisor.migrations_applied")
    assert row is not None
    assert (
        row["status"] == "applied"
        and row["checksum"] == "sha256:" + hashlib.sha256(b"SELECT 1;\n").hexdigest()
    )


async def test_two_ledgers_are_refused_not_merged(db: Database, conn: asyncpg.Connection, layout: Layout):
    """A ledger in public and one in `supervisor`: `migrate` and `status` exit 5 (LEDGER_CONFLICT) naming both with
    their row counts and how to reconcile; nothing is moved, dropped or applied."""
    await _earlier_release(db, conn, layout)
    await conn.execute("CREATE SCHEMA supervisor")
    await conn.execute(
        "CREATE TABLE supervisor.migrations_applied (LIKE public.migrations_applied INCLUDING ALL)"
    )
    layout.add("pre", "003.sql", "INSERT INTO seen VALUES ('003');")
    for verb in (PRE, ("status",), ("plan", "--check")):
        r = await supervise(*verb, env=db.env(), cwd=layout.root)
        assert r.code == 5, (verb, r.stderr)
        assert r.failure["error_code"] == "LEDGER_CONFLICT"
        msg = r.failure["error"]
        assert msg.startswith(
            "two ledgers: public.migrations_applied (2 rows), left by an earlier release, and "
            "supervisor.migrations_applied (0 rows)."
        ), msg
        assert "merges nothing" in msg and "DROP TABLE supervisor.migrations_applied" in msg
    assert await _kind(conn, "public.migrations_applied") == "r"
    assert await conn.fetchval("SELECT count(*) FROM seen") == 2


async def test_an_explicit_tracking_table_adopts_nothing(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """SUPERVISOR_TRACKING_TABLE set (even to the default's value) is the user's choice: public is not looked at."""
    await _earlier_release(db, conn, layout)
    env = db.env(SUPERVISOR_TRACKING_TABLE="supervisor.migrations_applied")
    await conn.execute("TRUNCATE seen")
    r = await supervise(*PRE, env=env, cwd=layout.root)
    assert r.code == 0, r.stderr
    assert r.events("ledger.adopted") == []
    assert [e["file"] for e in r.events("step.applied")] == ["001.sql", "002.sql"]
    assert await _kind(conn, "public.migrations_applied") == "r"


async def test_earlier_ledger_found_through_the_search_path(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """With DB_SEARCH_PATH=app,public the earlier release kept its ledger in app: that one is moved (a look at
    public alone would have found nothing and run every file again)."""
    await conn.execute("CREATE SCHEMA app; CREATE TABLE app.seen (name text)")
    layout.add("pre", "001.sql", "INSERT INTO seen VALUES ('001');")
    env = db.env(DB_SEARCH_PATH="app,public")
    assert (await supervise(*PRE, env={**env, **EARLIER}, cwd=layout.root)).code == 0
    assert await _kind(conn, "app.migrations_applied") == "r"
    r = await supervise(*PRE, env=env, cwd=layout.root)
    assert r.code == 0, r.stderr
    assert r.events("ledger.adopted")[0]["ledger"] == "app.migrations_applied"
    assert r.events("step.applied") == []
    assert await conn.fetchval("SELECT count(*) FROM app.seen") == 1


async def test_no_move_while_another_replica_is_inside_a_phase(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """The move waits for every phase lock: while an (older) replica holds one, nothing is moved, and the wait ends
    in the lock timeout (exit 6) with the ledger still in public."""
    await _earlier_release(db, conn, layout)
    await conn.execute("SELECT pg_advisory_lock($1, 3)", CLASSID)  # an older replica inside post-schema
    r = await supervise(*PRE, env=db.env(SUPERVISOR_LOCK_TIMEOUT="1"), cwd=layout.root)
    assert r.code == 6, r.stderr
    assert "post-schema lock" in r.failure["error"]
    assert await _kind(conn, "public.migrations_applied") == "r"
    assert await conn.fetchval("SELECT to_regclass('supervisor.migrations_applied')") is None
    await conn.execute("SELECT pg_advisory_unlock($1, 3)", CLASSID)


async def test_two_replicas_move_the_earlier_ledger_once(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Two replicas started together on an earlier ledger: both exit 0, one moves it (the other decides again
    under the locks and finds nothing to move), no file runs twice."""
    await _earlier_release(db, conn, layout)
    layout.add("pre", "003.sql", "INSERT INTO seen VALUES ('003');")
    procs = [await start_supervisor(*PRE, env=db.env(), cwd=layout.root) for _ in range(2)]
    results = await asyncio.gather(*(finish(p) for p in procs))
    assert [r.code for r in results] == [0, 0], [r.stderr for r in results]
    assert sum(len(r.events("ledger.adopted")) for r in results) == 1
    assert [x["name"] for x in await conn.fetch("SELECT name FROM seen ORDER BY 1")] == ["001", "002", "003"]
