"""What an allowed destructive `schema apply` drops is copied first, into the schema `supervisor_backup`.

Before `directus schema apply` runs with SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA, under the schema-apply lock and in
one transaction (REPEATABLE READ, so every count sees the same rows as the copy):

- each table of a deleted collection is copied whole: `supervisor_backup."<table>__<stamp>_<id>"`;
- each dropped column (a deleted field, or a field whose type change rewrites it) is copied with the table's
  primary key beside it: `supervisor_backup."<table>__<column>__<stamp>_<id>"`;
- one row per copy goes into `supervisor_backup.backups`: when, the snapshot checksum, the Directus version, the
  dry-run line, the row count, the SQL that restores it and the Directus metadata rows (directus_collections,
  directus_fields, directus_relations) of what is dropped, so its definition is not lost either.

Row counts are checked (copied = source = kept) before the commit. Anything that fails rolls the whole backup
back and stops the apply, so nothing is dropped without its copy and no half backup is left. Backups are kept
until someone drops them (docs/operations.md). Alias fields (o2m, m2m, presentation) have no column: nothing to
copy. A table without a primary key cannot have a column matched back to its rows: refused (exit 7).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from supervisor.db import QUIET, application_name, is_connection_loss, rollback
from supervisor.errors import SchemaRefusal, SupervisorError
from supervisor.privileges import create_schema, privilege_refused, quote_ident
from supervisor.schemadiff import Change

__all__ = ["BACKUP_SCHEMA", "BackupPlan", "Item", "keep_backups", "list_backups", "plan_backups"]

BACKUP_SCHEMA = "supervisor_backup"
INDEX = f"{quote_ident(BACKUP_SCHEMA)}.{quote_ident('backups')}"
_MAX_NAME = 63  # Postgres truncates longer identifiers (NAMEDATALEN - 1 bytes)

_CREATE_INDEX = f"""CREATE TABLE IF NOT EXISTS {INDEX} (
    backup text PRIMARY KEY,
    run_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text,
    kind text NOT NULL,
    source_schema text NOT NULL,
    source_table text NOT NULL,
    source_column text,
    key_columns text[] NOT NULL,
    row_count bigint NOT NULL,
    change text NOT NULL,
    snapshot_checksum text NOT NULL,
    directus_version text NOT NULL,
    restore_sql text NOT NULL,
    definition jsonb NOT NULL)"""

# The relation a (quoted) name resolves to, as the supervisor's later statements would: schema, name, primary key
# columns in key order, and every column with its type.
_RESOLVE = """
SELECT n.nspname AS schema, c.relname AS name,
  ARRAY(SELECT a.attname::text FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord) AS keys,
  (SELECT coalesce(json_object_agg(a.attname, format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum), '{}')
     FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)::text AS columns
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)
"""


@dataclass(frozen=True, slots=True)
class Item:
    """One copy to make: a whole table (`column` None) or one column with the primary key beside it."""

    change: str  # the dry-run item it protects (Change.describe())
    schema: str
    table: str
    column: str | None
    keys: tuple[str, ...]
    columns: dict[str, str]  # the table's columns and their types

    @property
    def source(self) -> str:
        """`schema.table[.column]`, unquoted, for people."""
        return f"{self.schema}.{self.table}" + (f".{self.column}" if self.column else "")

    @property
    def qualified(self) -> str:
        """The source table, quoted and schema-qualified."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.table)}"

    def describe(self) -> str:
        """`column public.vehicles.name with its primary key (id)` or `table public.vehicles`."""
        if self.column is None:
            return f"table {self.source}"
        return f"column {self.source} with its primary key ({', '.join(self.keys)})"


@dataclass
class BackupPlan:
    """What the backup before an apply would copy, what it copies nothing for (and why), and what it refuses."""

    items: list[Item] = field(default_factory=list)
    nothing: dict[str, str] = field(default_factory=dict)  # change -> why nothing is copied for it
    refusals: list[str] = field(default_factory=list)

    def note(self, change: Change) -> str | None:
        """What the backup does about one destructive change, for `plan`."""
        what = change.describe()
        copies = [i.describe() for i in self.items if i.change == what]
        if copies:
            return f"copied first into {BACKUP_SCHEMA}: " + "; ".join(copies)
        if what in self.nothing:
            return f"nothing to copy: {self.nothing[what]}"
        return next((r for r in self.refusals if r.startswith(what)), None)

    def refusal(self, snapshot: object) -> SchemaRefusal:
        """Exit 7 for copies that cannot be made: nothing is dropped."""
        return SchemaRefusal(
            f"{snapshot}: SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA is set, but the supervisor keeps a copy of what an "
            "apply drops and cannot for:\n"
            + "\n".join(f"  - {r}" for r in self.refusals)
            + "\nNothing was dropped and the snapshot was not applied. Give the table a primary key, or copy "
            "the data yourself and remove the field in Directus by hand.",
            error_code="SCHEMA_BACKUP_REFUSED",
        )


async def plan_backups(conn: asyncpg.Connection, destructive: list[Change]) -> BackupPlan:
    """The copies that keep what `destructive` drops: deleted collections' tables, deleted fields' columns and
    the columns a type change rewrites. Reads the catalog only."""
    plan = BackupPlan()
    gone = {c.collection for c in destructive if c.section == "collections" and c.kind == "Delete"}
    seen: set[tuple[str, str, str | None]] = set()
    for c in destructive:
        what = c.describe()
        reason = c.destructive_reason or ""
        dropped = c.kind == "Delete" and c.section in ("collections", "fields")
        if not dropped and "changes the column type" not in reason:
            plan.nothing[what] = (
                "it drops an index, a constraint or changes a key; no stored value is dropped"
            )
            continue
        if c.section != "collections" and c.collection in gone:
            plan.nothing[what] = f"its collection {c.collection} is deleted too: the table copy holds it"
            continue
        row = await conn.fetchrow(_RESOLVE, quote_ident(c.collection))
        if row is None:
            plan.nothing[what] = f"no table {c.collection} in the database (a folder collection?): no data"
            continue
        columns: dict[str, str] = json.loads(row["columns"])
        column = c.field_name
        if column is not None and column not in columns:
            plan.nothing[what] = (
                "an alias field (o2m, m2m or presentation): it has no column, nothing is stored"
            )
            continue
        keys = tuple(row["keys"])
        if column is not None and not keys:
            plan.refusals.append(
                f"{what}: the table {row['schema']}.{row['name']} has no primary key, so a copy of the column "
                "could not be matched back to its rows"
            )
            continue
        if (row["schema"], row["name"], column) in seen:
            continue
        seen.add((row["schema"], row["name"], column))
        plan.items.append(Item(what, row["schema"], row["name"], column, keys, columns))
    return plan


def _name(parts: list[str], suffix: str, taken: set[str]) -> str:
    """`<table>[__<column>]__<stamp>_<id>`, cut to Postgres's 63 bytes without cutting the suffix; unique in `taken`."""
    base = "__".join(parts)
    n = 0
    while True:
        tail = f"__{suffix}" + (f"_{n}" if n else "")
        room = _MAX_NAME - len(tail.encode())
        name = base.encode()[:room].decode(errors="ignore") + tail
        if name not in taken:
            taken.add(name)
            return name
        n += 1


def restore_sql(item: Item, backup: str) -> str:
    """The SQL that puts the copy back, once the collection or field exists again (re-added to the snapshot)."""
    dst = f"{quote_ident(BACKUP_SCHEMA)}.{quote_ident(backup)}"
    if item.column is not None:
        col = quote_ident(item.column)
        match = " AND ".join(f"t.{quote_ident(k)} = b.{quote_ident(k)}" for k in item.keys)
        return f"UPDATE {item.qualified} AS t SET {col} = b.{col} FROM {dst} AS b WHERE {match};"
    cols = ", ".join(quote_ident(c) for c in item.columns)
    sql = f"INSERT INTO {item.qualified} ({cols}) SELECT {cols} FROM {dst};"
    for k in item.keys:  # a serial key's sequence must move past the restored rows (a no-op without one)
        sql += (
            f" SELECT setval(pg_get_serial_sequence('{item.qualified.replace(chr(39), chr(39) * 2)}', "
            f"'{k.replace(chr(39), chr(39) * 2)}'), max({quote_ident(k)})) FROM {item.qualified};"
        )
    return sql


async def _definition(conn: asyncpg.Connection, item: Item) -> dict[str, Any]:
    """The column types and Directus's metadata rows for what is dropped (where Directus's tables exist), so the
    field's or collection's definition survives with its data."""
    c, f = item.table, item.column
    if f is None:
        out: dict[str, Any] = {"columns": item.columns}
        wheres = {
            "directus_collections": "collection = $1",
            "directus_fields": "collection = $1",
            "directus_relations": "many_collection = $1 OR one_collection = $1",
        }
        args: list[str] = [c]
    else:
        out = {"columns": {f: item.columns[f]}}
        wheres = {
            "directus_fields": "collection = $1 AND field = $2",
            "directus_relations": "(many_collection = $1 AND many_field = $2) OR "
            "(one_collection = $1 AND one_field = $2)",
        }
        args = [c, f]
    for table, where in wheres.items():
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            rows = await conn.fetchval(
                f"SELECT coalesce(json_agg(to_jsonb(t)), '[]')::text FROM {table} t WHERE {where}", *args
            )
            out[table] = json.loads(rows)
    return out


async def keep_backups(
    conn: asyncpg.Connection,
    plan: BackupPlan,
    *,
    snapshot_checksum: str,
    directus_version: str,
    log: Any,
) -> list[dict[str, Any]]:
    """Make every copy of `plan` in one transaction and record it; on any failure nothing is kept and the apply
    must not run (exit 3 for a missing privilege, 7 otherwise). Returns the index rows written."""
    t0 = time.monotonic()
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}_{secrets.token_hex(3)}"
    taken: set[str] = set()
    kept: list[dict[str, Any]] = []
    current: Item | None = None
    if plan.items:
        try:
            # REPEATABLE READ: each copy and the counts that check it see the same rows.
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            await conn.execute(QUIET)
            await create_schema(conn, BACKUP_SCHEMA)
            await conn.execute(_CREATE_INDEX)
            for item in plan.items:
                current = item
                kept.append(await _copy(conn, item, run_id, taken, snapshot_checksum, directus_version))
            await conn.execute("COMMIT")
        except BaseException as e:
            if not conn.is_closed() and conn.is_in_transaction():
                await rollback(conn)  # also when cancelled by a signal: no half backup stays
            if isinstance(e, asyncpg.PostgresError) and not is_connection_loss(e):
                raise _failed(e, current, await conn.fetchval("SELECT current_user")) from e
            raise
    for row in kept:
        log.warning(
            "schema.backup_kept",
            backup=f"{BACKUP_SCHEMA}.{row['backup']}",
            source=row["source"],
            rows=row["row_count"],
            change=row["change"],
            restore=row["restore_sql"],
        )
    for change, why in plan.nothing.items():
        log.info("schema.backup_nothing_to_keep", change=change, reason=why)
    if not kept:
        return kept
    log.info(
        "schema.backup_finished",
        schema=BACKUP_SCHEMA,
        run_id=run_id,
        backups=len(kept),
        duration_ms=round((time.monotonic() - t0) * 1000),
        retention="kept until dropped by hand: see docs/operations.md, 'Backups of dropped data'",
    )
    return kept


async def _copy(
    conn: asyncpg.Connection,
    item: Item,
    run_id: str,
    taken: set[str],
    snapshot_checksum: str,
    directus_version: str,
) -> dict[str, Any]:
    parts = [item.table] + ([item.column] if item.column else [])
    backup = _name(parts, run_id, taken)
    dst = f"{quote_ident(BACKUP_SCHEMA)}.{quote_ident(backup)}"
    if item.column is None:
        status = await conn.execute(f"CREATE TABLE {dst} AS TABLE {item.qualified}")
    else:
        cols = dict.fromkeys([*item.keys, item.column])  # a key column dropped itself is listed once
        select = ", ".join(quote_ident(c) for c in cols)
        status = await conn.execute(f"CREATE TABLE {dst} AS SELECT {select} FROM {item.qualified}")
    copied = int(status.split()[-1])  # "SELECT n"
    source_n = await conn.fetchval(f"SELECT count(*) FROM {item.qualified}")
    kept_n = await conn.fetchval(f"SELECT count(*) FROM {dst}")
    if not copied == source_n == kept_n:
        raise SchemaRefusal(
            f"the copy of {item.source} into {BACKUP_SCHEMA}.{backup} holds {kept_n} row(s), the table {source_n} "
            f"(copied {copied}); nothing was kept and nothing dropped. Run again; report it if it repeats.",
            error_code="SCHEMA_BACKUP_FAILED",
        )
    restore = restore_sql(item, backup)
    await conn.execute(
        f"COMMENT ON TABLE {dst} IS "
        + _literal(
            f"supervisor: copy of {item.describe()} before a destructive schema apply; restore: {restore}"
        )
    )
    row = {
        "backup": backup,
        "kind": "table" if item.column is None else "column",
        "source": item.source,
        "row_count": kept_n,
        "change": item.change,
        "restore_sql": restore,
    }
    await conn.execute(
        f"""INSERT INTO {INDEX} (backup, run_id, created_by, kind, source_schema, source_table, source_column,
            key_columns, row_count, change, snapshot_checksum, directus_version, restore_sql, definition)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb)""",
        backup,
        run_id,
        application_name(),
        row["kind"],
        item.schema,
        item.table,
        item.column,
        list(item.keys),
        kept_n,
        item.change,
        snapshot_checksum,
        directus_version,
        restore,
        json.dumps(await _definition(conn, item)),
    )
    return row


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _failed(e: asyncpg.PostgresError, item: Item | None, role: str) -> SupervisorError:
    """The refusal for a backup that could not be made; its transaction has been rolled back."""
    what = f"copy {item.source}" if item else f"create the schema {BACKUP_SCHEMA} and its index table"
    tail = (
        " Nothing was dropped: the snapshot was not applied, and the backup's transaction was rolled back, so no "
        "part of it was kept."
    )
    if isinstance(e, asyncpg.InsufficientPrivilegeError):
        grant = (
            f"GRANT USAGE, CREATE ON SCHEMA {quote_ident(BACKUP_SCHEMA)} TO {quote_ident(role)} (or create that "
            f"schema beforehand, owned by {quote_ident(role)}); the role also needs CREATE ON DATABASE to create "
            "the schema itself"
        )
        err = privilege_refused(
            e, f"{what} into {BACKUP_SCHEMA} before a destructive schema apply", grant, role
        )
        err.message += tail
        err.args = (err.message,)
        return err
    return SchemaRefusal(
        f"could not {what} into {BACKUP_SCHEMA} before a destructive schema apply: {e.sqlstate} {e}.{tail} "
        f"Fix the cause (disk space, a table of ours in {BACKUP_SCHEMA} that is not ours, ...) and run again.",
        error_code="SCHEMA_BACKUP_FAILED",
    )


async def list_backups(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """The backups recorded in `supervisor_backup.backups`, oldest first; `present` is false for a copy dropped
    by hand without its index row. Empty when there is no index table."""
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", INDEX):
        return []
    rows = await conn.fetch(
        f"""SELECT backup, created_at, kind, source_schema, source_table, source_column, row_count, change,
            snapshot_checksum, directus_version, restore_sql,
            to_regclass(format('%I.%I', '{BACKUP_SCHEMA}', backup)) IS NOT NULL AS present
        FROM {INDEX} ORDER BY created_at, backup"""
    )
    return [
        {
            "backup": f"{BACKUP_SCHEMA}.{r['backup']}",
            "created_at": r["created_at"].isoformat(),
            "kind": r["kind"],
            "source": ".".join(p for p in (r["source_schema"], r["source_table"], r["source_column"]) if p),
            "rows": r["row_count"],
            "change": r["change"],
            "snapshot_checksum": r["snapshot_checksum"],
            "directus_version": r["directus_version"],
            "restore_sql": r["restore_sql"],
            "present": r["present"],
        }
        for r in rows
    ]
