"""Per-phase session advisory locks, polled with `pg_try_advisory_lock` on the phase's own connection.

Why poll rather than block in `pg_advisory_lock`: a blocked waiter is a running statement holding a snapshot, and a
`CREATE INDEX CONCURRENTLY` run by the holder waits for that snapshot forever (golang-migrate #960, Flyway #1654).
Why the same connection as the work: if the session dies, the lock and the work's transaction die together, so no
statement can ever run unprotected. Each file's transaction also checks that it runs on the backend that took the
lock (`pg_backend_pid()`, nearly free where a `pg_locks` scan per file is not): behind PgBouncer in transaction
pooling mode it would not, and the file is rolled back before anything is written. Releasing the lock checks that
it was still held, which catches a lock released under the phase by other means.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import asyncpg
from structlog.typing import FilteringBoundLogger

from supervisor.errors import ConfigError, LockTimeout

__all__ = ["CLASSID", "LEDGER_OBJID", "PhaseLock", "advisory_lock", "lock_holders"]

CLASSID = 0x44535550  # "DSUP": shows as pg_locks.classid for every lock the supervisor takes
LEDGER_OBJID = 0  # creating or upgrading the tracking table
_POLL_FIRST_S = 0.05
_POLL_MAX_S = 1.0
_HOLDER_LOG_EVERY_S = 15.0
_UNLOCK_TIMEOUT_S = 5.0


_HOLDERS = """
SELECT a.pid, a.application_name, host(a.client_addr) AS client_addr, a.backend_start, a.state
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted
"""
_PGBOUNCER_HINT = (
    "Session advisory locks need a direct or session-pooled connection: if DB_HOST points at PgBouncer in "
    "transaction pooling mode, point the supervisor at Postgres itself (or a session pool)."
)


@dataclass(frozen=True, slots=True)
class PhaseLock:
    """A held phase lock and the backend that holds it."""

    conn: asyncpg.Connection
    name: str
    objid: int
    backend_pid: int

    def on_holder(self) -> str:
        """An SQL condition, true when the statement runs on the backend that holds the lock."""
        return f"pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.=) {self.backend_pid:d}"

    async def assert_held(self, outcome: str = "so nothing was applied.") -> None:
        """Raise unless this statement runs on the lock's backend (a pooler in between would break that)."""
        if not await self.conn.fetchval(f"SELECT {self.on_holder()}"):
            raise self.not_held(outcome)

    def not_held(self, outcome: str = "so nothing was applied.") -> ConfigError:
        """The refusal for a lock this session no longer holds; `outcome` says what became of the work."""
        return ConfigError(
            f"the {self.name} lock is not held by this session any more, {outcome} " + _PGBOUNCER_HINT,
            error_code="LOCK_NOT_HELD",
        )


async def lock_holders(conn: asyncpg.Connection, objid: int) -> list[dict[str, str | int | None]]:
    """Who holds lock `objid` now: pid, application_name (host:pid of a supervisor), client_addr, since."""
    rows = await conn.fetch(_HOLDERS, CLASSID, objid)
    return [
        {
            "pid": r["pid"],
            "application_name": r["application_name"],
            "client_addr": r["client_addr"],
            "since": r["backend_start"].isoformat() if r["backend_start"] else None,
            "state": r["state"],
        }
        for r in rows
    ]


@asynccontextmanager
async def advisory_lock(
    conn: asyncpg.Connection, name: str, objid: int, timeout_s: float, log: FilteringBoundLogger
) -> AsyncIterator[PhaseLock]:
    """Hold session lock (CLASSID, objid) for the block; poll with capped backoff and jitter up to `timeout_s`."""
    t0 = time.monotonic()
    delay = _POLL_FIRST_S
    next_holder_log = t0
    holders: list[dict[str, str | int | None]] = []
    while True:
        row = await conn.fetchrow("SELECT pg_try_advisory_lock($1, $2), pg_backend_pid()", CLASSID, objid)
        assert row is not None  # a SELECT without FROM returns exactly one row
        got, backend_pid = row[0], row[1]
        if got:
            break
        now = time.monotonic()
        if now >= next_holder_log:
            holders = await lock_holders(conn, objid)
            log.info("lock.waiting", lock=name, holders=holders, waited_s=round(now - t0, 1))
            next_holder_log = now + _HOLDER_LOG_EVERY_S
        if now - t0 >= timeout_s:
            who = ", ".join(f"pid {h['pid']} ({h['application_name']}, since {h['since']})" for h in holders)
            raise LockTimeout(
                f"the {name} lock was still held after {timeout_s:g}s by {who or 'another session'}. "
                "If that holder is stuck, end it with SELECT pg_terminate_backend(<pid>); otherwise raise "
                "SUPERVISOR_LOCK_TIMEOUT.",
            )
        await anyio.sleep(min(delay, max(0.0, t0 + timeout_s - now)) * random.uniform(0.8, 1.2))  # noqa: S311
        delay = min(delay * 2, _POLL_MAX_S)
    log.debug("lock.acquired", lock=name, waited_ms=round((time.monotonic() - t0) * 1000))
    try:
        yield PhaseLock(conn, name, objid, backend_pid)
    except BaseException:
        await _release(conn, name, objid, log, failing=True)
        raise
    await _release(conn, name, objid, log, failing=False)


async def _release(
    conn: asyncpg.Connection, name: str, objid: int, log: FilteringBoundLogger, *, failing: bool
) -> None:
    if conn.is_closed():
        return  # the lock went with the session
    released = None
    with anyio.move_on_after(_UNLOCK_TIMEOUT_S, shield=True):
        try:
            released = await conn.fetchval("SELECT pg_advisory_unlock($1, $2)", CLASSID, objid)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return  # connection broken: the session and its lock are going away
    if released is False:
        if failing:
            log.error("lock.not_held", lock=name, hint=_PGBOUNCER_HINT)
            return
        raise ConfigError(
            f"the {name} lock was no longer held by this session when the phase ended, so its work may have run "
            "unprotected. Something released it (pg_advisory_unlock_all in a migration?) or a pooler sits in "
            "between. " + _PGBOUNCER_HINT,
            error_code="LOCK_NOT_HELD",
        )
