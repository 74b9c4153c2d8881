"""Mistakes a user makes and can fix (issue 9, items 1-4): each is refused with a documented exit code 2-8 and a
message that says what, where and what to do; never exit 1 ("a bug"), never a retry loop for what waiting cannot heal.
Every test runs the supervisor as a process against a real Postgres."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

from tests.conftest import ROOT, Database, Layout, Result, finish, supervise

PRE = ("migrate", "--only", "pre-schema")


@pytest.fixture
async def role(db: Database, conn: asyncpg.Connection) -> AsyncIterator[str]:
    """A login role that owns nothing: on Postgres 15+ it may not create in `public` nor in the database."""
    name = f"r_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD 'pw-{name}'")
    try:
        yield name
    finally:
        await conn.execute(f'DROP OWNED BY "{name}"')
        await conn.execute(f'DROP ROLE "{name}"')


def _as(db: Database, role: str, **env: str) -> dict[str, str]:
    return db.env(DB_USER=role, DB_PASSWORD=f"pw-{role}", **env)


# 1. Database errors a user causes.


async def test_role_without_create_on_public_names_the_grant(
    db: Database, layout: Layout, role: str, conn: asyncpg.Connection
):
    """The PG 15 default (no CREATE on public for non-owners), with the ledger set to a table in public: exit 3
    DB_PRIVILEGE naming the GRANT, quoted."""
    layout.add("pre", "001.sql", "SELECT 1;")
    env = _as(db, role, SUPERVISOR_TRACKING_TABLE="migrations_applied")
    r = await supervise(*PRE, env=env, cwd=layout.root)
    assert r.code == 3, r.stderr
    assert r.failure["error_code"] == "DB_PRIVILEGE"
    assert f'GRANT CREATE ON SCHEMA "public" TO "{role}"' in r.failure["error"]
    await conn.execute(f'GRANT CREATE ON SCHEMA "public" TO "{role}"')  # the fix the message names works
    assert (await supervise(*PRE, env=env, cwd=layout.root)).code == 0


async def test_role_without_create_on_the_database_for_the_default_schema(
    db: Database, layout: Layout, role: str, conn: asyncpg.Connection
):
    """The default ledger lives in the schema `supervisor`: a role that may not create it gets exit 3 naming the
    GRANT on the database and the schema an owner can make for it instead; that schema then works."""
    layout.add("pre", "001.sql", "SELECT 1;")
    r = await supervise(*PRE, env=_as(db, role), cwd=layout.root)
    assert r.code == 3, r.stderr
    assert r.failure["error_code"] == "DB_PRIVILEGE"
    assert f'GRANT CREATE ON DATABASE "{db.name}" TO "{role}"' in r.failure["error"]
    assert f'CREATE SCHEMA supervisor AUTHORIZATION "{role}"' in r.failure["error"]
    await conn.execute(f'CREATE SCHEMA supervisor AUTHORIZATION "{role}"')
    r = await supervise(*PRE, env=_as(db, role), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert await conn.fetchval("SELECT filename FROM supervisor.migrations_applied") == "001.sql"


async def test_role_without_create_on_database_for_a_tracking_schema(db: Database, layout: Layout, role: str):
    """A schema-qualified tracking table whose schema the role may not create: the GRANT on the database."""
    layout.add("pre", "001.sql", "SELECT 1;")
    r = await supervise(*PRE, env=_as(db, role, SUPERVISOR_TRACKING_TABLE="ops.migrations"), cwd=layout.root)
    assert r.code == 3, r.stderr
    assert r.failure["error_code"] == "DB_PRIVILEGE"
    assert f'GRANT CREATE ON DATABASE "{db.name}" TO "{role}"' in r.failure["error"]


async def test_existing_schema_is_used_without_create_on_the_database(
    db: Database, layout: Layout, role: str, conn: asyncpg.Connection
):
    """A role with CREATE on an existing schema needs no CREATE on the database (no CREATE SCHEMA is attempted)."""
    await conn.execute(f'CREATE SCHEMA ops; GRANT USAGE, CREATE ON SCHEMA ops TO "{role}"')
    layout.add("pre", "001.sql", "SELECT 1;")
    r = await supervise(*PRE, env=_as(db, role, SUPERVISOR_TRACKING_TABLE="ops.migrations"), cwd=layout.root)
    assert r.code == 0, r.stderr


async def test_legacy_table_owned_by_another_role(
    db: Database, layout: Layout, role: str, conn: asyncpg.Connection
):
    """The old runner's table, owned by another role, cannot be upgraded in place (ledger set to it) nor moved into
    the schema `supervisor` (the default): exit 3 naming the owner change; nothing moved, nothing applied."""
    await conn.execute(
        "CREATE TABLE migrations_applied (filename text PRIMARY KEY, checksum text NOT NULL, "
        f'applied_at timestamptz NOT NULL DEFAULT now()); GRANT ALL ON migrations_applied TO "{role}"; '
        f'GRANT CREATE ON SCHEMA public TO "{role}"; GRANT CREATE ON DATABASE "{db.name}" TO "{role}"'
    )
    layout.add("pre", "001.sql", "CREATE TABLE t1 (id int);")
    r = await supervise(
        *PRE, env=_as(db, role, SUPERVISOR_TRACKING_TABLE="migrations_applied"), cwd=layout.root
    )
    assert r.code == 3, r.stderr
    assert r.failure["error_code"] == "DB_PRIVILEGE"
    assert f'ALTER TABLE "migrations_applied" OWNER TO "{role}"' in r.failure["error"]
    r = await supervise(*PRE, env=_as(db, role), cwd=layout.root)
    assert r.code == 3, r.stderr
    assert r.failure["error_code"] == "DB_PRIVILEGE"
    assert r.failure["error"].startswith(
        f'the database role "{role}" may not move public.migrations_applied into the schema supervisor'
    )
    assert f'ALTER TABLE public.migrations_applied OWNER TO "{role}"' in r.failure["error"]
    assert "SUPERVISOR_TRACKING_TABLE=public.migrations_applied" in r.failure["error"]
    assert (
        await conn.fetchval("SELECT to_regclass('public.migrations_applied')::text") == "migrations_applied"
    )
    assert await conn.fetchval("SELECT to_regclass('supervisor.migrations_applied')") is None
    assert await conn.fetchval("SELECT to_regclass('t1')") is None


async def test_search_path_naming_a_missing_schema(db: Database, layout: Layout):
    """DB_SEARCH_PATH with no existing schema, and a tracking table without a schema of its own: exit 2
    SCHEMA_MISSING, naming the path and the fix."""
    layout.add("pre", "001.sql", "SELECT 1;")
    env = db.env(DB_SEARCH_PATH="app", SUPERVISOR_TRACKING_TABLE="migrations_applied")
    r = await supervise(*PRE, env=env, cwd=layout.root)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "SCHEMA_MISSING"
    assert '"app"' in r.failure["error"] and "CREATE SCHEMA" in r.failure["error"]


async def test_search_path_in_the_connection_string_options(db: Database, layout: Layout):
    """`options=-c search_path=...` in DB_CONNECTION_STRING naming a missing schema: exit 2 SCHEMA_MISSING."""
    layout.add("pre", "001.sql", "SELECT 1;")
    dsn = db.dsn + "?options=" + quote("-c search_path=nowhere")
    env = {**db.env(SUPERVISOR_TRACKING_TABLE="migrations_applied"), "DB_CONNECTION_STRING": dsn}
    r = await supervise(*PRE, env=env, cwd=layout.root)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "SCHEMA_MISSING"
    assert "nowhere" in r.failure["error"]


async def test_a_privilege_error_in_a_users_file_stays_an_sql_error(
    db: Database, layout: Layout, role: str, conn: asyncpg.Connection
):
    """Only the supervisor's own SQL maps to DB_PRIVILEGE: a user's file failing on a privilege is exit 4."""
    await conn.execute(f'CREATE SCHEMA supervisor AUTHORIZATION "{role}"; CREATE TABLE secret (id int)')
    layout.add("pre", "001.sql", "SELECT * FROM secret;")
    r = await supervise(*PRE, env=_as(db, role), cwd=layout.root)
    assert r.code == 4, r.stderr
    assert r.failure["error_code"] == "SQL_ERROR"


# 2. Files and folders.


def _without_dac() -> list[str]:
    """A command prefix under which root is subject to file modes (no CAP_DAC_OVERRIDE/READ_SEARCH); none otherwise."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("needs setpriv to drop root's DAC capabilities")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--"]


async def _supervise_unprivileged(*args: str, env: dict[str, str], cwd: Path) -> Result:
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    proc = await asyncio.create_subprocess_exec(
        *_without_dac(), sys.executable, "-m", "supervisor", *args,
        env={**env, "PYTHONPATH": pythonpath}, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return await finish(proc)


@pytest.mark.parametrize("verb", [PRE, ("status",), ("lint",)])
@pytest.mark.parametrize("what", ["file", "folder"])
async def test_unreadable_sql_file_or_folder(verb: tuple[str, ...], what: str, db: Database, layout: Layout):
    """A file or folder the supervisor's user may not read: migrate and status exit 2 FILE_UNREADABLE naming the
    path; lint reports it as an error finding (exit 1), as it does a missing folder."""
    path = layout.add("pre", "001.sql", "SELECT 1;")
    target = path if what == "file" else layout.pre
    target.chmod(0)
    try:
        r = await _supervise_unprivileged(*verb, env=db.env(), cwd=layout.root)
    finally:
        target.chmod(0o755)
    if verb == ("lint",):
        assert r.code == 1, r.stderr
        assert "cannot read this" in r.stdout and str(target.relative_to(layout.root)) in r.stdout
        return
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "FILE_UNREADABLE"
    assert r.failure["error"].startswith(f"{target.relative_to(layout.root)}: cannot read this")
    assert "Permission denied" in r.failure["error"] and "defaultMode" in r.failure["error"]


@pytest.mark.parametrize("verb", [PRE, ("status",)])
async def test_dangling_sql_symlink_is_refused(verb: tuple[str, ...], db: Database, layout: Layout):
    """A `*.sql` symbolic link to nothing is not skipped silently: exit 2 naming it and its target."""
    (layout.pre / "001.sql").symlink_to(layout.root / "gone.sql")
    r = await supervise(*verb, env=db.env(), cwd=layout.root)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "FILE_UNREADABLE"
    assert "db-init/001.sql" in r.failure["error"] and "gone.sql" in r.failure["error"]


async def test_status_with_a_missing_folder_refuses_like_migrate(db: Database, layout: Layout):
    """`status` with a missing folder exits 2 (as `migrate` does) instead of listing every applied file as orphaned."""
    layout.add("pre", "001.sql", "SELECT 1;")
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0
    shutil.rmtree(layout.pre)
    for verb in (("status",), PRE):
        r = await supervise(*verb, env=db.env(), cwd=layout.root)
        assert r.code == 2, r.stderr
        assert r.failure["error_code"] == "FOLDER_MISSING"
        assert "SUPERVISOR_DB_INIT_DIR" in r.failure["error"]


# 3. The Directus command.


@pytest.mark.parametrize("verb", [("migrate",), ("status",), ("plan",)])
async def test_missing_directus_command(verb: tuple[str, ...], db: Database, layout: Layout):
    """SUPERVISOR_DIRECTUS_CMD naming nothing: exit 2 DIRECTUS_CMD_INVALID in migrate, status and plan alike (the
    version lookup runs it with --version first)."""
    (layout.root / "snapshots").mkdir()
    shutil.copy(ROOT / "snapshots" / "schema.yaml", layout.root / "snapshots" / "schema.yaml")
    env = db.env(SUPERVISOR_DIRECTUS_CMD="/nonexistent/directus")
    r = await supervise(*verb, env=env, cwd=layout.root)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "DIRECTUS_CMD_INVALID"
    assert "/nonexistent/directus" in r.failure["error"] and "SUPERVISOR_DIRECTUS_CMD" in r.failure["error"]


# 4. Configuration mistakes that used to be reported as a failed login (or retried until the timeout).


def _dsn(db: Database, query: str) -> dict[str, str]:
    return {**db.env(SUPERVISOR_WAIT_TIMEOUT="30"), "DB_CONNECTION_STRING": f"{db.dsn}?{query}"}


@pytest.mark.parametrize(
    ("name", "env", "code", "error_code", "expect"),
    [
        ("quoted search path", {"DB_SEARCH_PATH": '"$user", public'}, 2, "CONFIG_INVALID", "DB_SEARCH_PATH=$user,public"),
        ("bogus sslmode", "sslmode=bogus", 2, "CONFIG_INVALID", "sslmode='bogus'"),
        ("garbage CA", {"DB_SSL__CA": "not a certificate"}, 2, "DB_CONFIG_INVALID", "DB_SSL__CA"),
        ("host with port", "HOSTPORT", 2, "CONFIG_INVALID", "DB_PORT="),
        ("TLS required, server has none", "sslmode=require", 2, "DB_TLS_UNAVAILABLE", "sslmode=disable"),
        ("TLS via DB_SSL, server has none", {"DB_SSL": "true"}, 2, "DB_TLS_UNAVAILABLE", "unset DB_SSL"),
        ("unknown setting in options", "options=" + quote("-c no_such.x=1 -c work_mem=bogus"), 2,
         "DB_CONFIG_INVALID", "options parameter of DB_CONNECTION_STRING"),
    ],
)  # fmt: skip
async def test_configuration_mistakes_fail_at_once(
    name: str,
    env: dict[str, str] | str,
    code: int,
    error_code: str,
    expect: str,
    db: Database,
    layout: Layout,
):
    """Each mistake exits 2 within a second or two, with no db.retrying, naming the setting to fix."""
    layout.add("pre", "001.sql", "SELECT 1;")
    if env == "HOSTPORT":
        full = db.env(DB_HOST=f"{db.server.host}:{db.server.port}", SUPERVISOR_WAIT_TIMEOUT="30")
    elif isinstance(env, str):
        full = _dsn(db, env)
    else:
        full = db.env(SUPERVISOR_WAIT_TIMEOUT="30", **env)
    t0 = time.monotonic()
    r = await supervise(*PRE, env=full, cwd=layout.root)
    assert r.code == code, r.stderr
    assert time.monotonic() - t0 < 10
    assert r.events("db.retrying") == []
    assert r.failure["error_code"] == error_code
    assert expect in r.failure["error"]
    assert "DB_AUTH_FAILED" not in r.stderr and db.server.password not in r.stderr


async def test_connection_string_hints_name_it(db: Database, layout: Layout):
    """With DB_CONNECTION_STRING, a rejected login names it (not DB_USER), and the target comes from its query
    parameters (?user=, ?dbname=) too; the password in ?password= never shows."""
    layout.add("pre", "001.sql", "SELECT 1;")
    base = f"postgresql://{db.server.host}:{db.server.port}/ignored"
    secret = "wrong-pw-42%21"
    dsn = f"{base}?user={db.server.user}&dbname={db.name}&password={secret}"
    r = await supervise(*PRE, env={**db.env(), "DB_CONNECTION_STRING": dsn}, cwd=layout.root)
    assert r.code == 3, r.stderr
    assert r.failure["error_code"] == "DB_AUTH_FAILED"
    msg = r.failure["error"]
    assert f"database {db.name!r} as user {db.server.user!r}" in msg
    assert "DB_CONNECTION_STRING" in msg and "DB_USER" not in msg
    assert "wrong-pw-42" not in r.stderr + r.stdout


@pytest.mark.parametrize("verb", [("migrate",), ("status",)])
async def test_directus_command_with_a_missing_script(verb: tuple[str, ...], db: Database, layout: Layout):
    """`node /missing/cli.js`: exit 2 DIRECTUS_CMD_INVALID naming the script, not node's stack trace as exit 8."""
    (layout.root / "snapshots").mkdir()
    shutil.copy(ROOT / "snapshots" / "schema.yaml", layout.root / "snapshots" / "schema.yaml")
    env = db.env(SUPERVISOR_DIRECTUS_CMD=f"{sys.executable} /nonexistent/cli.js")
    r = await supervise(*verb, env=env, cwd=layout.root)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "DIRECTUS_CMD_INVALID"
    assert "the script /nonexistent/cli.js" in r.failure["error"]


@pytest.mark.parametrize("verb", [PRE, ("status",)])
async def test_tracking_table_the_role_may_not_read(
    verb: tuple[str, ...], db: Database, layout: Layout, role: str, conn: asyncpg.Connection
):
    """A tracking table made by another role and not granted: exit 3 DB_PRIVILEGE naming the GRANT on it."""
    layout.add("pre", "001.sql", "SELECT 1;")
    assert (await supervise(*PRE, env=db.env(), cwd=layout.root)).code == 0  # made by the owner
    r = await supervise(*verb, env=_as(db, role), cwd=layout.root)
    assert r.code == 3, r.stderr
    assert r.failure["error_code"] == "DB_PRIVILEGE"
    assert f'GRANT USAGE, CREATE ON SCHEMA "supervisor" TO "{role}"' in r.failure["error"]
    await conn.execute(f'GRANT USAGE ON SCHEMA supervisor TO "{role}"')
    r = await supervise(*verb, env=_as(db, role), cwd=layout.root)
    assert r.code == 3, r.stderr
    assert r.failure["error_code"] == "DB_PRIVILEGE"
    assert (
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "supervisor"."migrations_applied" TO "{role}"'
        in r.failure["error"]
    )
