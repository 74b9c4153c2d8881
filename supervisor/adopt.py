"""Moving an earlier ledger into the supervisor's own schema, once, under the locks.

The supervisor's tables live in the schema `supervisor` by default, out of Directus's sight (Directus lists every
table of its schema as a collection, where an admin could edit the ledger). Earlier releases, and the old shell
runner, kept `migrations_applied` (and `supervisor_state`) wherever the unqualified name resolves on the session's
search path: `public` unless DB_SEARCH_PATH says otherwise. With the default SUPERVISOR_TRACKING_TABLE (not set), the
first migrating run moves them (`ALTER TABLE ... SET SCHEMA`, then the legacy columns upgrade) in one transaction,
holding every phase lock (no older replica is mid-phase) and the ledger lock, deciding again from the catalog once it
holds them (a second replica finds nothing left to move).

In the old place it leaves a stub: a composite type named `migrations_applied`, with a comment saying where the ledger
went. An older supervisor still running (a rolling deploy) finds that name is "not a table" and refuses to start
(exit 2) instead of creating an empty ledger and applying every file again; the old shell runner's INSERT fails on
it, rolling back each file. Directus lists no types. Drop the stub once no older replica is left.

An explicit SUPERVISOR_TRACKING_TABLE is the user's choice: nothing is looked for or moved. `status` and `plan` read
an earlier ledger where it is, changing nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import asyncpg
from structlog.typing import FilteringBoundLogger

from supervisor.db import QUIET
from supervisor.errors import DatabaseUnavailable, IntegrityRefusal
from supervisor.ledger import Ledger
from supervisor.lock import CLASSID, LEDGER_OBJID, advisory_lock
from supervisor.privileges import create_schema, privilege_refused, quote_ident
from supervisor.settings import DEFAULT_TRACKING_TABLE, Settings
from supervisor.tables import ABSENT, FOREIGN, LEGACY, foreign_table_error, inspect, ledger_shape, state_shape

__all__ = ["OldTables", "adopt", "find_old", "ledger_location"]

_LEDGER = DEFAULT_TRACKING_TABLE.split(".")[1]  # migrations_applied: the earlier default, unqualified
_STATE = "supervisor_state"
_STUB_COLUMN = "moved_to"
# Every phase's lock (supervisor.lock objids; phases.registry): no older replica may be inside a phase during the move.
_PHASE_LOCKS = (("pre-schema", 1), ("schema-apply", 2), ("post-schema", 3), ("bootstrap", 4))

# Where each unqualified name resolves on this session's search path (as the earlier release resolved it), in one
# round trip: every boot makes this look-up, and on a warm boot it is all the adoption costs.
_RESOLVE = """
SELECT u.name, n.nspname::text AS schema, c.relkind::text AS kind,
  ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS columns
FROM unnest($1::text[]) AS u(name)
JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident(u.name))
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
"""


@dataclass(frozen=True, slots=True)
class OldTables:
    """What an earlier release left on the search path: `ledger` and `state` are `schema.name` to move (None: none
    to move); `stale_state` a state table left beside ours (a cache: left alone, with a warning)."""

    ledger: str | None = None
    ledger_shape: str | None = None  # LEGACY (the shell runner's three columns) or CURRENT
    state: str | None = None
    stale_state: str | None = None

    @property
    def to_move(self) -> bool:
        return bool(self.ledger or self.state)


def _applies(settings: Settings) -> bool:
    return not settings.tracking_table_explicit and settings.tracking_table == DEFAULT_TRACKING_TABLE


async def _resolve(conn: asyncpg.Connection) -> dict[str, tuple[str, bool]]:
    """`{name: (schema, is our stub)}` for the earlier names that resolve on the search path."""
    rows = await conn.fetch(_RESOLVE, [_LEDGER, _STATE])
    return {r["name"]: (r["schema"], r["kind"] == "c" and list(r["columns"]) == [_STUB_COLUMN]) for r in rows}


async def find_old(conn: asyncpg.Connection, settings: Settings) -> OldTables | None:
    """What there is to adopt (None: nothing, or an explicit SUPERVISOR_TRACKING_TABLE); reads, never changes.

    Raises `IntegrityRefusal` (exit 5) when an earlier ledger and ours both exist, and `ConfigError` (exit 2) when
    the earlier name holds a table that is not a ledger of ours while ours does not exist yet: applying every file
    again on top of a ledger we could not read is what this refuses.
    """
    if not _applies(settings):
        return None
    target_schema = settings.tracking_table.split(".")[0]
    resolved = await _resolve(conn)
    old, old_state = resolved.get(_LEDGER), resolved.get(_STATE)
    ledger = state = stale = None
    shape = None
    if old is not None and old[0] != target_schema and not old[1]:
        qualified = f"{old[0]}.{_LEDGER}"
        rel = await inspect(conn, f"{quote_ident(old[0])}.{quote_ident(_LEDGER)}")
        shape, problems = ledger_shape(rel)
        ours = await inspect(conn, _quoted(settings.tracking_table))
        if shape == FOREIGN:
            if ours is None:
                assert rel is not None
                raise foreign_table_error(
                    rel, problems, "a tracking table", _foreign_fix(qualified, settings)
                )
        elif ours is not None:
            # The look-ups above are separate statements: another replica may have moved the old ledger in between
            # (ours then exists and the old name is its stub). Look again before calling it a conflict.
            again = (await _resolve(conn)).get(_LEDGER)
            if again is not None and again[0] == old[0] and not again[1]:
                raise await _conflict(conn, qualified, settings.tracking_table)
        else:
            ledger = qualified
    if old_state is not None and old_state[0] != target_schema:
        qualified = f"{old_state[0]}.{_STATE}"
        rel = await inspect(conn, f"{quote_ident(old_state[0])}.{quote_ident(_STATE)}")
        if state_shape(rel)[0] != FOREIGN:
            ours_state = await inspect(conn, _quoted(f"{target_schema}.{_STATE}"))
            if ours_state is None:
                state = qualified
            else:
                stale = qualified
    if not (ledger or state or stale):
        return None
    return OldTables(ledger, shape if ledger else None, state, stale)


def _quoted(name: str) -> str:
    return ".".join(quote_ident(p) for p in name.split("."))


def _foreign_fix(qualified: str, settings: Settings) -> str:
    return (
        f"The supervisor keeps its ledger in {settings.tracking_table}; on its first run it moves an earlier ledger "
        f"found as {_LEDGER} on the search path (here {qualified}) there, and this table it cannot adopt, so nothing "
        "was moved or applied. If the table belongs to another tool, set SUPERVISOR_TRACKING_TABLE="
        f"{settings.tracking_table} explicitly: the supervisor then starts its own ledger and does not look for an "
        "earlier one. If it is a ledger of ours edited by hand, restore its columns (filename text PRIMARY KEY, "
        "checksum text NOT NULL, applied_at timestamptz, and phase text, duration_ms integer, applied_by text, "
        "status text NOT NULL, statements_done integer, statements_total integer if it had them)."
    )


async def _conflict(conn: asyncpg.Connection, old: str, ours: str) -> IntegrityRefusal:
    counts = [await conn.fetchval(f"SELECT count(*) FROM {_quoted(t)}") for t in (old, ours)]
    return IntegrityRefusal(
        f"two ledgers: {old} ({counts[0]} rows), left by an earlier release, and {ours} ({counts[1]} rows). The "
        f"supervisor keeps its ledger in {ours} and moves an earlier one there on its first run; with both present "
        "it cannot tell which is true, and it merges nothing. Nothing was applied or moved. Compare them (SELECT "
        f"filename, checksum FROM {old} EXCEPT SELECT filename, checksum FROM {ours}; and the other way round), "
        f"then keep one: if {ours} is complete, DROP TABLE {old}; if {old} is the true ledger, DROP TABLE {ours} "
        "and the next migrate moves it. To keep using the earlier one where it is, set SUPERVISOR_TRACKING_TABLE="
        f"{old} (Directus then lists it as a collection).",
        error_code="LEDGER_CONFLICT",
    )


async def adopt(conn: asyncpg.Connection, settings: Settings, log: FilteringBoundLogger) -> OldTables | None:
    """Move what `find_old` finds into the supervisor's schema; returns what was moved (None: nothing)."""
    found = await find_old(conn, settings)  # no lock on the common path: one catalog look-up per name
    if found is not None and found.stale_state and not found.to_move:
        _warn_stale(found, settings, log)
    if found is None or not found.to_move:
        return None
    async with contextlib.AsyncExitStack() as stack:
        for name, objid in _PHASE_LOCKS:
            await stack.enter_async_context(advisory_lock(conn, name, objid, settings.lock_timeout, log))
        try:
            moved = await _move(conn, settings)
        except asyncpg.InsufficientPrivilegeError as e:
            who = await conn.fetchrow("SELECT current_user, current_database()")
            assert who is not None
            raise _refused(e, who[0], who[1], found, settings) from e
    if moved is not None:
        log.info(
            "ledger.adopted",
            ledger=moved.ledger,
            state=moved.state,
            to=settings.tracking_table.split(".")[0],
            stub=f"{moved.ledger} is now a composite type that makes older supervisors refuse to start (exit 2); "
            "drop it once no replica runs an older release"
            if moved.ledger
            else None,
        )
        if moved.stale_state:
            _warn_stale(moved, settings, log)
    return moved


def _warn_stale(found: OldTables, settings: Settings, log: FilteringBoundLogger) -> None:
    log.warning(
        "ledger.stale_state_table",
        table=found.stale_state,
        hint=f"the supervisor uses {settings.tracking_table.split('.')[0]}.{_STATE}; this one is an earlier "
        f"release's and Directus lists it: DROP TABLE {found.stale_state}",
    )


async def _move(conn: asyncpg.Connection, settings: Settings) -> OldTables | None:
    target = settings.tracking_table.split(".")[0]
    async with conn.transaction():
        await conn.execute(QUIET)
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", CLASSID, LEDGER_OBJID)
        found = await find_old(conn, settings)  # again, under the locks: another replica may have moved them
        if found is None or not found.to_move:
            return None
        await create_schema(conn, target)
        if found.ledger:
            old = _quoted(found.ledger)
            await conn.execute(f"ALTER TABLE {old} SET SCHEMA {quote_ident(target)}")
            if found.ledger_shape == LEGACY:
                await Ledger(conn, settings.tracking_table).add_columns()
            await conn.execute(f"CREATE TYPE {old} AS ({_STUB_COLUMN} text)")
            await conn.execute(
                f"COMMENT ON TYPE {old} IS "
                + _literal(
                    f"Left by the Directus boot supervisor: its ledger moved to {settings.tracking_table}. An older "
                    f"supervisor looking for {_LEDGER} here refuses to start (exit 2) instead of applying every "
                    f"file again. Drop this type (DROP TYPE {found.ledger}) once no replica runs an older release."
                )
            )
        if found.state:
            await conn.execute(f"ALTER TABLE {_quoted(found.state)} SET SCHEMA {quote_ident(target)}")
        return found


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _refused(
    e: asyncpg.PostgresError, role: str, database: str, found: OldTables, settings: Settings
) -> DatabaseUnavailable:
    target = settings.tracking_table.split(".")[0]
    what = f"move {found.ledger or found.state} into the schema {target}"
    text = str(e)
    if "must be owner" in text:
        table = found.ledger if found.ledger and _LEDGER in text else found.state
        grant = f"ALTER TABLE {table} OWNER TO {quote_ident(role)}"
    elif "permission denied for database" in text:
        grant = (
            f"GRANT CREATE ON DATABASE {quote_ident(database)} TO {quote_ident(role)}; or have the "
            f"owner create the schema: CREATE SCHEMA {target} AUTHORIZATION {quote_ident(role)}"
        )
    else:
        grant = f"GRANT USAGE, CREATE ON SCHEMA {quote_ident(target)} TO {quote_ident(role)}"
    refusal = privilege_refused(e, what, grant, role)
    return DatabaseUnavailable(
        f"{refusal.message} Or keep the ledger where it is: SUPERVISOR_TRACKING_TABLE="
        f"{found.ledger or 'public.' + _LEDGER} (Directus then keeps listing it).",
        error_code=refusal.error_code,
    )


async def ledger_location(conn: asyncpg.Connection, settings: Settings) -> tuple[dict[str, object], str]:
    """For `status` and `plan`: where the ledger is, and the tracking table to read now (an earlier one where it is,
    until `migrate` moves it). Reads only."""
    found = await find_old(conn, settings)
    if found is not None and found.ledger:
        return {
            "table": found.ledger,
            "legacy": True,
            "moves_to": settings.tracking_table,
            "note": f"legacy, will be moved to {settings.tracking_table} on the next migrate",
        }, found.ledger
    exists = await Ledger(conn, settings.tracking_table).shape() != ABSENT
    where: dict[str, object] = {"table": settings.tracking_table, "legacy": False, "moves_to": None}
    where["note"] = None if exists else "not created yet"
    if found is not None and found.state:
        where["note"] = (
            f"{found.state} will be moved to {settings.tracking_table.split('.')[0]} on the next migrate"
        )
    return where, settings.tracking_table
