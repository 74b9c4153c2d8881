"""What the Directus phases did last: the table `supervisor_state`, next to the tracking table.

One row per phase (`schema-apply`, `bootstrap`) with the Directus version it ran with and, for the schema, the
snapshot checksum. A warm boot whose snapshot and Directus are unchanged skips those phases without starting Node.
A table of that name that is not ours (supervisor.tables) is refused before anything reads or writes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from supervisor.db import QUIET, application_name
from supervisor.lock import CLASSID, LEDGER_OBJID
from supervisor.privileges import create_schema, creation_refused
from supervisor.tablename import quote_table
from supervisor.tables import ABSENT, Relation, foreign_table_error, inspect, remember, state_shape

__all__ = ["PhaseState", "StateTable"]

_INSTALLED = "to_regclass('directus_collections') IS NOT NULL"  # Directus's system tables are there


@dataclass(frozen=True, slots=True)
class PhaseState:
    """The last successful run of a Directus phase."""

    directus_version: str
    snapshot_checksum: str | None


class StateTable:
    """Reads and writes `supervisor_state` in the tracking table's schema."""

    def __init__(self, conn: asyncpg.Connection, tracking_table: str) -> None:
        self.conn = conn
        schema = tracking_table.split(".")[0] if "." in tracking_table else None
        self.name = f"{schema}.supervisor_state" if schema else "supervisor_state"
        self.table = quote_table(self.name)

    async def shape(self) -> str:
        """`ABSENT` or `CURRENT`; a table of this name that is not ours raises `ConfigError` (exit 2)."""
        return self.verdict(await inspect(self.conn, self.table))

    def verdict(self, rel: Relation | None) -> str:
        """`shape` of an inspected relation; a CURRENT one is remembered for this connection."""
        shape = self._verdict(rel)
        remember(self.conn, self.table, rel, shape)
        return shape

    def _verdict(self, rel: Relation | None) -> str:
        shape, problems = state_shape(rel)
        if problems:
            assert rel is not None
            raise foreign_table_error(
                rel,
                problems,
                "the state table",
                "The supervisor keeps its state in supervisor_state beside the tracking table. Rename the other "
                "table, or give SUPERVISOR_TRACKING_TABLE a schema (schema.name) so both live there; a new tracking "
                "table starts an empty ledger, so move the existing one there first (ALTER TABLE ... SET SCHEMA).",
            )
        return shape

    async def get(self, phase: str) -> PhaseState | None:
        """The phase's row, or None (never ran, or no table yet)."""
        if await self.shape() == ABSENT:
            return None
        row = await self.conn.fetchrow(
            f"SELECT directus_version, snapshot_checksum FROM {self.table} WHERE phase = $1", phase
        )
        return PhaseState(row["directus_version"], row["snapshot_checksum"]) if row else None

    async def read(self, phase: str) -> tuple[PhaseState | None, bool]:
        """The phase's row (or None), and whether Directus is installed here (`directus_collections` resolves):
        one round trip, where `get` and a separate look-up would take two."""
        if await self.shape() == ABSENT:
            return None, bool(await self.conn.fetchval(f"SELECT {_INSTALLED}"))
        row = await self.conn.fetchrow(
            f"SELECT {_INSTALLED} AS installed, s.phase IS NOT NULL AS found, s.directus_version, s.snapshot_checksum "
            f"FROM (SELECT) AS one LEFT JOIN {self.table} AS s ON s.phase = $1",
            phase,
        )
        assert row is not None  # one row from the one-row left side
        done = PhaseState(row["directus_version"], row["snapshot_checksum"]) if row["found"] else None
        return done, bool(row["installed"])

    async def put(
        self, phase: str, directus_version: str, snapshot_checksum: str | None, duration_ms: int
    ) -> None:
        """Record a successful run (creating the table on first use)."""
        if await self.shape() == ABSENT:
            await self._create()
        await self.conn.execute(
            f"""INSERT INTO {self.table} (phase, directus_version, snapshot_checksum, duration_ms, applied_by)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (phase) DO UPDATE SET directus_version = EXCLUDED.directus_version,
                snapshot_checksum = EXCLUDED.snapshot_checksum, duration_ms = EXCLUDED.duration_ms,
                applied_by = EXCLUDED.applied_by, applied_at = now()""",
            phase,
            directus_version,
            snapshot_checksum,
            duration_ms,
            application_name(),
        )

    async def _create(self) -> None:
        schema = self.name.split(".")[0] if "." in self.name else None
        try:
            await self._create_in(schema)
        except asyncpg.PostgresError as e:
            refusal = await creation_refused(self.conn, e, self.table, schema)
            if refusal is None:
                raise
            raise refusal from e

    async def _create_in(self, schema: str | None) -> None:
        async with self.conn.transaction():
            await self.conn.execute(QUIET)
            await self.conn.execute("SELECT pg_advisory_xact_lock($1, $2)", CLASSID, LEDGER_OBJID)
            if self._verdict(await inspect(self.conn, self.table, fresh=True)) != ABSENT:
                return  # another replica made it while we waited for the lock
            if schema:
                await create_schema(self.conn, schema)
            await self.conn.execute(
                f"""CREATE TABLE {self.table} (
                    phase text PRIMARY KEY,
                    directus_version text NOT NULL,
                    snapshot_checksum text,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    duration_ms integer,
                    applied_by text)"""
            )
