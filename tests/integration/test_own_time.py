"""Every boot's summary line carries the supervisor's own time (everything but Node): `supervisor_ms`, beside
`boot_ms` (since the entry point started) and `node_ms` (the Directus CLI steps)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.conftest import ROOT, Database, Layout, supervise

ENV_STANDIN = f"{sys.executable} {ROOT / 'tests' / 'env_standin.py'}"
FAULT_STANDIN = f"{sys.executable} {ROOT / 'tests' / 'fault' / 'directus_standin.py'}"
SNAPSHOT = "version: 1\ndirectus: 12.4.0\nvendor: postgres\ncollections: []\nfields: []\nsystemFields: []\nrelations: []\n"


async def test_the_exec_line_of_run_carries_the_supervisors_own_time(layout: Layout, tmp_path: Path):
    """`run --only start`: no CLI step ran, so node_ms is 0 and supervisor_ms is the whole time since the resident
    parent started (more than the interpreter's start, less than the test's patience)."""
    env = {"SUPERVISOR_DIRECTUS_CMD": ENV_STANDIN, "ENV_STANDIN_LOG": str(tmp_path / "calls"),
           "SUPERVISOR_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}  # fmt: skip
    r = await supervise("run", "--only", "start", env=env, cwd=layout.root)
    assert r.code == 0, r.stderr
    line = r.events("directus.exec")[0]
    assert line["node_ms"] == 0
    assert line["wait_ms"] == 0
    assert 10 <= line["supervisor_ms"] == line["boot_ms"] < 30_000


async def test_cli_steps_and_lock_waits_are_not_the_supervisors_time(
    db: Database, layout: Layout, tmp_path: Path
):
    """Two `migrate`s at once on an empty database, with a stand-in CLI that sleeps 1 s in bootstrap and in apply:
    the one that runs the steps has them as node_ms, the other waits for the locks (wait_ms); supervisor_ms is
    boot_ms less both."""
    (layout.root / "snapshots").mkdir()
    (layout.root / "snapshots" / "schema.yaml").write_text(SNAPSHOT)
    (tmp_path / "standin").mkdir()
    env = db.env(SUPERVISOR_DIRECTUS_CMD=FAULT_STANDIN, FAULT_STANDIN_DIR=str(tmp_path / "standin"),
                 FAULT_STANDIN_SLEEP="1", SUPERVISOR_DB_INIT_DIR=str(layout.pre),
                 SUPERVISOR_DB_INIT_POST_DIR=str(layout.post))  # fmt: skip
    results = await asyncio.gather(*(supervise("migrate", env=env, cwd=layout.root) for _ in range(2)))
    assert [r.code for r in results] == [0, 0], [r.stderr for r in results]
    lines = [r.events("supervisor.finished")[0] for r in results]
    for r, line in zip(results, lines, strict=True):
        steps = sum(e["duration_ms"] for e in r.events("directus.step_finished"))
        assert line["node_ms"] == steps
        assert line["supervisor_ms"] == line["boot_ms"] - line["node_ms"] - line["wait_ms"] >= 0
    runner, waiter = sorted(lines, key=lambda line: -line["node_ms"])
    # Both ask the CLI for its version; one ran the steps.
    assert runner["node_ms"] - waiter["node_ms"] >= 2000
    assert waiter["wait_ms"] >= 1000
