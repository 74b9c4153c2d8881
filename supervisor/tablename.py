"""Table names from configuration (`SUPERVISOR_TRACKING_TABLE`, `--tracking-table`): validated strictly.

A name is `name` or `schema.name`. Each part looks like an unquoted SQL identifier restricted to ASCII: letters,
digits, `_` and `$`, not starting with a digit or `$`, at most 63 bytes (Postgres silently truncates longer names,
so two long names could meet in one table). Letters fold to lower case, as Postgres folds unquoted names:
`Migrations` and `migrations` are the same table, and the folded form is what the supervisor uses everywhere.
Anything else is refused rather than quoted: a value with a trailing newline (a YAML `|` block, a ConfigMap made
from a file) would otherwise be a second, empty ledger named `"mig\\n"`, and every file would run again.
"""

from __future__ import annotations

import re

from supervisor.errors import ConfigError

__all__ = [
    "MAX_PART_BYTES",
    "parse_table_name",
    "quote_table",
    "sql_literal",
    "sql_table",
    "table_name_problem",
]

MAX_PART_BYTES = 63  # NAMEDATALEN - 1
_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_QUOTES = "\"'`"
_BARE = re.compile(r"[a-z_][a-z0-9_]*")  # a name that needs no quotes, unless it is a keyword


def table_name_problem(raw: str) -> str | None:
    """Why `raw` is not an acceptable table name, in words; None when it is one."""
    if raw == "":
        return "it is empty"
    if raw.endswith(("\n", "\r")):
        return "it ends in a newline (a YAML `|` block or a file keeps it: use `|-`, or write the file with printf %s)"
    if any(c.isspace() or not c.isprintable() for c in raw):
        return "it contains whitespace or a control character"
    if any(c in _QUOTES for c in raw):
        return "it contains a quote; write the name unquoted (it is always quoted for you)"
    parts = raw.split(".")
    if len(parts) > 2:
        return f"it has {len(parts)} dot-separated parts; use name or schema.name"
    for part in parts:
        if part == "":
            return "it has an empty part (a leading, trailing or doubled dot)"
        if not part.isascii():
            return f"{part!r} contains a non-ASCII character"
        if not _PART.fullmatch(part):
            if part[0].isdigit() or part[0] == "$":
                return f"{part!r} starts with {part[0]!r}"
            bad = next(c for c in part if not (c.isalnum() or c in "_$"))
            return f"{part!r} contains {bad!r}"
        if len(part.encode()) > MAX_PART_BYTES:
            return f"{part!r} is {len(part.encode())} bytes long; Postgres keeps only {MAX_PART_BYTES}"
    if len(parts) == 2 and (parts[0].lower().startswith("pg_") or parts[0].lower() == "information_schema"):
        # Postgres reserves these schemas: pg_catalog and information_schema are the system's own, and a ledger in
        # pg_temp would vanish with every session, so every file would run again on the next boot.
        return f"{parts[0]!r} is a schema reserved by Postgres (pg_* and information_schema)"
    return None


def parse_table_name(raw: str, source: str) -> str:
    """The name folded to lower case, or `ConfigError` (exit 2) naming `source` (the variable or flag) and the fix."""
    problem = table_name_problem(raw)
    if problem is not None:
        raise ConfigError(
            f"{source}={raw!r} is not a table name: {problem}. Use name or schema.name, each part made of ASCII "
            f"letters, digits, _ and $, not starting with a digit or $, at most {MAX_PART_BYTES} bytes (letters "
            "fold to lower case, as in unquoted SQL); for example migrations_applied or ops.migrations_applied.",
            error_code="TRACKING_TABLE_NAME",
        )
    return raw.lower()


def quote_table(name: str) -> str:
    """`schema.table` as quoted identifiers; names fold to lower case as unquoted SQL identifiers do."""
    return ".".join(f'"{part.lower()}"' for part in name.split("."))


def sql_table(name: str) -> str:
    """The table as a person types it in SQL, for the repair statements in messages: each part bare where it can be
    (`migrations_applied`), double-quoted where Postgres needs it (`"order"`, `"user"`), as Postgres's own
    quote_ident does (anything but an unreserved keyword is quoted)."""
    from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

    keywords = RESERVED_KEYWORDS | COL_NAME_KEYWORDS | TYPE_FUNC_NAME_KEYWORDS
    parts = [p.lower() for p in name.split(".")]
    return ".".join(
        p if _BARE.fullmatch(p) and p not in keywords else '"' + p.replace('"', '""') + '"' for p in parts
    )


def sql_literal(value: str) -> str:
    """A standard SQL string literal (`'it''s'`), for the repair statements in messages."""
    return "'" + value.replace("'", "''") + "'"
