"""First-line directives (`no-transaction`, `repeatable`): how they are read, what is refused, and what `lint` says."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.errors import ConfigError
from supervisor.sqlfile import SqlFile, check_directive, directive_problem, misplaced_directives
from tests.unit.test_lint import Project


def _f(text: str, name: str = "001.sql") -> SqlFile:
    return SqlFile(Path("db-init") / name, text.encode())


@pytest.mark.parametrize(
    "first_line",
    ["-- supervisor: repeatable", "--supervisor:repeatable", "  --  Supervisor :  REPEATABLE  "],
)
def test_repeatable_is_read_from_the_first_line_case_and_spacing_aside(first_line: str):
    """A first-line `-- supervisor: repeatable` makes a repeatable file, which is not a no-transaction one."""
    f = _f(f"{first_line}\nCREATE OR REPLACE VIEW v AS SELECT 1;")
    assert f.repeatable
    assert not f.no_transaction
    assert f.directive == "repeatable"
    assert directive_problem(f) is None
    check_directive(f)  # no refusal


def test_plain_and_no_transaction_files_are_not_repeatable():
    """No directive, a no-transaction directive, or a repeatable directive on a later line: not repeatable."""
    assert not _f("CREATE VIEW v AS SELECT 1;").repeatable
    assert _f("-- supervisor: no-transaction\nVACUUM;").no_transaction
    assert not _f("-- supervisor: no-transaction\nVACUUM;").repeatable
    assert not _f("-- views\n-- supervisor: repeatable\nCREATE VIEW v AS SELECT 1;").repeatable


@pytest.mark.parametrize(
    ("first_line", "expected"),
    [
        (
            "-- supervisor: repeateable",
            "unknown directive `repeateable`. Did you mean `-- supervisor: repeatable`?",
        ),
        ("-- supervisor: no_transaction", "Did you mean `-- supervisor: no-transaction`?"),
        ("-- supervisor: run-always", "unknown directive `run-always`. A file's first line may be"),
        ("-- supervisor:", "`-- supervisor:` names no directive."),
        ("-- supervisor: repeatable, no-transaction", "a file cannot be both repeatable and no-transaction"),
        ("-- supervisor: no-transaction repeatable", "a file cannot be both repeatable and no-transaction"),
    ],
)
def test_unknown_misspelt_or_combined_directives_are_refused_with_exit_2(first_line: str, expected: str):
    """An unknown directive is not silently a plain file: it is refused (exit 2, BAD_DIRECTIVE) at file:1:1, with
    the likely intended directive named; `repeatable` and `no-transaction` together are refused with the reason."""
    f = _f(f"{first_line}\nCREATE VIEW v AS SELECT 1;")
    assert f.directive is None and not f.repeatable and not f.no_transaction
    assert expected in (directive_problem(f) or "")
    with pytest.raises(ConfigError) as info:
        check_directive(f)
    assert info.value.code == 2
    assert info.value.error_code == "BAD_DIRECTIVE"
    assert info.value.message.startswith(f"db-init/001.sql:1:1: {directive_problem(f)}")


def test_ordinary_first_line_comments_are_no_directive():
    """A first-line comment that does not start with `supervisor:` is not a directive and not a problem."""
    for text in (
        "-- the supervisor: runs this\nSELECT 1;",
        "-- views\nSELECT 1;",
        "SELECT 1; -- supervisor: x",
    ):
        assert directive_problem(_f(text)) is None
        assert _f(text).directive is None


def test_a_directive_on_a_later_line_is_found_but_not_in_strings():
    """A `-- supervisor:` comment line after the first is reported at its offset; the same text inside a
    dollar-quoted body or a string literal is not a comment, so it is not reported."""
    text = (
        "-- views\n"
        "  -- supervisor: repeatable\n"
        "CREATE FUNCTION f() RETURNS int AS $$\n-- supervisor: repeatable\nSELECT 1 $$ LANGUAGE sql;\n"
        "SELECT 'a\n-- supervisor: no-transaction';\n"
    )
    found = misplaced_directives(_f(text))
    assert [offset for offset, _ in found] == [text.index("-- supervisor: repeatable")]
    assert found[0][1].startswith("`-- supervisor: repeatable` is not on the file's first line")
    assert misplaced_directives(_f("-- supervisor: repeatable\nSELECT 1;")) == []


def test_lint_reports_each_directive_problem_at_its_place(tmp_path: Path):
    """`lint`: a misspelt directive and a combined one at line 1, a later-line directive at its line, a
    non-transactional statement in a repeatable file with the right fix; a correct repeatable file is clean."""
    project = Project(tmp_path)
    project.pre("001.sql", "-- supervisor: repeateable\nCREATE OR REPLACE VIEW v AS SELECT 1;")
    project.pre("002.sql", "-- supervisor: repeatable no-transaction\nSELECT 1;")
    project.pre("003.sql", "-- my views\n-- supervisor: repeatable\nCREATE OR REPLACE VIEW w AS SELECT 1;")
    project.pre("004.sql", "-- supervisor: repeatable\nCREATE TABLE IF NOT EXISTS t (id int);\nVACUUM t;")
    project.pre("005.sql", "-- supervisor: repeatable\nCREATE OR REPLACE VIEW x AS SELECT 1;")
    found = project.lint()
    assert found[0].startswith("db-init/001.sql:1:1: error: unknown directive `repeateable`. Did you mean")
    assert found[1].startswith(
        "db-init/002.sql:1:1: error: a file cannot be both repeatable and no-transaction"
    )
    assert found[2].startswith(
        "db-init/003.sql:2:1: error: `-- supervisor: repeatable` is not on the file's first line"
    )
    assert found[3].startswith(
        "db-init/004.sql:3:1: error: VACUUM/ANALYZE cannot run inside a transaction, and a repeatable file runs in one"
    )
    assert len(found) == 4, found  # 005.sql is clean


def test_lint_warns_of_creates_that_fail_when_a_repeatable_file_re_runs(tmp_path: Path):
    """A plain CREATE of a view, function, trigger, table, index, sequence or schema fails the second run of a
    repeatable file; lint warns at the statement with the fix. OR REPLACE, IF NOT EXISTS, or a DROP of the same
    name earlier in the file re-run cleanly, and a plain file is not warned."""
    project = Project(tmp_path)
    project.pre("001.sql", (
        "-- supervisor: repeatable\n"
        "CREATE VIEW v AS SELECT 1;\n"
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
        "CREATE TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION g();\n"
        "CREATE INDEX t_i ON t (id);\n"
        "CREATE SCHEMA reports;\n"
        "DROP VIEW IF EXISTS w;\n"
        "CREATE VIEW w AS SELECT 2;\n"
        "CREATE OR REPLACE VIEW x AS SELECT 3;\n"
        "CREATE INDEX IF NOT EXISTS t_j ON t (id);\n"
    ))  # fmt: skip
    project.pre("002.sql", "CREATE VIEW plain AS SELECT 1;")
    found = project.lint()
    assert [line.split(": warning: ")[0] for line in found] == [
        "db-init/001.sql:2:1", "db-init/001.sql:3:1", "db-init/001.sql:4:1", "db-init/001.sql:5:1",
        "db-init/001.sql:6:1",
    ], found  # fmt: skip
    assert found[0].endswith(
        "CREATE VIEW v fails when this repeatable file re-runs, since v exists by then; use CREATE OR REPLACE VIEW, "
        "or drop it first (DROP ... IF EXISTS v)"
    )
    assert "CREATE OR REPLACE FUNCTION" in found[1]
    assert "CREATE OR REPLACE TRIGGER" in found[2]


def test_transaction_control_in_a_repeatable_file_is_not_told_to_become_no_transaction():
    """The fix offered for a COMMIT in a repeatable file cannot be the no-transaction directive, which a
    repeatable file may not have."""
    from supervisor.sqlfile import transaction_control

    f = _f("-- supervisor: repeatable\nCREATE OR REPLACE VIEW v AS SELECT 1;\nCOMMIT;")
    [hit] = transaction_control(f, f.statements())
    assert hit.refused
    assert "a repeatable file cannot be no-transaction" in hit.message
    assert "put `-- supervisor: no-transaction` on its first line" not in hit.message
