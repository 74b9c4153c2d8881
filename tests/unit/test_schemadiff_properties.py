"""Property tests for the dry-run parser: what the printer can print parses back exactly; no line is ever
skipped (an extra line is refused or changes the result)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.schemadiff import ARROW, MARKER, SECTIONS, UnreadableDryRun, parse_dry_run

_HEADER = {v: k for k, v in SECTIONS.items()}
_VERBS = {"collections": ["Create", "Update", "Delete"], "fields": ["Create", "Update", "Delete"],
          "system fields": ["Update"], "relations": ["Create", "Update", "Delete"]}  # fmt: skip
_CHILD_KINDS = {"collections": ["Set"], "fields": ["Set", "Remove", "Add"], "system fields": ["Set", "Remove", "Add"],
                "relations": ["Set"]}  # fmt: skip

# Any text the printer could interpolate on one line: no line break (a value with one is refused: see below), no
# escape character (colour codes are stripped before parsing).
_text = st.text(st.characters(codec="utf-8", exclude_characters="\n\r\x1b"), max_size=12)
_name = _text.filter(lambda s: s.strip() != "")
_collection = _name.filter(lambda s: "." not in s)
_log_line = st.builds(
    lambda t: f"[12:00:00.000] INFO: {t}",
    _text.filter(lambda t: "No changes" not in t and "installed" not in t),
)


@dataclass(frozen=True)
class Item:
    section: str
    kind: str
    name: str
    related: str | None
    details: tuple[str, ...]

    def lines(self) -> list[str]:
        target = f"{ARROW}{self.related}" if self.related is not None else ""
        return [f"  - {self.kind} {self.name}{target}", *(f"    - {d}" for d in self.details)]


def _child(kind: str) -> st.SearchStrategy[str]:
    path = _name
    if kind == "Set":
        return st.builds(lambda p, v: f"Set {p} to {v}", path, _text)
    if kind == "Remove":
        return st.builds(lambda p: f"Remove {p}", path)
    return st.builds(lambda p, v: f"Add {p} and set it to {v}", path, _text)


@st.composite
def _item(draw: st.DrawFn, section: str) -> Item:
    kind = draw(st.sampled_from(_VERBS[section]))
    name = draw(_name) if section == "collections" else f"{draw(_collection)}.{draw(_name)}"
    related = None
    if section == "relations":
        name = name.replace(ARROW.strip(), "")
        related = draw(st.none() | _name.map(lambda s: s.replace(ARROW.strip(), "")).filter(str.strip))
    details: tuple[str, ...] = ()
    if kind == "Update":
        kinds = st.sampled_from(_CHILD_KINDS[section])
        details = tuple(draw(st.lists(kinds.flatmap(_child), max_size=3)))
    return Item(section, kind, name, related, details)


@st.composite
def dry_runs(draw: st.DrawFn) -> tuple[str, list[Item]]:
    """A dry-run in the printer's format (log lines first), and the items it lists."""
    sections = draw(st.lists(st.sampled_from(list(SECTIONS.values())), min_size=1, max_size=4, unique=True))
    sections.sort(key=list(SECTIONS.values()).index)
    items: list[Item] = []
    blocks = []
    for section in sections:
        these = draw(st.lists(_item(section), min_size=1, max_size=4))
        items += these
        blocks.append("\n".join([_HEADER[section], *(line for i in these for line in i.lines())]))
    logs = draw(st.lists(_log_line, max_size=2))
    return "\n".join([*logs, f"{MARKER}\n\n" + "\n\n".join(blocks)]) + "\n", items


def _read(text: str) -> list[Item]:
    return [Item(c.section, c.kind, c.name, c.related, tuple(c.details)) for c in parse_dry_run(text).changes]


@settings(max_examples=200, deadline=None)
@given(dry_runs())
def test_well_formed_dry_runs_parse_exactly(case: tuple[str, list[Item]]):
    """Every dry-run the printer can produce parses back to exactly the items, names and child lines it lists."""
    text, items = case
    assert _read(text) == items


# Lines that are never readable where they land: log lines, unknown verbs and child kinds, other indentation,
# section headers (a second one, one out of order, or one that leaves a section empty), a second marker.
_corrupt = st.one_of(
    _log_line,
    st.builds(
        lambda v, n: f"  - {v} {n}", st.sampled_from(["Drop", "Rename", "Alter", "delete", "DELETE"]), _name
    ),
    st.builds(lambda v, n: f"    - {v} {n}", st.sampled_from(["Drop", "Rename", "Unset", "set"]), _name),
    st.builds(lambda p, n: f"{p}- Delete {n}", st.sampled_from(["", " ", "\t", "   ", "     "]), _name),
    st.sampled_from([*SECTIONS, MARKER, "Views:", "Collections :", "fields:"]),
)


@settings(max_examples=200, deadline=None)
@given(dry_runs(), _corrupt, st.data())
def test_an_unreadable_line_after_the_marker_is_refused(
    case: tuple[str, list[Item]], line: str, data: st.DataObject
):
    """An unreadable line inserted anywhere after the marker is refused, and the error names that line."""
    text, _ = case
    lines = text.split("\n")
    after = lines.index(MARKER) + 1
    at = data.draw(st.integers(after, len(lines)))
    with pytest.raises(UnreadableDryRun) as info:
        parse_dry_run("\n".join([*lines[:at], line, *lines[at:]]))
    assert info.value.line_no is None or info.value.line_no >= after


@settings(max_examples=200, deadline=None)
@given(dry_runs(), _text.filter(lambda s: s.strip() != ""), st.data())
def test_no_line_after_the_marker_is_ever_skipped(
    case: tuple[str, list[Item]], line: str, data: st.DataObject
):
    """Any non-blank line inserted after the marker either makes the parse refuse or changes what it reads:
    the parser never ignores a line (the fail-open the guard had)."""
    text, items = case
    lines = text.split("\n")
    at = data.draw(st.integers(lines.index(MARKER) + 1, len(lines)))
    try:
        got = _read("\n".join([*lines[:at], line, *lines[at:]]))
    except UnreadableDryRun:
        return
    assert got != items
