"""SQL migration files: discovery, normalisation, checksums, the first-line directives (`no-transaction`,
`repeatable`), statement splitting, transaction control in a file, and error locations. Pure logic, no database.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from supervisor.errors import ConfigError, IntegrityRefusal, MigrationFailed

__all__ = [
    "CHECKSUM_PREFIX",
    "DIRECTIVES",
    "NO_TRANSACTION",
    "REPEATABLE",
    "SqlFile",
    "Statement",
    "TransactionControl",
    "check_collisions",
    "check_directive",
    "checksum_matches",
    "classify",
    "directive_problem",
    "list_sql_files",
    "location",
    "misplaced_directives",
    "read_sql_file",
    "require_folder",
    "session_leak",
    "session_leaks",
    "snippet",
    "sql_paths",
    "transaction_control",
    "unreadable",
]

CHECKSUM_PREFIX = "sha256:"
NO_TRANSACTION, REPEATABLE = "no-transaction", "repeatable"
DIRECTIVES = (NO_TRANSACTION, REPEATABLE)
# A `-- supervisor: ...` comment line. On the first line it is the file's directive, and must name a known one; on a
# later line it is ignored by the runner, so it is reported (lint; the runner for a file it is about to run).
_DIRECTIVE_LINE = re.compile(r"[ \t]*--[ \t]*supervisor[ \t]*:(.*)", re.IGNORECASE)
_LATER_DIRECTIVE = re.compile(r"\n([ \t]*--[ \t]*supervisor[ \t]*:[^\n]*)", re.IGNORECASE)
_LEGACY = re.compile(r"[0-9a-f]{64}")  # the old runner's `sha256sum` output
_BOM = b"\xef\xbb\xbf"
# Every transaction-control statement starts with one of these words; what else starts with them (PREPARE name AS,
# a block comment first) is told apart by the parser. Only these statements are parsed a second time.
_LEADING = re.compile(r"(?:\s+|--[^\n]*)*")
_WORD = re.compile(r"[A-Za-z]+")
_TXN_WORD = re.compile(
    r"(?:BEGIN|START|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE)\b", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a file: its text and where it starts (0-based character offset in the normalised text)."""

    sql: str
    offset: int


@dataclass(frozen=True)
class SqlFile:
    """One `*.sql` file of a phase folder, read once; `text` is normalised (no BOM, LF line ends)."""

    path: Path
    raw: bytes = field(repr=False)

    @property
    def name(self) -> str:
        """The basename: the tracking table's key."""
        return self.path.name

    @cached_property
    def text(self) -> str:
        """UTF-8 text with the BOM stripped and CRLF/CR turned into LF; the form that is checksummed and run."""
        try:
            text = self.raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = self.raw[: e.start].count(b"\n") + 1
            raise ConfigError(
                f"{self.path}:{line}: not valid UTF-8 (byte {e.start}); save the file as UTF-8"
            ) from e
        return text.replace("\r\n", "\n").replace("\r", "\n")

    @cached_property
    def checksum(self) -> str:
        """`sha256:<hex>` of the normalised text, so line-ending or BOM changes by an editor do not count."""
        return CHECKSUM_PREFIX + hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @cached_property
    def directive(self) -> str | None:
        """The known directive on the first line (`no-transaction` or `repeatable`), else None. An unknown one also
        reads as None here; `check_directive` refuses it before anything runs."""
        m = _DIRECTIVE_LINE.fullmatch(_first_line(self.text))
        value = m.group(1).strip().lower() if m else ""
        return value if value in DIRECTIVES else None

    @property
    def no_transaction(self) -> bool:
        """True when the first line is `-- supervisor: no-transaction` (case and spacing aside)."""
        return self.directive == NO_TRANSACTION

    @property
    def repeatable(self) -> bool:
        """True when the first line is `-- supervisor: repeatable`: the file re-runs whenever its content changes."""
        return self.directive == REPEATABLE

    def statements(self) -> list[Statement]:
        """The file split into statements by the real Postgres parser; a syntax error becomes `MigrationFailed`."""
        from pglast.parser import ParseError, split  # imported here: only needed when something is pending

        try:
            slices = split(self.text, with_parser=True, only_slices=True)
        except ParseError as e:
            offset = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], int) else 0
            line_start = self.text.rfind("\n", 0, offset) + 1
            psql = (
                " (a psql meta-command: the supervisor sends SQL to the server, not through psql; `python -m "
                "supervisor lint` names each such line and its fix)"
                if self.text.startswith("\\", offset) and not self.text[line_start:offset].strip()
                else ""
            )
            raise MigrationFailed(
                f"{self.path}:{location(self.text, offset)}: syntax error: {e.args[0]}{psql}\n"
                f"{snippet(self.text, offset)}\nNothing was applied from this file; fix it and run again.",
                error_code="SQL_SYNTAX",
            ) from e
        return [Statement(self.text[s], s.start) for s in slices]


def _first_line(text: str) -> str:
    end = text.find("\n")
    return text if end < 0 else text[:end]


_DIRECTIVE_FIX = (
    "A file's first line may be `-- supervisor: no-transaction` (statements that cannot run in a transaction) or "
    "`-- supervisor: repeatable` (re-run whenever the file changes), or no directive at all."
)


def directive_problem(f: SqlFile) -> str | None:
    """What is wrong with the first line's `-- supervisor:` directive, or None (no directive, or a known one).

    An unknown or misspelt directive is refused rather than read as a plain file: `repeateable` would otherwise make
    a file apply-once that its author meant to re-run. The two directives do not combine: a repeatable file re-runs
    whole, in one transaction with its tracking row, which is what `no-transaction` gives up.
    """
    m = _DIRECTIVE_LINE.fullmatch(_first_line(f.text))
    if not m:
        return None
    value = m.group(1).strip().lower()
    if value in DIRECTIVES:
        return None
    words = set(re.split(r"[\s,;+&]+|\band\b", value)) - {""}
    if {NO_TRANSACTION, REPEATABLE} <= words:
        return (
            "a file cannot be both repeatable and no-transaction: a repeatable file re-runs whole, in one "
            "transaction with its tracking row, so a failure leaves the previous version in place. Move the "
            "statements that cannot run in a transaction into a no-transaction file of their own."
        )
    if not value:
        return f"`-- supervisor:` names no directive. {_DIRECTIVE_FIX}"
    close = difflib.get_close_matches(value, DIRECTIVES, n=1, cutoff=0.6)
    hint = f" Did you mean `-- supervisor: {close[0]}`?" if close else ""
    return f"unknown directive `{m.group(1).strip()}`.{hint} {_DIRECTIVE_FIX}"


def check_directive(f: SqlFile) -> None:
    """Refuse (exit 2) a file whose first-line directive is unknown, misspelt or combined (`directive_problem`)."""
    why = directive_problem(f)
    if why:
        raise ConfigError(
            f"{f.path}:1:1: {why} Nothing was applied; `python -m supervisor lint` checks every file's directive.",
            error_code="BAD_DIRECTIVE",
        )


def misplaced_directives(f: SqlFile) -> list[tuple[int, str]]:
    """(offset, message) of each `-- supervisor:` comment line after the first: the runner reads directives from
    the first line only, so such a file would silently run without it. Text in a string or a dollar-quoted body
    that merely looks like one is told apart by the real Postgres lexer (only when the cheap search finds one)."""
    # (offset of the `--`, the comment's text)
    hits = [(f.text.index("--", m.start(1)), m.group(1).strip()) for m in _LATER_DIRECTIVE.finditer(f.text)]
    if not hits:
        return []
    from pglast.parser import scan

    try:
        comments = {t.start for t in scan(f.text) if t.name == "SQL_COMMENT"}
    except Exception:  # noqa: BLE001 (a file the lexer cannot read fails its parse; report what the search found)
        comments = None
    why = (
        "is not on the file's first line, so the supervisor ignores it (directives are read from the first line "
        "only). Move it to line 1, or reword the comment."
    )
    return [(offset, f"`{line}` {why}") for offset, line in hits if comments is None or offset in comments]


@dataclass(frozen=True, slots=True)
class TransactionControl:
    """A transaction-control statement (BEGIN, COMMIT, ...) in a file, and what the supervisor makes of it."""

    offset: int  # where it starts in the file's text
    command: str  # e.g. "COMMIT", "START TRANSACTION", "PREPARE TRANSACTION"
    refused: bool  # True: the runner refuses the file, lint reports an error; False: a no-op, a lint warning
    message: str  # what it would do and what to do instead


_OPENS = "would open a transaction inside the one the supervisor already runs this file in"
_ENDS = (
    "would end the transaction the supervisor runs this file in: the statements before it would be committed (or "
    "discarded) apart from the file's tracking row, and an error after it would leave the file partly applied while "
    "it is reported as rolled back"
)
_REMOVE = (
    "Remove it: the supervisor wraps each file in its own transaction and commits it together with the file's "
    "tracking row. If the file really must control transactions itself, put `-- supervisor: no-transaction` on its "
    "first line (its statements then run one by one, each committing on its own)."
)
_REMOVE_REPEATABLE = (
    "Remove it: the supervisor runs a repeatable file whole, in one transaction together with its tracking row, and "
    "a repeatable file cannot be no-transaction. Move statements that must control transactions themselves to a "
    "file of their own whose first line is `-- supervisor: no-transaction`."
)
_IN_BLOCK = (
    "needs a transaction block, but in a no-transaction file each statement runs on its own, so it would fail or do "
    "nothing at run time"
)
_NOT_IN_BLOCK = (
    "cannot run inside the transaction the supervisor runs this file in. Put it in a file whose first line is "
    "`-- supervisor: no-transaction`."
)
_SPANS = (
    "would open a transaction spanning the following statements of this no-transaction file and the progress "
    "records the supervisor writes between them, so a crash would lose the record of what committed"
)
_NO_OP = (
    "does nothing in a no-transaction file (each statement commits on its own; Postgres only warns that there is no "
    "transaction in progress); remove it"
)
_NT_FIX = (
    "Remove it, or remove the `-- supervisor: no-transaction` line so the whole file runs in one transaction."
)


def _classify(
    kind: int, chain: bool, first: str, no_transaction: bool, repeatable: bool = False
) -> tuple[str, bool, str] | None:
    """(command, refused, message) for a TransactionStmt of `kind` (pglast's TransactionStmtKind), or None when it is
    harmless here.

    In a transactional file everything that opens or ends a transaction is refused. SAVEPOINT, RELEASE and ROLLBACK TO
    are allowed there: they work on subtransactions nested inside the file's own transaction, and whatever they do,
    the file's work still commits or rolls back as one, with its tracking row. In a no-transaction file each statement
    commits on its own (autocommit): BEGIN/START would open a transaction that spans the following statements and the
    supervisor's progress records in between, so it is refused; SAVEPOINT, RELEASE, ROLLBACK TO and PREPARE
    TRANSACTION need a transaction block, so they are refused as certain failures or no-ops; COMMIT/END/ROLLBACK/ABORT
    are no-ops there (Postgres warns "there is no transaction in progress"), reported as warnings; COMMIT PREPARED and
    ROLLBACK PREPARED are what such a file is for.
    """
    names = {
        0: first or "BEGIN", 1: "START TRANSACTION", 2: first or "COMMIT", 3: first or "ROLLBACK", 4: "SAVEPOINT",
        5: "RELEASE SAVEPOINT", 6: "ROLLBACK TO SAVEPOINT", 7: "PREPARE TRANSACTION", 8: "COMMIT PREPARED",
        9: "ROLLBACK PREPARED",
    }  # fmt: skip
    command = names[kind] + (" AND CHAIN" if chain else "")
    if not no_transaction:
        remove = _REMOVE_REPEATABLE if repeatable else _REMOVE
        if kind in (0, 1):
            return command, True, f"{command} {_OPENS}. {remove}"
        if kind in (2, 3, 7):
            return command, True, f"{command} {_ENDS}. {remove}"
        if kind in (8, 9):
            return command, True, f"{command} {_NOT_IN_BLOCK}"
        return None  # SAVEPOINT, RELEASE, ROLLBACK TO: nested inside the file's transaction
    if kind in (0, 1):
        return command, True, f"{command} {_SPANS}. {_NT_FIX}"
    if kind in (4, 5, 6, 7):
        return command, True, f"{command} {_IN_BLOCK}. {_NT_FIX}"
    if kind in (2, 3):
        return command, False, f"{command} {_NO_OP}"
    return None  # COMMIT PREPARED / ROLLBACK PREPARED cannot run in a transaction block: this is their place


def transaction_control(f: SqlFile, stmts: list[Statement]) -> list[TransactionControl]:
    """The file's transaction-control statements that matter, found with the real parser (a cheap look at each
    statement's first word first, so only candidates are parsed again)."""
    from pglast import ast, parse_sql

    found = []
    for stmt in stmts:
        start = _code_start(stmt.sql)
        if not (stmt.sql.startswith("/*", start) or _TXN_WORD.match(stmt.sql, start)):
            continue
        node = parse_sql(stmt.sql)[0].stmt
        if isinstance(node, ast.TransactionStmt):
            hit = classify(node, stmt.sql, f.no_transaction, f.repeatable)
            if hit:
                found.append(TransactionControl(stmt.offset, *hit))
    return found


# Statements that leave something in the session after their file (so the next file of the same boot would start
# differently from the same file in a later boot), or that undo the supervisor's own session state. Only statements
# holding one of these words are parsed again.
_LEAK_WORD = re.compile(r"\b(?:DISCARD|TEMP|TEMPORARY|PREPARE|HOLD|pg_advisory_unlock_all)\b", re.IGNORECASE)
_ON_COMMIT_DROP = 3  # pglast's OnCommitAction.ONCOMMIT_DROP
_CURSOR_OPT_HOLD = 0x20
_LEAK_FIX = (
    "Each file must start from the same session state whether or not another file ran before it in the same boot "
    "(the supervisor runs many files on one connection)"
)


def session_leak(node: Any, sql: str) -> str | None:
    """Why statement `node` (text `sql`) would carry state past its file or undo the supervisor's session, or None."""
    kind = type(node).__name__
    if kind == "DiscardStmt":
        return (
            "DISCARD would drop the supervisor's own session state (its temporary statement counter; DISCARD ALL also "
            "its phase lock) between two of its statements. Remove it: the supervisor resets the session between "
            "files itself."
        )
    if "pg_advisory_unlock_all" in sql.lower():
        return (
            "pg_advisory_unlock_all() would release the supervisor's phase lock, so the files after it would run "
            "unprotected against another replica. Release only your own locks, with pg_advisory_unlock(key)."
        )
    if _lasting_temporary(kind, node):
        return (
            f"this temporary object would outlive the file and be seen by the next file in the same boot only "
            f"(temporary objects come first in the search path). {_LEAK_FIX}: give a temporary table ON COMMIT DROP "
            "(in a transactional file), or use a regular table and drop it at the end of the file."
        )
    if kind == "PrepareStmt":
        return f"a prepared statement would outlive the file. {_LEAK_FIX}: run the statement directly."
    if kind == "DeclareCursorStmt" and (node.options or 0) & _CURSOR_OPT_HOLD:
        return (
            f"a cursor WITH HOLD would outlive the file. {_LEAK_FIX}: declare it without HOLD, or close it."
        )
    return None


def _lasting_temporary(kind: str, node: Any) -> bool:
    """A temporary table, view or sequence that stays after its transaction (a table with ON COMMIT DROP does not)."""
    if kind == "CreateStmt":
        return bool(node.relation.relpersistence == "t" and node.oncommit != _ON_COMMIT_DROP)
    if kind == "CreateTableAsStmt":
        return bool(node.into.rel.relpersistence == "t" and node.into.onCommit != _ON_COMMIT_DROP)
    if kind == "ViewStmt":
        return bool(node.view.relpersistence == "t")
    if kind == "CreateSeqStmt":
        return bool(node.sequence.relpersistence == "t")
    return False


def session_leaks(stmts: list[Statement]) -> list[tuple[int, str]]:
    """(offset, message) of each statement that would carry session state past its file (see `session_leak`)."""
    from pglast import parse_sql

    found = []
    for stmt in stmts:
        if _LEAK_WORD.search(stmt.sql):
            why = session_leak(parse_sql(stmt.sql)[0].stmt, stmt.sql)
            if why:
                found.append((stmt.offset, why))
    return found


def classify(
    node: Any, sql: str, no_transaction: bool, repeatable: bool = False
) -> tuple[str, bool, str] | None:
    """(command, refused, message) for a pglast `TransactionStmt` whose text is `sql`, or None when harmless."""
    word = _WORD.match(sql, _code_start(sql))
    first = word.group().upper() if word else ""
    return _classify(int(node.kind), bool(node.chain), first, no_transaction, repeatable)


def _code_start(sql: str) -> int:
    """Offset of the first character after leading blanks and `--` comments."""
    m = _LEADING.match(sql)
    return m.end() if m else 0


def checksum_matches(stored: str, file: SqlFile) -> bool:
    """Whether a stored checksum fits the file: ours, or the old shell runner's plain sha256 hex of the raw bytes.

    The old runner hashed the bytes as they were on disk then. A file converted since between CRLF and LF, or given
    or stripped of a BOM, is unchanged under our rule, so it must match too: a legacy hex is compared with the
    file's raw bytes and with the four raw forms its normalised text plausibly had (LF or CRLF line ends, with or
    without a UTF-8 BOM). Mixed line endings cannot be reconstructed; such a file counts as changed.
    """
    if stored == file.checksum:
        return True
    return bool(_LEGACY.fullmatch(stored)) and stored in _legacy_digests(file)


def _legacy_digests(file: SqlFile) -> Iterator[str]:
    # A generator, so `in` stops at the first match: most legacy files match their raw bytes.
    yield hashlib.sha256(file.raw).hexdigest()
    yield file.checksum.removeprefix(CHECKSUM_PREFIX)
    crlf = file.text.replace("\n", "\r\n").encode("utf-8")
    for body in (crlf, _BOM + file.text.encode("utf-8"), _BOM + crlf):
        yield hashlib.sha256(body).hexdigest()


def require_folder(folder: Path, variable: str) -> None:
    """Refuse a phase folder that does not exist (exit 2), naming the variable that sets it."""
    if not _is_dir(folder, variable):
        raise ConfigError(
            f"{variable}: the folder {folder} ({folder.absolute()}) does not exist; create it, or point {variable} "
            "(or its flag) at it. Relative paths resolve against the working directory.",
            error_code="FOLDER_MISSING",
        )


def unreadable(path: Path, e: OSError, what: str) -> ConfigError:
    """Exit 2 for a file or folder the supervisor may not read (a ConfigMap's mode, an image's non-root user)."""
    who = f"uid {os.geteuid()}" if hasattr(os, "geteuid") else "the supervisor's user"
    return ConfigError(
        f"{path}: cannot read this {what}: {e.strerror or type(e).__name__}. Make it readable by the user the "
        f"supervisor runs as ({who}): for example chmod a+r (a+rx for a folder), or a Kubernetes volume's "
        "defaultMode: 0444 (0555 for folders), or the image's USER.",
        error_code="FILE_UNREADABLE",
    )


def _is_dir(folder: Path, variable: str) -> bool:
    try:
        return folder.is_dir()
    except OSError as e:  # is_dir() answers False for "not there", raises for "may not look"
        raise unreadable(folder, e, f"folder ({variable})") from e


def sql_paths(folder: Path) -> list[Path]:
    """The folder's `*.sql` entries in byte-wise lexical order of their names; none if it is missing.

    A `*.sql` symbolic link whose target is missing is refused (exit 2) rather than skipped: it is a file the user
    meant to ship."""
    try:
        if not folder.is_dir():
            return []
        entries = [p for p in folder.iterdir() if p.suffix == ".sql"]
        for p in entries:
            if p.is_symlink() and not p.exists():
                raise ConfigError(
                    f"{p}: this SQL file is a symbolic link to {os.readlink(p)}, which does not exist; fix the link "
                    "or remove it.",
                    error_code="FILE_UNREADABLE",
                )
        return sorted((p for p in entries if p.is_file()), key=lambda p: p.name.encode())
    except OSError as e:
        raise unreadable(folder, e, "folder") from e


def read_sql_file(path: Path) -> SqlFile:
    """The file, read once; an unreadable one is refused (exit 2) naming it."""
    try:
        return SqlFile(path, path.read_bytes())
    except OSError as e:
        raise unreadable(path, e, "SQL file") from e


def list_sql_files(folder: Path) -> list[SqlFile]:
    """The folder's `*.sql` files in byte-wise lexical order of their names, read once; none if it is missing."""
    return [read_sql_file(p) for p in sql_paths(folder)]


def check_collisions(pre: list[SqlFile], post: list[SqlFile]) -> None:
    """Refuse the same basename in both folders: the tracking table is keyed by basename."""
    both = sorted({f.name for f in pre} & {f.name for f in post})
    if both:
        where = ", ".join(f"{f.path}" for f in pre + post if f.name in both)
        raise IntegrityRefusal(
            f"the same file name is in both SQL folders: {', '.join(both)} ({where}). The tracking table is keyed by "
            "file name, so rename one of them (for example with a distinct number prefix). Nothing was applied.",
            error_code="BASENAME_COLLISION",
        )


def location(text: str, offset: int) -> str:
    """`line:col` (1-based) of a 0-based character offset."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"{line}:{col}"


def snippet(text: str, offset: int, context: int = 1) -> str:
    """The line at `offset` with `context` lines around it and a caret under the column."""
    offset = max(0, min(offset, len(text)))
    lines = text.split("\n")
    line_no = text.count("\n", 0, offset)
    col = offset - (text.rfind("\n", 0, offset) + 1)
    first, last = max(0, line_no - context), min(len(lines) - 1, line_no)
    width = len(str(last + 1))
    out = [f"  {i + 1:>{width}} | {lines[i]}" for i in range(first, last + 1)]
    pad = "".join("\t" if c == "\t" else " " for c in lines[line_no][:col])  # keep tabs so the caret lines up
    out.append(f"  {'':>{width}} | {pad}^")
    return "\n".join(out)
