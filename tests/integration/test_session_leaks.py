"""Statements that would carry session state past their file, or undo the supervisor's own session state, are
refused before the phase runs (exit 4, SESSION_STATE, file:line:col), and `lint` reports them: otherwise the file
after them behaves differently in a cold boot (same connection) than in a later boot."""

from __future__ import annotations

import asyncpg
import pytest

from tests.conftest import Database, Layout, supervise
from tests.unit.test_lint import Project

PRE = ("migrate", "--only", "pre-schema")

LEAKS = [
    ("CREATE TEMP TABLE vehicles (id int);", "temporary object would outlive the file"),
    ("CREATE TEMPORARY TABLE scratch AS SELECT 1 AS x;", "temporary object would outlive the file"),
    ("CREATE TEMP VIEW v AS SELECT 1;", "temporary object would outlive the file"),
    ("CREATE TEMP SEQUENCE s;", "temporary object would outlive the file"),
    ("PREPARE q AS SELECT 1;", "prepared statement would outlive the file"),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1;", "cursor WITH HOLD would outlive the file"),
    ("DISCARD TEMP;", "DISCARD would drop the supervisor's own session state"),
    ("SELECT pg_advisory_unlock_all();", "would release the supervisor's phase lock"),
]


@pytest.mark.parametrize(("sql", "why"), LEAKS)
async def test_a_statement_that_outlives_its_file_is_refused_before_the_phase_runs(
    db: Database, conn: asyncpg.Connection, layout: Layout, sql: str, why: str
):
    layout.add("pre", "001_ok.sql", "CREATE TABLE t_ok (id int);")
    layout.add("pre", "002_leak.sql", f"CREATE TABLE t_before (id int);\n{sql}\n")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 4, r.stderr
    assert r.failure["error_code"] == "SESSION_STATE"
    assert "002_leak.sql:2:1: " in r.failure["error"] and why in r.failure["error"]
    assert "Nothing from the pre-schema phase was applied" in r.failure["error"]
    assert await conn.fetchval("SELECT to_regclass('t_ok')") is None  # refused before the first file


async def test_a_temporary_table_dropped_at_commit_is_fine(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """ON COMMIT DROP ends with the file's transaction: nothing reaches the next file, so it runs."""
    layout.add(
        "pre",
        "001.sql",
        "CREATE TEMP TABLE scratch (id int) ON COMMIT DROP;\nINSERT INTO scratch VALUES (1);",
    )
    layout.add("pre", "002.sql", "CREATE TABLE scratch (id int);")
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert await conn.fetchval("SELECT relpersistence FROM pg_class WHERE relname = 'scratch'") == b"p"


@pytest.mark.parametrize(("sql", "why"), LEAKS)
def test_lint_reports_each_at_file_line_col(tmp_path, sql: str, why: str):
    project = Project(tmp_path)
    project.pre("001.sql", f"-- a comment\n{sql}\n")
    findings = project.lint()
    assert len(findings) == 1 and findings[0].startswith("db-init/001.sql:2:1: error: "), findings
    assert why in findings[0]
