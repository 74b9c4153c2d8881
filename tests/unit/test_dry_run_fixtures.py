"""The parser against dry-runs captured from the real Directus versions (tests/fixtures/dry_run/<version>/, made by
scripts/capture_dry_runs.py): each parses to exactly the changes its case made, with the right ones destructive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.schemadiff import UnreadableDryRun, multiline_values, parse_dry_run

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "dry_run"
VERSIONS = ("11.17.4", "12.4.0")

DROPS_INDEX = "drops an index"
SYSTEM_INDEXED = [
    "directus_activity.timestamp", "directus_oauth_clients.date_created", "directus_oauth_codes.expires_at",
    "directus_oauth_codes.used_at", "directus_oauth_consents.client", "directus_oauth_tokens.code_hash",
    "directus_oauth_tokens.expires_at", "directus_oauth_tokens.previous_session", "directus_oauth_tokens.session",
    "directus_revisions.activity", "directus_revisions.parent", "directus_sessions.oauth_client",
]  # fmt: skip

# case -> every change as (describe(), destructive_reason); the same in both versions unless overridden below.
Expected = list[tuple[str, str | None]]
EXPECTED: dict[str, Expected] = {
    "no_changes": [],
    "create_collection": [
        ("Create collection vehicles", None),
        ("Create field vehicles.id", None),
        ("Create field vehicles.plate", None),
    ],
    "delete_collection": [("Delete collection legacy", "drops the table and its rows")],
    "create_field": [("Create field authors.bio", None)],
    "delete_field": [("Delete field articles.body", "drops the column")],
    "field_type_change": [
        (
            "Update field articles.title (Set max_length to 100)",
            "changes the column type (Set max_length to 100)",
        ),
        (
            "Update field articles.status (Set type to text; Set data_type to text; Set max_length to null)",
            "changes the column type (Set type to text; Set data_type to text; Set max_length to null)",
        ),
    ],
    "field_to_alias": [
        ("Delete field authors.email", "changes the field's type (dropped and re-created)"),
        ("Create field authors.email", None),
    ],
    "index_dropped": [("Update field articles.slug (Set is_indexed to false)", DROPS_INDEX)],
    "unique_dropped": [("Update field articles.code (Set is_unique to false)", "drops a unique constraint")],
    "unique_added": [("Update field authors.email (Set is_unique to true)", None)],
    "primary_key_moved": [
        (
            "Update field tags.code (Set is_primary_key to false)",
            "changes the primary key (Set is_primary_key to false)",
        ),
        (
            "Update field tags.label (Set is_primary_key to true)",
            "changes the primary key (Set is_primary_key to true)",
        ),
    ],
    "auto_increment_added": [
        (
            "Update field tags.code (Set has_auto_increment to true)",
            "changes the primary key (Set has_auto_increment to true)",
        )
    ],
    "relation_create": [("Create relation articles.editor → authors", None)],
    "relation_update": [("Update relation articles.author → authors (Set on_delete to CASCADE)", None)],
    "relation_delete": [("Delete relation articles.author → authors", None)],  # the FK only; the column stays
    "system_fields_missing": [
        (f"Update system field {name} (Set is_indexed to false)", DROPS_INDEX) for name in SYSTEM_INDEXED
    ],
    "system_field_unindexed": [
        ("Update system field directus_activity.timestamp (Set is_indexed to false)", DROPS_INDEX)
    ],
    "field_nested_meta": [("Update field articles.title (Set meta to [object Object])", None)],
    "collection_meta_update": [
        ("Update collection articles (Set color to #FF0000; Set note to All posts)", None)
    ],
    "collection_meta_key_removed": [("Update collection articles (Set meta to [object Object])", None)],
    "many_sections": [
        ("Create collection vehicles", None),
        ("Delete field articles.body", "drops the column"),
        ("Create field vehicles.id", None),
        ("Create field vehicles.plate", None),
        ("Update system field directus_activity.timestamp (Set is_indexed to false)", DROPS_INDEX),
        ("Update relation articles.author → authors (Set on_delete to CASCADE)", None),
    ],
    "space_names_create": [
        ("Create collection my table", None),
        ("Create field my table.id", None),
        ("Create field my table.my field", None),
        ("Create field articles.my field", None),
    ],
    "space_names_delete": [
        ("Delete collection my table", "drops the table and its rows"),
        ("Delete field articles.my field", "drops the column"),
    ],
}
EXPECTED["no_changes_raw_logs"] = EXPECTED["no_changes"]  # LOG_STYLE=raw: JSON log lines before the marker
EXPECTED["delete_field_raw_logs"] = EXPECTED["delete_field"]
# Where the versions differ (see research/directus.md section 3).
BY_VERSION: dict[tuple[str, str], Expected] = {
    # Before 12.4 a nested meta delete first in the diff prints, and applies, as a Delete of the collection
    # (directus#27877): the guard must see a deletion.
    ("11.17.4", "collection_meta_key_removed"): [
        ("Delete collection articles", "drops the table and its rows")
    ],
    # Before 12.4 nested meta changes are listed one by one instead of folded into `Set meta`.
    ("11.17.4", "field_nested_meta"): [
        (
            (
                "Update field articles.title (Remove options.placeholder; Set options.trim to false; "
                "Add options.font and set it to monospace)"
            ),
            None,
        )
    ],
    # 11.x has no OAuth tables, so fewer indexed system fields.
    ("11.17.4", "system_fields_missing"): [
        (f"Update system field {name} (Set is_indexed to false)", DROPS_INDEX)
        for name in (
            "directus_activity.timestamp",
            "directus_revisions.activity",
            "directus_revisions.parent",
        )
    ],
}
# Fixtures the parser must refuse: case -> the line of the output it quotes.
REFUSED = {
    "field_meta_multiline": "second line"
}  # a line break in a value the parser was not given (see below)


def _fixtures() -> list[tuple[str, str]]:
    return sorted((p.parent.name, p.stem) for p in FIXTURES.glob("*/*.txt"))


def test_every_supported_version_has_every_case():
    """Both Directus versions have a captured fixture for every case (re-run the capture script if one is new)."""
    cases = {*EXPECTED, *REFUSED, "not_installed"}
    for version in VERSIONS:
        assert {p.stem for p in (FIXTURES / version).glob("*.txt")} == cases, version


@pytest.mark.parametrize(("version", "case"), _fixtures(), ids=[f"{v}-{c}" for v, c in _fixtures()])
def test_captured_dry_run_parses_to_its_case(version: str, case: str):
    """Each captured dry-run parses to exactly its case's changes and destructive reasons, or is refused at the
    line the parser cannot read."""
    text = (FIXTURES / version / f"{case}.txt").read_text(encoding="utf-8")
    if case == "not_installed":
        assert parse_dry_run(text).installed is False
        return
    if case in REFUSED:
        with pytest.raises(UnreadableDryRun) as info:
            parse_dry_run(text)
        assert info.value.line == REFUSED[case]
        assert info.value.line_no == text.split("\n").index(REFUSED[case]) + 1
        return
    diff = parse_dry_run(text)
    expected = BY_VERSION.get((version, case), EXPECTED[case])
    assert [(c.describe(), c.destructive_reason) for c in diff.changes] == expected
    assert diff.empty == (expected == [])


def test_capture_script_runs():
    """scripts/capture_dry_runs.py imports and lists its cases without Directus (CI does not run the capture)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "capture_dry_runs.py"), "--list"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    listed = {
        name
        for line in out.stdout.splitlines()
        if not line.startswith(" ")
        for name in line.split(":")[0].split(", ")
    }
    assert listed == {*EXPECTED, *REFUSED, "not_installed"}


@pytest.mark.parametrize("version", VERSIONS)
def test_a_multi_line_value_of_the_snapshot_is_read_whole(version: str):
    """The captured note with a line break parses when the snapshot holds that exact value (as the phase passes
    it), as one non-destructive child; any other snapshot leaves its second line unreadable (refused)."""
    text = (FIXTURES / version / "field_meta_multiline.txt").read_text(encoding="utf-8")
    diff = parse_dry_run(text, multiline_values({"meta": {"note": "First line\nsecond line"}}))
    assert [(c.describe(), c.destructive_reason) for c in diff.changes] == [
        ("Update field authors.name (Set note to First line\\nsecond line)", None)
    ]
    with pytest.raises(UnreadableDryRun):
        parse_dry_run(text, multiline_values({"meta": {"note": "First line\nother line"}}))


def test_continuation_lines_never_swallow_an_item_and_keep_blank_lines():
    """A line that reads as an item stays an item even when the snapshot's value goes on with the same text (so a
    real deletion can never hide inside a note); blank lines inside a value are read as part of it."""
    head = "The following changes will be applied:\n\nFields:\n  - Update authors.name\n"
    sneaky = multiline_values({"note": "a\n  - Delete vehicles.plate"})
    diff = parse_dry_run(head + "    - Set note to a\n  - Delete vehicles.plate\n", sneaky)
    assert [c.describe() for c in diff.destructive] == ["Delete field vehicles.plate"]
    gap = multiline_values({"note": "first\n\nthird", "choices": ["x\ny", "z"]})
    diff = parse_dry_run(head + "    - Set note to first\n\nthird\n    - Set choices to x\ny,z\n", gap)
    assert diff.changes[0].details == ["Set note to first\\n\\nthird", "Set choices to x\\ny,z"]
