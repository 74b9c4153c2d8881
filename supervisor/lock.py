"""Per-phase session advisory locks, polled with `pg_try_advisory_lock` on the phase's own connection.

Why poll rather than block in `pg_advisory_lock`: a blocked waiter is a running statement holding a snapshot, and a
`CREATE INDEX CONCURRENTLY` run by the holder waits for that snapshot forever (golang-migrate #960, Flyway #1654).
Why the same connection as the work: if the session dies, the lock and the work's transaction die together, so no
statement can ever run unprotected. Each file's transaction also checks that it runs on the backend that took the
lock (`pg_backend_pid()`, nearly free where a `pg_locks` scan per file is not): behind PgBouncer in transaction
pooling mode it would not, and the file is rolled back before anything is written. Releasing the lock checks that
it was still held, which catches a lock released under the phase by other means.

A transaction pooler is refused (exit 2, TRANSACTION_POOLER) as soon as one of the supervisor's statements lands on
another backend than the session's earlier ones: the lock is only tried on the backend a first statement ran on, it
is never taken on a backend that already holds it (that backend would be serving another client: a session lock is
re-entrant, so both clients would think they hold it), and a second statement checks the backend before any work.
With one client alone, a pooler may hand it the same backend every time; then the lock does hold, and the per-file
check stays the backstop.
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

from supervisor import clock, session
from supervisor.db import transaction_pooler
from supervisor.errors import ConfigError, LockTimeout

__all__ = ["CLASSID", "LEDGER_OBJID", "PhaseLock", "advisory_lock", "lock_holders"]

CLASSID = 0x44535550  # "DSUP": shows as pg_locks.classid for every lock the supervisor takes
LEDGER_OBJID = 0  # creating or upgrading the tracking table
_POLL_FIRST_S = 0.05
_POLL_MAX_S = 1.0
_HOLDER_LOG_EVERY_S = 15.0
_UNLOCK_TIMEOUT_S = 5.0
_FREE_POOLED_S = 5.0  # how long a refused run behind a transaction pooler tries to free its lock


# Advisory locks are per database: a holder of the same (classid, objid) in another database of the server does not
# block this one, and must not be named (nor offered to pg_terminate_backend).
_THIS_DATABASE = (
    "l.database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database "
    "WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())"
)
_HOLDERS = f"""
SELECT a.pid, a.application_name, pg_catalog.host(a.client_addr) AS client_addr, a.backend_start, a.state
FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid
WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND {_THIS_DATABASE}
  AND l.classid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND l.objid OPERATOR(pg_catalog.=) $2::pg_catalog.oid
  AND l.objsubid OPERATOR(pg_catalog.=) 2 AND l.granted
"""
_PGBOUNCER_HINT = (
    "Session advisory locks need a direct or session-pooled connection: if DB_HOST points at PgBouncer in "
    "transaction pooling mode, point the supervisor at Postgres itself (or a session pool)."
)
_BACKEND = "SELECT pg_catalog.pg_backend_pid()"


def _try_sql(objid: int, backend_pid: int) -> str:
    """Try the lock, but only on `backend_pid` and only if that backend does not hold it already; NULL otherwise."""
    here = "pg_catalog.pg_backend_pid()"
    return (
        f"SELECT CASE WHEN {here} OPERATOR(pg_catalog.<>) {backend_pid:d} OR EXISTS (SELECT FROM "
        f"pg_catalog.pg_locks l WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND {_THIS_DATABASE} "
        f"AND l.classid OPERATOR(pg_catalog.=) {CLASSID:d} AND l.objid OPERATOR(pg_catalog.=) {objid:d} "
        f"AND l.objsubid OPERATOR(pg_catalog.=) 2 AND l.pid OPERATOR(pg_catalog.=) {here}) "
        f"THEN NULL ELSE pg_catalog.pg_try_advisory_lock({CLASSID:d}, {objid:d}) END, {here}"
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
        """The refusal for a statement that ran on another backend than the lock's: a pooler in between.
        `outcome` says what became of the work."""
        return transaction_pooler(
            f"The {self.name} lock is not held by the backend this statement ran on, {outcome}"
        )


async def lock_holders(conn: asyncpg.Connection, objid: int) -> list[dict[str, str | int | None]]:
    """Who holds lock `objid` now: pid, application_name (host:pid of a supervisor), client_addr, since."""
    rows = await conn.fetch(_HOLDERS, CLASSID, objid)  # holders in this database only
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
    # The session's backend: the lock is only ever taken there. Asked once per session (supervisor.session): a
    # backend seen by any earlier statement of this session is as good as one asked for just now.
    known = session.of(conn)
    backend_pid = known.backend_pid or await conn.fetchval(_BACKEND)
    while True:
        row = await conn.fetchrow(_try_sql(objid, backend_pid))
        assert row is not None  # a SELECT without FROM returns exactly one row
        got, here = row[0], row[1]
        if got is None:
            raise _pooled(name, backend_pid, here)
        if got:
            break
        now = time.monotonic()
        if now >= next_holder_log:
            holders = await lock_holders(conn, objid)
            log.info("lock.waiting", lock=name, holders=holders, waited_s=round(now - t0, 1))
            next_holder_log = now + _HOLDER_LOG_EVERY_S
        if now - t0 >= timeout_s:
            raise _timeout(name, timeout_s, await lock_holders(conn, objid))
        await anyio.sleep(min(delay, max(0.0, t0 + timeout_s - now)) * random.uniform(0.8, 1.2))  # noqa: S311
        delay = min(delay * 2, _POLL_MAX_S)
    waited_ms = round((time.monotonic() - t0) * 1000)
    if delay > _POLL_FIRST_S:  # it had to wait: another session held the lock
        clock.add_wait_ms(waited_ms)
    log.debug("lock.acquired", lock=name, waited_ms=waited_ms)
    lock = PhaseLock(conn, name, objid, backend_pid)
    try:
        here = await conn.fetchval(_BACKEND)  # a second statement, before any work: still the same backend?
        if here != backend_pid:
            raise _pooled(name, backend_pid, here)
        known.backend_pid = backend_pid
        yield lock
    except BaseException:
        await _release(lock, log, failing=True)
        raise
    await _release(lock, log, failing=False)


def _pooled(name: str, backend_pid: int, here: int) -> ConfigError:
    where = (
        f"on backend {here}, which already held the {name} lock although this session never took it"
        if here == backend_pid
        else f"on backend {here} instead of {backend_pid}"
    )
    return transaction_pooler(f"A statement of this session ran {where}, so the {name} phase did not start.")


def _timeout(name: str, timeout_s: float, holders: list[dict[str, str | int | None]]) -> LockTimeout:
    if not holders:  # released just now, or held by a session this role may not see
        return LockTimeout(
            f"the {name} lock was still held after {timeout_s:g}s by another session of this database. "
            "Run again, or raise SUPERVISOR_LOCK_TIMEOUT.",
        )
    who = ", ".join(f"pid {h['pid']} ({h['application_name']}, since {h['since']})" for h in holders)
    return LockTimeout(
        f"the {name} lock was still held after {timeout_s:g}s by {who} in this database. If that holder is stuck, "
        "end it with SELECT pg_terminate_backend(<pid>); otherwise raise SUPERVISOR_LOCK_TIMEOUT.",
    )


async def _free_pooled_holder(lock: PhaseLock, log: FilteringBoundLogger) -> None:
    """Behind a transaction pooler, free the lock left on the pooled backend that took it, trying for a few seconds.

    A single try often finds that backend busy (serving another replica's poll, say), and a lock left there blocks
    every replica until the pooler retires the connection. So: retry the unlock (it runs only when the pooler hands
    this client that backend again) and the end of that backend (only while it sits idle), until one works.
    """
    deadline = time.monotonic() + _FREE_POOLED_S
    with anyio.move_on_after(_FREE_POOLED_S + _UNLOCK_TIMEOUT_S, shield=True):
        while time.monotonic() < deadline:
            try:
                if await lock.conn.fetchval(_unlock_sql(lock)) is not None:
                    return  # the pooler handed us the lock's backend: unlocked there
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                return  # the connection broke: its server connections go with it
            if await _end_stale_holder(lock, log, final=False):
                return
            await anyio.sleep(0.1)
    await _end_stale_holder(lock, log, final=True)


async def _end_stale_holder(lock: PhaseLock, log: FilteringBoundLogger, *, final: bool) -> bool:
    """End the pooled backend that keeps this session's lock, if it sits idle in the pool.

    Behind a transaction pooler the unlock cannot reach the backend that took the lock, and the pooler keeps that
    server connection (and the lock with it) for up to its server_lifetime: every replica would wait for it. Only an
    idle backend that still holds the lock is ended, so no other client's statement is cut off.
    """
    try:
        ended = await lock.conn.fetchval(
            "SELECT pg_catalog.pg_terminate_backend(a.pid) FROM pg_catalog.pg_stat_activity a "
            f"WHERE a.pid OPERATOR(pg_catalog.=) {lock.backend_pid:d} AND a.state OPERATOR(pg_catalog.=) 'idle' "
            "AND EXISTS (SELECT FROM pg_catalog.pg_locks l WHERE l.pid OPERATOR(pg_catalog.=) a.pid "
            f"AND l.locktype OPERATOR(pg_catalog.=) 'advisory' AND {_THIS_DATABASE} "
            f"AND l.classid OPERATOR(pg_catalog.=) {CLASSID:d} AND l.objid OPERATOR(pg_catalog.=) {lock.objid:d} "
            "AND l.objsubid OPERATOR(pg_catalog.=) 2)"
        )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        ended = f"{type(e).__name__}: {e}"
    if ended is True or final:
        log.error(
            "lock.not_released",
            lock=lock.name,
            backend=lock.backend_pid,
            backend_ended=ended,
            hint=_PGBOUNCER_HINT,
        )
    return ended is True


def _unlock_sql(lock: PhaseLock) -> str:
    # Only on the lock's backend: on another one (a pooler in between) the unlock could release another client's lock.
    return f"SELECT CASE WHEN {lock.on_holder()} THEN pg_catalog.pg_advisory_unlock({CLASSID:d}, {lock.objid:d}) END"


async def _release(lock: PhaseLock, log: FilteringBoundLogger, *, failing: bool) -> None:
    conn, name = lock.conn, lock.name
    if conn.is_closed():
        return  # the lock went with the session
    released: bool | None = True
    with anyio.move_on_after(_UNLOCK_TIMEOUT_S, shield=True):
        try:
            released = await conn.fetchval(_unlock_sql(lock))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return  # connection broken: the session and its lock are going away
    if released is None:
        await _free_pooled_holder(lock, log)
        if failing:
            return
        raise transaction_pooler(
            f"The {name} phase ended, but its lock could not be released: the unlock ran on another backend than "
            f"{lock.backend_pid}, the one that took it."
        )
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
