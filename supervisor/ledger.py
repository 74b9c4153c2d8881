"""The tracking table (`migrations_applied` by default), shared by both SQL phases and keyed by file basename.

Created, or upgraded in place from the legacy `(filename, checksum, applied_at)` table of the old shell runner, under
a short transaction-level advisory lock: `CREATE TABLE IF NOT EXISTS` alone is not safe against a concurrent creator.
A table of that name that is not ours (supervisor.tables) is refused before anything reads or alters it. The legacy
table is read as is, so `status` and `plan` can report on it without changing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from supervisor.db import QUIET, application_name, rollback, session_reset_sql
from supervisor.lock import CLASSID, LEDGER_OBJID, PhaseLock
from supervisor.privileges import create_schema, creation_refused
from supervisor.tablename import quote_table
from supervisor.tables import (
    ABSENT,
    CURRENT,
    LEGACY,
    Relation,
    foreign_table_error,
    inspect,
    ledger_shape,
    remember,
)

__all__ = ["APPLIED", "BASELINE_MARK", "FAILED", "RUNNING", "Ledger", "Row", "quote_table"]

APPLIED, RUNNING, FAILED = "applied", "running", "failed"
BASELINE_MARK = " (baseline)"  # ends `applied_by` of a row `baseline` recorded without running the file

_COLUMNS = (
    ("phase", "text"),
    ("duration_ms", "integer"),
    ("applied_by", "text"),
    (
        "status",
        f"text NOT NULL DEFAULT '{APPLIED}'",
    ),  # running/failed: a no-transaction file part-way through
    ("statements_done", "integer"),
    ("statements_total", "integer"),
)


def _literal(value: str) -> str:
    """An SQL string literal; the E'' form escapes the same way whatever standard_conforming_strings says."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Our own short transaction for a progress record written between the statements of a no-transaction file: SET LOCAL
# puts the session's defaults (role, path, timeouts) back in force for it alone, so the file's own settings (a SET
# ROLE, a pg_dump-style empty search_path, a short statement_timeout) neither break the record nor end before the
# file does.
_OWN_TRANSACTION = (
    "BEGIN READ WRITE; SET LOCAL SESSION AUTHORIZATION DEFAULT; SET LOCAL search_path TO DEFAULT; "
    "SET LOCAL statement_timeout TO DEFAULT; SET LOCAL lock_timeout TO DEFAULT;\n"
)


# Microseconds since the epoch, as double precision on every server version (EXTRACT gives numeric from PG 14 on).
_NOW_US = "(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000000)"
_TRANSACTION_START_US = "(pg_catalog.date_part('epoch', pg_catalog.now()) OPERATOR(pg_catalog.*) 1000000)"


def _applied_by() -> str:
    return application_name()  # host:pid, as the session shows in pg_stat_activity


@dataclass(frozen=True, slots=True)
class Row:
    """One tracking row."""

    filename: str
    checksum: str
    phase: str | None
    status: str
    statements_done: int | None
    statements_total: int | None
    applied_at: datetime | None = None
    applied_by: str | None = None  # host:pid (None in a legacy table)
    duration_ms: int | None = None

    def history(self) -> dict[str, Any]:
        """Who applied the file and when, for `status`."""
        return {
            "file": self.filename,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "applied_by": self.applied_by,
            "duration_ms": self.duration_ms,
            "baselined": bool(self.applied_by and self.applied_by.endswith(BASELINE_MARK)),
        }


class Ledger:
    """Reads and writes the tracking table on the phase's connection."""

    def __init__(self, conn: asyncpg.Connection, table: str) -> None:
        self.conn = conn
        self.name = table
        self.table = quote_table(table)

    async def shape(self) -> str:
        """`ABSENT`, `LEGACY` or `CURRENT`; a table of our name that is not ours raises `ConfigError` (exit 2)."""
        return self.verdict(await inspect(self.conn, self.table))

    def verdict(self, rel: Relation | None) -> str:
        """`shape` of an inspected relation; a CURRENT one is remembered for this connection."""
        shape = self._verdict(rel)
        remember(self.conn, self.table, rel, shape)
        return shape

    def _verdict(self, rel: Relation | None) -> str:
        shape, problems = ledger_shape(rel)
        if problems:
            assert rel is not None
            raise foreign_table_error(
                rel,
                problems,
                "a tracking table",
                "If it belongs to another tool, choose another name for the supervisor's ledger with "
                "SUPERVISOR_TRACKING_TABLE (or --tracking-table); if it is a ledger of ours edited by hand, restore "
                "its columns (filename text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz, phase "
                "text, duration_ms integer, applied_by text, status text NOT NULL, statements_done integer, "
                "statements_total integer).",
            )
        return shape

    async def read(self) -> dict[str, Row] | None:
        """Every row by filename, or None when the table does not exist yet; never changes anything.

        A legacy table's rows read as applied (the old runner recorded a file only once it had committed).
        """
        return await self._rows(await self.shape())

    async def _rows(self, shape: str) -> dict[str, Row] | None:
        if shape == ABSENT:
            return None
        if shape == LEGACY:
            records = await self.conn.fetch(f"SELECT filename, checksum, applied_at FROM {self.table}")
            return {
                r["filename"]: Row(r["filename"], r["checksum"], None, APPLIED, None, None, r["applied_at"])
                for r in records
            }
        records = await self.conn.fetch(
            "SELECT filename, checksum, phase, status, statements_done, statements_total, applied_at, applied_by, "
            f"duration_ms FROM {self.table}"
        )
        return {r["filename"]: Row(*r) for r in records}

    async def load(self) -> dict[str, Row]:
        """Every row by filename; creates the table, or upgrades the legacy one, first if needed."""
        if await self.shape() != CURRENT:
            await self._create_or_upgrade()
        return await self._rows(CURRENT) or {}

    async def _create_or_upgrade(self) -> None:
        schema = self.name.split(".")[0] if "." in self.name else None
        try:
            await self._create_or_upgrade_in(schema)
        except asyncpg.PostgresError as e:
            refusal = await creation_refused(self.conn, e, self.table, schema)
            if refusal is None:
                raise
            raise refusal from e

    async def _create_or_upgrade_in(self, schema: str | None) -> None:
        async with self.conn.transaction():
            await self.conn.execute(QUIET)
            await self.conn.execute("SELECT pg_advisory_xact_lock($1, $2)", CLASSID, LEDGER_OBJID)
            # Decide again under the lock, from the catalog: another replica may have created or upgraded it, and
            # a table that is not ours must be refused before the first ALTER.
            shape = self._verdict(await inspect(self.conn, self.table, fresh=True))
            if shape == CURRENT:
                return
            if shape == ABSENT:
                if schema:
                    await create_schema(self.conn, schema)
                await self.conn.execute(
                    f"""CREATE TABLE {self.table} (
                        filename text PRIMARY KEY,
                        checksum text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())"""
                )
            await self.add_columns()

    async def add_columns(self) -> None:
        """Upgrade a legacy table to ours (its caller's transaction holds the ledger lock and checked its shape)."""
        for column, ddl in _COLUMNS:
            await self.conn.execute(f"ALTER TABLE {self.table} ADD COLUMN {column} {ddl}")

    async def upgrade_checksums(self, checksums: dict[str, tuple[str, str]]) -> int:
        """Rewrite legacy checksums in our form: `{filename: (legacy, ours)}`; returns how many rows changed.

        Each row changes only if it still holds the legacy value, so a concurrent rewrite is harmless.
        """
        if not checksums:
            return 0
        names = list(checksums)
        result = await self.conn.execute(
            f"UPDATE {self.table} AS t SET checksum = u.ours FROM unnest($1::text[], $2::text[], $3::text[]) "
            "AS u(filename, legacy, ours) WHERE t.filename = u.filename AND t.checksum = u.legacy",
            names,
            [checksums[n][0] for n in names],
            [checksums[n][1] for n in names],
        )
        return int(result.split()[-1])

    def record_and_commit_sql(
        self,
        filename: str,
        checksum: str,
        phase: str,
        lock: PhaseLock,
        started_us: str = _TRANSACTION_START_US,
        *,
        repeatable: bool = False,
    ) -> str:
        """SQL that records a fully applied file and commits its transaction, to append to the file's last statement.

        It first resets the session (`session_reset_sql`) inside the file's transaction: whatever the file SET (a
        search_path, a statement_timeout, a role) is gone before the tracking row is written, and, committed with the
        file, does not reach the next file. A failing file's SETs roll back with it. Literals rather than
        parameters, so it travels in the same simple-protocol message as the file's last statement: a file of k
        statements costs k round trips, not k + 4. The duration is measured by the server (since the transaction
        start, which Postgres takes from the start of the message in a multi-statement message). If this backend
        no longer holds `lock`, `status` comes out NULL and the NOT NULL constraint aborts the transaction, the
        file's work with it (`is_lock_refusal` recognises that error). "No longer holds" means the statement runs on
        another backend than the one that took the lock, as behind a transaction pooler.

        `started_us` is an SQL expression for when the file started, in microseconds since the epoch. The default,
        the transaction's start, is right for a file sent on its own; in a batch Postgres takes `now()` from the
        start of the whole message, so the batch passes a value it stored at the file's BEGIN (phases.sql_batch).
        `applied_at` is the moment the row is written, per file, for the same reason.

        A `repeatable` file's row is written over when the file re-runs (its new checksum, time, duration and host),
        in the same transaction as the file: a re-run that fails leaves the old row, like the old version, in place.
        A plain file's row is a plain INSERT, so a second record of it fails on the primary key.
        """
        upsert = (
            " ON CONFLICT (filename) DO UPDATE SET checksum = EXCLUDED.checksum, phase = EXCLUDED.phase, "
            "duration_ms = EXCLUDED.duration_ms, applied_at = EXCLUDED.applied_at, applied_by = EXCLUDED.applied_by, "
            "status = EXCLUDED.status, statements_done = NULL, statements_total = NULL"
            if repeatable
            else ""
        )
        return (
            f"{session_reset_sql(self.conn)};\n"
            f"INSERT INTO {self.table} (filename, checksum, phase, duration_ms, applied_at, applied_by, status) "
            f"SELECT {_literal(filename)}, {_literal(checksum)}, {_literal(phase)}, "
            f"pg_catalog.round(({_NOW_US} OPERATOR(pg_catalog.-) {started_us}) OPERATOR(pg_catalog./) 1000)"
            "::pg_catalog.int4, pg_catalog.clock_timestamp(), "
            f"{_literal(_applied_by())}, CASE WHEN {lock.on_holder()} THEN '{APPLIED}' END{upsert};\n"
            "COMMIT"
        )

    def is_lock_refusal(self, exc: asyncpg.PostgresError) -> bool:
        """Whether `exc` is the NOT NULL violation `record_and_commit_sql` raises when the lock is gone."""
        return exc.sqlstate == "23502" and getattr(exc, "column_name", None) == "status" and self.owns(exc)

    def owns(self, exc: asyncpg.PostgresError) -> bool:
        """Whether `exc` was raised on the tracking table itself."""
        return getattr(exc, "table_name", None) == self.name.split(".")[-1].lower()

    async def durations(self, files: dict[str, str]) -> dict[str, int]:
        """`duration_ms` of the given files (`{filename: checksum}`) that are recorded with that checksum: a batch's
        committed files. The checksum tells a repeatable file re-run by this batch from its row of an earlier run."""
        rows = await self.conn.fetch(
            f"SELECT t.filename, t.duration_ms FROM {self.table} AS t, "
            "unnest($1::pg_catalog.text[], $2::pg_catalog.text[]) AS u(filename, checksum) "
            "WHERE t.filename OPERATOR(pg_catalog.=) u.filename AND t.checksum OPERATOR(pg_catalog.=) u.checksum",
            list(files),
            list(files.values()),
        )
        return {r["filename"]: r["duration_ms"] for r in rows}

    async def begin_partial(self, filename: str, checksum: str, phase: str, total: int) -> None:
        """Mark a no-transaction file as running, before its first statement (autocommit)."""
        await self.conn.execute(
            f"INSERT INTO {self.table} (filename, checksum, phase, applied_by, status, statements_done, "
            f"statements_total) VALUES ($1, $2, $3, $4, '{RUNNING}', 0, $5)",
            filename,
            checksum,
            phase,
            _applied_by(),
            total,
        )

    async def progress(
        self, filename: str, done: int, status: str = RUNNING, duration_ms: int | None = None
    ) -> None:
        """Record how many statements of a no-transaction file have committed (in the file's session state)."""
        await self._own(
            f"UPDATE {self.table} SET statements_done = {done:d}, status = {_literal(status)}, duration_ms = "
            f"{'NULL' if duration_ms is None else f'{duration_ms:d}'}, applied_at = pg_catalog.now() "
            f"WHERE filename = {_literal(filename)}"
        )

    async def forget(self, filename: str) -> None:
        """Delete a row: a no-transaction file that failed on its first statement left nothing behind."""
        await self._own(f"DELETE FROM {self.table} WHERE filename = {_literal(filename)}")

    async def _own(self, sql: str) -> None:
        """Run `sql` in a transaction of its own under the supervisor's settings, leaving the session's as they were."""
        try:
            await self.conn.execute(f"{_OWN_TRANSACTION}{sql};\nCOMMIT")
        except BaseException:
            if not self.conn.is_closed() and self.conn.is_in_transaction():
                await rollback(self.conn)
            raise
