"""SQL migration files: discovery, normalisation, checksums, the no-transaction directive, statement splitting and
error locations. Pure logic, no database.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from supervisor.errors import ConfigError, IntegrityRefusal, MigrationFailed

__all__ = [
    "CHECKSUM_PREFIX",
    "SqlFile",
    "Statement",
    "check_collisions",
    "checksum_matches",
    "list_sql_files",
    "location",
    "require_folder",
    "snippet",
]

CHECKSUM_PREFIX = "sha256:"
_DIRECTIVE = re.compile(r"^\s*--\s*supervisor:\s*no-transaction\s*$", re.IGNORECASE)
_LEGACY = re.compile(r"[0-9a-f]{64}")  # the old runner's `sha256sum` output
_BOM = b"\xef\xbb\xbf"


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
    def no_transaction(self) -> bool:
        """True when the first line is `-- supervisor: no-transaction`."""
        return bool(_DIRECTIVE.match(self.text.split("\n", 1)[0]))

    def statements(self) -> list[Statement]:
        """The file split into statements by the real Postgres parser; a syntax error becomes `MigrationFailed`."""
        from pglast.parser import ParseError, split  # imported here: only needed when something is pending

        try:
            slices = split(self.text, with_parser=True, only_slices=True)
        except ParseError as e:
            offset = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], int) else 0
            raise MigrationFailed(
                f"{self.path}:{location(self.text, offset)}: syntax error: {e.args[0]}\n"
                f"{snippet(self.text, offset)}\nNothing was applied from this file; fix it and run again.",
                error_code="SQL_SYNTAX",
            ) from e
        return [Statement(self.text[s], s.start) for s in slices]


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
    if not folder.is_dir():
        raise ConfigError(
            f"{variable}: the folder {folder} ({folder.absolute()}) does not exist; create it, or point {variable} "
            "(or its flag) at it. Relative paths resolve against the working directory."
        )


def list_sql_files(folder: Path) -> list[SqlFile]:
    """The folder's `*.sql` files in byte-wise lexical order of their names, read once; none if it is missing."""
    if not folder.is_dir():
        return []
    paths = sorted(
        (p for p in folder.iterdir() if p.suffix == ".sql" and p.is_file()), key=lambda p: p.name.encode()
    )
    return [SqlFile(p, p.read_bytes()) for p in paths]


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
