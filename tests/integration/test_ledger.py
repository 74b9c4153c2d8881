"""One ledger, never a second, and the old shell runner's ledger read and adopted correctly (issue 8, items 4-5).

Against a real Postgres, the supervisor run as a process: bad names, tables of our name that are not ours (refused,
never altered, by `migrate`, `status` and `plan` alike), and the legacy table with its plain sha256 checksums.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Database, Layout, PgServer, finish, start_supervisor, supervise
from tests.unit.test_tracking_name import names

PRE = ("migrate", "--only", "pre-schema")
# Exactly what the old shell runner created (bench/psql-runner.sh).
LEGACY_DDL = (
    "CREATE TABLE migrations_applied (filename text PRIMARY KEY, checksum text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())"
)


async def _shape(conn: asyncpg.Connection, table: str = "migrations_applied") -> list[tuple[str, str, bool]]:
    """Columns of `table` as the catalog has them: what "unchanged" is checked against."""
    rows = await conn.fetch(
        "SELECT attname::text, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
        "WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        table,
    )
    return [tuple(r) for r in rows]


async def _legacy_rows(
    conn: asyncpg.Connection, table: str = "supervisor.migrations_applied"
) -> dict[str, str]:
    """The ledger's checksums by file: where the default puts it (an earlier one in public is moved there)."""
    return {r["filename"]: r["checksum"] for r in await conn.fetch(f"SELECT * FROM {table}")}


# --- item 4: names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", [PRE, ("status", "--json"), ("plan", "--json")])
async def test_tracking_table_with_a_trailing_newline_is_refused(
    db: Database, conn: asyncpg.Connection, layout: Layout, verb: tuple[str, ...]
):
    """`SUPERVISOR_TRACKING_TABLE="mig\\n"` (a YAML block scalar) exits 2 before connecting, showing the newline;
    no table "mig\\n" is created and nothing is applied (before: a second ledger, every file applied again)."""
    layout.add("pre", "001.sql", "CREATE TABLE t1 (id int);")
    r = await supervise(*verb, env=db.env(SUPERVISOR_TRACKING_TABLE="mig\n"), cwd=layout.root)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "TRACKING_TABLE_NAME"
    assert r.failure["error"].startswith(
        "SUPERVISOR_TRACKING_TABLE='mig\\n' is not a table name: it ends in a newline"
    )
    assert r.events("db.connected") == []
    assert await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE 'mig%'") == 0
    assert await conn.fetchval("SELECT to_regclass('t1')") is None


async def test_tracking_table_flag_is_validated_too(db: Database, conn: asyncpg.Connection, layout: Layout):
    """`--tracking-table 'ops.mig '` exits 2 naming the flag."""
    layout.add("pre", "001.sql", "SELECT 1;")
    r = await supervise(*PRE, "--tracking-table", "ops.mig ", env=db.env(), cwd=layout.root)
    assert r.code == 2, r.stderr
    assert r.failure["error"].startswith("--tracking-table='ops.mig ' is not a table name")
    assert await conn.fetchval("SELECT to_regnamespace('ops')") is None


async def test_upper_case_name_is_the_folded_table(db: Database, conn: asyncpg.Connection, layout: Layout):
    """`Ops.Mig$1` is the table ops."mig$1", as the same unquoted name is in SQL; a second spelling finds the same
    ledger and applies nothing again."""
    layout.add("pre", "001.sql", "CREATE TABLE t1 (id int);")
    r = await supervise(*PRE, env=db.env(SUPERVISOR_TRACKING_TABLE="Ops.Mig$1"), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert await conn.fetchval("SELECT filename FROM ops.mig$1") == "001.sql"
    again = await supervise(*PRE, env=db.env(SUPERVISOR_TRACKING_TABLE="ops.MIG$1"), cwd=layout.root)
    assert again.code == 0, again.stderr
    assert again.events("step.applied") == []


@settings(max_examples=20, deadline=None)
@given(st.lists(names, min_size=1, max_size=20))
def test_postgres_reads_every_valid_name_as_we_quote_it(pg: PgServer, batch: list[str]):
    """For random valid names, Postgres's own parse of the unquoted name (`parse_ident`) gives exactly the parts
    the supervisor quotes: the folding rule is Postgres's."""
    from supervisor.tablename import parse_table_name

    async def check() -> None:
        c = await asyncpg.connect(pg.dsn())
        try:
            parsed = await c.fetch(
                "SELECT parse_ident(n) AS parts FROM unnest($1::text[]) WITH ORDINALITY u(n, i) ORDER BY i",
                batch,
            )
        finally:
            await c.close()
        assert [list(r["parts"]) for r in parsed] == [parse_table_name(n, "X").split(".") for n in batch]

    asyncio.run(check())


# --- item 4: tables of our name that are not ours ----------------------------------------------------------------

_OURS = (
    "filename text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz, phase text, duration_ms integer, "
    "applied_by text, status text NOT NULL, statements_done integer, statements_total integer"
)


def _table(columns: str) -> str:
    return f"CREATE TABLE migrations_applied ({columns})"


FOREIGN = {
    "another tool's table": (
        _table("id serial PRIMARY KEY, version bigint, dirty boolean"),
        "it has no column filename; it has no column checksum; it has no column applied_at",
    ),
    "a view": (
        "CREATE VIEW migrations_applied AS SELECT 'a'::text AS filename, 'b'::text AS checksum, now() AS applied_at",
        "it is a view, not a table",
    ),
    "filename integer": (
        _table("filename integer PRIMARY KEY, checksum text, applied_at timestamptz"),
        "column filename is integer, expected text",
    ),
    "checksum varchar": (
        _table("filename text PRIMARY KEY, checksum varchar(10), applied_at timestamptz"),
        "column checksum is character varying(10), expected text",
    ),
    "no primary key": (
        _table("filename text, checksum text, applied_at timestamptz"),
        "column filename is not its primary key (nor unique)",
    ),
    "legacy plus a column": (
        _table("filename text PRIMARY KEY, checksum text, applied_at timestamptz, author text"),
        "it has the legacy runner's columns plus author, none of them ours",
    ),
    "ours but status nullable": (
        _table(_OURS.replace("status text NOT NULL", "status text")),
        "column status is nullable, expected NOT NULL",
    ),
    "ours but a required extra column": (
        _table(_OURS + ", tenant int NOT NULL"),
        "column tenant is NOT NULL without a default",
    ),
    "half ours": (
        _table(
            "filename text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz, phase text, duration_ms bigint"
        ),
        "column duration_ms is bigint, expected integer; it has no column applied_by",
    ),
}


@pytest.mark.parametrize("ddl_and_why", FOREIGN.values(), ids=FOREIGN.keys())
async def test_a_tracking_table_that_is_not_ours_is_refused_unchanged(
    db: Database, conn: asyncpg.Connection, layout: Layout, ddl_and_why: tuple[str, str]
):
    """`migrate`, `status` and `plan` exit 2 (TRACKING_TABLE_FOREIGN) naming the table, what differs and the fix;
    the table is not altered and no file is applied (before: six columns were added to it, then exit 1)."""
    ddl, why = ddl_and_why
    await conn.execute(ddl)
    before = await _shape(conn)
    layout.add("pre", "001.sql", "CREATE TABLE t1 (id int);")
    verbs = [PRE, ("status", "--json")]
    if "view" in why or "filename is integer" in why:  # the rest are read the same way; spare the time
        verbs += [("plan", "--json"), ("migrate", "--only", "post-schema")]
    for verb in verbs:
        r = await supervise(*verb, env=db.env(), cwd=layout.root)
        assert r.code == 2, (verb, r.stderr)
        assert r.failure["error_code"] == "TRACKING_TABLE_FOREIGN"
        msg = r.failure["error"]
        assert msg.startswith(
            "public.migrations_applied is not a tracking table of this supervisor: " + why
        ), msg
        assert "It was left unchanged" in msg and "SUPERVISOR_TRACKING_TABLE" in msg
        assert r.stdout == ""
    assert await _shape(conn) == before
    assert await conn.fetchval("SELECT to_regclass('t1')") is None
    assert await conn.fetchval("SELECT to_regclass('supervisor.supervisor_state')") is None


async def test_newer_nullable_extra_column_is_tolerated(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A current ledger with one more nullable column (a newer supervisor beside an older one in a rolling deploy)
    is ours: files are applied and recorded, the column is left alone."""
    layout.add("pre", "001.sql", "SELECT 1;")
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0
    await conn.execute("ALTER TABLE supervisor.migrations_applied ADD COLUMN note text")
    layout.add("pre", "002.sql", "SELECT 2;")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert [e["file"] for e in r.events("step.applied")] == ["002.sql"]


async def test_a_state_table_that_is_not_ours_is_refused_before_any_phase(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """`supervisor_state` (beside the tracking table) of another tool: exit 2 before the first file is applied,
    also from `status`; it is not altered. Another tool's `public.supervisor_state` is none of ours: left alone."""
    await conn.execute("CREATE TABLE public.supervisor_state (key text PRIMARY KEY, value jsonb)")
    await conn.execute(
        "CREATE SCHEMA supervisor; CREATE TABLE supervisor.supervisor_state (key text PRIMARY KEY)"
    )
    before = await _shape(conn, "supervisor.supervisor_state")
    layout.add("pre", "001.sql", "CREATE TABLE t1 (id int);")
    for verb in (PRE, ("status",)):
        r = await supervise(*verb, env=db.env(), cwd=layout.root)
        assert r.code == 2, r.stderr
        assert r.failure["error_code"] == "TRACKING_TABLE_FOREIGN"
        assert r.failure["error"].startswith(
            "supervisor.supervisor_state is not the state table of this supervisor: it has no column phase;"
        )
    assert await conn.fetchval("SELECT to_regclass('t1')") is None
    assert await _shape(conn, "supervisor.supervisor_state") == before
    await conn.execute("DROP TABLE supervisor.supervisor_state")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert await _shape(conn, "public.supervisor_state") == [("key", "text", True), ("value", "jsonb", False)]


async def test_schema_qualified_foreign_table_is_named_with_its_schema(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """The message names the table as resolved, schema included."""
    await conn.execute("CREATE SCHEMA ops; CREATE TABLE ops.ledger (filename int)")
    layout.add("pre", "001.sql", "SELECT 1;")
    r = await supervise(*PRE, env=db.env(SUPERVISOR_TRACKING_TABLE="ops.ledger"), cwd=layout.root)
    assert r.code == 2, r.stderr
    assert r.failure["error"].startswith(
        "ops.ledger is not a tracking table of this supervisor: column filename is"
    )
    assert await _shape(conn, "ops.ledger") == [("filename", "integer", False)]


# --- item 5: the legacy ledger ----------------------------------------------------------------------------------


async def test_legacy_crlf_file_converted_to_lf_is_not_a_change(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A file applied by the old runner as CRLF (its checksum: sha256 of those bytes) and converted to LF since is
    accepted (before: exit 5), and its checksum is rewritten in the normalised form; a BOM or CRLF later is still no
    change; a real content change is still exit 5."""
    crlf = b"CREATE TABLE legacy (id int);\r\nCREATE INDEX ON legacy (id);\r\n"
    await conn.execute(LEGACY_DDL)
    await conn.execute(
        "INSERT INTO migrations_applied (filename, checksum) VALUES ('001.sql', $1)",
        hashlib.sha256(crlf).hexdigest(),
    )
    f = layout.add("pre", "001.sql", crlf.replace(b"\r\n", b"\n"))
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert r.events("step.applied") == []
    ours = "sha256:" + hashlib.sha256(crlf.replace(b"\r\n", b"\n")).hexdigest()
    assert (await _legacy_rows(conn))["001.sql"] == ours
    assert r.events("ledger.checksums_upgraded")[0]["files"] == 1

    f.write_bytes(b"\xef\xbb\xbf" + crlf)
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0
    f.write_bytes(crlf.replace(b"legacy (id)", b"legacy (id DESC)"))
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 5 and r.failure["error_code"] == "CHECKSUM_MISMATCH"


async def test_legacy_lf_file_converted_to_crlf_with_bom_is_not_a_change(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """The other direction: applied as LF, now CRLF with a BOM."""
    lf = b"SELECT 1;\nSELECT 2;\n"
    await conn.execute(LEGACY_DDL)
    await conn.execute(
        "INSERT INTO migrations_applied VALUES ('001.sql', $1)", hashlib.sha256(lf).hexdigest()
    )
    layout.add("pre", "001.sql", b"\xef\xbb\xbf" + lf.replace(b"\n", b"\r\n"))
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert (await _legacy_rows(conn))["001.sql"] == "sha256:" + hashlib.sha256(lf).hexdigest()


async def test_legacy_checksum_matching_raw_bytes_is_rewritten_so_line_ends_stay_free(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """An unchanged legacy file (raw match) gets our checksum under the lock of a migrating run; rows of the other
    phase's folder are rewritten by that phase; an orphan legacy row keeps its checksum."""
    pre_raw, post_raw = b"SELECT 1;\r\n", b"SELECT 2;\r\n"
    await conn.execute(LEGACY_DDL)
    for name, raw in (("001.sql", pre_raw), ("101.sql", post_raw), ("000_gone.sql", b"x")):
        await conn.execute(
            "INSERT INTO migrations_applied VALUES ($1, $2)", name, hashlib.sha256(raw).hexdigest()
        )
    layout.add("pre", "001.sql", pre_raw)
    layout.add("post", "101.sql", post_raw)
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    rows = await _legacy_rows(conn)
    assert rows["001.sql"] == "sha256:" + hashlib.sha256(b"SELECT 1;\n").hexdigest()
    assert rows["101.sql"] == hashlib.sha256(post_raw).hexdigest()  # post-schema's, under its own lock
    assert rows["000_gone.sql"] == hashlib.sha256(b"x").hexdigest()
    r = await supervise("migrate", "--only", "post-schema", env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert (await _legacy_rows(conn))["101.sql"] == "sha256:" + hashlib.sha256(b"SELECT 2;\n").hexdigest()


async def test_status_and_plan_read_the_legacy_table_without_changing_it(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Before any migrating run, `status` shows legacy rows as applied, the new file as pending, the changed file
    as changed and the row without a file as orphaned (before: everything pending, no orphans); `plan` agrees;
    neither touches the table."""
    await conn.execute(LEGACY_DDL)
    one, two = b"SELECT 1;\r\n", b"SELECT 2;\n"
    for name, raw in (("001.sql", one), ("002.sql", two), ("000_gone.sql", b"x")):
        await conn.execute(
            "INSERT INTO migrations_applied VALUES ($1, $2)", name, hashlib.sha256(raw).hexdigest()
        )
    layout.add("pre", "001.sql", one.replace(b"\r\n", b"\n"))  # converted to LF: not a change
    layout.add("pre", "002.sql", b"SELECT 22;\n")
    layout.add("pre", "003.sql", b"SELECT 3;\n")
    shape, rows = await _shape(conn), await _legacy_rows(conn, "public.migrations_applied")

    r = await supervise("status", "--json", env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    pre = next(p for p in json.loads(r.stdout)["phases"] if p["phase"] == "pre-schema")
    # the legacy table knows when, not who or how long
    assert [(h["file"], h["applied_by"], h["duration_ms"]) for h in pre.pop("applied_files")] == [
        ("001.sql", None, None),
        ("002.sql", None, None),
    ]
    assert pre == {
        "phase": "pre-schema",
        "folder": "db-init",
        "applied": ["001.sql", "002.sql"],
        "pending": ["003.sql"],
        "rerun": [],
        "changed": ["002.sql"],
        "repeatable": [],
        "half_applied": [],
        "orphaned": ["000_gone.sql"],
    }
    p = await supervise("plan", "--json", env=db.env(), cwd=layout.root)
    assert p.code == 0, p.stderr
    planned = next(x for x in json.loads(p.stdout)["phases"] if x["phase"] == "pre-schema")
    assert planned["pending"] == ["003.sql"] and planned["changed"] == ["002.sql"]
    assert await _shape(conn) == shape
    assert await _legacy_rows(conn, "public.migrations_applied") == rows
    assert await conn.fetchval("SELECT to_regclass('supervisor.supervisor_state')") is None


async def test_two_replicas_adopt_the_legacy_table_once(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """Two replicas started together on a legacy ledger: both exit 0, the table is upgraded once (under the ledger
    lock, decided again from the catalog), the legacy file is not re-run and the new file runs exactly once."""
    await conn.execute(LEGACY_DDL)
    await conn.execute("CREATE TABLE seen (name text)")
    old = b"INSERT INTO seen VALUES ('001');\r\n"
    await conn.execute(
        "INSERT INTO migrations_applied VALUES ('001.sql', $1)", hashlib.sha256(old).hexdigest()
    )
    layout.add("pre", "001.sql", old.replace(b"\r\n", b"\n"))
    layout.add("pre", "002.sql", "INSERT INTO seen VALUES ('002');")
    procs = [await start_supervisor(*PRE, env=db.env(), cwd=layout.root) for _ in range(2)]
    results = await asyncio.gather(*(finish(p) for p in procs))
    assert [r.code for r in results] == [0, 0], [r.stderr for r in results]
    assert [r["name"] for r in await conn.fetch("SELECT name FROM seen")] == ["002"]
    assert sum(len(r.events("step.applied")) for r in results) == 1
    assert [c for c, _, _ in await _shape(conn, "supervisor.migrations_applied")][3:] == [
        "phase", "duration_ms", "applied_by", "status", "statements_done", "statements_total",
    ]  # fmt: skip
    assert (await _legacy_rows(conn))["001.sql"].startswith("sha256:")
