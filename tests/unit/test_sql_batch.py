"""Batches of transactional files: grouping, and mapping an error back to its file and statement."""

from __future__ import annotations

from pathlib import Path

from phases.sql_batch import Batch, batches
from supervisor.sqlfile import SqlFile, Statement


def _file(name: str, text: str) -> tuple[SqlFile, list[Statement]]:
    f = SqlFile(Path("db-init") / name, text.encode())
    return f, f.statements()


def _batch() -> Batch:
    return Batch([_file("1.sql", "SELECT 1;\nSELECT oops;"), _file("2.sql", "SELECT 2;")], lambda f: "COMMIT")


def test_message_wraps_each_file_in_its_own_transaction():
    """Each file: BEGIN, its statements each followed by a progress marker, then its tail (record + COMMIT)."""
    sql = _batch().sql
    assert sql.count("BEGIN;") == 2
    assert sql.count("COMMIT;") == 2
    assert "SELECT pg_catalog.setval('pg_temp.supervisor_progress', 3)" in sql


def test_position_maps_to_the_file_and_the_offset_in_its_statement():
    """A 1-based position in the message lands on the right statement, offset from its start."""
    b = _batch()
    pos = b.sql.index("oops") + 1
    at = b.failure(b.files[0], done=1, position=pos)
    assert at.file is b.files[0]
    assert at.statement is not None and at.statement.sql == "SELECT oops"
    assert at.offset_in_statement == len("SELECT ")


def test_marker_count_names_the_statement_when_postgres_gives_no_position():
    """Without a position, the count of completed statements picks the next one, if it is the failed file's."""
    b = _batch()
    at = b.failure(b.files[0], done=1, position=None)
    assert at.statement is not None and at.statement.sql == "SELECT oops"
    assert at.offset_in_statement is None
    tail = b.failure(b.files[0], done=2, position=None)
    assert tail.statement is None  # all of file 1 ran: the failure was in its tracking row or COMMIT


def test_batches_respect_file_and_size_caps():
    """Runs split at the file cap and the character cap, keeping order."""
    files = [_file(f"{i}.sql", "SELECT 1;") for i in range(5)]
    assert [len(b) for b in batches(files, max_files=2)] == [2, 2, 1]
    assert [len(b) for b in batches(files, max_chars=20)] == [2, 2, 1]
