"""Many transactional files in one round trip, each still in its own transaction with its tracking row.

The message is `BEGIN; <statements>; <tracking row>; COMMIT;` per file, back to back. Postgres runs the statements in
order and stops at the first error, so the files before it are committed and recorded, and the failing file's
transaction is left aborted (the caller rolls it back). After each statement of the file a marker
`SELECT pg_catalog.setval('pg_temp.supervisor_progress', k)` records how many statements completed: sequences are not
transactional, so the count survives the abort and names the failing statement even when Postgres gives no position.
Between files the session is reset (inside each file's transaction, before its tracking row: see
`Ledger.record_and_commit_sql`), so no file's SET reaches the next one; the markers and the tracking row never depend
on the session state a file leaves (schema-qualified, and the sequence is granted to PUBLIC against a SET ROLE).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from supervisor.sqlfile import SqlFile, Statement

__all__ = ["FILE_STARTED_US", "MAX_CHARS", "MAX_FILES", "PROGRESS", "Batch", "Failure"]

PROGRESS = "pg_temp.supervisor_progress"
# Not IF NOT EXISTS: its "already exists, skipping" NOTICE would reach the log; the second SQL phase on the same
# connection gets 42P07 instead (both are made in one message, so both or neither exist).
CREATE_PROGRESS = (
    "CREATE TEMP SEQUENCE supervisor_progress MINVALUE 0 START 0; "
    "CREATE TEMP SEQUENCE supervisor_file_start MINVALUE 0 START 0"
)
# When the current file of a batch started, in microseconds since the epoch: `now()` is the start of the whole
# message, and a transaction-local setting would not survive the session reset before the tracking row (RESET ALL).
# A sequence is neither transactional nor a setting, and the tracking row reads it as the session user, its owner.
FILE_START = "pg_temp.supervisor_file_start"
FILE_STARTED_US = f"(SELECT last_value FROM {FILE_START})"
_MARK_START = (
    f"SELECT pg_catalog.setval('{FILE_START}', (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) "
    "OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8);\n"
)
MAX_FILES = 200
MAX_CHARS = 2_000_000


@dataclass(frozen=True, slots=True)
class Failure:
    """Where a batch failed: the file, its statement (None: our own tracking SQL) and the offset in that statement."""

    file: SqlFile
    statement: Statement | None
    offset_in_statement: int | None


class Batch:
    """The message for a run of files, and the map from message offsets and marker counts back to files."""

    def __init__(
        self, files: Sequence[tuple[SqlFile, list[Statement]]], tail: Callable[[SqlFile], str]
    ) -> None:
        self.files = [f for f, _ in files]
        self._parts: list[str] = [f"SELECT pg_catalog.setval('{PROGRESS}', 0);\n"]
        self._starts: list[int] = [0]  # message offset where each part starts
        self._owners: list[tuple[SqlFile | None, Statement | None]] = [(None, None)]
        self._numbered: list[tuple[SqlFile, Statement]] = []  # statement k+1 of the batch is _numbered[k]
        for f, stmts in files:
            self._add("BEGIN;\n" + _MARK_START, f, None)
            for stmt in stmts:
                self._numbered.append((f, stmt))
                self._add(stmt.sql, f, stmt)
                # The newline first: a statement may end in a `--` comment, which would swallow the `;`.
                self._add(f"\n;\nSELECT pg_catalog.setval('{PROGRESS}', {len(self._numbered)});\n", f, None)
            self._add(tail(f) + ";\n", f, None)
        self.sql = "".join(self._parts)

    def _add(self, text: str, f: SqlFile | None, stmt: Statement | None) -> None:
        self._starts.append(self._starts[-1] + len(self._parts[-1]))
        self._parts.append(text)
        self._owners.append((f, stmt))

    def failure(self, failed_file: SqlFile, done: int, position: int | None) -> Failure:
        """Attribute an error: by Postgres's 1-based `position` in the message when given, else by the marker count
        `done` (statements completed in this batch)."""
        if position:
            i = bisect.bisect_right(self._starts, position - 1) - 1
            f, stmt = self._owners[i]
            if f is not None:
                return Failure(f, stmt, position - 1 - self._starts[i] if stmt else None)
        if done < len(self._numbered) and self._numbered[done][0] is failed_file:
            return Failure(failed_file, self._numbered[done][1], None)
        return Failure(failed_file, None, None)  # its statements all ran: our tracking row or COMMIT failed


def batches(
    files: Sequence[tuple[SqlFile, list[Statement]]], max_files: int = MAX_FILES, max_chars: int = MAX_CHARS
) -> list[list[tuple[SqlFile, list[Statement]]]]:
    """Consecutive runs of at most `max_files` files and about `max_chars` characters."""
    out: list[list[tuple[SqlFile, list[Statement]]]] = []
    size = 0
    for item in files:
        if not out or len(out[-1]) >= max_files or size + len(item[0].text) > max_chars:
            out.append([])
            size = 0
        out[-1].append(item)
        size += len(item[0].text)
    return out
