"""Names and restore SQL of the copies an allowed destructive apply keeps (supervisor.backup)."""

from __future__ import annotations

from supervisor.backup import Item, backup_name, restore_sql


def test_long_names_keep_their_stamp_within_63_bytes_and_never_repeat() -> None:
    """Postgres cuts identifiers at 63 bytes: the table/column part is shortened (never mid-character), the
    stamp and id stay whole, and two sources that shorten alike still get distinct names."""
    taken: set[str] = set()
    suffix = "20261130T121405_a1b2c3"
    first = backup_name(["ä" * 40, "c" * 40], suffix, taken)
    second = backup_name(["ä" * 40, "c" * 41], suffix, taken)
    assert len(first.encode()) <= 63 and len(second.encode()) <= 63
    assert first.endswith("__" + suffix) and second.endswith("__" + suffix + "_1")
    assert first != second
    assert backup_name(["vehicles", "name"], suffix, taken) == "vehicles__name__" + suffix


def test_restore_sql_quotes_every_name() -> None:
    """Names with quotes or capitals are quoted in the restore SQL (identifiers and the setval literal)."""
    col = Item('Delete field "T".n', "public", 'We"ird', 'Na"me', ("Id",), {"Id": "integer", 'Na"me': "text"})
    assert restore_sql(col, "b") == (
        'UPDATE "public"."We""ird" AS t SET "Na""me" = b."Na""me" FROM "supervisor_backup"."b" AS b '
        'WHERE t."Id" = b."Id";'
    )
    table = Item("Delete collection O'Brien", "public", "O'Brien", None, ("id",), {"id": "integer"})
    assert restore_sql(table, "b") == (
        'INSERT INTO "public"."O\'Brien" ("id") SELECT "id" FROM "supervisor_backup"."b"; '
        "SELECT setval(pg_get_serial_sequence('\"public\".\"O''Brien\"', 'id'), max(\"id\")) "
        'FROM "public"."O\'Brien";'
    )
