"""Parsing `directus schema apply --dry-run` output into changes, and deciding which ones destroy data.

The format (Directus 11.0-12.4, `api/src/cli/commands/schema/apply.ts`, see research/directus.md section 3) is
printed by one `console.log` just before `process.exit(0)`, so nothing else reaches stdout after it:

    The following changes will be applied:
    <blank>
    Collections:                                   sections in this order, each at most once, blank lines between
      - Create|Update|Delete <collection>
        - Set <path> to <value>                    children only under Update
    Fields:
      - Create|Update|Delete <collection>.<field>
        - Set <path> to <value> | Remove <path> | Add <path> and set it to <value>
    System Fields:
      - Update <collection>.<field>                (same children as Fields)
    Relations:
      - Create|Update|Delete <collection>.<field>[ → <related collection>]
        - Set <path> to <value>

Names are printed verbatim, spaces included (`  - Delete my table`). Log lines may come before the marker.

The guard fails closed: after the marker every non-blank line must fit this grammar, or the parse raises
`UnreadableDryRun` quoting the line. A diff that looks empty because a line was skipped would let a destructive
snapshot through and be recorded as applied.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field

__all__ = [
    "MARKER",
    "NOT_INSTALLED",
    "NO_CHANGES",
    "SECTIONS",
    "Change",
    "Diff",
    "UnreadableDryRun",
    "multiline_values",
    "parse_dry_run",
    "strip_ansi",
]

MARKER = "The following changes will be applied:"
NO_CHANGES = "No changes to apply."
NOT_INSTALLED = "Directus isn't installed on this database"
ARROW = " \u2192 "  # the relation target separator, U+2192
# Printer order; the value is what Change.section holds.
SECTIONS = {
    "Collections:": "collections",
    "Fields:": "fields",
    "System Fields:": "system fields",
    "Relations:": "relations",
}
# What the printer can emit in each section: item verbs, and the child kinds under an Update.
_VERBS = {
    "collections": ("Create", "Update", "Delete"),
    "fields": ("Create", "Update", "Delete"),
    "system fields": ("Update",),
    "relations": ("Create", "Update", "Delete"),
}
_CHILD_KINDS = {
    "collections": ("Set",),
    "fields": ("Set", "Remove", "Add"),
    "system fields": ("Set", "Remove", "Add"),
    "relations": ("Set",),
}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ITEM = re.compile(r"^  - (\S+) (.*)$")
_CHILD = re.compile(r"^    - (?:(Set) (.+?) to (.*)|(Remove) (.+)|(Add) (.+?) and set it to (.*))$")
# pino-pretty's line for the no-changes message (`[12:00:00.000] INFO: No changes to apply.`, with `(pid)` when
# LOGGER_ settings keep it); LOG_STYLE=raw prints JSON instead.
_NO_CHANGES_PRETTY = re.compile(r"^\[[^\]]*\] INFO(?: \([^)]*\))?: No changes to apply\.$")
_TYPE_PATHS = {"type", "data_type", "max_length", "numeric_precision", "numeric_scale", "schema"}
_KEY_PATHS = {"is_primary_key", "has_auto_increment"}


class UnreadableDryRun(ValueError):
    """Raised when the dry-run output is not (entirely) in the printer's format: a line after the marker that is
    not a section header, an item or a child of one, a marker followed by no item, or neither a diff nor
    `No changes to apply.`. `line_no` is 1-based in the output; both are None when no single line is to blame."""

    def __init__(self, reason: str, line_no: int | None = None, line: str | None = None) -> None:
        where = f"line {line_no} ({line!r}): " if line_no is not None else ""
        super().__init__(where + reason)
        self.reason = reason
        self.line_no = line_no
        self.line = line


def strip_ansi(text: str) -> str:
    """`text` without terminal colour codes (Directus colours output on a TTY or with FORCE_COLOR)."""
    return _ANSI.sub("", text)


@dataclass
class Change:
    """One item of the dry-run: a kind (Create/Update/Delete) of a collection, field, system field or relation."""

    section: str  # collections | fields | system fields | relations
    kind: str
    name: str  # `collection` or `collection.field`, verbatim
    related: str | None = None
    details: list[str] = field(default_factory=list)  # child lines without the `    - `
    destructive_reason: str | None = None

    @property
    def collection(self) -> str:
        """The table the change touches (up to the first dot for field and relation items)."""
        return self.name if self.section == "collections" else self.name.split(".", 1)[0]

    @property
    def field_name(self) -> str | None:
        """The column, for field changes."""
        if self.section == "collections" or "." not in self.name:
            return None
        return self.name.split(".", 1)[1]

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
        """The changes that drop or rewrite stored data, indexes, unique constraints or the primary key."""
        return [c for c in self.changes if c.destructive_reason]


def parse_dry_run(output: str, multiline: Collection[str] = ()) -> Diff:
    """Parse the dry-run's stdout. Raises `UnreadableDryRun` unless every line after the marker is read, or the
    output is a plain `No changes to apply.` / not-installed message without a marker.

    `multiline`: the snapshot's values that hold a line break (`multiline_values`). The printer interpolates a
    value as is, so a field note of two lines prints its second line bare; such lines are read as the rest of the
    value only when they rebuild one of these values exactly and none of them looks like a header, item or child."""
    lines = [line.rstrip("\r") for line in strip_ansi(output).split("\n")]
    start = next((i for i, line in enumerate(lines) if line.strip() == MARKER), None)
    before = lines if start is None else lines[:start]
    not_installed = any(NOT_INSTALLED in line for line in before)
    no_changes = any(_is_no_changes(line) for line in before)
    if start is None:
        if not_installed:
            return Diff([], installed=False)
        if no_changes:
            return Diff([])
        raise UnreadableDryRun("the dry-run printed neither a list of changes nor 'No changes to apply.'")
    if not_installed or no_changes:
        raise UnreadableDryRun(
            "the dry-run printed both a list of changes and "
            + ("'not installed'" if not_installed else "'No changes to apply.'")
        )
    changes = _parse_body(lines, start + 1, frozenset(multiline))
    _mark_destructive(changes)
    return Diff(changes)


def _is_no_changes(line: str) -> bool:
    text = line.strip()
    if _NO_CHANGES_PRETTY.match(text):
        return True
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            return False
        return isinstance(record, dict) and record.get("msg") == NO_CHANGES
    return False


def _parse_body(lines: list[str], first: int, multiline: frozenset[str]) -> list[Change]:
    """The lines after the marker (index `first` on), read strictly by the grammar in the module docstring."""
    changes: list[Change] = []
    section: str | None = None
    seen: list[str] = []  # sections so far, in order
    section_items = 0
    after_blank = True  # the marker is followed by a blank line; a header must follow a blank line
    i = first
    while i < len(lines):
        line, no = lines[i], i + 1
        i += 1
        if not line.strip():
            after_blank = True
            continue
        if line in SECTIONS:
            name = SECTIONS[line]
            if not after_blank:
                raise UnreadableDryRun("a section header not preceded by a blank line", no, line)
            if section is not None and section_items == 0:
                raise UnreadableDryRun(f"the section before it ({section}) lists no item", no, line)
            order = list(SECTIONS.values())
            if name in seen or (seen and order.index(name) < order.index(seen[-1])):
                raise UnreadableDryRun("a section out of the printer's order, or repeated", no, line)
            seen.append(name)
            section, section_items, after_blank = name, 0, False
            continue
        if section is None:
            raise UnreadableDryRun("a line before any section header", no, line)
        if after_blank:
            raise UnreadableDryRun("after a blank line only a section header can follow", no, line)
        if m := _ITEM.match(line):
            changes.append(_item(section, m.group(1), m.group(2), no, line))
            section_items += 1
        elif m := _CHILD.match(line):
            _child(section, changes[-1] if section_items else None, m, no, line)
            i = _continuation(lines, i, m.group(3) if m.group(1) else m.group(8), changes[-1], multiline)
        else:
            raise UnreadableDryRun("neither a section header, an item nor a child of an item", no, line)
    if section is None:
        raise UnreadableDryRun("the marker is followed by no section and no change")
    if section_items == 0:
        raise UnreadableDryRun(f"the last section ({section}) lists no item")
    return changes


def _item(section: str, verb: str, rest: str, no: int, line: str) -> Change:
    if verb not in _VERBS[section]:
        raise UnreadableDryRun(f"unknown item verb {verb!r} in the {section} section", no, line)
    name, related = rest, None
    if section == "relations" and ARROW in rest:
        if rest.count(ARROW) > 1:
            raise UnreadableDryRun("a relation with more than one '→': its target is ambiguous", no, line)
        name, related = rest.split(ARROW)
        if not related.strip():
            raise UnreadableDryRun("a relation with an empty target", no, line)
    if not name.strip():
        raise UnreadableDryRun("an item without a name", no, line)
    if section != "collections":
        collection, _, column = name.partition(".")
        if not collection or not column:
            raise UnreadableDryRun(f"a {section} item whose name is not <collection>.<field>", no, line)
    return Change(section, verb, name, related)


def _child(section: str, parent: Change | None, m: re.Match[str], no: int, line: str) -> None:
    kind = m.group(1) or m.group(4) or m.group(6)
    if parent is None:
        raise UnreadableDryRun("a child line with no item above it in its section", no, line)
    if parent.kind != "Update":
        raise UnreadableDryRun(
            f"a child line under a {parent.kind} item (only Update has children)", no, line
        )
    if kind not in _CHILD_KINDS[section]:
        raise UnreadableDryRun(f"a {kind!r} child in the {section} section", no, line)
    parent.details.append(line[len("    - ") :])


def _structural(line: str) -> bool:
    return line in SECTIONS or bool(_ITEM.match(line) or _CHILD.match(line))


def _continuation(
    lines: list[str], i: int, value: str | None, parent: Change, multiline: frozenset[str]
) -> int:
    """Where reading goes on after a child line whose `value` may go on over the lines from index `i`: past those
    lines when, joined with line breaks, they rebuild a known multi-line value exactly; else `i` (nothing taken)."""
    if value is None or not multiline:
        return i
    j, whole = i, value
    while j < len(lines) and not _structural(lines[j]):
        longer = whole + "\n" + lines[j]
        if not any(v.startswith(longer) for v in multiline):
            break
        whole, j = longer, j + 1
    if j == i or whole not in multiline:
        return i
    # Stored on one line (the break escaped), so the detail reads like any other child.
    parent.details[-1] = parent.details[-1][: len(parent.details[-1]) - len(value)] + whole.replace(
        "\n", "\\n"
    )
    return j


def multiline_values(data: object) -> frozenset[str]:
    """Every value of a parsed snapshot that prints over more than one line: strings with a line break, and lists
    of scalars whose comma-joined form (how the printer shows an array) has one."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, str):
            if "\n" in node:
                found.add(node)
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            if all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in node):
                joined = ",".join(str(v) for v in node)
                if "\n" in joined:
                    found.add(joined)
            for v in node:
                walk(v)

    walk(data)
    return frozenset(found)


def _child_path(detail: str) -> tuple[str, str, str | None]:
    """(kind, path, value) of a stored child line; value is None for Remove."""
    m = _CHILD.match("    - " + detail)
    assert m is not None  # every stored detail matched _CHILD when it was read
    if m.group(1):
        return "Set", m.group(2), m.group(3)
    if m.group(4):
        return "Remove", m.group(5), None
    return "Add", m.group(7), m.group(8)


def _mark_destructive(changes: list[Change]) -> None:
    created = {c.name for c in changes if c.kind == "Create" and c.section == "fields"}
    for c in changes:
        reasons: list[str] = []
        if c.kind == "Delete" and c.section == "collections":
            reasons.append("drops the table and its rows")
        elif c.kind == "Delete" and c.section == "fields":
            reasons.append(
                "changes the field's type (dropped and re-created)"
                if c.name in created
                else "drops the column"
            )
        if c.section in ("fields", "system fields"):
            reasons += _schema_reasons(c.details)
        c.destructive_reason = "; ".join(reasons) or None


def _schema_reasons(details: list[str]) -> list[str]:
    """What a field update's child lines destroy: `formatPath` prints schema keys without their `schema.` prefix."""
    index, unique, key, typed = [], [], [], []
    for detail in details:
        _, path, value = _child_path(detail)
        if path == "is_indexed" and value != "true":
            index.append(detail)
        elif path == "is_unique" and value != "true":
            unique.append(detail)
        elif path in _KEY_PATHS:
            key.append(detail)
        elif path in _TYPE_PATHS:
            typed.append(detail)
    reasons = []
    if index:
        reasons.append("drops an index" + _why(index, "Set is_indexed to false"))
    if unique:
        reasons.append("drops a unique constraint" + _why(unique, "Set is_unique to false"))
    if key:
        reasons.append("changes the primary key (" + "; ".join(key) + ")")
    if typed:
        reasons.append("changes the column type (" + "; ".join(typed) + ")")
    return reasons


def _why(details: list[str], usual: str) -> str:
    return "" if details == [usual] else " (" + "; ".join(details) + ")"
