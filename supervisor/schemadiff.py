"""Parsing `directus schema apply --dry-run` output into changes, and deciding which ones destroy data.

The format (Directus 11.0-12.4, see research/directus.md): a marker line, then sections `Collections:`, `Fields:`,
`System Fields:`, `Relations:`; items `  - Create|Update|Delete name[ → related]`; children
`    - Set path to value` / `Remove path` / `Add path and set it to value`. Log lines may come before the marker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["MARKER", "NOT_INSTALLED", "NO_CHANGES", "Change", "Diff", "parse_dry_run", "strip_ansi"]

MARKER = "The following changes will be applied:"
NO_CHANGES = "No changes to apply."
NOT_INSTALLED = "Directus isn't installed on this database"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SECTION = re.compile(r"^(Collections|Fields|System Fields|Relations):$")
_ITEM = re.compile(r"^  - (Create|Update|Delete) (\S+?)(?: → (\S+))?$")
_CHILD = re.compile(r"^    - (?:Set (.+?) to (.*)|Remove (.+)|Add (.+?) and set it to (.*))$")
_TYPE_PATHS = {"type", "data_type", "max_length", "numeric_precision", "numeric_scale"}


def strip_ansi(text: str) -> str:
    """`text` without terminal colour codes (Directus colours output on a TTY or with FORCE_COLOR)."""
    return _ANSI.sub("", text)


@dataclass
class Change:
    """One item of the dry-run: a kind (Create/Update/Delete) of a collection, field, system field or relation."""

    section: str  # collections | fields | system fields | relations
    kind: str
    name: str  # `collection` or `collection.field`
    related: str | None = None
    details: list[str] = field(default_factory=list)
    destructive_reason: str | None = None

    @property
    def collection(self) -> str:
        """The table the change touches."""
        return self.name.split(".", 1)[0]

    @property
    def field_name(self) -> str | None:
        """The column, for field changes."""
        return self.name.split(".", 1)[1] if "." in self.name else None

    def describe(self) -> str:
        """`Delete field vehicles.plate` style, with the relation target and details."""
        what = {"collections": "collection", "fields": "field", "system fields": "system field"}.get(
            self.section, "relation"
        )
        text = f"{self.kind} {what} {self.name}" + (f" → {self.related}" if self.related else "")
        return text + (f" ({'; '.join(self.details)})" if self.details else "")


@dataclass
class Diff:
    """The parsed dry-run."""

    changes: list[Change]
    installed: bool = True

    @property
    def empty(self) -> bool:
        """True when Directus said there is nothing to apply."""
        return not self.changes

    @property
    def destructive(self) -> list[Change]:
        """The changes that drop or rewrite stored data or indexes."""
        return [c for c in self.changes if c.destructive_reason]


def parse_dry_run(output: str) -> Diff:
    """Parse the dry-run's stdout; raises ValueError when it is neither a diff nor `No changes to apply.`."""
    text = strip_ansi(output)
    if NOT_INSTALLED in text:
        return Diff([], installed=False)
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == MARKER)
    except StopIteration:
        if NO_CHANGES in text:
            return Diff([])
        raise ValueError("the dry-run printed neither a list of changes nor 'No changes to apply.'") from None
    changes: list[Change] = []
    section = ""
    for line in lines[start + 1 :]:
        if m := _SECTION.match(line):
            section = m.group(1).lower()
        elif m := _ITEM.match(line):
            changes.append(Change(section, m.group(1), m.group(2), m.group(3)))
        elif (m := _CHILD.match(line)) and changes:
            changes[-1].details.append(line.strip()[2:])
    _mark_destructive(changes)
    return Diff(changes)


def _mark_destructive(changes: list[Change]) -> None:
    created = {c.name for c in changes if c.kind == "Create" and c.section == "fields"}
    for c in changes:
        if c.kind == "Delete" and c.section == "collections":
            c.destructive_reason = "drops the table and its rows"
        elif c.kind == "Delete" and c.section == "fields":
            c.destructive_reason = (
                "changes the field's type (dropped and re-created)"
                if c.name in created
                else "drops the column"
            )
        elif any(d.startswith("Set is_indexed to false") for d in c.details):
            c.destructive_reason = "drops an index"
        elif c.section == "fields" and c.kind == "Update":
            typed = [
                d for d in c.details if d.startswith("Set ") and d[4:].split(" to ", 1)[0] in _TYPE_PATHS
            ]
            if typed:
                c.destructive_reason = "changes the column type (" + "; ".join(typed) + ")"
