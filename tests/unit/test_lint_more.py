"""`lint`, more: LANGUAGE sql function bodies and table names passed as strings in pre-schema, SQL words (not parse
node names) in messages, and psql-only syntax named as such."""

from __future__ import annotations

from pathlib import Path

import pytest
from pglast import parse_sql

from supervisor.errors import MigrationFailed
from supervisor.sqlfile import SqlFile
from supervisor.sqlwords import _WORDS, sql_words
from tests.unit.test_lint import Project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty project with a small snapshot (organizations, vehicles, organization_users)."""
    return Project(tmp_path)


def _errors(found: list[str]) -> list[tuple[str, str]]:
    """(file:line:col, message) of each error."""
    return [tuple(line.split(": error: ", 1)) for line in found if ": error: " in line]  # type: ignore[misc]


def test_language_sql_function_bodies_are_checked(project: Project):
    """Postgres checks a LANGUAGE sql body at CREATE FUNCTION, so a pre-schema function reading a snapshot table
    fails on a fresh database: quoted, dollar-quoted (LANGUAGE after the body) and BEGIN ATOMIC bodies are errors,
    located on the table; a plpgsql body (checked only when called) and a body reading its own file's table pass."""
    project.pre("001.sql", (
        "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM vehicles';\n"
        "CREATE FUNCTION g() RETURNS bigint AS $$\n  SELECT count(*)\n  FROM public.organizations\n$$ LANGUAGE sql;\n"
        "CREATE PROCEDURE p() LANGUAGE sql\nBEGIN ATOMIC\n  DELETE FROM organization_users;\nEND;\n"
        "CREATE FUNCTION h() RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN RETURN (SELECT count(*) FROM vehicles); "
        "END $$;\n"
        "CREATE TABLE mine (id int);\n"
        "CREATE FUNCTION m() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM mine';\n"
    ))  # fmt: skip
    errors = _errors(project.lint())
    assert [where for where, _ in errors] == [
        "db-init/001.sql:1:74",
        "db-init/001.sql:4:8",
        "db-init/001.sql:8:15",
    ]
    assert errors[0][1].startswith(
        "SELECT in the LANGUAGE sql body of CREATE FUNCTION (checked at creation) references table vehicles "
        "(created by the snapshot), but pre-schema runs before schema-apply"
    )
    assert errors[1][1].startswith("SELECT in the LANGUAGE sql body of CREATE FUNCTION (checked at creation) "
                                   "references table organizations")  # fmt: skip
    assert errors[2][1].startswith("CREATE PROCEDURE (its BEGIN ATOMIC or RETURN body is checked at creation) "
                                   "references table organization_users")  # fmt: skip
    assert all("move this statement to the post-schema folder" in m for _, m in errors)


def test_table_names_passed_as_strings(project: Project):
    """Rule: in pre-schema, a string argument of a function call (positional or named, at any depth, DO blocks
    included) that equals a snapshot table's or a directus_* table's name, bare or `public.`-qualified, is an
    error at the call; other strings, other schemas, and post-schema calls pass."""
    project.pre("001.sql", (
        "SELECT create_hypertable('vehicles', 'time');\n"
        "SELECT create_hypertable(relation => 'public.Vehicles', time_column_name => 'ts');\n"
        "SELECT set_config('app.note', 'not a table', false), pg_catalog.format('%s', 'other.vehicles');\n"
        "DO $$\nBEGIN\n  PERFORM add_retention_policy('directus_activity', INTERVAL '1 day');\nEND $$;\n"
    ))  # fmt: skip
    project.post("101.sql", "SELECT create_hypertable('vehicles', 'time');\n")
    errors = _errors(project.lint())
    assert [where for where, _ in errors] == [
        "db-init/001.sql:1:8",
        "db-init/001.sql:2:8",
        "db-init/001.sql:6:33",
    ]
    assert errors[0][1].startswith("SELECT (the string 'vehicles' passed to create_hypertable()) references table "
                                   "vehicles (created by the snapshot)")  # fmt: skip
    assert "(the string 'public.Vehicles' passed to create_hypertable())" in errors[1][1]
    assert "directus_activity (a Directus system table)" in errors[2][1]


def test_messages_speak_sql_not_parse_node_names(project: Project):
    """GRANT, REVOKE, CREATE MATERIALIZED VIEW, CREATE POLICY, CREATE TABLE AS, ALTER ... OWNER TO, DROP VIEW...:
    the statement is named as it is written, never as pglast's node class."""
    project.pre("001.sql", (
        "GRANT SELECT ON vehicles TO PUBLIC;\n"
        "REVOKE ALL ON organizations FROM PUBLIC;\n"
        "CREATE MATERIALIZED VIEW mv AS SELECT * FROM organizations;\n"
        "CREATE POLICY p ON vehicles USING (true);\n"
        "CREATE TABLE copy AS SELECT * FROM vehicles;\n"
        "REFRESH MATERIALIZED VIEW mv;\n"
        "LOCK TABLE vehicles;\n"
        "TRUNCATE organization_users;\n"
    ))  # fmt: skip
    kinds = [m.split(" references")[0] for _, m in _errors(project.lint())]
    assert kinds == ["GRANT", "REVOKE", "CREATE MATERIALIZED VIEW", "CREATE POLICY", "CREATE TABLE AS", "LOCK",
                     "TRUNCATE"]  # fmt: skip
    assert not any("Stmt" in k for k in kinds)


def test_every_statement_node_has_sql_words():
    """Every statement node class of this pglast is mapped; an unknown one falls back to words from its name."""
    import pglast.ast

    nodes = {n for n in dir(pglast.ast) if n.endswith("Stmt") and n != "RawStmt"}
    assert nodes <= set(_WORDS), sorted(nodes - set(_WORDS))

    class AlterFooBarStmt:
        pass

    assert sql_words(AlterFooBarStmt()) == "ALTER FOO BAR"
    words = [sql_words(r.stmt) for r in parse_sql(
        "ALTER VIEW v OWNER TO x; ALTER TABLE t RENAME TO u; DROP INDEX i; SELECT 1 INTO t3; ANALYZE t; "
        "CREATE UNIQUE INDEX ON t (a); RESET x; GRANT r TO u; CREATE AGGREGATE a (int) (sfunc = f, stype = int)"
    )]  # fmt: skip
    assert words == ["ALTER VIEW", "ALTER TABLE RENAME", "DROP INDEX", "SELECT", "ANALYZE", "CREATE UNIQUE INDEX",
                     "RESET", "GRANT (role)", "CREATE AGGREGATE"]  # fmt: skip


def test_psql_only_syntax_is_named_with_its_fix(project: Project):
    """`\\i`, `\\copy`, other meta-commands and `COPY ... FROM stdin` with inline rows are each reported at their
    line as psql syntax with the fix, not as a bare syntax error, and the rest of the file is still checked (the
    ALTER TABLE after them); a backslash inside a string or function body is not a meta-command."""
    project.pre("001.sql", (
        "\\i other.sql\n"
        "COPY positions FROM stdin;\n1\tx\n2\ty\n\\.\n"
        "  \\set ON_ERROR_STOP on\n"
        "\\copy positions FROM 'rows.csv' CSV\n"
        "SELECT E'\\n\\\\i not a command', $$\n\\i neither$$;\n"
        "ALTER TABLE vehicles ADD COLUMN x int;\n"
    ))  # fmt: skip
    errors = _errors(project.lint())
    where = [w for w, _ in errors]
    assert where == ["db-init/001.sql:1:1", "db-init/001.sql:2:1", "db-init/001.sql:6:3", "db-init/001.sql:7:1",
                     "db-init/001.sql:10:13"]  # fmt: skip
    messages = [m for _, m in errors]
    assert messages[0].startswith("`\\i` is a psql meta-command, but the supervisor sends each file's SQL straight "
                                  "to the Postgres server (not through psql), so it cannot include another file")  # fmt: skip
    assert messages[1].startswith("COPY ... FROM stdin is psql syntax here")
    assert "INSERT ... VALUES" in messages[1]
    assert messages[2].startswith("`\\set` is a psql meta-command")
    assert messages[3].startswith("`\\copy` is a psql meta-command (psql reads the file on the client)")
    assert messages[4].startswith("ALTER TABLE references table vehicles")
    assert not any("syntax error" in m for m in messages)


def test_copy_from_stdin_without_rows_and_a_real_syntax_error(project: Project):
    """COPY ... FROM stdin is reported even with no rows after it; a syntax error that is not psql's stays one."""
    project.pre("001.sql", "COPY positions FROM STDIN;\n")
    project.pre("002.sql", "SELECT 1;\nSELEC 2;\n")
    errors = _errors(project.lint())
    assert errors[0][0] == "db-init/001.sql:1:1"
    assert errors[0][1].startswith("COPY ... FROM stdin is psql syntax here")
    assert errors[1] == ("db-init/002.sql:2:1", 'syntax error: syntax error at or near "SELEC"')


def test_the_runner_names_a_psql_meta_command_too(tmp_path: Path):
    """The runner's syntax error for a `\\i` line says it is a psql meta-command and points to lint."""
    f = SqlFile(tmp_path / "001.sql", b"SELECT 1;\n\\i other.sql\n")
    with pytest.raises(MigrationFailed) as err:
        f.statements()
    assert err.value.error_code == "SQL_SYNTAX"
    assert err.value.message.startswith(
        f'{tmp_path / "001.sql"}:2:1: syntax error: syntax error at or near "\\" (a psql meta-command: the '
        "supervisor sends SQL to the server, not through psql;"
    )
