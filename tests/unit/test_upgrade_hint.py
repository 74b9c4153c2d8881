"""Which refusals after an upgrade's bootstrap get the hint that the snapshot came from a database on the old
migrations: mostly index drops on Directus's system fields (as Directus 12.4.0 prints them), not user deletions."""

from __future__ import annotations

from phases.schema import _mostly_system_index_drops
from supervisor.schemadiff import parse_dry_run
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "dry_run" / "12.4.0"


def test_system_index_drops_captured_from_directus_are_the_mark() -> None:
    diff = parse_dry_run((FIXTURES / "system_fields_missing.txt").read_text())
    assert len(diff.destructive) == 12
    assert _mostly_system_index_drops(diff.destructive)


def test_user_deletions_outnumbering_system_index_drops_are_not() -> None:
    text = (
        "The following changes will be applied:\n\nCollections:\n  - Delete a\n  - Delete b\n\n"
        "System Fields:\n  - Update directus_activity.timestamp\n    - Set is_indexed to false\n"
    )
    diff = parse_dry_run(text)
    assert len(diff.destructive) == 3
    assert not _mostly_system_index_drops(diff.destructive)
    # One user deletion among several system index drops still is.
    more = text + "".join(
        f"  - Update directus_sessions.f{i}\n    - Set is_indexed to false\n" for i in range(2)
    )
    assert _mostly_system_index_drops(parse_dry_run(more).destructive)


def test_a_system_field_unique_drop_is_not_an_index_drop() -> None:
    text = (
        "The following changes will be applied:\n\nSystem Fields:\n  - Update directus_users.email\n"
        "    - Set is_unique to false\n"
    )
    diff = parse_dry_run(text)
    assert len(diff.destructive) == 1
    assert not _mostly_system_index_drops(diff.destructive)
