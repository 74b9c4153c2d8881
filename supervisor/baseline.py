"""`baseline [--until FILE]`: record pending SQL files as applied without running them.

For adopting a database whose objects already exist (built by hand, or restored from a dump): the files that would
create them are recorded, so `migrate` applies only what comes after. Order is the boot order: the pre-schema folder,
then the post-schema folder, each in byte-wise lexical order; `--until FILE` records up to and including FILE in that
order (FILE in the post-schema folder: every pending pre-schema file too). FILE is a basename (the ledger's key) or a
path to a file of one of the folders; any other FILE is refused (exit 2) before anything is recorded.

Each folder's files are recorded under that phase's lock, after the same checks `migrate` makes of what is applied
(a changed or half-applied file: exit 5, nothing recorded), in one transaction. A baselined row has a NULL
`duration_ms` and `applied_by` ending in ` (baseline)`; a no-transaction file is recorded as fully applied.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import asyncpg
from structlog.typing import FilteringBoundLogger

from phases.sql import SqlFolders, SqlPhase
from supervisor.adopt import adopt
from supervisor.db import application_name, connection, is_connection_loss, lost_connection
from supervisor.errors import ConfigError
from supervisor.ledger import APPLIED, BASELINE_MARK, Ledger
from supervisor.lock import PhaseLock, advisory_lock
from supervisor.privileges import denied
from supervisor.settings import Settings
from supervisor.sqlfile import SqlFile, checksum_matches, require_folder
from supervisor.tablename import quote_table

__all__ = ["baseline", "select_until"]


def _phases(settings: Settings) -> list[SqlPhase]:
    folders = SqlFolders(settings.db_init_dir, settings.db_init_post_dir)
    return [
        SqlPhase(
            "pre-schema", settings.db_init_dir, "SUPERVISOR_DB_INIT_DIR", folders, settings.tracking_table
        ),
        SqlPhase(
            "post-schema",
            settings.db_init_post_dir,
            "SUPERVISOR_DB_INIT_POST_DIR",
            folders,
            settings.tracking_table,
        ),
    ]


def select_until(phases: list[SqlPhase], until: str | None) -> dict[str, list[SqlFile]]:
    """The files `baseline` may record, per phase, in boot order: all, or up to and including `until`."""
    files = phases[0].folders.files()
    if until is None:
        return {p.name: list(files[p.name]) for p in phases}
    by_name = phases[0].folders.by_name()
    target = by_name.get(Path(until).name)
    if target is None or (Path(until).name != until and not _same(Path(until), target.path)):
        where = " or ".join(str(p.folder) for p in phases)
        raise ConfigError(
            f"baseline --until {until}: no such file in {where}. Give the basename of a file of the SQL folders "
            "(as the ledger records it, e.g. 003_views.sql) or its path; nothing was recorded.",
            error_code="BASELINE_FILE_MISSING",
        )
    out: dict[str, list[SqlFile]] = {}
    for p in phases:
        mine = files[p.name]
        if target in mine:
            out[p.name] = mine[: mine.index(target) + 1]
            break
        out[p.name] = list(mine)
    return out


def _same(given: Path, actual: Path) -> bool:
    try:
        return given.samefile(actual)
    except OSError:
        return False


async def baseline(settings: Settings, until: str | None, log: FilteringBoundLogger) -> int:
    """Record the selected pending files of both SQL phases as applied; prints what it did on stdout."""
    phases = _phases(settings)
    for p in phases:
        require_folder(p.folder, p.variable)
    chosen = select_until(phases, until)
    for files in chosen.values():
        for f in files:
            _ = f.checksum  # a file that is not UTF-8 is refused (exit 2) before connecting
    assert settings.db is not None
    lines: list[str] = []
    recorded = 0
    async with connection(settings.db, settings.wait_timeout, log) as conn:
        from supervisor.runner import check_tables  # here: runner imports the phases, which import the ledger

        try:
            await check_tables(conn, settings.tracking_table)
            await adopt(conn, settings, log)
            for p in phases:
                if p.name not in chosen:
                    continue  # --until FILE of the pre-schema folder: post-schema is left as it is
                done = await _baseline_phase(conn, settings, p, chosen[p.name], log)
                recorded += len(done["recorded"])
                lines += [f"{p.name:<12} recorded         {n}" for n in done["recorded"]]
                lines += [f"{p.name:<12} already applied  {n}" for n in done["applied"]]
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
            if is_connection_loss(e):
                raise lost_connection(e, "during baseline") from e
            if not isinstance(e, asyncpg.InsufficientPrivilegeError):
                raise
            table = settings.tracking_table
            names = {table.split(".")[-1]: quote_table(table)}
            raise denied(e, settings.db.user, names, "record files in its ledger") from e
    lines.append(
        f"{recorded} file(s) recorded as applied without running them"
        + (f" (up to and including {Path(until).name})" if until else "")
        + f"; ledger: {settings.tracking_table}"
    )
    sys.stdout.write("\n".join(lines) + "\n")
    log.info("supervisor.finished", verb="baseline", recorded=recorded, exit_code=0)
    return 0


async def _baseline_phase(
    conn: asyncpg.Connection,
    settings: Settings,
    phase: SqlPhase,
    files: list[SqlFile],
    log: FilteringBoundLogger,
) -> dict[str, list[str]]:
    async with advisory_lock(conn, phase.name, phase.lock_id, settings.lock_timeout, log) as lock:
        ledger = Ledger(conn, settings.tracking_table)
        rows = await ledger.load()  # under the lock: what another replica recorded meanwhile is seen here
        phase._validate(rows)  # the checks migrate makes: a changed or half-applied file is exit 5
        # Pending as migrate sees it: new files, and repeatable files whose content changed (their new version is
        # recorded, so it is taken as already in place, like a new file's).
        todo = [
            f
            for f in files
            if f.name not in rows or (f.repeatable and not checksum_matches(rows[f.name].checksum, f))
        ]
        try:
            await _insert(conn, ledger, lock, phase.name, todo)
        except asyncpg.NotNullViolationError as e:
            if ledger.is_lock_refusal(e):
                raise lock.not_held("so nothing of this phase was recorded.") from e
            raise
        for f in todo:
            log.info("baseline.recorded", phase=phase.name, file=f.name, checksum=f.checksum)
    result: dict[str, Any] = {
        "recorded": [f.name for f in todo],
        "applied": [f.name for f in files if f.name in rows and f not in todo],
    }
    return result


async def _insert(
    conn: asyncpg.Connection, ledger: Ledger, lock: PhaseLock, phase: str, todo: list[SqlFile]
) -> None:
    """One statement, one transaction. `status` comes out NULL, so the NOT NULL constraint refuses every row, if
    this runs on another backend than the lock's (a transaction pooler)."""
    if not todo:
        return
    async with conn.transaction():
        await conn.execute(
            f"INSERT INTO {ledger.table} (filename, checksum, phase, applied_at, applied_by, status) "
            f"SELECT u.filename, u.checksum, $3, now(), $4, CASE WHEN {lock.on_holder()} THEN '{APPLIED}' END "
            "FROM unnest($1::text[], $2::text[]) AS u(filename, checksum) "
            # A changed repeatable file has a row: write its new version over it, as a re-run would. The status
            # comes out NULL here too off the lock's backend, so the pooler check holds for the update as well.
            "ON CONFLICT (filename) DO UPDATE SET checksum = EXCLUDED.checksum, phase = EXCLUDED.phase, "
            "applied_at = EXCLUDED.applied_at, applied_by = EXCLUDED.applied_by, duration_ms = NULL, "
            "status = EXCLUDED.status",
            [f.name for f in todo],
            [f.checksum for f in todo],
            phase,
            f"{application_name()}{BASELINE_MARK}",
        )
