"""Odd but ordinary inputs, against a real Postgres: a last statement that ends in a `--` comment, bad log levels and
ports, SUPERVISOR_OUT_OF_ORDER, repair SQL for a tracking table whose name is a keyword, and a short wait budget."""

from __future__ import annotations

import asyncio
import re
import time

import asyncpg
import pytest
import structlog

from supervisor.db import wait_for_postgres
from supervisor.errors import DatabaseUnavailable
from supervisor.settings import DbSettings
from tests.conftest import Database, Layout, supervise
from tests.pg import free_port

PRE = ("migrate", "--only", "pre-schema")


@pytest.fixture
def env(sql_paths_env: dict[str, str]) -> dict[str, str]:
    """Both ways transactional files run (tests/integration/conftest.py)."""
    return sql_paths_env


async def test_a_last_statement_ending_in_a_line_comment_applies(
    env: dict[str, str], db: Database, conn: asyncpg.Connection, layout: Layout
):
    """A file whose last statement ends in a `--` comment with no semicolon and no newline applies like any other,
    batched and one statement per round trip; so does a file whose last line is a comment after a semicolon, and a
    no-transaction file ending in a comment. A second run finds nothing to do."""
    layout.add("pre", "001_tail.sql", "CREATE TABLE t_tail (id int) -- the table")
    layout.add("pre", "002_two.sql", "CREATE TABLE t_two (id int);\nINSERT INTO t_two VALUES (1) -- one row")
    layout.add("pre", "003_semi.sql", "CREATE TABLE t_semi (id int); -- done")
    layout.add(
        "pre",
        "004_nt.sql",
        "-- supervisor: no-transaction\nCREATE INDEX CONCURRENTLY i_two ON t_two (id) -- ix",
    )
    layout.add(
        "pre", "005_after.sql", "INSERT INTO t_two VALUES (2) -- a second row\n-- and a last comment line"
    )
    r = await supervise(*PRE, env=env, cwd=layout.root)
    assert r.code == 0, r.stderr
    if env["DB_USER"] == db.server.user:
        assert not r.events("sql.batching_off")
    else:
        assert r.events("sql.batching_off")
    assert [e["file"] for e in r.events("step.applied")] == [
        "001_tail.sql", "002_two.sql", "003_semi.sql", "004_nt.sql", "005_after.sql"
    ]  # fmt: skip
    assert (
        await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename IN ('t_tail', 't_two', 't_semi')")
        == 3
    )
    assert await conn.fetchval("SELECT array_agg(id ORDER BY id) FROM t_two") == [1, 2]
    assert (
        await conn.fetchval("SELECT count(*) FROM supervisor.migrations_applied WHERE status = 'applied'")
        == 5
    )
    again = await supervise(*PRE, env=env, cwd=layout.root)
    assert again.code == 0, again.stderr
    assert not again.events("step.applied")


@pytest.mark.parametrize(
    ("overrides", "args", "needle"),
    [
        ({"SUPERVISOR_LOG_LEVEL": "verbose"}, (), ("SUPERVISOR_LOG_LEVEL='verbose' is not a log level; use one of "
         "debug, info, warning, error")),
        ({}, ("--log-level", "loud"), "--log-level='loud' is not a log level"),
        ({"DB_PORT": "\uff15\uff14\uff13\uff12"}, (), "is not a TCP port: use a number from 1 to 65535 in ASCII"),
        ({"SUPERVISOR_WAIT_TIMEOUT": "\uff16\uff10"}, (), "SUPERVISOR_WAIT_TIMEOUT='\uff16\uff10' is not a duration"),
        ({"SUPERVISOR_OUT_OF_ORDER": "ignore"}, (), "SUPERVISOR_OUT_OF_ORDER='ignore' is not warn or refuse"),
        ({}, ("--out-of-order", "yes"), "--out-of-order='yes' is not warn or refuse"),
    ],
)  # fmt: skip
async def test_odd_settings_exit_2_naming_the_accepted_values(
    db: Database,
    conn: asyncpg.Connection,
    layout: Layout,
    overrides: dict[str, str],
    args: tuple[str, ...],
    needle: str,
):
    """A log level, port, duration or out-of-order mode the supervisor cannot honour is exit 2 before anything runs,
    not silently replaced by a default (full-width digits are digits to Python's int(), not to Directus)."""
    layout.add("pre", "001.sql", "CREATE TABLE t_never (id int);")
    r = await supervise(*PRE, *args, env=db.env(**overrides), cwd=layout.root)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "CONFIG_INVALID"
    assert needle in r.failure["error"]
    assert await conn.fetchval("SELECT to_regclass('t_never')") is None


async def _out_of_order_layout(db: Database, layout: Layout) -> None:
    layout.add("pre", "001_a.sql", "CREATE TABLE t_a (id int);")
    layout.add("pre", "003_c.sql", "CREATE TABLE t_c (id int);")
    layout.add("post", "101_x.sql", "CREATE TABLE t_x (id int);")
    r = await supervise("migrate", "--only", "pre-schema", env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    r = await supervise("migrate", "--only", "post-schema", env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    layout.add("pre", "002_b.sql", "CREATE TABLE t_b (id int);")
    layout.add("pre", "004_d.sql", "CREATE TABLE t_d (id int);")


async def test_out_of_order_refuse_exits_5_naming_both_files_and_applies_nothing(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """SUPERVISOR_OUT_OF_ORDER=refuse (or --out-of-order refuse): a new file that sorts before an applied one is exit
    5, OUT_OF_ORDER, naming the file and the applied file it sorts before; no file runs, not even the in-order one
    after it. The same check covers the post-schema folder before the first pre-schema file runs."""
    await _out_of_order_layout(db, layout)
    # `plan --check` predicts the refusal (5, the first refusal in phase order).
    check = await supervise("plan", "--check", env=db.env(SUPERVISOR_OUT_OF_ORDER="refuse"), cwd=layout.root)
    assert check.code == 5, check.stderr
    for args, env in (((), {"SUPERVISOR_OUT_OF_ORDER": "refuse"}), (("--out-of-order", "REFUSE"), {})):
        r = await supervise(*PRE, *args, env=db.env(**env), cwd=layout.root)
        assert r.code == 5, r.stderr
        assert r.failure["error_code"] == "OUT_OF_ORDER"
        assert r.failure["error"].startswith("db-init/002_b.sql is new but sorts before 003_c.sql, which "
                                             "is already applied")  # fmt: skip
        assert "Nothing from this phase was applied" in r.failure["error"]
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename IN ('t_b', 't_d')") == 0
    (layout.pre / "002_b.sql").rename(layout.pre / "005_b.sql")
    layout.add("post", "100_w.sql", "CREATE TABLE t_w (id int);")
    r = await supervise("migrate", "--until", "pre-schema", env=db.env(SUPERVISOR_OUT_OF_ORDER="refuse"),
                        cwd=layout.root)  # fmt: skip
    assert r.code == 5, r.stderr
    assert "db-init-post/100_w.sql is new but sorts before 101_x.sql" in r.failure["error"]
    assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename IN ('t_b', 't_d', 't_w')") == 0


async def test_out_of_order_warn_applies_with_a_warning(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """The default (warn) applies the out-of-order file and logs `migration.out_of_order` naming both files."""
    await _out_of_order_layout(db, layout)
    r = await supervise(*PRE, env=db.env(), cwd=layout.root)
    assert r.code == 0, r.stderr
    [warning] = r.events("migration.out_of_order")
    assert warning["file"] == "db-init/002_b.sql"
    assert warning["before"] == "003_c.sql"
    assert warning["level"] == "warning"
    assert [e["file"] for e in r.events("step.applied")] == ["002_b.sql", "004_d.sql"]


def _statements(message: str, verb: str) -> list[str]:
    """The repair statements a message prints that start with `verb`, each up to its semicolon."""
    return re.findall(rf"{verb} [^;]*;", message)


async def test_repair_sql_in_messages_quotes_a_keyword_table_name(
    db: Database, conn: asyncpg.Connection, layout: Layout
):
    """With SUPERVISOR_TRACKING_TABLE=order, the DELETE/UPDATE a message tells the operator to run say "order" (a
    reserved word: unquoted, Postgres refuses it), and they run as printed; so does a file name with a quote."""
    env = db.env(SUPERVISOR_TRACKING_TABLE="order")
    layout.add(
        "pre", "001_it's.sql", "-- supervisor: no-transaction\nCREATE TABLE t_one (id int);\nSELECT 1/0;"
    )
    r = await supervise(*PRE, env=env, cwd=layout.root)
    assert r.code == 4, r.stderr
    again = await supervise(*PRE, env=env, cwd=layout.root)
    assert again.code == 5, again.stderr
    assert again.failure["error_code"] == "HALF_APPLIED"
    message = again.failure["error"]
    [update] = _statements(message, 'UPDATE "order"')
    [delete] = _statements(message, 'DELETE FROM "order"')
    assert delete == """DELETE FROM "order" WHERE filename = '001_it''s.sql';"""
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await conn.execute(delete.replace('"order"', "order"))
    assert await conn.execute(update) == "UPDATE 1"
    assert await conn.execute(delete) == "DELETE 1"

    layout.add("pre", "002.sql", "CREATE TABLE t_two (id int);")
    (layout.pre / "001_it's.sql").unlink()
    assert (await supervise(*PRE, env=env, cwd=layout.root)).code == 0
    layout.add("pre", "002.sql", "CREATE TABLE t_two (id int); -- edited")
    changed = await supervise(*PRE, env=env, cwd=layout.root)
    assert changed.code == 5, changed.stderr
    assert changed.failure["error_code"] == "CHECKSUM_MISMATCH"
    assert (
        """UPDATE "order" SET checksum = '<new checksum>' WHERE filename = '<file>'"""
        in changed.failure["error"]
    )


async def _silent_server(writers: list[asyncio.StreamWriter]) -> tuple[asyncio.Server, int]:
    """A TCP server that accepts connections and never answers (a host that swallows the startup packet); the
    connections it holds go into `writers`, for closing."""

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_short_wait_budget_ends_within_its_length_against_a_silent_host():
    """SUPERVISOR_WAIT_TIMEOUT shorter than the per-attempt timeout (and than the old 0.5 s floor): against a host
    that never answers, the wait ends at about the budget, not at an attempt's full timeout."""
    writers: list[asyncio.StreamWriter] = []
    server, port = await _silent_server(writers)
    try:
        db = DbSettings(host="127.0.0.1", port=port, database="x", user="u", password="p")
        for budget in (0.15, 1.2):
            t0 = time.monotonic()
            with pytest.raises(DatabaseUnavailable) as err:
                await wait_for_postgres(db, budget, structlog.get_logger())
            elapsed = time.monotonic() - t0
            assert budget - 0.05 < elapsed < budget + 0.25, (budget, elapsed)
            assert err.value.error_code == "DB_UNREACHABLE"
            assert (
                "last error: TimeoutError: no answer within the connection attempt's time"
                in err.value.message
            )
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()


async def test_the_wait_uses_its_whole_budget_against_a_refusing_port():
    """Connection refused is retried until the budget is spent, not given up when the next backoff would overrun
    it: the last sleep is shortened instead."""
    db = DbSettings(host="127.0.0.1", port=free_port(), database="x", user="u", password="p")
    t0 = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        await wait_for_postgres(db, 3.0, structlog.get_logger())
    elapsed = time.monotonic() - t0
    assert 2.85 < elapsed < 3.4, elapsed
