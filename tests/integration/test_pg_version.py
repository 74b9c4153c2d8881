"""The matrix's PostgreSQL axis: the suite really runs against the major version it was asked for."""

from __future__ import annotations

import asyncpg

from tests.conftest import PgServer, expected_pg_major


async def test_server_is_the_requested_major_version(pg: PgServer, conn: asyncpg.Connection):
    """`server_version_num`'s major is SUPERVISOR_TEST_PG_VERSION's (unset: the local binaries' own version), so a
    matrix cell can never pass on another server by accident."""
    num = int(await conn.fetchval("SHOW server_version_num"))
    expected = expected_pg_major(pg)
    if expected is None:  # SUPERVISOR_TEST_DSN without a version: at least a supported one
        assert num // 10000 in (15, 16, 17, 18), num
    else:
        assert num // 10000 == expected, num
