"""The two SQL phases: `pre-schema` (db-init/) and `post-schema` (db-init-post/).

One transaction per file, together with its tracking row; runs of such files travel in batches (phases.sql_batch),
one round trip for many files. A file whose first line is `-- supervisor: no-transaction`
runs statement by statement in autocommit, with its progress recorded, so a crash part-way is refused next boot
instead of being silently re-run. A file whose first line is `-- supervisor: repeatable` runs again whenever its
checksum differs from its tracking row's, at its place in the folder's order among the files pending then, in one
transaction that also writes its row over; a changed plain file is still refused (exit 5).

Every file starts from the same session state, whether it runs in the same boot as the files before it or not: the
phase starts with a session reset, each transactional file resets the session inside its own transaction before its
tracking row (a failing file's SETs roll back with it), and each no-transaction file is followed by a reset.
Transaction control that would break a file's transaction (a COMMIT in a transactional file, say) is refused before
anything of the phase runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from phases.base import PENDING_EXIT, PhaseContext, Step, check_verdict
from phases.sql_batch import CREATE_PROGRESS, FILE_STARTED_US, PROGRESS, Batch, batches
from phases.sql_errors import half_applied_message, sql_error_message
from supervisor import inflight
from supervisor.db import is_connection_loss, lost_connection, rollback, session_reset_sql, transaction_pooler
from supervisor.errors import ConfigError, IntegrityRefusal, MigrationFailed
from supervisor.ledger import APPLIED, FAILED, Ledger, Row
from supervisor.sqlfile import (
    SqlFile,
    Statement,
    check_collisions,
    check_directive,
    checksum_matches,
    list_sql_files,
    location,
    misplaced_directives,
    require_folder,
    session_leaks,
    snippet,
    transaction_control,
)
from supervisor.tablename import sql_literal, sql_table

__all__ = ["SqlFolders", "SqlPhase"]


@dataclass
class SqlFolders:
    """Both SQL folders, listed and read once per process and shared by the two SQL phases."""

    pre_dir: Path
    post_dir: Path
    _files: dict[str, list[SqlFile]] | None = field(default=None, init=False)

    def files(self) -> dict[str, list[SqlFile]]:
        """Files per phase name; a missing folder lists as empty here (the phase that needs it refuses)."""
        if self._files is None:
            pre, post = list_sql_files(self.pre_dir), list_sql_files(self.post_dir)
            check_collisions(pre, post)
            self._files = {"pre-schema": pre, "post-schema": post}
        return self._files

    def by_name(self) -> dict[str, SqlFile]:
        """Every file of both folders by basename."""
        return {f.name: f for files in self.files().values() for f in files}


class SqlPhase:
    """Applies the pending `*.sql` files of one folder in byte-wise lexical order."""

    def __init__(
        self,
        name: str,
        folder: Path,
        variable: str,
        folders: SqlFolders,
        tracking_table: str,
        out_of_order: str = "warn",
    ) -> None:
        self.name = name
        self.out_of_order = out_of_order  # SUPERVISOR_OUT_OF_ORDER: warn | refuse
        self.lock_id = 1 if name == "pre-schema" else 3
        self.folder = folder
        self.variable = variable
        self.folders = folders
        self.tracking_table = tracking_table
        self._statements: dict[str, list[Statement]] = {}
        self._reruns: set[str] = set()  # repeatable files of this run that ran before, in another version

    def preflight(self) -> None:
        """The folder exists, no basename is in both folders, every file is UTF-8 with a known first-line directive."""
        require_folder(self.folder, self.variable)
        for f in self.folders.files()[self.name]:
            check_directive(f)

    async def pending(self, ctx: PhaseContext) -> Sequence[SqlFile]:
        """Validate every applied file of both folders, warn about orphans, parse what is pending."""
        ledger = Ledger(ctx.conn, self.tracking_table)
        rows = await ledger.load()
        legacy = self._validate(rows)
        self._warn_orphans(rows, ctx)
        mine = self.folders.files()[self.name]
        # Legacy checksums that match are rewritten in our form (under this phase's lock, for this phase's files), so
        # a later change of line endings only is still no change.
        upgraded = await ledger.upgrade_checksums({f.name: legacy[f.name] for f in mine if f.name in legacy})
        if upgraded:
            ctx.log.info("ledger.checksums_upgraded", files=upgraded, to="sha256 of the normalised text")
        todo = _todo(rows, mine)
        # Out of order means a new file only: a repeatable file re-running has its place among the applied ones.
        self._check_order(rows, ctx.log)
        # Parse everything first: a syntax error in the last file stops the phase before the first is applied.
        self._statements = self._parse(todo)
        self._reruns = {f.name for f in todo if f.name in rows}
        return todo

    def _check_order(self, rows: dict[str, Row], log: Any | None) -> None:
        """New files that sort before an applied file of their folder: a warning for this phase's files, or, with
        SUPERVISOR_OUT_OF_ORDER=refuse, exit 5 for either folder's, before this phase applies anything (so the first
        SQL phase of a run refuses before any file runs)."""
        refuse = self.out_of_order == "refuse"
        for phase, files in self.folders.files().items():
            if phase != self.name and not refuse:
                continue
            applied = [f.name for f in files if f.name in rows]
            for f in files:
                if f.name in rows or not applied or f.name > applied[-1]:
                    continue
                before = next(a for a in applied if a > f.name)  # the first applied file it sorts before
                if refuse:
                    raise IntegrityRefusal(
                        f"{f.path} is new but sorts before {before}, which is already applied "
                        "(SUPERVISOR_OUT_OF_ORDER=refuse). Files must be added after the last applied one of their "
                        f"folder ({applied[-1]}): rename it so it sorts after that, or set "
                        "SUPERVISOR_OUT_OF_ORDER=warn to apply it out of order. Nothing from this phase was applied.",
                        error_code="OUT_OF_ORDER",
                    )
                if log is not None:
                    log.warning("migration.out_of_order", file=str(f.path), before=before, after=applied[-1])

    def _parse(self, todo: list[SqlFile]) -> dict[str, list[Statement]]:
        """Statements of each pending file; a misplaced directive (exit 2), a syntax error or refused transaction
        control (exit 4) raises."""
        for f in todo:
            for offset, why in misplaced_directives(f):
                raise ConfigError(
                    f"{f.path}:{location(f.text, offset)}: {why}\n{snippet(f.text, offset)}\nNothing from the "
                    f"{self.name} phase was applied in this run; `python -m supervisor lint` checks every file's "
                    "directive.",
                    error_code="BAD_DIRECTIVE",
                )
        statements = {f.name: f.statements() for f in todo}
        for f in todo:
            self._refuse_transaction_control(f, statements[f.name])
        return statements

    def _refuse_transaction_control(self, f: SqlFile, statements: list[Statement]) -> None:
        """Refuse (exit 4) a file whose own BEGIN/COMMIT/... would break its transaction or its progress records."""
        for tc in transaction_control(f, statements):
            if tc.refused:
                raise MigrationFailed(
                    f"{f.path}:{location(f.text, tc.offset)}: {tc.message}\n{snippet(f.text, tc.offset)}\n"
                    f"Nothing from the {self.name} phase was applied in this run (it was refused before its first "
                    "file ran); `python -m supervisor lint` reports every such statement.",
                    error_code="TRANSACTION_CONTROL",
                )
        for offset, why in session_leaks(statements):
            raise MigrationFailed(
                f"{f.path}:{location(f.text, offset)}: {why}\n{snippet(f.text, offset)}\n"
                f"Nothing from the {self.name} phase was applied in this run (it was refused before its first file "
                "ran); `python -m supervisor lint` reports every such statement.",
                error_code="SESSION_STATE",
            )

    def _validate(self, rows: dict[str, Row]) -> dict[str, tuple[str, str]]:
        """Refuse half-applied or changed plain files (a changed repeatable file re-runs instead); returns
        `{filename: (legacy checksum, ours)}` of legacy matches."""
        files = self.folders.by_name()
        changed, half, legacy = [], [], {}
        for name, row in rows.items():
            f = files.get(name)
            if f is None:
                continue
            if row.status != APPLIED:
                half.append((f, row))
            elif not checksum_matches(row.checksum, f):
                if not f.repeatable:
                    changed.append((f, row))
            elif row.checksum != f.checksum:
                legacy[name] = (row.checksum, f.checksum)
        if half:
            f, row = half[0]
            raise IntegrityRefusal(
                half_applied_message(f, row, self.tracking_table), error_code="HALF_APPLIED"
            )
        if changed:
            lines = [f"  {f.path}: applied as {row.checksum}, now {f.checksum}" for f, row in changed]
            raise IntegrityRefusal(
                f"{len(changed)} applied file(s) changed since they were applied:\n"
                + "\n".join(lines)
                + "\nApplied migrations must not be edited: restore the file and put the change in a new file "
                "(or, for views, functions and grants that may simply run again, a file whose first line is "
                "`-- supervisor: repeatable`). If the edit is cosmetic and you are sure, accept it with: UPDATE "
                f"{sql_table(self.tracking_table)} SET checksum = '<new checksum>' WHERE filename = '<file>'. "
                "Nothing was applied.",
                error_code="CHECKSUM_MISMATCH",
            )
        return legacy

    def _warn_orphans(self, rows: dict[str, Row], ctx: PhaseContext) -> None:
        files = self.folders.by_name()
        for name, row in rows.items():
            # Legacy rows have no phase; pre-schema speaks for them so each orphan is reported once.
            if name not in files and (row.phase or "pre-schema") == self.name:
                ctx.log.warning(
                    "migration.orphaned",
                    file=name,
                    hint="recorded as applied but no such file; expected during a rolling deploy, else remove the row",
                )

    async def apply(
        self, ctx: PhaseContext, steps: Sequence[Step]
    ) -> AsyncIterator[tuple[Step, dict[str, Any]]]:
        """Apply the pending files in order, yielding each once it is committed and recorded.

        Runs of transactional files go in batches (one round trip for many files, each its own transaction);
        no-transaction files run statement by statement.
        """
        files: list[SqlFile] = list(steps)  # type: ignore[arg-type]
        reset = session_reset_sql(ctx.conn)
        await ctx.conn.execute(reset)  # whatever ran on this connection before, the first file starts clean
        batched = any(not f.no_transaction for f in files) and await self._progress_counter(ctx)
        i = 0
        while i < len(files):
            j = i + 1
            if not files[i].no_transaction:
                while j < len(files) and not files[j].no_transaction:
                    j += 1
            run = [(f, self._statements.pop(f.name)) for f in files[i:j]]
            where = f"{run[0][0].path}" + (f" .. {run[-1][0].name}" if len(run) > 1 else "")
            state = _NoTransactionState(files[i], len(run[0][1]), self.tracking_table)
            try:
                if files[i].no_transaction:
                    with inflight.running(state.describe):
                        fields = await self._apply_no_transaction(ctx, *run[0], state)
                    await ctx.conn.execute(reset)  # its SETs ended with it
                    yield files[i], fields
                elif batched:
                    for chunk in batches(run):
                        async for done in self._apply_batch(ctx, chunk):
                            yield done
                else:
                    for f, stmts in run:
                        yield f, await self._apply_statementwise(ctx, f, stmts)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
                if is_connection_loss(e):
                    outcome = state.describe() if files[i].no_transaction else None
                    raise lost_connection(e, f"while applying {where}", outcome) from e
                raise
            i = j

    async def _progress_counter(self, ctx: PhaseContext) -> bool:
        """Create the session's statement counter for batches; without the TEMP privilege, do without batching."""
        try:
            # One message, so both run on one backend even behind a transaction pooler (which the batch then
            # reveals). The GRANT: a file's SET ROLE must not stop the markers between its statements from counting.
            await ctx.conn.execute(f"{CREATE_PROGRESS};\nGRANT UPDATE ON SEQUENCE {PROGRESS} TO PUBLIC")
        except asyncpg.DuplicateTableError:
            pass  # the other SQL phase made them on this connection (no IF NOT EXISTS: its NOTICE is noise)
        except asyncpg.InsufficientPrivilegeError:
            ctx.log.info(
                "sql.batching_off", reason="no TEMP privilege on this database; one round trip per statement"
            )
            return False
        return True

    async def _apply_batch(
        self, ctx: PhaseContext, run: list[tuple[SqlFile, list[Statement]]]
    ) -> AsyncIterator[tuple[Step, dict[str, Any]]]:
        ledger = Ledger(ctx.conn, self.tracking_table)
        batch = Batch(
            run,
            lambda f: ledger.record_and_commit_sql(
                f.name, f.checksum, self.name, ctx.lock, FILE_STARTED_US, repeatable=f.repeatable
            ),
        )
        stats = {f.name: self._fields(f, len(stmts)) for f, stmts in run}
        checksums = {f.name: f.checksum for f in batch.files}
        try:
            await ctx.conn.execute(batch.sql)
        except asyncpg.PostgresError as e:
            if is_connection_loss(e):
                raise
            await rollback(ctx.conn)
            counter = await _counter(ctx.conn)
            durations = await ledger.durations(checksums)
            committed = [f for f in batch.files if f.name in durations]  # the files before the failing one
            for f in committed:
                yield f, {"duration_ms": durations[f.name], **stats[f.name]}
            if ledger.is_lock_refusal(e):
                raise ctx.lock.not_held(_LOCK_GONE) from e
            if counter is None or counter[1] != ctx.lock.backend_pid or _counter_missing(e):
                # The session's temporary counter is on another backend than this statement's: a pooler.
                raise transaction_pooler(
                    f"A batch of SQL files failed ({e.sqlstate}: {e}) on another backend than the one holding the "
                    f"{self.name} lock; its open transaction was rolled back, files recorded before it stay applied."
                ) from e
            position = getattr(e, "position", None)
            at = batch.failure(batch.files[len(committed)], counter[0], int(position) if position else None)
            raise self._failure(
                at.file, at.statement, e, self._rolled_back(at.file), at.offset_in_statement
            ) from e
        except BaseException:
            await rollback(ctx.conn)
            raise
        durations = await ledger.durations(checksums)
        for f in batch.files:
            yield f, {"duration_ms": durations[f.name], **stats[f.name]}

    def _rolled_back(self, f: SqlFile) -> str:
        """What a failed transactional file left: nothing; a repeatable re-run, its previous version."""
        if f.name in self._reruns:
            return (
                "The file's transaction was rolled back: this version of the repeatable file was not applied, and "
                "the previous version (and its tracking row) stays in place. Fix the file and run again."
            )
        return _ROLLED_BACK

    def _fields(self, f: SqlFile, statements: int) -> dict[str, Any]:
        """The log fields of a transactional file's `step.applied` line, besides its duration."""
        fields: dict[str, Any] = {"statements": statements, "transaction": True}
        if f.repeatable:
            fields["repeatable"] = "re-run" if f.name in self._reruns else "first run"
        return fields

    async def _apply_statementwise(
        self, ctx: PhaseContext, f: SqlFile, stmts: list[Statement]
    ) -> dict[str, Any]:
        """One file, one statement per round trip: BEGIN rides with the first, the tracking row and COMMIT with the
        last. Used when batching is off; every error is attributed to its statement."""
        ledger = Ledger(ctx.conn, self.tracking_table)
        tail = ledger.record_and_commit_sql(f.name, f.checksum, self.name, ctx.lock, repeatable=f.repeatable)
        parts = stmts or [Statement("SELECT 1", 0)]  # an empty file is recorded like any other
        t0 = time.monotonic()
        try:
            for i, stmt in enumerate(parts):
                prefix = "BEGIN;\n" if i == 0 else ""
                # The newline first: a last statement that ends in a `--` comment would swallow the `;`.
                suffix = "\n;\n" + tail if i == len(parts) - 1 else ""
                try:
                    await ctx.conn.execute(prefix + stmt.sql + suffix)
                except asyncpg.PostgresError as e:
                    if is_connection_loss(e):
                        raise
                    if ledger.is_lock_refusal(e):
                        raise ctx.lock.not_held(_LOCK_GONE) from e
                    position = getattr(e, "position", None)
                    offset = int(position) - 1 - len(prefix) if position else None
                    mine = ledger.owns(e) or (offset is not None and offset > len(stmt.sql))
                    raise self._failure(f, None if mine else stmt, e, self._rolled_back(f), offset) from e
        except BaseException:
            await rollback(ctx.conn)
            raise
        return {"duration_ms": _ms(t0), **self._fields(f, len(stmts))}

    async def _apply_no_transaction(
        self, ctx: PhaseContext, f: SqlFile, stmts: list[Statement], state: _NoTransactionState
    ) -> dict[str, Any]:
        """Statement by statement in autocommit, recording progress after each, so a stop part-way is detected.
        `state` follows along, for a stop message that tells what was committed."""
        ledger = Ledger(ctx.conn, self.tracking_table)
        t0 = time.monotonic()
        await ctx.lock.assert_held()
        state.marking = True
        await ledger.begin_partial(f.name, f.checksum, self.name, len(stmts))
        state.marked = True
        for i, stmt in enumerate(stmts):
            state.done, state.running, state.sent = i, stmt, False
            try:
                await ctx.lock.assert_held(
                    "so the phase stopped. " + state.describe() if i else "so nothing was applied."
                )
            except ConfigError:
                # Before the first statement nothing of the file ran: leave no `running` row behind (if that fails
                # too, the next boot's HALF_APPLIED refusal says 0 of n statements ran and how to clear it).
                if not i:
                    with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                        await ledger.forget(f.name)
                raise
            state.sent = True
            try:
                await ctx.conn.execute(stmt.sql)
            except asyncpg.PostgresError as e:
                if is_connection_loss(e):
                    raise
                await (ledger.progress(f.name, i, FAILED) if i else ledger.forget(f.name))
                outcome = (
                    f"This is a no-transaction file: statements 1-{i} were committed and recorded, this one and "
                    "the rest were not. The next run refuses the file until you resolve it (see the instructions "
                    "it prints)."
                    if i
                    else "It was the file's first statement, so nothing from the file was applied; fix it and run "
                    "again."
                )
                position = getattr(e, "position", None)
                raise self._failure(f, stmt, e, outcome, int(position) - 1 if position else None) from e
            await ledger.progress(f.name, i + 1)
        state.done, state.running, state.sent, state.finishing = len(stmts), None, False, True
        await ledger.progress(f.name, len(stmts), APPLIED, _ms(t0))
        state.finished = True
        return {"duration_ms": _ms(t0), "statements": len(stmts), "transaction": False}

    def _failure(
        self, f: SqlFile, stmt: Statement | None, e: asyncpg.PostgresError, outcome: str, offset: int | None
    ) -> MigrationFailed:
        """`MigrationFailed` for an error of `stmt` (None: our tracking SQL), `offset` characters into it."""
        if stmt is None:
            return MigrationFailed(
                f"{f.path}: the file ran, but recording it in {self.tracking_table} failed: ERROR {e.sqlstate}: "
                f"{e}. {outcome}",
                error_code="SQL_ERROR",
            )
        if e.sqlstate == "42P01" and self.name == "pre-schema":
            outcome += (
                " If that table is created by the Directus snapshot, the statement belongs in the post-schema "
                "folder (SUPERVISOR_DB_INIT_POST_DIR), which runs after schema-apply."
            )
        return MigrationFailed(sql_error_message(f, stmt, e, outcome, offset), error_code="SQL_ERROR")

    async def report(self, conn: asyncpg.Connection, *, deep: bool = False) -> dict[str, Any]:
        """Applied, pending, changed, half-applied and orphaned files of this phase, and its repeatable files that
        changed and will re-run (`rerun`); with `deep` (`plan`), also the
        verdict `migrate` would reach: the checks it makes before applying, run here without changing anything."""
        require_folder(self.folder, self.variable)  # else every applied file would list as orphaned
        if deep:
            self.preflight()  # a non-UTF-8 file: migrate refuses it before connecting
        rows = await Ledger(conn, self.tracking_table).read() or {}
        mine = self.folders.files()[self.name]
        names = self.folders.by_name()
        out = self._files_report(rows, mine, names)
        if deep:
            out["check"] = self._check(rows, _todo(rows, mine))
        return out

    def _check(self, rows: dict[str, Row], todo: list[SqlFile]) -> dict[str, Any]:
        """What `pending` would make of this: the same refusals (changed, half-applied: 5; syntax, transaction
        control: 4; a misplaced directive: 2), else whether anything would be applied or re-run."""
        try:
            self._validate(rows)
            self._check_order(rows, None)
            self._parse(todo)
        except (ConfigError, IntegrityRefusal, MigrationFailed) as e:
            return check_verdict(e.code, e.error_code, e.message)
        if todo:
            reruns = sum(f.name in rows for f in todo)
            note = f" ({reruns} of them repeatable, changed, to re-run)" if reruns else ""
            return check_verdict(PENDING_EXIT, "PENDING", f"{len(todo)} file(s) to apply{note}")
        return check_verdict(0, None, "nothing to apply")

    def _files_report(
        self, rows: dict[str, Row], mine: list[SqlFile], names: dict[str, SqlFile]
    ) -> dict[str, Any]:
        return {
            "phase": self.name,
            "folder": str(self.folder),
            "applied": [f.name for f in mine if f.name in rows and rows[f.name].status == APPLIED],
            # who applied each file, when, and how long it took (legacy rows know only when)
            "applied_files": [
                rows[f.name].history() for f in mine if f.name in rows and rows[f.name].status == APPLIED
            ],
            "pending": [f.name for f in mine if f.name not in rows],
            # repeatable files applied in another version: `migrate` runs them again, in folder order
            "rerun": [f.name for f in mine if f.repeatable and _changed(rows, f)],
            "changed": [f.name for f in mine if not f.repeatable and _changed(rows, f)],
            "repeatable": [f.name for f in mine if f.repeatable],
            "half_applied": [
                {"file": f.name, "done": rows[f.name].statements_done, "total": rows[f.name].statements_total}
                for f in mine
                if f.name in rows and rows[f.name].status != APPLIED
            ],
            "orphaned": sorted(
                n for n, r in rows.items() if n not in names and (r.phase or "pre-schema") == self.name
            ),
        }


@dataclass
class _NoTransactionState:
    """How far a no-transaction file got, for a stop or connection loss message that tells the truth."""

    file: SqlFile
    total: int
    table: str
    marking: bool = False  # the INSERT of its `running` row was sent
    marked: bool = False  # ... and returned
    done: int = 0  # statements committed and recorded
    running: Statement | None = None  # the next statement
    sent: bool = False  # ... and it was sent to the server
    finishing: bool = False  # every statement committed; the row's update to `applied` was sent
    finished: bool = False  # ... and returned

    def describe(self) -> str:
        f, table, name = self.file, sql_table(self.table), sql_literal(self.file.name)
        if not self.marking:
            return "the no-transaction file about to run had not started; nothing from it was applied."
        if self.finished:
            return f"{f.path} (a no-transaction file) had completed and is recorded as applied; nothing is pending in it."
        if self.finishing:
            return (
                f"{f.path} is a no-transaction file and all {self.total} of its statements were committed; it was being "
                f"recorded as applied when the stop came. If the next boot refuses it as half-applied, run: UPDATE "
                f"{table} SET status = 'applied' WHERE filename = '{f.name}'; (do not delete the row: that would run "
                "the whole file again)."
            )
        where = f" (line {location(f.text, self.running.offset).split(':')[0]})" if self.running else ""
        if not self.marked:
            return (
                f"{f.path} is a no-transaction file; it was being marked as running when the stop came and none of "
                f"its statements ran. If the next boot refuses it as half-applied (0 of {self.total} statements), "
                f"run: DELETE FROM {table} WHERE filename = {name}; and boot again."
            )
        committed = (
            f"none of its {self.total} statements was recorded as committed"
            if not self.done
            else f"statement 1 of {self.total} was committed and recorded"
            if self.done == 1
            else f"statements 1-{self.done} of {self.total} were committed and recorded"
        )
        running = (
            "was running (or had just finished) and may or may not have completed (an interrupted CREATE INDEX "
            "CONCURRENTLY leaves an INVALID index)"
            if self.sent
            else "and the rest had not started"
        )
        return (
            f"{f.path} is a no-transaction file, so it was NOT rolled back: {committed}; statement {self.done + 1}"
            f"{where} {running}. Its row in "
            f"{table} stays marked running ({self.done} of {self.total}), so the next boot refuses the file (exit "
            "5, HALF_APPLIED) until you resolve it: check what the statements from "
            f"{self.done + 1} on did (SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid; for indexes), "
            f"then either DELETE FROM {table} WHERE filename = {name}; to run the whole file again, or UPDATE "
            f"{table} SET status = 'applied' WHERE filename = {name}; if you completed it by hand. Files "
            "recorded as applied before it stay applied."
        )


_LOCK_GONE = (
    "so this file's transaction was rolled back; files recorded as applied before it (in this run or earlier) stay "
    "applied."
)
_ROLLED_BACK = (
    "The file's transaction was rolled back: nothing from it was applied. Fix the file and run again."
)


def _changed(rows: dict[str, Row], f: SqlFile) -> bool:
    """Whether `f` is recorded as applied in another version."""
    row = rows.get(f.name)
    return row is not None and row.status == APPLIED and not checksum_matches(row.checksum, f)


def _todo(rows: dict[str, Row], mine: list[SqlFile]) -> list[SqlFile]:
    """What `migrate` runs, in folder order: files without a row, and repeatable files recorded in another version
    (a plain file in another version is refused before this matters)."""
    return [f for f in mine if f.name not in rows or (f.repeatable and _changed(rows, f))]


def _ms(t0: float) -> int:
    return round((time.monotonic() - t0) * 1000)


async def _counter(conn: asyncpg.Connection) -> tuple[int, int] | None:
    """The batch's statement counter and the backend it was read on; None where this session's counter is missing."""
    try:
        row = await conn.fetchrow(f"SELECT last_value, pg_catalog.pg_backend_pid() FROM {PROGRESS}")
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        # 42P01, or 3F000 "schema pg_temp does not exist" on a backend that never made a temporary object
        return None
    assert row is not None  # a sequence has exactly one row
    return int(row[0]), int(row[1])


def _counter_missing(e: asyncpg.PostgresError) -> bool:
    # 3F000: `pg_temp` itself is missing on a backend where this session never created anything temporary.
    return (
        e.sqlstate == "42P01" and ("supervisor_progress" in str(e) or "supervisor_file_start" in str(e))
    ) or (e.sqlstate == "3F000" and "pg_temp" in str(e))
