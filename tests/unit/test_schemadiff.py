"""Parsing the Directus dry-run and spotting destructive changes; the parser reads every line or refuses."""

from __future__ import annotations

import pytest

from phases.schema import _parse
from supervisor.directus import CliResult
from supervisor.errors import DirectusStepFailed
from supervisor.schemadiff import UnreadableDryRun, parse_dry_run

SAMPLE = """[08:28:13.880] INFO: Extensions loaded
The following changes will be applied:

Collections:
  - Update articles
    - Set meta to [object Object]
  - Delete legacy
  - Create vehicles

Fields:
  - Update articles.title
    - Set meta to [object Object]
    - Set max_length to 100
  - Delete articles.body
  - Create authors.email
  - Delete devices.serial
  - Create devices.serial

System Fields:
  - Update directus_activity.timestamp
    - Set is_indexed to false

Relations:
  - Update articles.author \u2192 authors
    - Set on_delete to CASCADE
  - Delete articles.editor \u2192 authors
"""
HEAD = "[08:28:13.880] INFO: Extensions loaded\nThe following changes will be applied:\n\n"


def test_items_sections_and_details_are_parsed():
    """Every item is read with its section, kind, name, relation target and child lines; log lines are skipped."""
    diff = parse_dry_run(SAMPLE)
    names = [(c.section, c.kind, c.name) for c in diff.changes]
    assert names[:3] == [("collections", "Update", "articles"), ("collections", "Delete", "legacy"),
                         ("collections", "Create", "vehicles")]  # fmt: skip
    rel = diff.changes[-2]
    assert (rel.section, rel.name, rel.related, rel.details) == (
        "relations", "articles.author", "authors", ["Set on_delete to CASCADE"],
    )  # fmt: skip


def test_destructive_changes_are_marked():
    """Deleted collections and fields, index drops, type changes (including drop + create) are destructive;
    creates, meta updates and relation deletes are not."""
    diff = parse_dry_run(SAMPLE)
    marked = {c.name: c.destructive_reason for c in diff.destructive}
    assert marked == {
        "legacy": "drops the table and its rows",
        "articles.title": "changes the column type (Set max_length to 100)",
        "articles.body": "drops the column",
        "devices.serial": "changes the field's type (dropped and re-created)",
        "directus_activity.timestamp": "drops an index",
    }


@pytest.mark.parametrize(
    ("child", "reason"),
    [
        ("Set is_unique to false", "drops a unique constraint"),
        ("Remove is_unique", "drops a unique constraint (Remove is_unique)"),
        ("Remove is_indexed", "drops an index (Remove is_indexed)"),
        ("Set is_primary_key to false", "changes the primary key (Set is_primary_key to false)"),
        ("Set is_primary_key to true", "changes the primary key (Set is_primary_key to true)"),
        ("Set has_auto_increment to true", "changes the primary key (Set has_auto_increment to true)"),
        ("Set schema to null", "changes the column type (Set schema to null)"),
        ("Add data_type and set it to text", "changes the column type (Add data_type and set it to text)"),
    ],
)
def test_unique_key_and_schema_changes_are_destructive(child: str, reason: str):
    """Dropping a unique constraint, any primary-key change and any change of the column definition are
    destructive, each with a reason that names it."""
    diff = parse_dry_run(HEAD + f"Fields:\n  - Update tags.code\n    - {child}\n")
    assert [c.destructive_reason for c in diff.changes] == [reason]


@pytest.mark.parametrize(
    "child",
    ["Set is_unique to true", "Set is_indexed to true", "Set meta to [object Object]", "Set is_nullable to false",
     "Set default_value to draft", "Add options.font and set it to monospace", "Remove options.placeholder"],
)  # fmt: skip
def test_additive_and_meta_changes_are_not_destructive(child: str):
    """Adding a unique constraint or an index, meta and default changes keep every row and index."""
    assert parse_dry_run(HEAD + f"Fields:\n  - Update tags.code\n    - {child}\n").destructive == []


def test_several_reasons_are_all_named():
    """A field update that drops its index and changes its type lists both reasons."""
    diff = parse_dry_run(
        HEAD + "Fields:\n  - Update a.b\n    - Set is_indexed to false\n    - Set data_type to text\n"
    )
    assert diff.changes[0].destructive_reason == (
        "drops an index; changes the column type (Set data_type to text)"
    )


def test_names_with_spaces_are_read_verbatim():
    """The printer interpolates names as they are: `  - Delete my table` is a deletion of `my table`, and a field
    or relation name with spaces keeps them."""
    diff = parse_dry_run(
        HEAD + "Collections:\n  - Delete my table\n\nFields:\n  - Delete my table.my field\n\n"
        "Relations:\n  - Create my table.an owner \u2192 the owners\n"
    )  # fmt: skip
    got = [(c.name, c.collection, c.field_name, c.related) for c in diff.changes]
    assert got == [("my table", "my table", None, None), ("my table.my field", "my table", "my field", None),
                   ("my table.an owner", "my table", "an owner", "the owners")]  # fmt: skip
    assert [c.describe() for c in diff.destructive] == [
        "Delete collection my table",
        "Delete field my table.my field",
    ]


def test_collection_names_with_dots_are_one_table():
    """A collection item's name is the whole table name, dots included."""
    change = parse_dry_run(HEAD + "Collections:\n  - Delete a.b\n").changes[0]
    assert (change.collection, change.field_name) == ("a.b", None)


def test_no_changes_and_not_installed():
    """`No changes to apply.` is an empty diff; the not-installed message (which exits 0!) is recognised."""
    assert parse_dry_run("[..] INFO: No changes to apply.\n").empty
    assert parse_dry_run('{"level":30,"msg":"No changes to apply."}').empty
    assert not parse_dry_run(
        '[..] ERROR: Directus isn\'t installed on this database. Please run "directus bootstrap" first.'
    ).installed


def test_colour_codes_are_ignored():
    """ANSI colours (a TTY or FORCE_COLOR) do not break parsing."""
    diff = parse_dry_run(
        "The following changes will be applied:\n\nFields:\n  - \x1b[31mDelete\x1b[39m a.b\n"
    )
    assert [c.name for c in diff.destructive] == ["a.b"]


def test_unknown_output_is_an_error():
    """Output that is neither a diff nor 'no changes' is not guessed at."""
    with pytest.raises(UnreadableDryRun, match="neither"):
        parse_dry_run("something else entirely")
    with pytest.raises(UnreadableDryRun, match="neither"):
        parse_dry_run("[..] INFO: Nothing to do, No changes to apply. maybe\n")


# Each unreadable shape: the output after HEAD, and the 1-based line of the output that is quoted.
UNREADABLE = {
    "unknown verb": ("Collections:\n  - Drop legacy\n", 5, "unknown item verb 'Drop'"),
    "unknown section": ("Views:\n  - Delete v\n", 4, "before any section header"),
    "unknown section mid-list": ("Collections:\n  - Delete a\nViews:\n", 6, "neither a section header"),
    "log line after the marker": (
        "Collections:\n  - Delete a\n[12:00:00.000] INFO: Extensions loaded\n",
        6,
        "neither a section header",
    ),
    "item outside a section": ("  - Delete legacy\n", 4, "before any section header"),
    "child outside an item": ("Fields:\n    - Set is_indexed to false\n", 5, "no item above it"),
    "child under a Delete": ("Fields:\n  - Delete a.b\n    - Set x to y\n", 6, "only Update has children"),
    "child after a blank line": (
        "Fields:\n  - Update a.b\n\n    - Set is_unique to false\n",
        7,
        "after a blank line",
    ),
    "unknown child kind": ("Fields:\n  - Update a.b\n    - Rename x to y\n", 6, "neither a section header"),
    "Remove in relations": ("Relations:\n  - Update a.b\n    - Remove x\n", 6, "a 'Remove' child"),
    "Delete of a system field": ("System Fields:\n  - Delete directus_users.email\n", 5, "unknown item verb"),
    "field without a dot": ("Fields:\n  - Delete body\n", 5, "not <collection>.<field>"),
    "item without a name": ("Collections:\n  - Delete \n", 5, "without a name"),
    "two arrows": ("Relations:\n  - Delete a.b \u2192 c \u2192 d\n", 5, "more than one"),
    "sections out of order": ("Relations:\n  - Delete a.b\n\nFields:\n  - Delete a.c\n", 7, "order"),
    "section twice": ("Fields:\n  - Delete a.b\n\nFields:\n  - Delete a.c\n", 7, "repeated"),
    "empty section": ("System Fields:\n\nRelations:\n  - Delete a.b\n", 6, "lists no item"),
    "header without a blank line": (
        "Fields:\n  - Delete a.b\nRelations:\n  - Delete a.c\n",
        6,
        "not preceded",
    ),
    "second marker": ("Fields:\n  - Delete a.b\nThe following changes will be applied:\n", 6, "neither"),
    "tab-indented item": ("Fields:\n\t- Delete a.b\n", 5, "neither a section header"),
}


@pytest.mark.parametrize("case", UNREADABLE, ids=list(UNREADABLE))
def test_unreadable_lines_are_refused_with_their_line(case: str):
    """Every line after the marker is a section header, an item or a child of an item in the printer's grammar;
    anything else is refused, quoting the line and its number in the output."""
    body, line_no, reason = UNREADABLE[case]
    text = HEAD + body
    with pytest.raises(UnreadableDryRun, match=reason) as info:
        parse_dry_run(text)
    assert info.value.line_no == line_no
    assert info.value.line == text.split("\n")[line_no - 1]


@pytest.mark.parametrize(
    ("body", "reason"),
    [("", "no section and no change"), ("\n\n", "no section and no change"),
     ("Fields:\n", r"the last section \(fields\) lists no item")],
)  # fmt: skip
def test_marker_followed_by_nothing_readable_is_refused(body: str, reason: str):
    """A marker with no item after it is a refusal, never an empty diff."""
    with pytest.raises(UnreadableDryRun, match=reason):
        parse_dry_run(HEAD + body)


@pytest.mark.parametrize(
    "before",
    ["[..] INFO: No changes to apply.\n", "[..] ERROR: Directus isn't installed on this database.\n"],
)
def test_contradictory_output_is_refused(before: str):
    """A list of changes together with 'no changes' or 'not installed' is not a format Directus prints."""
    with pytest.raises(UnreadableDryRun, match="both"):
        parse_dry_run(before + HEAD + "Fields:\n  - Delete a.b\n")


def _result(stdout: str) -> CliResult:
    argv = ("node", "run.js", "schema", "apply", "--dry-run", "--yes", "/app/snapshots/schema.yaml")
    return CliResult(argv, 0, stdout, "", 10)


def test_phase_turns_an_unreadable_line_into_exit_8():
    """The phase refuses with exit 8 and SCHEMA_DIFF_UNREADABLE, quoting the line and its number, saying nothing
    was applied or recorded and what to do."""
    with pytest.raises(DirectusStepFailed) as info:
        _parse(_result(HEAD + "Collections:\n  - Drop legacy\n"))
    err = info.value
    assert (err.code, err.error_code) == (8, "SCHEMA_DIFF_UNREADABLE")
    assert "line 5 of its output, '  - Drop legacy': unknown item verb 'Drop'" in err.message
    assert "The snapshot was not applied and nothing was recorded" in err.message
    assert "upgrade the supervisor, or report the line with the Directus version" in err.message


def test_phase_verification_dry_run_does_not_claim_nothing_was_applied():
    """After an apply, an unreadable verifying dry-run says the apply happened but is not recorded."""
    with pytest.raises(DirectusStepFailed) as info:
        _parse(_result(HEAD), applied=True)
    assert info.value.error_code == "SCHEMA_DIFF_UNREADABLE"
    assert "not applied" not in info.value.message
    assert "it is not recorded and the next boot checks again" in info.value.message
