"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import Database

APP_PW = "app-pw-123"


@pytest.fixture(params=["batched", "statementwise"])
async def sql_paths_env(
    request: pytest.FixtureRequest, db: Database, conn: asyncpg.Connection
) -> AsyncIterator[dict[str, str]]:
    """The supervisor's environment for both ways transactional files run: in batches, and one statement per round
    trip (a role without the TEMP privilege, so no batch counter)."""
    if request.param == "batched":
        yield db.env()
        return
    app = f"{db.name}_app"
    await conn.execute(f"CREATE ROLE {app} LOGIN PASSWORD '{APP_PW}'")
    await conn.execute(f'REVOKE TEMPORARY ON DATABASE "{db.name}" FROM PUBLIC')
    await conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {app}")
    await conn.execute(
        f"CREATE SCHEMA supervisor AUTHORIZATION {app}"
    )  # the ledger's; the role may not create it
    try:
        yield db.env(DB_USER=app, DB_PASSWORD=APP_PW)
    finally:
        await conn.execute(f"DROP OWNED BY {app}")
        await conn.execute(f"DROP ROLE {app}")
