"""Transaction control inside SQL files, found with the real parser: what the runner refuses and `lint` reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.sqlfile import SqlFile, location, transaction_control
from tests.unit.test_lint import Project


def _found(sql: str) -> list[tuple[str, str, bool]]:
    """(line:col, command, refused) of each transaction-control statement that matters in `sql`."""
    f = SqlFile(Path("x.sql"), sql.encode())
    return [
        (location(f.text, t.offset), t.command, t.refused) for t in transaction_control(f, f.statements())
    ]


@pytest.mark.parametrize(
    ("sql", "command"),
    [
        ("BEGIN", "BEGIN"),
        ("begin transaction isolation level serializable", "BEGIN"),
        ("START TRANSACTION", "START TRANSACTION"),
        ("COMMIT", "COMMIT"),
        ("commit work", "COMMIT"),
        ("END", "END"),
        ("ROLLBACK", "ROLLBACK"),
        ("ABORT", "ABORT"),
        ("COMMIT AND CHAIN", "COMMIT AND CHAIN"),
        ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"),
        ("COMMIT PREPARED 'x'", "COMMIT PREPARED"),
        ("ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED"),
    ],
)
def test_a_transactional_file_may_not_open_or_end_transactions(sql: str, command: str):
    """Everything that opens or ends a transaction is refused in a transactional file, located at its line."""
    assert _found(f"CREATE TABLE t (id int);\n\n  {sql};\nINSERT INTO t VALUES (1);") == [
        ("3:3", command, True)
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SAVEPOINT a; INSERT INTO t VALUES (1); ROLLBACK TO SAVEPOINT a; RELEASE a",  # nested in the file's own
        "PREPARE ins AS INSERT INTO t VALUES ($1)",  # a prepared statement, not PREPARE TRANSACTION
        "DO $$ BEGIN PERFORM 1; END $$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN COMMIT; RETURN 1; END $$",
        "SELECT CASE WHEN true THEN 1 END AS begin",
        "-- COMMIT\nSELECT 'ROLLBACK'",
        'CREATE TABLE commit_log (begin_at timestamptz, "end" int)',
    ],
)
def test_harmless_statements_are_not_reported(sql: str):
    """Savepoints (nested inside the file's transaction), PREPARE of a statement, the words in bodies, strings,
    comments and names are not transaction control."""
    assert _found(sql) == []


def test_comments_before_the_statement_do_not_hide_it():
    """A line or block comment (nested, too) in front of COMMIT does not hide it from the check."""
    assert _found("SELECT 1;\n-- done\n/* a /* nested */ comment */ COMMIT;\nSELECT 2;") == [
        ("3:30", "COMMIT", True)
    ]


def test_in_a_no_transaction_file():
    """BEGIN would span the progress records, savepoints and PREPARE TRANSACTION need a transaction block: refused;
    COMMIT/ROLLBACK are no-ops (reported, not refused); COMMIT PREPARED belongs there."""
    sql = (
        "-- supervisor: no-transaction\nCOMMIT;\nBEGIN;\nSAVEPOINT a;\nROLLBACK;\nPREPARE TRANSACTION 'x';\n"
        "COMMIT PREPARED 'y';\nVACUUM;"
    )
    assert _found(sql) == [
        ("2:1", "COMMIT", False),
        ("3:1", "BEGIN", True),
        ("4:1", "SAVEPOINT", True),
        ("5:1", "ROLLBACK", False),
        ("6:1", "PREPARE TRANSACTION", True),
    ]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def test_lint_reports_each_at_file_line_col_with_what_to_do(project: Project):
    """`lint` reports transaction control at file:line:col, saying to remove it or use the directive."""
    project.pre("001.sql", "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\nSAVEPOINT s;\n")
    project.post(
        "002.sql",
        "-- supervisor: no-transaction\nCREATE INDEX CONCURRENTLY i ON a (id);\nEND;\nSTART TRANSACTION",
    )
    out = project.lint()
    pre = [line for line in out if line.startswith("db-init/")]
    post = [line for line in out if line.startswith("db-init-post/")]
    assert pre[0].startswith("db-init/001.sql:1:1: error: BEGIN would open a transaction inside the one")
    assert pre[1].startswith(
        "db-init/001.sql:3:1: error: COMMIT would end the transaction the supervisor runs"
    )
    assert all("Remove it" in line and "-- supervisor: no-transaction" in line for line in pre)
    assert post[0].startswith("db-init-post/002.sql:3:1: warning: END does nothing in a no-transaction file")
    assert post[1].startswith(
        "db-init-post/002.sql:4:1: error: START TRANSACTION would open a transaction spanning"
    )
    assert len(out) == 4, out
