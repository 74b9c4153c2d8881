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
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from supervisor.errors import SchemaRefusal
from supervisor.privileges import quote_ident
from supervisor.schemadiff import Change

__all__ = [
    "BACKUP_SCHEMA",
    "INDEX",
    "BackupPlan",
    "Item",
    "backup_name",
    "list_backups",
    "plan_backups",
    "restore_sql",
]

BACKUP_SCHEMA = "supervisor_backup"
INDEX = f"{quote_ident(BACKUP_SCHEMA)}.{quote_ident('backups')}"
_MAX_NAME = 63  # Postgres truncates longer identifiers (NAMEDATALEN - 1 bytes)

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


def backup_name(parts: list[str], suffix: str, taken: set[str]) -> str:
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
