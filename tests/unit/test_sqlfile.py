"""SQL file handling: normalisation, checksums, the directive, splitting, locations and collisions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from supervisor.errors import ConfigError, IntegrityRefusal, MigrationFailed
from supervisor.sqlfile import SqlFile, check_collisions, checksum_matches, list_sql_files, location, snippet


def _f(raw: bytes, name: str = "001.sql") -> SqlFile:
    return SqlFile(Path("db-init") / name, raw)


def test_checksum_ignores_bom_and_line_endings_but_not_whitespace():
    """BOM, CRLF and CR normalise away; any other change (even a space) is a change."""
    lf = _f(b"SELECT 1;\nSELECT 2;\n")
    assert _f(b"\xef\xbb\xbfSELECT 1;\r\nSELECT 2;\r\n").checksum == lf.checksum
    assert _f(b"SELECT 1;\rSELECT 2;\r").checksum == lf.checksum
    assert _f(b"SELECT 1; \nSELECT 2;\n").checksum != lf.checksum
    assert lf.checksum == "sha256:" + hashlib.sha256(b"SELECT 1;\nSELECT 2;\n").hexdigest()


def test_legacy_plain_hex_checksums_are_accepted():
    """The old runner's sha256sum of the raw bytes matches, and so does a plain hex of the normalised text."""
    raw = b"SELECT 1;\r\n"
    f = _f(raw)
    assert checksum_matches(hashlib.sha256(raw).hexdigest(), f)
    assert checksum_matches(f.checksum.removeprefix("sha256:"), f)
    assert not checksum_matches(hashlib.sha256(b"other").hexdigest(), f)
    assert not checksum_matches("md5:abc", f)


def test_directive_must_be_the_first_line():
    """Only a first-line `-- supervisor: no-transaction` counts, case and spacing aside."""
    assert _f(b"--  Supervisor:  No-Transaction \nVACUUM;").no_transaction
    assert not _f(b"SELECT 1;\n-- supervisor: no-transaction\n").no_transaction


def test_statements_are_split_by_the_parser_with_offsets():
    """Semicolons in strings, dollar quotes and comments do not split; offsets point at each statement."""
    text = "SELECT ';';\nDO $$ BEGIN PERFORM 1; END $$;\n-- c; c\nSELECT 2"
    stmts = _f(text.encode()).statements()
    assert [s.sql for s in stmts] == ["SELECT ';'", "DO $$ BEGIN PERFORM 1; END $$", "SELECT 2"]
    assert [location(text, s.offset) for s in stmts] == ["1:1", "2:1", "4:1"]


def test_syntax_error_is_reported_with_file_line_col_and_caret():
    """A parse error names file:line:col and shows the line with a caret."""
    with pytest.raises(MigrationFailed) as e:
        _f(b"SELECT 1;\n  SELEC 2;").statements()
    assert e.value.error_code == "SQL_SYNTAX"
    assert str(e.value).startswith('db-init/001.sql:2:3: syntax error: syntax error at or near "SELEC"')
    assert "  2 |   SELEC 2;\n    |   ^" in str(e.value)


def test_invalid_utf8_names_the_line():
    """A file that is not UTF-8 is a configuration error naming file and line."""
    with pytest.raises(ConfigError, match=r"db-init/001.sql:2: not valid UTF-8"):
        _ = _f(b"SELECT 1;\nSELECT '\xff';").text


def test_snippet_keeps_tabs_under_the_caret():
    """The caret lines up even after tabs."""
    text = "a\n\tSELECT x"
    assert snippet(text, text.index("x")) == "  1 | a\n  2 | \tSELECT x\n    | \t       ^"


def test_location_is_one_based():
    """Offsets map to 1-based line:col."""
    assert location("ab\ncd", 0) == "1:1"
    assert location("ab\ncd", 4) == "2:2"


def test_listing_is_bytewise_sorted_and_sql_only(tmp_path):
    """Only *.sql files, sorted by the bytes of their names (uppercase before lowercase, 10 before 9)."""
    for name in ("b.sql", "B.sql", "10.sql", "9.sql", "notes.txt"):
        (tmp_path / name).write_text("SELECT 1;")
    assert [f.name for f in list_sql_files(tmp_path)] == ["10.sql", "9.sql", "B.sql", "b.sql"]
    assert list_sql_files(tmp_path / "missing") == []


def test_collisions_name_both_paths():
    """The same basename in both folders is an integrity refusal listing both files."""
    with pytest.raises(IntegrityRefusal, match=r"001.sql .*db-init/001.sql, db-init-post/001.sql"):
        check_collisions([_f(b"")], [SqlFile(Path("db-init-post/001.sql"), b"")])
    check_collisions([_f(b"")], [SqlFile(Path("db-init-post/002.sql"), b"")])
