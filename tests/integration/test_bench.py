"""The benchmark scripts keep working: a tiny run of each against its real peers prints its table (behaviour, not
timing)."""

from __future__ import annotations

import asyncio
import sys

import pytest

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


async def _bench(*argv: str, timeout: float = 560) -> str:  # noqa: ASYNC109
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / argv[0]), *argv[1:],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, (out.decode()[-2000:], err.decode()[-3000:])
    return out.decode()


def _rows(out: str) -> dict[str, list[str]]:
    """Table rows by their first cell, header rows left out."""
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows if r[0].strip() not in ("way", "replicas")}


@pytest.mark.timeout(600)
async def test_cold_boot_benchmark_boots_every_way_on_fresh_databases():
    """bench/cold_boot.py boots the official flow, the by-hand steps and the supervisor on fresh databases; every
    one comes up, and the supervisor's own time is reported."""
    rows = _rows(await _bench("cold_boot.py", "--runs", "1"))
    assert list(rows) == ["official image", "by hand", "supervisor run", "supervisor run, no early start"]
    assert not any("never" in cells[0] for cells in rows.values()), rows
    assert rows["by hand"][2] == "1.00x" and rows["official image"][3] == "1.00x"
    assert int(rows["supervisor run"][-1]) > 0 and int(rows["supervisor run, no early start"][-1]) > 0


@pytest.mark.timeout(600)
async def test_upgrade_boot_benchmark_runs_both_sides_on_copies_of_a_migrated_database():
    """bench/upgrade_boot.py boots by hand and the supervisor on copies of a migrated database whose recorded
    Directus version was changed; both come up."""
    rows = _rows(await _bench("upgrade_boot.py", "--runs", "1"))
    assert list(rows) == ["by hand", "official image", "supervisor run"]
    assert not any("never" in cells[0] for cells in rows.values()), rows
    assert int(rows["supervisor run"][-1]) > 0


@pytest.mark.timeout(600)
async def test_warm_boot_benchmark_boots_every_way_on_one_database():
    """bench/warm_boot.py times bare start, the official flow and the supervisor on one migrated database."""
    rows = _rows(await _bench("warm_boot.py", "--runs", "1"))
    assert list(rows) == ["bare start", "official image", "supervisor run"]
    assert rows["bare start"][2] == "1.00x" and int(rows["supervisor run"][-1]) > 0


@pytest.mark.timeout(600)
async def test_replicas_benchmark_migrates_with_several_replicas_at_once():
    """bench/replicas.py runs N `migrate`s at once on a fresh database (every one exits 0) against one alone."""
    rows = _rows(await _bench("replicas.py", "--replicas", "2", "--runs", "1"))
    assert list(rows) == ["1", "2"] and rows["1"][2] == "1.00x"


@pytest.mark.timeout(300)
async def test_roundtrips_benchmark_counts_the_warm_boots_statements():
    """bench/roundtrips.py counts a warm migrate's round trips from the server log (at most 37 today: 35, and the
    look-up of an earlier ledger on the search path)."""
    out = await _bench("roundtrips.py", timeout=280)
    cells = next(line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()).split("|")
    assert 0 < int(cells[3]) <= 37, out
