"""Property-based tests (hypothesis) of the pure SQL-file logic: statement splitting, position-to-line mapping (in a
file, and from a batch message back to its file), and checksum normalisation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import asyncpg
from hypothesis import given, settings
from hypothesis import strategies as st

from phases.sql_batch import Batch
from phases.sql_errors import error_offset
from supervisor.sqlfile import SqlFile, location, snippet

# No example database: nothing is written to the working tree, and a failure prints its example anyway.
PROPERTY = settings(deadline=None, database=None, max_examples=150)

_IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True).map(lambda s: f"t_{s}")
# Literal text: anything but NUL (Postgres refuses it), CR (normalised to LF), and lone surrogates.
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00\r"), max_size=20)
_DOLLAR_BODY = _TEXT.filter(lambda s: "$" not in s)

_STATEMENT = st.one_of(
    st.integers(-(10**9), 10**9).map(lambda n: f"SELECT {n}"),
    _IDENT.map(lambda t: f"CREATE TABLE {t} (id int PRIMARY KEY, label text)"),
    st.tuples(_IDENT, st.integers(0, 99), _TEXT).map(
        lambda a: f"INSERT INTO {a[0]} VALUES ({a[1]}, '{a[2].replace(chr(39), chr(39) * 2)}')"
    ),
    _DOLLAR_BODY.map(lambda body: f"SELECT $${body}$$"),
    _DOLLAR_BODY.map(lambda body: f"DO $fx$ BEGIN PERFORM 1; RAISE NOTICE '%', $${body}$$; END $fx$"),
    st.integers(0, 9).map(lambda n: f"SELECT {n} /* a; comment */ + 1"),
    _IDENT.map(lambda t: f'SELECT "col;{t}" FROM {t}'),
)
# What may stand between statements (after the semicolon): whitespace and comments, which may hold `;`.
_GAP = st.lists(
    st.sampled_from(
        [" ", "\n", "\t", "\r\n", "\n\n", "-- note; here\n", "/* c; -- */", "/* a /* nested */ b */"]
    ),
    max_size=4,
).map("".join)


@st.composite
def _files(draw: st.DrawFn) -> tuple[str, list[str], list[int]]:
    """A file text, its statements and where each starts (in the normalised text)."""
    stmts = draw(st.lists(_STATEMENT, min_size=1, max_size=8))
    text = draw(_GAP)
    starts = []
    for i, stmt in enumerate(stmts):
        starts.append(len(text.replace("\r\n", "\n")))
        text += stmt
        last = i == len(stmts) - 1
        if not last or draw(st.booleans()):
            text += ";" + draw(_GAP)
        else:
            text += draw(st.sampled_from(["", "\n", "  \n\t"]))  # no semicolon: whitespace only after it
    return text, stmts, starts


def _file(text: str, name: str = "001.sql") -> SqlFile:
    return SqlFile(Path("db-init") / name, text.encode())


@PROPERTY
@given(_files())
def test_splitting_gives_back_the_statements_joined(case: tuple[str, list[str], list[int]]):
    """Statements joined with any whitespace and comments (holding semicolons), with or without a final semicolon,
    split back into exactly those statements, each at its own offset."""
    text, stmts, starts = case
    got = _file(text).statements()
    assert [s.sql for s in got] == stmts
    assert [s.offset for s in got] == starts


@PROPERTY
@given(
    st.lists(_STATEMENT, min_size=1, max_size=6), _GAP, st.sampled_from(["-- trailing; note", "-- ;", "--"])
)
def test_a_last_statement_ending_in_a_comment_without_semicolon_is_a_statement(
    stmts: list[str], gap: str, comment: str
):
    """A file whose last statement ends in a `--` comment and no semicolon keeps that statement, comment and all."""
    got = _file((";" + gap).join(stmts) + " " + comment).statements()
    assert [s.sql for s in got] == [*stmts[:-1], f"{stmts[-1]} {comment}"]


def _direct(text: str, offset: int) -> str:
    before = text[: max(0, min(offset, len(text)))].split("\n")
    return f"{len(before)}:{len(before[-1]) + 1}"


_ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r"), max_size=200)


@PROPERTY
@given(_ANY_TEXT, st.data())
def test_an_offset_maps_to_its_line_and_column(text: str, data: st.DataObject):
    """Any character offset (and any out of range, clamped) maps to the line:col a direct count gives, and the
    snippet shows that line with the caret under that column."""
    offset = data.draw(st.integers(-5, len(text) + 5))
    assert location(text, offset) == _direct(text, offset)
    line, col = map(int, location(text, offset).split(":"))
    shown = snippet(text, offset, context=0).split("\n")
    assert shown[0].endswith(f"{line} | {text.split(chr(10))[line - 1]}")
    caret = shown[-1].split(" | ", 1)[1]
    assert caret == "".join("\t" if c == "\t" else " " for c in text.split("\n")[line - 1][: col - 1]) + "^"


_TAIL = st.sampled_from(["", " /* ; */", "\n  || 'y'", "\t|| $$;\n$$"])


@st.composite
def _batch_cases(draw: st.DrawFn) -> tuple[list[SqlFile], int, int]:
    """Several files of marked statements; a statement of the batch and a character in it."""
    files = []
    for i in range(draw(st.integers(1, 4))):
        stmts = [f"SELECT 'fx{i}_{j}'{draw(_TAIL)} AS {draw(_IDENT)}" for j in range(draw(st.integers(1, 4)))]
        gaps = [draw(_GAP) for _ in stmts]
        files.append(
            _file(draw(_GAP) + "".join(f"{s};{g}" for s, g in zip(stmts, gaps, strict=True)), f"{i:03}.sql")
        )
    total = sum(len(f.statements()) for f in files)
    k = draw(st.integers(0, total - 1))
    return files, k, draw(st.integers(0, 200))


@PROPERTY
@given(_batch_cases())
def test_an_error_position_in_a_batch_maps_back_to_its_file_line_and_column(
    case: tuple[list[SqlFile], int, int],
):
    """Postgres reports an error position in the batch message (many files, BEGIN/markers/tracking SQL between);
    mapped back, it names the right file and statement, and the right line:col of that file; with no position,
    the marker count names the statement."""
    files, k, char = case
    run = [(f, f.statements()) for f in files]
    batch = Batch(run, lambda f: f"INSERT INTO tracking VALUES ('{f.name}');\nCOMMIT")
    f, stmt = [(f, s) for f, stmts in run for s in stmts][k]
    char %= len(stmt.sql)
    assert batch.sql.count(stmt.sql) == 1  # its 'fxI_J' literal makes it unique
    position = batch.sql.index(stmt.sql) + char + 1  # 1-based, as Postgres reports it
    failure = batch.failure(f, k, position)
    assert failure.file is f
    assert failure.statement == stmt
    assert failure.offset_in_statement == char
    e = asyncpg.exceptions.DivisionByZeroError("division by zero")
    at = error_offset(f, stmt, e, failure.offset_in_statement)
    assert location(f.text, at) == _direct(f.text, stmt.offset + char)
    by_marker = batch.failure(f, k, None)
    assert (by_marker.file, by_marker.statement) == (f, stmt)


@PROPERTY
@given(st.lists(_TEXT, min_size=1, max_size=6), st.booleans())
def test_checksum_ignores_line_endings_and_bom_only(lines: list[str], bom: bool):
    """LF, CRLF and CR endings and a BOM give one checksum, that of the LF text; any other byte changes it."""
    lf = "\n".join(lines).encode()
    forms = [lf, lf.replace(b"\n", b"\r\n"), lf.replace(b"\n", b"\r")]
    if bom:
        forms = [b"\xef\xbb\xbf" + raw for raw in forms]
    sums = {SqlFile(Path("x.sql"), raw).checksum for raw in forms}
    assert sums == {"sha256:" + hashlib.sha256(lf).hexdigest()}
    assert SqlFile(Path("x.sql"), lf + b" ").checksum not in sums
