"""What of a snapshot the database holds: the check of a fresh `schema apply` without a second Node start.

`directus schema apply` exits 0 in cases where it applied nothing (an uninstalled database, say), so its outcome is
verified. Where something of the snapshot existed before, a second dry-run must show no changes (Directus compares
every property). Where nothing did (a database Directus was installed on in this boot, holding no table, column or
record of the snapshot), the apply had to create everything, and presence is the whole claim: this module checks it
in one query instead of a second Node start (about 3 s of a cold boot).

An item of the snapshot, and where its presence shows:
- a collection with `meta`: its row in `directus_collections`; with `schema`: its table;
- a field with `meta`: its row in `directus_fields` (custom fields of system collections such as `directus_users`
  have one too); with `schema` and a type other than `alias` (alias fields, o2m and m2m, have no column): its column;
- a relation with `meta`: its row in `directus_relations` (many_collection, many_field); with a foreign key in its
  `schema`: a foreign key on that column to that table;
- a system field listed with `is_indexed: true`: an index over that column.
Tables and columns are looked up in the catalog as the supervisor's own statements resolve names (its search_path is
Directus's DB_SEARCH_PATH), the same answer `information_schema.columns` gives for the schema Directus wrote to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

__all__ = ["Expected", "expected", "present"]

# Kinds of item, in the order a message lists them.
COLLECTION_ROW, TABLE, FIELD_ROW, COLUMN, RELATION_ROW, FOREIGN_KEY, SYSTEM_INDEX = (
    "collection",
    "table",
    "field",
    "column",
    "relation",
    "foreign key",
    "system index",
)
# What the apply creates: if any of these exists before it, something of the snapshot existed (not fresh).
CREATED = frozenset({COLLECTION_ROW, TABLE, FIELD_ROW, COLUMN, RELATION_ROW, FOREIGN_KEY})


@dataclass(frozen=True, slots=True)
class Item:
    """One thing the snapshot says exists: its kind, and up to three names (table/collection, field, target)."""

    kind: str
    a: str
    b: str = ""
    c: str = ""

    def describe(self) -> str:
        """`column vehicles.plate`, `table vehicles`, ..."""
        where = f"{self.a}.{self.b}" if self.b else self.a
        return f"{self.kind} {where}" + (f" -> {self.c}" if self.c else "")


@dataclass(frozen=True, slots=True)
class Expected:
    """Every item of a snapshot whose presence the database can show."""

    items: list[Item] = field(default_factory=list)


def _name(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    return value if isinstance(value, str) else ""


def expected(data: dict[str, Any]) -> Expected:
    """The items of a parsed snapshot (see the module docstring)."""
    items: list[Item] = []
    for c in data.get("collections") or []:
        name = _name(c, "collection")
        if c.get("meta") is not None:
            items.append(Item(COLLECTION_ROW, name))
        if isinstance(c.get("schema"), dict):
            items.append(Item(TABLE, _name(c["schema"], "name") or name))
    for f in data.get("fields") or []:
        coll, name = _name(f, "collection"), _name(f, "field")
        if f.get("meta") is not None:
            items.append(Item(FIELD_ROW, coll, name))
        schema = f.get("schema")
        if isinstance(schema, dict) and f.get("type") != "alias":
            items.append(Item(COLUMN, _name(schema, "table") or coll, _name(schema, "name") or name))
    for r in data.get("relations") or []:
        coll, name = _name(r, "collection"), _name(r, "field")
        if r.get("meta") is not None:
            items.append(Item(RELATION_ROW, coll, name))
        schema = r.get("schema")
        if isinstance(schema, dict) and schema.get("foreign_key_table"):
            table = _name(schema, "table") or coll
            items.append(
                Item(FOREIGN_KEY, table, _name(schema, "column") or name, schema["foreign_key_table"])
            )
    for s in data.get("systemFields") or []:
        schema = s.get("schema")
        if isinstance(schema, dict) and schema.get("is_indexed") is True:
            items.append(Item(SYSTEM_INDEX, _name(s, "collection"), _name(s, "field")))
    return Expected(items)


# One round trip: for each item (kind, a, b, c) whether the database shows it. Directus must be installed (its tables
# are named in the statement): the callers run it after a verified `directus bootstrap`.
_PRESENT = """
WITH items AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
                                AS i(kind, a, b, c, n)),
rel AS (SELECT n, kind, a, b, c, to_regclass(quote_ident(a)) AS t FROM items)
SELECT n, CASE kind
  WHEN 'collection' THEN EXISTS (SELECT FROM directus_collections d WHERE d.collection = a)
  WHEN 'table' THEN t IS NOT NULL
  WHEN 'field' THEN EXISTS (SELECT FROM directus_fields d WHERE d.collection = a AND d.field = b)
  WHEN 'column' THEN EXISTS (SELECT FROM pg_attribute x WHERE x.attrelid = t AND x.attname = b AND x.attnum > 0
                                                          AND NOT x.attisdropped)
  WHEN 'relation' THEN EXISTS (SELECT FROM directus_relations d WHERE d.many_collection = a AND d.many_field = b)
  WHEN 'foreign key' THEN EXISTS (
       SELECT FROM pg_constraint k JOIN pg_attribute x ON x.attrelid = k.conrelid AND x.attnum = ANY (k.conkey)
        WHERE k.contype = 'f' AND k.conrelid = t AND x.attname = b AND k.confrelid = to_regclass(quote_ident(c)))
  WHEN 'system index' THEN EXISTS (
       SELECT FROM pg_index i JOIN pg_attribute x ON x.attrelid = i.indrelid AND x.attnum = ANY (i.indkey)
        WHERE i.indrelid = t AND x.attname = b)
  END AS present
FROM rel ORDER BY n
"""


async def present(conn: asyncpg.Connection, want: Expected) -> tuple[list[Item], list[Item]]:
    """(present, missing) items of `want`, in the snapshot's order; one round trip."""
    if not want.items:
        return [], []
    items = want.items
    rows = await conn.fetch(
        _PRESENT,
        [i.kind for i in items],
        [i.a for i in items],
        [i.b for i in items],
        [i.c for i in items],
    )
    flags = [bool(r["present"]) for r in rows]
    return [i for i, ok in zip(items, flags, strict=True) if ok], [
        i for i, ok in zip(items, flags, strict=True) if not ok
    ]
