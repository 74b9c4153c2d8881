"""A fault no item of issue 8 covers: a Directus CLI that cannot be started was reported as a lost database
connection (exit 3, CONNECTION_LOST), because the spawn's OSError looked like a socket error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Database, Layout, supervise

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("cmd", ["/nonexistent/directus", "./not-executable"])
async def test_a_directus_cli_that_cannot_start_is_a_configuration_error(
    cmd: str, db: Database, layout: Layout, tmp_path: Path
):
    """SUPERVISOR_DIRECTUS_CMD naming a missing or non-executable file: exit 2 (DIRECTUS_CMD_INVALID) naming the
    variable, not exit 3 with a story about the database connection."""
    (layout.root / "not-executable").write_text("#!/bin/sh\n")
    r = await supervise(
        "migrate", "--only", "bootstrap", env=db.env(SUPERVISOR_DIRECTUS_CMD=cmd), cwd=layout.root
    )
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "DIRECTUS_CMD_INVALID"
    assert "SUPERVISOR_DIRECTUS_CMD" in r.failure["error"]
    assert "connection" not in r.failure["error"]
