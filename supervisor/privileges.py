"""Refusals for the supervisor's own DDL (its tracking and state tables, their schema) that the database's setup
causes: a role without the privilege to create them (exit 3, naming the `GRANT`), or a search path with no schema to
create them in (exit 2). An error in a user's SQL file is not handled here: it stays a migration failure (exit 4).
"""

from __future__ import annotations

import re

import asyncpg

from supervisor.errors import ConfigError, DatabaseUnavailable

__all__ = ["create_schema", "creation_refused", "denied", "privilege_refused", "quote_ident"]


def quote_ident(name: str) -> str:
    """An SQL identifier, always quoted (as `quote_ident` would when needed)."""
    return '"' + name.replace('"', '""') + '"'


async def create_schema(conn: asyncpg.Connection, schema: str) -> None:
    """`CREATE SCHEMA` unless it exists: Postgres checks CREATE on the database even for `IF NOT EXISTS` on an
    existing schema, and a role may well own or use a schema it could not create."""
    if await conn.fetchval("SELECT to_regnamespace($1) IS NULL", quote_ident(schema.lower())):
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema.lower())}")


def privilege_refused(
    exc: asyncpg.PostgresError, what: str, grant: str | None = None, role: str | None = None
) -> DatabaseUnavailable:
    """Exit 3 for a 42501 on the supervisor's own SQL: `what` it was doing, and the `grant` that fixes it."""
    fix = (
        f"Run as a role that may (the database owner, say): {grant}; or connect as a role that already has it."
        if grant
        else "Grant the database role the privilege Postgres names, or run as the owner of the object."
    )
    return DatabaseUnavailable(
        f"the database role{f' {quote_ident(role)}' if role else ''} may not {what}: {exc.sqlstate} {exc}. {fix}",
        error_code="DB_PRIVILEGE",
    )


_DENIED = re.compile(r"permission denied for (table|schema|database|sequence) (\S+)")
_GRANTS = {
    "table": "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {} TO {}",
    "schema": "GRANT USAGE, CREATE ON SCHEMA {} TO {}",
    "database": "GRANT CREATE ON DATABASE {} TO {}",
    "sequence": "GRANT USAGE, SELECT, UPDATE ON SEQUENCE {} TO {}",
}


def denied(exc: asyncpg.PostgresError, role: str, tables: dict[str, str], what: str) -> DatabaseUnavailable:
    """Exit 3 for a 42501 on the supervisor's own reads and writes (a tracking table another role made, say).

    `tables` maps a bare table name, as Postgres reports it, to its qualified, quoted form."""
    m = _DENIED.search(str(exc))
    grant = None
    if m:
        kind, name = m.groups()
        target = tables.get(name) if kind == "table" else None
        grant = _GRANTS[kind].format(target or quote_ident(name), quote_ident(role))
    return privilege_refused(exc, what, grant, role)


async def creation_refused(
    conn: asyncpg.Connection, exc: asyncpg.PostgresError, table: str, schema: str | None
) -> DatabaseUnavailable | ConfigError | None:
    """The refusal for `exc`, raised while creating the supervisor's `table` (in `schema`, or the search path's
    first schema when None); None when `exc` is not about privileges or schemas. Run after the failed transaction
    ended: it reads who and where the session is."""
    if not isinstance(exc, asyncpg.InsufficientPrivilegeError | asyncpg.InvalidSchemaNameError):
        return None
    row = await conn.fetchrow(
        "SELECT current_user, current_database(), current_schema(), current_setting('search_path')"
    )
    assert row is not None
    role, database, current, path = row
    if isinstance(exc, asyncpg.InvalidSchemaNameError):
        named = [p.strip().strip('"') for p in path.split(",")]
        first = next((p for p in named if p and p != "$user"), "app")
        return ConfigError(
            f"the supervisor cannot create its table {table}: {exc.sqlstate} {exc}. The session's search_path is "
            f"{path!r} and none of its schemas exists. Create the schema (as its owner: CREATE SCHEMA "
            f"{quote_ident(first)}; GRANT USAGE, CREATE ON SCHEMA {quote_ident(first)} TO {quote_ident(role)}), or "
            "fix DB_SEARCH_PATH (or the search_path in DB_CONNECTION_STRING's options), or give "
            "SUPERVISOR_TRACKING_TABLE an existing schema (schema.name).",
            error_code="SCHEMA_MISSING",
        )
    if "must be owner" in str(exc):
        owner = f"ALTER TABLE {table} OWNER TO {quote_ident(role)}"
        return privilege_refused(exc, f"upgrade its table {table} (ADD COLUMN)", owner, role)
    target = schema or current
    if "database" in str(exc) or target is None:
        grant = f"GRANT CREATE ON DATABASE {quote_ident(database)} TO {quote_ident(role)}"
        what = f"create the schema {schema} for its table {table}" if schema else f"create its table {table}"
        if schema:
            grant += f"; or have the owner create the schema: CREATE SCHEMA {schema} AUTHORIZATION {quote_ident(role)}"
        return privilege_refused(exc, what, grant, role)
    grant = f"GRANT CREATE ON SCHEMA {quote_ident(target)} TO {quote_ident(role)}"
    return privilege_refused(exc, f"create its table {table} in the schema {target}", grant, role)
