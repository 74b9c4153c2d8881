"""Messages for SQL failures: `file:line:col`, SQLSTATE, detail, hint, context and a caret; and the instructions
for a half-applied no-transaction file."""

from __future__ import annotations

import re

import asyncpg

from supervisor.ledger import Row
from supervisor.sqlfile import SqlFile, Statement, location, snippet
from supervisor.tablename import sql_literal, sql_table

__all__ = ["error_offset", "half_applied_message", "sql_error_message"]

_DO_LINE = re.compile(r"PL/pgSQL function inline_code_block line (\d+)")
_DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def error_offset(f: SqlFile, stmt: Statement, e: asyncpg.PostgresError, offset: int | None) -> int:
    """Where in the file the error is: Postgres's position in the statement, else the failing line of a DO block,
    else the statement's start."""
    if offset is not None:
        return stmt.offset + min(max(offset, 0), len(stmt.sql))
    in_do = _DO_LINE.search(getattr(e, "context", None) or "")
    body = _DOLLAR_QUOTE.search(stmt.sql) if in_do and stmt.sql[:2].upper() == "DO" else None
    if in_do and body:
        offset = stmt.offset + body.end()  # line 1 of the block is the line of its opening $$
        for _ in range(int(in_do.group(1)) - 1):
            offset = f.text.find("\n", offset) + 1
        while offset < len(f.text) and f.text[offset] in " \t":
            offset += 1
        return offset
    return stmt.offset


def sql_error_message(
    f: SqlFile, stmt: Statement, e: asyncpg.PostgresError, outcome: str, offset_in_stmt: int | None
) -> str:
    offset = error_offset(f, stmt, e, offset_in_stmt)
    parts = [
        f"{f.path}:{location(f.text, offset)}: ERROR {e.sqlstate}: {e.args[0] if e.args else e}",
        snippet(f.text, offset),
    ]
    for label in ("detail", "hint", "context"):
        value = getattr(e, label, None)
        if value:
            parts.append(f"{label.upper()}: {value}")
    parts.append(outcome)
    return "\n".join(parts)


def half_applied_message(f: SqlFile, row: Row, table: str) -> str:
    done, total = row.statements_done or 0, row.statements_total or "?"
    table, name = sql_table(table), sql_literal(f.name)
    return (
        f"{f.path} is half-applied: it is a no-transaction file and only {done} of {total} statements were recorded "
        f"as committed (status {row.status!r}) before the run that applied it stopped. It is not re-run "
        "automatically, because its committed statements would run twice. To resolve it:\n"
        f"  1. Check what statement {done + 1} onwards did in the database (a failed CREATE INDEX CONCURRENTLY "
        "leaves an INVALID index: SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid; drop it).\n"
        f"  2a. To run the whole file again: DELETE FROM {table} WHERE filename = {name};\n"
        f"  2b. If you completed it by hand: UPDATE {table} SET status = 'applied' WHERE filename = {name};\n"
        "Nothing else was applied in this run."
    )
