"""psql-only syntax in a migration file, for `lint`: meta-commands (`\\i file`, `\\copy`, `\\set`, ...) and `COPY ...
FROM stdin` with the rows inline after it (what pg_dump writes). psql handles these on the client; the supervisor
sends each file's SQL to the server, which knows none of them.

A meta-command is found where the real parser stops at a backslash that starts a line, so a backslash inside a
string, a comment or a function body is never mistaken for one. The lines found are blanked (offsets kept) and the
text parsed again, so every such line is reported, and the rest of the file is still checked.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["COPY_STDIN", "parse_without_psql"]

_COMMAND = re.compile(r"\\[A-Za-z!?.]*")
_MAX_ROUNDS = 200  # parses per file; a file with more psql lines than this is reported up to here
_FIX = "the supervisor sends each file's SQL straight to the Postgres server (not through psql)"
_INCLUDE = (
    "is a psql meta-command, but {fix}, so it cannot include another file: put that file's SQL in this folder as a "
    "numbered file of its own (they run in name order), or paste it here"
)
_CLIENT_COPY = (
    "is a psql meta-command (psql reads the file on the client), but {fix}: load the rows with INSERT ... VALUES in "
    "this file, or use COPY ... FROM '/path' for a file on the database server (needs pg_read_server_files)"
)
_OTHER = "is a psql meta-command, but {fix}, which does not know it: remove it (psql :variables are not replaced either)"
COPY_STDIN = (
    f"COPY ... FROM stdin is psql syntax here (psql sends the rows that follow it), but {_FIX}, so there are no "
    "rows to read: load them with INSERT ... VALUES, or use COPY ... FROM '/path' for a file on the database server"
)


def _meta_message(command: str) -> str:
    if command in ("\\i", "\\ir", "\\include", "\\include_relative"):
        template = _INCLUDE
    elif command == "\\copy":
        template = _CLIENT_COPY
    else:
        template = _OTHER
    return f"`{command}` {template.format(fix=_FIX)}"


def _blank(text: str, start: int, end: int) -> str:
    """`text` with [start, end) turned into spaces, newlines kept, so offsets and line numbers stay put."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def _copy_from_stdin_before(text: str, line_start: int) -> bool:
    """Whether the SQL before `line_start` parses and ends in `COPY ... FROM stdin` (its rows follow inline)."""
    from pglast import ast, parse_sql
    from pglast.parser import ParseError

    try:
        stmts = parse_sql(text[:line_start])
    except ParseError:
        return False
    last = stmts[-1].stmt if stmts else None
    return isinstance(last, ast.CopyStmt) and bool(last.is_from) and last.filename is None


def parse_without_psql(text: str) -> tuple[list[Any], list[tuple[int, str]]]:
    """The file's statements (pglast RawStmt nodes) with psql-only lines left out, and `(offset, message)` for each
    meta-command found. A syntax error that is not psql's raises `ParseError`, located in the original text."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    found: list[tuple[int, str]] = []
    for _ in range(_MAX_ROUNDS):
        try:
            return list(parse_sql(text)), found
        except ParseError as e:
            offset = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], int) else None
            if offset is None:
                raise
            line_start = text.rfind("\n", 0, offset) + 1
            line_end = text.find("\n", offset)
            line_end = len(text) if line_end < 0 else line_end
            if text[line_start:offset].strip() == "" and text.startswith("\\", offset):
                m = _COMMAND.match(text, offset)
                found.append((offset, _meta_message(m.group() if m else "\\")))
                text = _blank(text, line_start, line_end)
            elif _copy_from_stdin_before(text, line_start):
                # The rows run to a line `\.` (or the end of the file); the COPY itself is reported by the caller.
                end = re.compile(r"^\\\.[ \t]*$", re.MULTILINE).search(text, line_start)
                text = _blank(text, line_start, end.end() if end else len(text))
            else:
                raise
    return list(parse_sql(text)), found
