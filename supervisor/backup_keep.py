"""Making the copies of `supervisor.backup`'s plan: one REPEATABLE READ transaction that creates the schema
`supervisor_backup` and its index table when missing, copies each table or column, checks the row counts and records
each copy; any failure rolls it all back and stops the apply (exit 3 for a missing privilege, else 7).
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from supervisor.backup import BACKUP_SCHEMA, INDEX, BackupPlan, Item, backup_name, restore_sql
from supervisor.db import QUIET, application_name, is_connection_loss, rollback
from supervisor.errors import SchemaRefusal, SupervisorError
from supervisor.privileges import create_schema, privilege_refused, quote_ident

__all__ = ["keep_backups"]

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
    backup = backup_name(parts, run_id, taken)
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
