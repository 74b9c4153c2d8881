"""End to end with PM2_INSTANCES=2: the real Directus in two pm2 cluster workers (the pinned pm2 from npm), after
the real boot phases on a real Postgres; TERM stops both."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from tests.conftest import Database, finish, start_supervisor
from tests.e2e.conftest import wait_for_ping
from tests.pm2_install import install_pm2, kill_tree


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


async def _two_workers(supervisor: int) -> tuple[int, list[int]]:
    """pm2-runtime (the supervisor's child) and its two Directus workers, once both exist."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for runtime in _children(supervisor):
            workers = [p for p in _children(runtime) if "run.js" in _cmdline(p)]
            if len(workers) == 2:
                return runtime, workers
        await asyncio.sleep(0.2)
    raise AssertionError("pm2-runtime never had two Directus workers")


async def test_two_directus_workers_serve_and_term_stops_both(fleet: Database, project: Path, tmp_path: Path):
    """Fresh database → `run` with PM2_INSTANCES=2 → the phases, then pm2-runtime with two Directus workers (the
    supervisor's CLI entry, run.js) → /server/ping answers → both come online → TERM → both stop, pm2-runtime
    exits 0 and the supervisor with it, within the stop timeout."""
    pm2_home = tmp_path / "pm2-home"
    pm2_home.mkdir()
    env = fleet.env(
        PM2_INSTANCES="2",
        PM2_HOME=str(pm2_home),
        PATH=os.pathsep.join([str(install_pm2()), os.environ.get("PATH", "")]),
        PM2_LOG_OUT_FILE="/dev/null",
        PM2_LOG_ERROR_FILE="/dev/null",
    )
    proc = await start_supervisor("run", env=env, cwd=project)
    try:
        await wait_for_ping(int(fleet.extra_env["PORT"]))
        runtime, workers = await _two_workers(proc.pid)
        await wait_for_ping(int(fleet.extra_env["PORT"]))
        await asyncio.sleep(1)  # the second worker's start-up, past pm2's own "online"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        r = await finish(proc, timeout=60)
    finally:
        if proc.returncode is None:  # a failure leaves no Directus behind
            kill_tree(proc.pid)
    assert r.code == 0, r.stderr  # pm2-runtime's status once it has stopped its workers
    assert time.monotonic() - t0 < 25  # SUPERVISOR_STOP_TIMEOUT's default
    assert all(_state(p) in ("Z", "gone") for p in [runtime, *workers])
    assert "App [directus:0] online" in r.stdout and "App [directus:1] online" in r.stdout
    assert "PM2 successfully stopped" in r.stdout
    exec_line = r.events("directus.exec")[0]
    assert exec_line["pm2_instances"] == 2
    assert exec_line["directus_script"].endswith("/@directus/api/dist/cli/run.js")
    assert exec_line["outcomes"]["pre-schema"] == "applied"
    assert r.events("directus.killed") == []


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return "gone"
    return stat[stat.rfind(b")") + 2 :].split()[0].decode()
