"""The README's first command keeps working."""

from __future__ import annotations

import asyncio
import sys

from tests.conftest import ROOT


async def test_demo_boots_directus_and_stops_cleanly(directus_install):
    """`scripts/demo --smoke` boots Directus through the supervisor on a throw-away Postgres, gets a 200 from
    /server/ping and sees the supervisor pass Directus's SIGTERM status on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "scripts" / "demo.py"), "--smoke",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 170)
    text = out.decode()
    assert proc.returncode == 0, text[-4000:]
    assert "Directus is up: http://127.0.0.1:" in text
    assert "supervisor exited with 143 after SIGTERM" in text
