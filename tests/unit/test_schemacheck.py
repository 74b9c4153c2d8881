"""What a fresh apply of the shipped snapshot must leave in the database (supervisor.schemacheck.expected)."""

from __future__ import annotations

import yaml

from supervisor.schemacheck import (
    COLLECTION_ROW,
    COLUMN,
    FIELD_ROW,
    FOREIGN_KEY,
    SYSTEM_INDEX,
    TABLE,
    Item,
    expected,
)
from tests.conftest import ROOT


def _shipped() -> list[Item]:
    return expected(yaml.safe_load((ROOT / "snapshots" / "schema.yaml").read_text())).items


def test_alias_fields_are_records_but_not_columns():
    """An o2m/m2m alias field (events.vehicles) has a directus_fields row and no column; a plain field has both."""
    items = _shipped()
    assert Item(FIELD_ROW, "events", "vehicles") in items
    assert Item(COLUMN, "events", "vehicles") not in items
    assert {Item(FIELD_ROW, "devices", "serial"), Item(COLUMN, "devices", "serial")} <= set(items)


def test_every_collection_table_relation_and_system_index_is_expected():
    """Each collection has its directus_collections row and its table, each relation with a foreign key its key,
    and each system field listed as indexed its index."""
    items = _shipped()
    assert Item(COLLECTION_ROW, "vehicles") in items and Item(TABLE, "vehicles") in items
    assert Item(FOREIGN_KEY, "event_participation", "events_id", "events") in items
    assert Item(SYSTEM_INDEX, "directus_activity", "timestamp") in items
    assert sum(i.kind == SYSTEM_INDEX for i in items) == 12


def test_meta_null_and_schema_null_entries_expect_only_what_they_have():
    """A collection without meta (a table Directus does not manage) needs no row; a folder (schema null) needs no
    table; a field without meta needs only its column."""
    data = {
        "collections": [
            {"collection": "raw", "meta": None, "schema": {"name": "raw"}},
            {"collection": "folder", "meta": {"collection": "folder"}, "schema": None},
        ],
        "fields": [
            {"collection": "raw", "field": "x", "type": "integer", "meta": None, "schema": {"name": "x"}}
        ],
    }
    assert expected(data).items == [
        Item(TABLE, "raw"),
        Item(COLLECTION_ROW, "folder"),
        Item(COLUMN, "raw", "x"),
    ]
