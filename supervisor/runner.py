"""The runner: the selected phases in order, each under its own advisory lock, with timing and one log line per
step. It knows nothing about what a phase does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from structlog.contextvars import bound_contextvars
from structlog.typing import FilteringBoundLogger

from phases.base import Outcome, Phase, PhaseContext, check_verdict
from supervisor import early
from supervisor.adopt import adopt, ledger_location
from supervisor.backup import list_backups
from supervisor.db import connection, is_connection_loss, lost_connection
from supervisor.errors import SupervisorError
from supervisor.ledger import Ledger
from supervisor.lock import advisory_lock
from supervisor.privileges import denied
from supervisor.session import forget_relations
from supervisor.settings import Settings
from supervisor.state import StateTable
from supervisor.tablename import quote_table
from supervisor.tables import inspect_all

__all__ = ["check_tables", "collect_status", "run_phases"]


def _ms(t0: float) -> int:
    return round((time.monotonic() - t0) * 1000)


def _forward_notices(log: FilteringBoundLogger) -> Any:
    # RAISE NOTICE from migrations (e.g. "positions: plain table, TimescaleDB not available") reaches the logs; a
    # WARNING (a RAISE WARNING, a "there is no transaction in progress") at warning level. The supervisor's own SQL
    # sends none: it keeps its DDL quiet (supervisor.db.QUIET).
    def listener(_conn: asyncpg.Connection, msg: asyncpg.PostgresLogMessage) -> None:
        severity = getattr(msg, "severity_en", None) or getattr(msg, "severity", None) or "NOTICE"
        emit = log.warning if severity == "WARNING" else log.info
        emit("db.notice", severity=severity, message=msg.message)

    return listener


async def run_phases(
    settings: Settings, phases: Sequence[Phase], log: FilteringBoundLogger
) -> dict[str, str]:
    """Run `phases` in order; returns each phase's outcome. Bad input fails in preflight, before any connection."""
    for phase in phases:
        phase.preflight()
    assert settings.db is not None
    outcomes: dict[str, str] = {}
    async with connection(settings.db, settings.wait_timeout, log) as conn:
        conn.add_log_listener(_forward_notices(log))
        try:
            await check_tables(conn, settings.tracking_table)
            await adopt(conn, settings, log)  # an earlier release's ledger, moved into our schema once
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
            if is_connection_loss(e):
                raise lost_connection(e, "before the first phase") from e
            if isinstance(e, asyncpg.InsufficientPrivilegeError):
                raise _denied(e, settings, "read its tables") from e
            raise
        for phase in phases:
            with bound_contextvars(phase=phase.name):
                try:
                    outcomes[phase.name] = (await _run_one(settings, conn, phase, log)).value
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
                    if is_connection_loss(e):
                        raise lost_connection(e, f"during {phase.name}") from e
                    if isinstance(e, asyncpg.InsufficientPrivilegeError):
                        # The supervisor's own SQL (a user's file fails as MigrationFailed before this).
                        raise _denied(e, settings, f"use its tables for {phase.name}") from e
                    raise
    return outcomes


async def check_tables(conn: asyncpg.Connection, tracking_table: str) -> None:
    """Refuse (exit 2) a tracking or state table of our names that is not ours, before any phase reads or writes."""
    ledger, state = Ledger(conn, tracking_table), StateTable(conn, tracking_table)
    found = await inspect_all(conn, [ledger.table, state.table])  # one round trip for both
    ledger.verdict(found[ledger.table])
    state.verdict(found[state.table])


def _early_start_through(pid: int, phase: str, log: FilteringBoundLogger) -> None:
    """Not a warm boot. The Node started early keeps waiting at its gate through this work (loading Directus's
    modules reads nothing this work changes: supervisor.early) and starts Directus once the phases are done, which
    saves the module loading of that last Node start on a cold or upgrade boot; unless memory is short, as it holds
    Directus's modules beside each Directus step."""
    room = early.room_mib()
    if room is not None and room < early.ROOM_TO_WAIT_MIB:
        early.cancel()
        log.info(
            "directus.early_start_cancelled",
            pid=pid,
            reason=f"{phase} has work and only {room} MiB of memory are free "
            f"(the waiting Node stays only with {early.ROOM_TO_WAIT_MIB} MiB free)",
        )
    else:
        log.info("directus.early_start_waits", pid=pid, phase=phase, memory_free_mib=room)


async def _run_one(
    settings: Settings, conn: asyncpg.Connection, phase: Phase, log: FilteringBoundLogger
) -> Outcome:
    t0 = time.monotonic()
    async with advisory_lock(conn, phase.name, phase.lock_id, settings.lock_timeout, log) as lock:
        ctx = PhaseContext(settings=settings, conn=conn, lock=lock, log=log)
        steps = await phase.pending(ctx)
        if steps:
            if (pid := early.running()) is not None:
                _early_start_through(pid, phase.name, log)
            # The user's SQL and Directus's steps run now: no table verdict is taken on trust across them.
            forget_relations(conn)
            try:
                async for step, fields in phase.apply(ctx, steps):
                    log.info("step.applied", file=step.name, **fields)
            finally:
                forget_relations(conn)
    outcome = Outcome.APPLIED if steps else Outcome.SKIPPED
    log.info("phase.finished", outcome=outcome.value, steps=len(steps), duration_ms=_ms(t0))
    return outcome


async def collect_status(
    settings: Settings,
    build: Callable[[Settings], Sequence[Phase]],
    log: FilteringBoundLogger,
    *,
    deep: bool = False,
) -> dict[str, Any]:
    """Each phase's read-only report (`deep`: what `migrate` would do); takes no lock and writes nothing.

    The phases come from `build`, given the settings to read with: an earlier release's ledger is read where it is
    (supervisor.adopt), until `migrate` moves it."""
    assert settings.db is not None
    async with connection(settings.db, settings.wait_timeout, log) as conn:
        try:
            await check_tables(conn, settings.tracking_table)
            where, table = await ledger_location(conn, settings)
            if table != settings.tracking_table:
                await check_tables(conn, table)
            phases = build(dataclasses.replace(settings, tracking_table=table))
            reports = [await _report(phase, conn, deep, bool(settings.directus_cmd)) for phase in phases]
        except asyncpg.InsufficientPrivilegeError as e:
            raise _denied(e, settings, "read its tables") from e
        out: dict[str, Any] = {"tracking_table": settings.tracking_table, "ledger": where, "phases": reports}
        try:
            out["backups"] = await list_backups(conn)
        except asyncpg.InsufficientPrivilegeError as e:
            # The copies of dropped data are not needed to report the phases: say why they are missing.
            out["backups"] = []
            out["backups_error"] = f"cannot read supervisor_backup.backups: {e}"
    return out


def _denied(e: asyncpg.PostgresError, settings: Settings, what: str) -> SupervisorError:
    assert settings.db is not None
    table = settings.tracking_table
    schema = table.split(".")[0] + "." if "." in table else ""
    names = {
        table.split(".")[-1]: quote_table(table),
        "supervisor_state": quote_table(f"{schema}supervisor_state"),
    }
    return denied(e, settings.db.user, names, what)


# Mistakes `migrate` refuses with exit 2 that a report must not dress up as "unknown" with exit 0.
_REFUSED_IN_REPORTS = frozenset({"FOLDER_MISSING", "FILE_UNREADABLE"})


async def _report(
    phase: Phase, conn: asyncpg.Connection, deep: bool, directus_cmd_set: bool
) -> dict[str, Any]:
    # One phase that cannot tell (no snapshot, no Directus here) must not hide the others.
    try:
        return await phase.report(conn, deep=deep)
    except SupervisorError as e:
        if e.error_code in _REFUSED_IN_REPORTS:
            raise
        if e.error_code == "DIRECTUS_CMD_INVALID" and directus_cmd_set:
            raise  # a SUPERVISOR_DIRECTUS_CMD that cannot run is a mistake; the default missing is "no Directus here"
        out: dict[str, Any] = {"phase": phase.name, "error": e.message.split("\n", 1)[0]}
        if deep:  # `plan --check`: migrate would stop here with the same error
            out["check"] = check_verdict(e.code, e.error_code, e.message)
        return out
