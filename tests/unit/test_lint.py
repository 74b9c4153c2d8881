"""`lint`, offline: each behaviour on a small layout of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.lint import lint
from supervisor.settings import Settings
from tests.conftest import ROOT

SNAPSHOT = """version: 1
directus: 12.4.0
vendor: postgres
collections:
  - collection: organizations
    schema: {name: organizations}
  - collection: vehicles
    schema: {name: vehicles}
  - collection: organization_users
    schema: {name: organization_users}
  - collection: a_folder
    schema: null
fields: []
systemFields: []
relations: []
"""


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "db-init").mkdir()
        (root / "db-init-post").mkdir()
        (root / "snapshots").mkdir()
        self.snapshot(SNAPSHOT)

    def pre(self, name: str, sql: str | bytes) -> None:
        (self.root / "db-init" / name).write_bytes(sql.encode() if isinstance(sql, str) else sql)

    def post(self, name: str, sql: str) -> None:
        (self.root / "db-init-post" / name).write_text(sql)

    def snapshot(self, text: str) -> None:
        (self.root / "snapshots" / "schema.yaml").write_text(text)

    def lint(self) -> list[str]:
        s = Settings.load({
            "SUPERVISOR_DB_INIT_DIR": str(self.root / "db-init"),
            "SUPERVISOR_DB_INIT_POST_DIR": str(self.root / "db-init-post"),
            "SUPERVISOR_SNAPSHOT": str(self.root / "snapshots" / "schema.yaml"),
        }, need_db=False)  # fmt: skip
        return [f.render().replace(str(self.root) + "/", "") for f in lint(s)]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty project with a small snapshot (organizations, vehicles, organization_users)."""
    return Project(tmp_path)


def test_the_seed_bug_is_caught(project: Project):
    """The seed's ordering bug: a UNIQUE constraint on a junction the snapshot creates, in pre-schema."""
    project.pre(
        "001_junction_unique_constraints.sql",
        "-- constraints\nALTER TABLE organization_users\n"
        "  ADD CONSTRAINT organization_users_org_user_unique UNIQUE (organizations_id, directus_users_id);\n",
    )
    expected = (
        "db-init/001_junction_unique_constraints.sql:2:13: error: ALTER TABLE references table organization_users "
        "(created by the snapshot), but pre-schema runs before schema-apply, so on a fresh database it does not "
        "exist yet: move this statement to the post-schema folder (db-init-post)"
    )
    assert project.lint() == [expected]


def test_every_kind_of_reference_in_pre_schema(project: Project):
    """CREATE INDEX, foreign keys, triggers, COMMENT ON, INSERT/UPDATE, schema-qualified names and directus_*
    tables are all ordering errors in pre-schema; the table the file creates itself is not."""
    project.pre("001.sql", (
        "CREATE INDEX v_idx ON vehicles (id);\n"
        "CREATE TABLE trips (id int, vehicle_id int REFERENCES vehicles (id));\n"
        "CREATE TRIGGER t AFTER INSERT ON organizations FOR EACH ROW EXECUTE FUNCTION f();\n"
        "COMMENT ON TABLE vehicles IS 'fleet';\n"
        "COMMENT ON COLUMN public.organizations.name IS 'x';\n"
        "INSERT INTO public.vehicles (id) VALUES (1);\n"
        "UPDATE directus_settings SET project_name = 'x';\n"
        "INSERT INTO trips VALUES (1, 1);\n"
    ))  # fmt: skip
    found = project.lint()
    kinds = [line.split(": error: ")[1].split(" references")[0] for line in found]
    assert kinds == ["CREATE INDEX", "CREATE TABLE (foreign key)", "CREATE TRIGGER", "COMMENT ON TABLE", "COMMENT ON COLUMN",
                     "INSERT", "UPDATE"]  # fmt: skip
    assert [line.split(":")[1] for line in found] == ["1", "2", "3", "4", "5", "6", "7"]
    assert "directus_settings (a Directus system table)" in found[6]


def test_statements_inside_do_blocks_are_checked(project: Project):
    """The seed's guarded form (a DO block with `'t'::regclass` and ALTER TABLE inside) is caught, at the lines
    that use the table; system catalogs in post-schema are not warned about."""
    project.pre("001.sql", (
        "DO $$\nBEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_constraint\n"
        "                 WHERE conrelid = 'organization_users'::regclass) THEN\n"
        "    ALTER TABLE organization_users ADD CONSTRAINT u UNIQUE (a, b);\n  END IF;\nEND $$;\n"
    ))  # fmt: skip
    project.post("101.sql", "DO $$ BEGIN PERFORM 1 FROM pg_constraint; END $$;")
    found = project.lint()
    assert [line.split(": error: ")[0] for line in found] == ["db-init/001.sql:3:3", "db-init/001.sql:5:17"]
    assert found[1].split(": error: ")[1].startswith("ALTER TABLE in DO references table organization_users")


def test_tables_of_other_schemas_and_pre_created_tables_pass(project: Project):
    """A table in another schema, or one pre-schema creates (like positions), is not the snapshot's."""
    project.pre(
        "001.sql",
        "CREATE TABLE positions (id int);\nCREATE INDEX p ON positions (id);\n"
        "ALTER TABLE ops.vehicles ADD COLUMN x int;",
    )
    assert project.lint() == []


def test_post_schema_reference_to_an_unknown_table_is_a_warning(project: Project):
    """post-schema may use snapshot and pre-schema tables; anything else is a warning (exit stays 0)."""
    project.pre("001.sql", "CREATE TABLE positions (id int);")
    project.post(
        "101.sql",
        "ALTER TABLE vehicles ADD CONSTRAINT u UNIQUE (id);\nCREATE INDEX ON positions (id);\n"
        "CREATE INDEX ON vehicels (id);",
    )
    expected = (
        "db-init-post/101.sql:3:17: warning: CREATE INDEX references table vehicels, which neither the snapshot "
        "nor a pre-schema file creates"
    )
    assert project.lint() == [expected]


def test_statements_that_cannot_run_in_a_transaction(project: Project):
    """CIC, VACUUM, ALTER SYSTEM, CREATE DATABASE need the directive; with it, several statements are fine."""
    project.pre(
        "001.sql",
        "CREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY i ON t (id);\nVACUUM t;\n"
        "ALTER SYSTEM SET work_mem = '8MB';\nCREATE DATABASE x;\nANALYZE t;",
    )
    project.pre("002.sql", "-- supervisor: no-transaction\nCREATE INDEX CONCURRENTLY j ON t (id);\nVACUUM t;")
    found = project.lint()
    assert [(line.split(":")[1], line.split(": error: ")[1].split(" cannot")[0]) for line in found] == [
        ("2", "CREATE INDEX CONCURRENTLY"), ("3", "VACUUM/ANALYZE"), ("4", "ALTER SYSTEM"), ("5", "CREATE DATABASE"),
    ]  # fmt: skip
    assert "-- supervisor: no-transaction" in found[0]


def test_syntax_error_is_located(project: Project):
    """The parser's message at file:line:col."""
    project.pre("001.sql", "SELECT 1;\n  SELEC 2;")
    assert project.lint() == ['db-init/001.sql:2:3: error: syntax error: syntax error at or near "SELEC"']


def test_integrity(project: Project):
    """Same name in both folders, non-UTF-8 and empty files are errors; other files are warnings."""
    project.pre("001.sql", "SELECT 1;")
    project.post("001.sql", "SELECT 2;")
    project.pre("002.sql", b"SELECT '\xff';")
    project.pre("003.sql", "-- nothing here\n")
    (project.root / "db-init" / "README.md").write_text("notes")
    found = project.lint()
    assert found == [
        (
            "db-init-post/001.sql:1:1: error: 001.sql is in both SQL folders; the tracking table is keyed by file "
            "name, so rename one"
        ),
        "db-init/002.sql:1:1: error: not valid UTF-8 (byte 8); save the file as UTF-8",
        "db-init/003.sql:1:1: error: the file has no SQL statement; delete it or add one",
        "db-init/README.md:1:1: warning: not a .sql file: the supervisor ignores it",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("vendor: postgres", "vendor: mysql"), "vendor is 'mysql', not 'postgres'"),
        (("systemFields: []\n", ""), "Directus 12.4.0 snapshots need `systemFields`"),
        (("collections:\n", "collections: [\n"), "the snapshot is not valid YAML"),
    ],
)
def test_snapshot_checks(project: Project, change: tuple[str, str], message: str):
    """The snapshot parses, is for postgres, and has systemFields when its version needs them."""
    project.snapshot(SNAPSHOT.replace(*change, 1))
    found = project.lint()
    assert len(found) == 1 and message in found[0] and found[0].startswith("snapshots/schema.yaml:")


def test_cli_exit_codes_and_json(project: Project):
    """Exit 0 clean, 1 with errors, 2 on a usage error; --json puts the findings alone on stdout."""
    env = {"SUPERVISOR_DB_INIT_DIR": "db-init", "SUPERVISOR_DB_INIT_POST_DIR": "db-init-post",
           "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "supervisor", "lint", *args], cwd=project.root, env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip

    assert run().returncode == 0
    project.pre("001.sql", "ALTER TABLE vehicles ADD COLUMN x int;")
    bad = run("--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["errors"] == 1 and report["findings"][0]["line"] == 1 and report["findings"][0]["col"] == 13
    assert run("--bogus").returncode == 2


def test_shipped_content_lints_clean():
    """The project's own db-init/, db-init-post/ and snapshot have no findings."""
    out = subprocess.run([sys.executable, "-m", "supervisor", "lint"], cwd=ROOT, capture_output=True, text=True,
                         check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert out.returncode == 0, out.stdout
    assert out.stdout.strip() == "0 error(s), 0 warning(s)"
