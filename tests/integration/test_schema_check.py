"""The database check of a fresh schema apply (supervisor.schemacheck.present) against a real Postgres, with
Directus's record tables as far as the check reads them."""

from __future__ import annotations

import asyncpg

from supervisor.schemacheck import (
    COLUMN,
    FIELD_ROW,
    FOREIGN_KEY,
    SYSTEM_INDEX,
    TABLE,
    Item,
    expected,
    present,
)

SNAPSHOT = {
    "collections": [
        {"collection": "owners", "meta": {}, "schema": {"name": "owners"}},
        {"collection": "cars", "meta": {}, "schema": {"name": "cars"}},
    ],
    "fields": [
        {"collection": "owners", "field": "id", "type": "integer", "meta": {}, "schema": {"name": "id"}},
        {"collection": "owners", "field": "cars", "type": "alias", "meta": {}, "schema": None},
        {"collection": "cars", "field": "id", "type": "integer", "meta": {}, "schema": {"name": "id"}},
        {"collection": "cars", "field": "owner", "type": "integer", "meta": {}, "schema": {"name": "owner"}},
        {
            "collection": "cars",
            "field": "Plate No",
            "type": "string",
            "meta": {},
            "schema": {"name": "Plate No"},
        },
    ],
    "relations": [
        {
            "collection": "cars",
            "field": "owner",
            "related_collection": "owners",
            "meta": {},
            "schema": {
                "table": "cars",
                "column": "owner",
                "foreign_key_table": "owners",
                "foreign_key_column": "id",
            },
        },
    ],
    "systemFields": [
        {"collection": "directus_activity", "field": "timestamp", "schema": {"is_indexed": True}}
    ],
}
_DIRECTUS = """
CREATE TABLE directus_collections (collection text PRIMARY KEY);
CREATE TABLE directus_fields (id serial PRIMARY KEY, collection text, field text);
CREATE TABLE directus_relations (id serial PRIMARY KEY, many_collection text, many_field text);
CREATE TABLE directus_activity (id serial PRIMARY KEY, "timestamp" timestamptz);
CREATE INDEX ON directus_activity ("timestamp");
"""
_APPLIED = """
CREATE TABLE owners (id serial PRIMARY KEY);
CREATE TABLE cars (id serial PRIMARY KEY, owner integer REFERENCES owners, "Plate No" text);
INSERT INTO directus_collections VALUES ('owners'), ('cars');
INSERT INTO directus_fields (collection, field) VALUES ('owners', 'id'), ('owners', 'cars'), ('cars', 'id'),
  ('cars', 'owner'), ('cars', 'Plate No');
INSERT INTO directus_relations (many_collection, many_field) VALUES ('cars', 'owner');
"""


async def test_a_complete_apply_has_everything_and_an_empty_database_nothing(conn: asyncpg.Connection):
    """Right after bootstrap nothing of the snapshot is there but Directus's own index; after the apply, all of it
    (the alias field as a record only, a column name with a space and capitals found as it is)."""
    await conn.execute(_DIRECTUS)
    want = expected(SNAPSHOT)
    found, missing = await present(conn, want)
    assert found == [Item(SYSTEM_INDEX, "directus_activity", "timestamp")]
    assert len(missing) == len(want.items) - 1
    await conn.execute(_APPLIED)
    assert await present(conn, want) == (want.items, [])


async def test_each_missing_piece_is_named(conn: asyncpg.Connection):
    """A dropped column, a missing field record, a dropped foreign key, a missing table and a dropped system index
    are each reported, and nothing else is."""
    await conn.execute(_DIRECTUS + _APPLIED)
    await conn.execute(
        'ALTER TABLE cars DROP COLUMN "Plate No"; ALTER TABLE cars DROP CONSTRAINT cars_owner_fkey;'
        "DELETE FROM directus_fields WHERE field = 'cars'; DROP INDEX directus_activity_timestamp_idx;"
    )
    _, missing = await present(conn, expected(SNAPSHOT))
    assert missing == [
        Item(FIELD_ROW, "owners", "cars"),
        Item(COLUMN, "cars", "Plate No"),
        Item(FOREIGN_KEY, "cars", "owner", "owners"),
        Item(SYSTEM_INDEX, "directus_activity", "timestamp"),
    ]
    await conn.execute("DROP TABLE cars")
    _, missing = await present(conn, expected(SNAPSHOT))
    assert Item(TABLE, "cars") in missing and Item(COLUMN, "cars", "owner") in missing
