"""Tracking-table names (`SUPERVISOR_TRACKING_TABLE`, `--tracking-table`): validated strictly, folded to lower case."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.errors import ConfigError
from supervisor.settings import Settings
from supervisor.tablename import MAX_PART_BYTES, parse_table_name, quote_table, table_name_problem

BASE = {"DB_CLIENT": "pg", "DB_HOST": "db", "DB_PORT": "5432", "DB_DATABASE": "d", "DB_USER": "u"}
_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_REST = _FIRST + "0123456789$"

parts = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_FIRST),
    st.text(alphabet=_REST, max_size=MAX_PART_BYTES - 1),
)
schemas = parts.filter(lambda p: not p.lower().startswith("pg_") and p.lower() != "information_schema")
names = st.one_of(parts, st.builds(lambda s, t: f"{s}.{t}", schemas, parts))
# Whitespace and control characters of every kind, the quotes, and a few look-alikes that are not ASCII.
bad_chars = st.one_of(
    st.sampled_from(list(" \t\n\r\x0b\x0c\x00\x1b\x7f\u00a0\u2028\u200b\ufeff\"'`")),
    st.characters(categories=["Cc", "Zs", "Zl", "Zp", "Cf"]),
)


@given(names)
def test_valid_names_are_accepted_folded_and_round_trip(name: str):
    """Every name of the documented alphabet is accepted as its lower-case form, which is accepted unchanged again
    and quotes to exactly its parts."""
    folded = parse_table_name(name, "SUPERVISOR_TRACKING_TABLE")
    assert folded == name.lower()
    assert parse_table_name(folded, "SUPERVISOR_TRACKING_TABLE") == folded
    quoted = quote_table(folded)
    assert re.findall(r'"([^"]*)"', quoted) == folded.split(".")
    assert quoted == ".".join(f'"{p}"' for p in folded.split("."))


@given(names, bad_chars, st.integers(min_value=0))
def test_whitespace_control_characters_and_quotes_are_refused_anywhere(name: str, bad: str, where: int):
    """A whitespace, control, format or quote character anywhere in a valid name makes it invalid (exit 2), and
    the message shows the value with escapes and names the variable."""
    at = where % (len(name) + 1)
    value = name[:at] + bad + name[at:]
    with pytest.raises(ConfigError) as e:
        parse_table_name(value, "SUPERVISOR_TRACKING_TABLE")
    assert e.value.code == 2 and e.value.error_code == "TRACKING_TABLE_NAME"
    assert e.value.message.startswith(f"SUPERVISOR_TRACKING_TABLE={value!r} is not a table name: ")
    assert "\n" not in e.value.message and "\r" not in e.value.message


@given(st.text(max_size=80))
def test_anything_accepted_is_of_the_documented_form(value: str):
    """Whatever random text is accepted is one or two ASCII identifier parts of at most 63 bytes."""
    if table_name_problem(value) is None:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?", value)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("migrations_applied\n", "ends in a newline"),
        ("migrations_applied\r\n", "ends in a newline"),
        ("", "it is empty"),
        (" migrations", "whitespace"),
        ("ops. migrations", "whitespace"),
        ("a.b.c", "3 dot-separated parts"),
        ("ops.", "empty part"),
        (".mig", "empty part"),
        ("ops..mig", "3 dot-separated parts"),
        ('"Mig"', "quote"),
        ("1mig", "starts with '1'"),
        ("$mig", "starts with '$'"),
        ("mig-table", "contains '-'"),
        ("a;drop", "contains ';'"),
        ("migraçao", "non-ASCII"),
        ("m" * (MAX_PART_BYTES + 1), "64 bytes long"),
        ("ops." + "m" * (MAX_PART_BYTES + 1), "64 bytes long"),
        ("pg_temp.mig", "reserved by Postgres"),  # a ledger that would vanish with every session
        ("PG_Catalog.mig", "reserved by Postgres"),
        ("information_schema.mig", "reserved by Postgres"),
    ],
)
def test_each_kind_of_bad_name_says_what_is_wrong(value: str, problem: str):
    """The message says which rule the value breaks, besides the rule as a whole and an example."""
    with pytest.raises(ConfigError) as e:
        parse_table_name(value, "--tracking-table")
    assert problem in e.value.message
    assert e.value.message.startswith(f"--tracking-table={value!r} is not a table name")
    assert "for example migrations_applied" in e.value.message


def test_longest_names_and_dollar_and_upper_case_are_accepted():
    """63-byte parts, `$` after the first character and upper case (folded) are fine."""
    longest = "m" * MAX_PART_BYTES
    assert parse_table_name(f"{longest}.{longest}", "X") == f"{longest}.{longest}"
    assert parse_table_name("Ops.Mig$1", "X") == "ops.mig$1"
    assert parse_table_name("_x", "X") == "_x"


def test_settings_refuse_a_trailing_newline_naming_the_variable():
    """The bug of issue 8: `mig\\n` from a YAML block scalar was a new table named "mig\\n"; now exit 2, with the
    newline visible in the message."""
    with pytest.raises(ConfigError) as e:
        Settings.load({**BASE, "SUPERVISOR_TRACKING_TABLE": "mig\n"})
    assert e.value.message.startswith(
        "SUPERVISOR_TRACKING_TABLE='mig\\n' is not a table name: it ends in a newline"
    )


def test_settings_name_the_flag_when_the_flag_is_bad():
    """`--tracking-table` is checked the same way, and the message names the flag, not the variable."""
    with pytest.raises(ConfigError) as e:
        Settings.load(
            {**BASE, "SUPERVISOR_TRACKING_TABLE": "fine"}, {"SUPERVISOR_TRACKING_TABLE": "ops.mig "}
        )
    assert e.value.message.startswith("--tracking-table='ops.mig ' is not a table name")


def test_settings_name_the_file_variable(tmp_path):
    """A value read from SUPERVISOR_TRACKING_TABLE_FILE (a ConfigMap made from a file) names that variable."""
    f = tmp_path / "table"
    f.write_text("ops.mig\n")
    with pytest.raises(ConfigError) as e:
        Settings.load({**BASE, "SUPERVISOR_TRACKING_TABLE_FILE": str(f)})
    assert e.value.message.startswith(
        "SUPERVISOR_TRACKING_TABLE (read from SUPERVISOR_TRACKING_TABLE_FILE)='ops.mig\\n' is not a table name"
    )


def test_settings_fold_to_lower_case():
    """The folded name is what the supervisor uses (and shows) everywhere."""
    assert (
        Settings.load({**BASE, "SUPERVISOR_TRACKING_TABLE": "Ops.Migrations"}).tracking_table
        == "ops.migrations"
    )
