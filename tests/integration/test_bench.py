"""The benchmark script keeps working: a tiny run against the real peers prints its table."""

from __future__ import annotations

import asyncio
import sys

from tests.conftest import ROOT


async def test_sql_migrations_benchmark_runs_against_its_peers():
    """bench/sql_migrations.py installs dbmate, applies the same files with every tool and prints the table."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "sql_migrations.py"), "--files", "3", "--cold-runs", "2",
        "--noop-runs", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 170)
    assert proc.returncode == 0, err.decode()
    rows = [line for line in out.decode().splitlines() if line.startswith("| ") and "tool" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["supervisor", "dbmate", "psql per file"]
    assert "| dbmate |" in out.decode() and "1.00x" in out.decode()
