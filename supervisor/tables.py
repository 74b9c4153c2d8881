"""Is a table of the configured name ours? The catalog decides, before anything reads, creates or alters it.

A table that merely has the configured name may belong to another tool, be a view, or have other column types; the
supervisor must neither write into it nor "upgrade" it (adding columns to someone else's table). Shapes accepted:

- the tracking table, current: `filename text` (primary key or unique), `checksum text`, `applied_at timestamptz`
  (or `timestamp`, from an upgraded legacy table), `phase text`, `duration_ms integer`, `applied_by text`,
  `status text NOT NULL` (the lock check of each file's transaction relies on that NOT NULL),
  `statements_done integer`, `statements_total integer`;
- the tracking table, legacy: exactly `(filename, checksum, applied_at)` of the old shell runner, same types; it is
  read as is and upgraded in place by a migrating run;
- the state table `supervisor_state`: `phase text` (primary key or unique), `directus_version text`,
  `snapshot_checksum text`, `applied_at timestamptz`, `duration_ms integer`, `applied_by text`.

A current table may carry further columns if they are nullable or have a default, so that an older supervisor
still works beside a newer one that added a column during a rolling deploy. Anything else is foreign: refused with
exit 2 (`TRACKING_TABLE_FOREIGN`), left unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from supervisor import session
from supervisor.errors import ConfigError

__all__ = [
    "ABSENT",
    "CURRENT",
    "FOREIGN",
    "LEGACY",
    "Column",
    "Relation",
    "foreign_table_error",
    "inspect",
    "inspect_all",
    "ledger_shape",
    "remember",
    "state_shape",
]

ABSENT, LEGACY, CURRENT, FOREIGN = "absent", "legacy", "current", "foreign"

_TS = ("timestamp with time zone", "timestamp without time zone")
_LEDGER_LEGACY: dict[str, tuple[str, ...]] = {"filename": ("text",), "checksum": ("text",), "applied_at": _TS}
_LEDGER_ADDED: dict[str, tuple[str, ...]] = {
    "phase": ("text",),
    "duration_ms": ("integer",),
    "applied_by": ("text",),
    "status": ("text",),
    "statements_done": ("integer",),
    "statements_total": ("integer",),
}
_STATE: dict[str, tuple[str, ...]] = {
    "phase": ("text",),
    "directus_version": ("text",),
    "snapshot_checksum": ("text",),
    "applied_at": _TS,
    "duration_ms": ("integer",),
    "applied_by": ("text",),
}
_KINDS = {
    "v": "a view",
    "m": "a materialized view",
    "f": "a foreign table",
    "S": "a sequence",
    "c": "a composite type",
    "i": "an index",
    "I": "a partitioned index",
    "t": "a TOAST table",
}

# One round trip for any number of names. to_regclass resolves each name exactly as the supervisor's later statements
# will (search_path). The session's backend comes along for free (supervisor.session: the lock compares against it).
_INSPECT = """
SELECT pg_catalog.pg_backend_pid() AS backend, coalesce((
  SELECT json_agg(json_build_array(q.name, c.relkind::text, format('%I.%I', n.nspname, c.relname),
    (SELECT coalesce(json_agg(json_build_array(a.attname, format_type(a.atttypid, NULL),
                                               format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef)
                              ORDER BY a.attnum), '[]')
       FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
    ARRAY(SELECT a.attname::text FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
           WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indimmediate AND i.indnkeyatts = 1
             AND i.indpred IS NULL AND i.indexprs IS NULL)))
    FROM unnest($1::text[]) AS q(name)
    JOIN pg_class c ON c.oid = to_regclass(q.name) JOIN pg_namespace n ON n.oid = c.relnamespace), '[]')::text AS found
"""


@dataclass(frozen=True, slots=True)
class Column:
    """A column as the catalog shows it."""

    type: str  # without modifiers, e.g. `character varying`
    shown: str  # with modifiers, for messages, e.g. `character varying(10)`
    not_null: bool
    has_default: bool


@dataclass(frozen=True, slots=True)
class Relation:
    """What the catalog knows about the relation a configured name resolves to."""

    kind: str  # pg_class.relkind
    found: str  # schema.name as resolved
    columns: dict[str, Column]
    unique: frozenset[str]  # columns with a single-column unique index of their own (the primary key counts)


async def inspect(conn: asyncpg.Connection, quoted: str, *, fresh: bool = False) -> Relation | None:
    """The relation `quoted` (a quoted, possibly schema-qualified name) resolves to, or None. A relation whose
    verdict was remembered on this connection (`remember`) is not asked for again, unless `fresh`."""
    return (await inspect_all(conn, [quoted], fresh=fresh))[quoted]


async def inspect_all(
    conn: asyncpg.Connection, names: list[str], *, fresh: bool = False
) -> dict[str, Relation | None]:
    """`inspect` for several names in one round trip (none when every one is remembered)."""
    known = session.of(conn).relations
    out: dict[str, Relation | None] = {} if fresh else {n: known[n] for n in names if n in known}
    ask = [n for n in names if n not in out]
    if not ask:
        return out
    row = await conn.fetchrow(_INSPECT, ask)
    assert row is not None  # a SELECT without FROM returns exactly one row
    session.of(conn).backend_pid = session.of(conn).backend_pid or row["backend"]
    found = {
        name: Relation(
            kind, where, {c: Column(t, shown, nn, d) for c, t, shown, nn, d in columns}, frozenset(uniq)
        )
        for name, kind, where, columns, uniq in json.loads(row["found"])
    }
    out.update({n: found.get(n) for n in ask})
    return out


def remember(conn: asyncpg.Connection, quoted: str, rel: Relation | None, verdict: str) -> None:
    """Keep a CURRENT verdict's relation for this connection (see supervisor.session for why that is safe)."""
    if verdict == CURRENT and rel is not None:
        session.of(conn).relations[quoted] = rel


def _check(rel: Relation, wanted: dict[str, tuple[str, ...]], key: str) -> list[str]:
    problems = []
    for name, types in wanted.items():
        col = rel.columns.get(name)
        if col is None:
            problems.append(f"it has no column {name}")
        elif col.type not in types:
            problems.append(f"column {name} is {col.shown}, expected {' or '.join(types)}")
    if key in rel.columns and key not in rel.unique:
        problems.append(f"column {key} is not its primary key (nor unique)")
    return problems


def _extras(rel: Relation, known: set[str]) -> list[str]:
    return [
        f"column {name} is NOT NULL without a default, which the supervisor cannot fill"
        for name, col in rel.columns.items()
        if name not in known and col.not_null and not col.has_default
    ]


def ledger_shape(rel: Relation | None) -> tuple[str, list[str]]:
    """`(ABSENT | LEGACY | CURRENT, [])` for a tracking table of ours, else `(FOREIGN, what differs)`."""
    if rel is None:
        return ABSENT, []
    if rel.kind not in ("r", "p"):
        return FOREIGN, [f"it is {_KINDS.get(rel.kind, f'a relation of kind {rel.kind!r}')}, not a table"]
    problems = _check(rel, _LEDGER_LEGACY, "filename")
    if problems:
        return FOREIGN, problems
    extra = set(rel.columns) - set(_LEDGER_LEGACY)
    if not extra:
        return LEGACY, []
    if not extra & set(_LEDGER_ADDED):
        return FOREIGN, [
            f"it has the legacy runner's columns plus {', '.join(sorted(extra))}, none of them ours"
        ]
    problems = _check(rel, _LEDGER_ADDED, "filename")
    if "status" in rel.columns and not rel.columns["status"].not_null:
        problems.append("column status is nullable, expected NOT NULL")
    problems += _extras(rel, set(_LEDGER_LEGACY) | set(_LEDGER_ADDED))
    return (FOREIGN, problems) if problems else (CURRENT, [])


def state_shape(rel: Relation | None) -> tuple[str, list[str]]:
    """`(ABSENT | CURRENT, [])` for a `supervisor_state` of ours, else `(FOREIGN, what differs)`."""
    if rel is None:
        return ABSENT, []
    if rel.kind not in ("r", "p"):
        return FOREIGN, [f"it is {_KINDS.get(rel.kind, f'a relation of kind {rel.kind!r}')}, not a table"]
    problems = _check(rel, _STATE, "phase") or _extras(rel, set(_STATE))
    return (FOREIGN, problems) if problems else (CURRENT, [])


def foreign_table_error(rel: Relation, problems: list[str], role: str, fix: str) -> ConfigError:
    """The refusal (exit 2) for a table of our name that is not ours; `role` says which of ours, `fix` what to do."""
    return ConfigError(
        f"{rel.found} is not {role} of this supervisor: {'; '.join(problems)}. It was left unchanged. {fix}",
        error_code="TRACKING_TABLE_FOREIGN",
    )
