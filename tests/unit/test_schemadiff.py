"""Parsing the Directus dry-run and spotting destructive changes."""

from __future__ import annotations

import pytest

from supervisor.schemadiff import parse_dry_run

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
    with pytest.raises(ValueError, match="neither"):
        parse_dry_run("something else entirely")
