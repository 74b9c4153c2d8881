"""PM2_INSTANCES above 1: Directus workers in pm2-runtime's cluster mode (the real pm2 7.0.4 from npm, a Node
stand-in for Directus: tests/pm2_standin.cjs). Every worker runs, and signals, the exit status and the stop timeout
apply to the whole group; a missing pm2 or a bad PM2_INSTANCES is an exit 2 before any phase."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import pm2
from tests.conftest import ROOT, STANDIN, Database, Layout, finish, start_supervisor, supervise, wait_for_text
from tests.pg import free_port
from tests.pm2_install import install_pm2, kill_tree, pm2_env

NODE_STANDIN = f"node {ROOT / 'tests' / 'pm2_standin.cjs'}"


@pytest.fixture(scope="module")
def pm2_bin() -> Path:
    """The folder holding the pinned pm2-runtime."""
    return install_pm2()


@pytest.fixture
def cleanup() -> Iterator[list[asyncio.subprocess.Process]]:
    """Supervisors a test started: whatever is left of each one's process tree after the test is SIGKILLed, so
    a failing test leaves no Directus stand-in or pm2-runtime behind."""
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for proc in procs:
        if proc.returncode is None:  # not reaped yet: the pid is still this supervisor's
            kill_tree(proc.pid)


def _env(pm2_bin: Path, tmp_path: Path, log: Path, **extra: str) -> dict[str, str]:
    return {
        **pm2_env(pm2_bin, tmp_path / "pm2-home"),
        "SUPERVISOR_DIRECTUS_CMD": NODE_STANDIN,
        "STANDIN_LOG": str(log),
        "SUPERVISOR_LOG_FORMAT": "json",
        "PORT": str(free_port()),
        **extra,
    }


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def _ppid_pgid(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]), int(fields[2])


def _text(log: Path) -> str:
    return log.read_text() if log.exists() else ""


async def _workers_ready(log: Path, count: int) -> list[int]:
    """The pids of `count` stand-in workers once each has said it is ready."""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        ready = [int(p) for p in re.findall(r"^ready pid=(\d+)$", _text(log), re.MULTILINE)]
        if len(ready) >= count:
            return ready
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} workers never became ready: {_text(log)!r}")


async def _gone(pids: list[int], timeout: float = 5) -> list[int]:  # noqa: ASYNC109
    """The pids still running after `timeout` seconds (none, once they have all stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            break
        await asyncio.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (a loopback http URL of the test)
        return str(r.read().decode())


async def test_three_workers_run_in_cluster_mode_and_term_stops_them_all(
    pm2_bin: Path, layout: Layout, tmp_path: Path, cleanup: list[asyncio.subprocess.Process]
):
    """PM2_INSTANCES=3: three Directus workers, children of pm2-runtime (which took the worker's pid, in a process
    group of its own), share one port and get the CLI entry's arguments (`start`, after pm2-runtime's own: as in
    the official image). TERM is forwarded to pm2-runtime, which stops every worker (SIGINT) and exits 0; the
    supervisor exits 0 with it, well within the stop timeout."""
    log = tmp_path / "log"
    env = _env(pm2_bin, tmp_path, log, PM2_INSTANCES="3", SUPERVISOR_STOP_TIMEOUT="20")
    proc = await start_supervisor("run", "--only", "start", env=env, cwd=layout.root)
    cleanup.append(proc)
    pids = await _workers_ready(log, 3)
    assert len(set(pids)) == 3
    runtime = _ppid_pgid(pids[0])[0]
    assert {_ppid_pgid(p) for p in pids} == {(runtime, runtime)}
    assert _ppid_pgid(runtime) == (proc.pid, runtime)
    assert (await asyncio.to_thread(_get, f"http://127.0.0.1:{env['PORT']}/")).startswith("pong ")
    started = re.findall(r"^started .* args=(\S+) handed=(\w+)$", _text(log), re.MULTILINE)
    assert started == [(f'["start","{pm2.CONFIG}","start"]', "no")] * 3  # SUPERVISOR_PM2_APP stays with pm2

    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=30)
    assert r.code == 0, r.stderr  # pm2-runtime's own status after a stop
    assert time.monotonic() - t0 < 15
    assert await _gone([*pids, runtime]) == []
    assert all(f"signal SIGINT pid={p}" in _text(log) for p in pids)  # pm2 stops each worker with SIGINT
    forwarded = r.events("signal.forwarded")
    assert [(e["signal"], e.get("sent"), e.get("to")) for e in forwarded] == [
        ("SIGTERM", "SIGTERM", "pm2-runtime")
    ]
    assert r.events("directus.exec")[0]["pm2_instances"] == 3
    assert r.events("directus.exited")[0]["exit_code"] == 0
    assert r.events("directus.killed") == []


async def test_a_worker_that_hangs_on_stop_is_killed_with_its_group_after_the_stop_timeout(
    pm2_bin: Path, layout: Layout, tmp_path: Path, cleanup: list[asyncio.subprocess.Process]
):
    """Workers whose event loop blocks on SIGINT (a hung shutdown) and a pm2 kill_timeout longer than the
    supervisor's stop timeout (warned about at start-up): after SUPERVISOR_STOP_TIMEOUT the whole group,
    pm2-runtime and every worker, is SIGKILLed at once (no leftover sweep needed); the supervisor exits 137 and
    nothing of the group survives."""
    log = tmp_path / "log"
    env = _env(
        pm2_bin, tmp_path, log,
        PM2_INSTANCES="2", STANDIN_IGNORE_STOP="hang", PM2_KILL_TIMEOUT="60000", SUPERVISOR_STOP_TIMEOUT="2",
    )  # fmt: skip
    proc = await start_supervisor("run", "--only", "start", env=env, cwd=layout.root)
    cleanup.append(proc)
    pids = await _workers_ready(log, 2)
    runtime = _ppid_pgid(pids[0])[0]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=30)
    elapsed = time.monotonic() - t0
    assert r.code == 137, r.stderr
    assert 2 <= elapsed < 12
    assert await _gone([*pids, runtime], timeout=1) == []
    killed = r.events("directus.killed")
    assert len(killed) == 1
    assert killed[0]["group"] is True
    assert r.events("pm2.workers_killed") == []
    assert r.events("pm2.kill_timeout_too_long")[0]["pm2_kill_timeout_ms"] == 60000


async def test_workers_left_behind_by_a_dying_pm2_runtime_are_killed(
    pm2_bin: Path, layout: Layout, tmp_path: Path, cleanup: list[asyncio.subprocess.Process]
):
    """pm2-runtime SIGKILLed from outside (the OOM killer, say) while its workers hang: the supervisor passes on
    137 and kills the workers left in pm2-runtime's group, which would otherwise outlive it."""
    log = tmp_path / "log"
    env = _env(pm2_bin, tmp_path, log, PM2_INSTANCES="2", STANDIN_IGNORE_STOP="hang")
    proc = await start_supervisor("run", "--only", "start", env=env, cwd=layout.root)
    cleanup.append(proc)
    pids = await _workers_ready(log, 2)
    runtime = _ppid_pgid(pids[0])[0]
    for p in pids:  # hang both workers first
        os.kill(p, signal.SIGINT)
        await wait_for_text(log, f"signal SIGINT pid={p}")
    os.kill(runtime, signal.SIGKILL)
    r = await finish(proc, timeout=30)
    assert r.code == 137, r.stderr
    assert await _gone(pids, timeout=1) == []
    assert sorted(r.events("pm2.workers_killed")[0]["pids"]) == sorted(pids)


async def test_hup_stops_the_group_through_pm2_and_usr2_reaches_every_worker(
    pm2_bin: Path, layout: Layout, tmp_path: Path, cleanup: list[asyncio.subprocess.Process]
):
    """USR2 and WINCH go to each worker, not to pm2-runtime (USR2's default action would end it and orphan the
    workers); HUP becomes TERM for pm2-runtime, so the group stops in order (exit 0) rather than pm2-runtime
    dying by the signal with its workers left running."""
    log = tmp_path / "log"
    proc = await start_supervisor(
        "run", "--only", "start", env=_env(pm2_bin, tmp_path, log, PM2_INSTANCES="2"), cwd=layout.root
    )
    cleanup.append(proc)
    pids = await _workers_ready(log, 2)
    runtime = _ppid_pgid(pids[0])[0]
    proc.send_signal(signal.SIGUSR2)
    for p in pids:
        await wait_for_text(log, f"signal SIGUSR2 pid={p}")
    proc.send_signal(signal.SIGWINCH)
    for p in pids:
        await wait_for_text(log, f"signal SIGWINCH pid={p}")
    assert _alive(runtime)
    proc.send_signal(signal.SIGHUP)
    r = await finish(proc, timeout=30)
    assert r.code == 0, r.stderr
    assert await _gone([*pids, runtime]) == []
    forwarded = r.events("signal.forwarded")
    assert [e["signal"] for e in forwarded] == ["SIGUSR2", "SIGWINCH", "SIGHUP"]
    assert sorted(forwarded[0]["pids"]) == sorted(pids)
    assert forwarded[2]["sent"] == "SIGTERM"


async def test_exec_replaces_the_supervisor_with_pm2_runtime(
    pm2_bin: Path, layout: Layout, tmp_path: Path, cleanup: list[asyncio.subprocess.Process]
):
    """`run --exec` with PM2_INSTANCES=2: pm2-runtime takes the supervisor's pid (no resident loop, and no process
    group of its own, so a terminal's job control still reaches it); TERM stops its workers and it exits 0."""
    log = tmp_path / "log"
    env = _env(pm2_bin, tmp_path, log, PM2_INSTANCES="2")
    proc = await start_supervisor("run", "--only", "start", "--exec", env=env, cwd=layout.root)
    cleanup.append(proc)
    pids = await _workers_ready(log, 2)
    assert {_ppid_pgid(p)[0] for p in pids} == {proc.pid}
    assert _ppid_pgid(proc.pid)[1] != proc.pid
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=30)
    assert r.code == 0, r.stderr
    assert await _gone(pids) == []
    assert "PM2 successfully stopped" in r.stdout


async def test_when_every_worker_has_died_the_supervisor_exits_with_pm2_runtimes_2(
    pm2_bin: Path, layout: Layout, tmp_path: Path
):
    """Directus dying on its own in every worker (exit 1, PM2_AUTO_RESTART unset): pm2-runtime notices that no app
    is online and exits 2 (after about 10 s), which the supervisor passes on; no signal was involved."""
    log = tmp_path / "log"
    env = _env(pm2_bin, tmp_path, log, PM2_INSTANCES="2", STANDIN_EXIT_AFTER_READY="1")
    r = await supervise("run", "--only", "start", env=env, cwd=layout.root, timeout=60)
    assert r.code == 2, r.stderr
    assert len(re.findall(r"^ready pid=", _text(log), re.MULTILINE)) == 2
    assert r.events("directus.exited")[0]["exit_code"] == 2
    assert r.events("signal.forwarded") == [] and r.events("supervisor.failed") == []


async def test_without_pm2_on_path_run_exits_2_before_any_phase(layout: Layout, db: Database, tmp_path: Path):
    """No pm2-runtime on PATH: exit 2 (PM2_MISSING) naming pm2-runtime and how to install it, at start-up: no
    phase ran, not even the wait for Postgres (the database is left without the supervisor's schema)."""
    layout.add("pre", "001.sql", "CREATE TABLE t (id int);")
    (layout.root / "snapshots").mkdir()
    shutil.copy(ROOT / "snapshots" / "schema.yaml", layout.root / "snapshots")
    env = db.env(
        PATH="/usr/bin:/bin", PM2_INSTANCES="2", SUPERVISOR_DIRECTUS_CMD=NODE_STANDIN, PM2_HOME=str(tmp_path)
    )
    r = await supervise("run", env=env, cwd=layout.root)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "PM2_MISSING"
    assert "needs pm2-runtime on PATH" in r.failure["error"]
    assert "npm install --global pm2" in r.failure["error"]
    assert r.events("db.connected") == [] and r.events("phase.finished") == []
    conn = await db.connect()
    try:
        assert await conn.fetchval(
            "SELECT to_regclass('public.t') IS NULL AND to_regnamespace('supervisor') IS NULL"
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "3x"])
async def test_a_bad_pm2_instances_is_exit_2(value: str, layout: Layout, tmp_path: Path):
    """PM2_INSTANCES that is not a whole number from 1 up (or max) is refused with exit 2, naming the variable."""
    env = {"PATH": "/usr/bin:/bin", "PM2_INSTANCES": value, "SUPERVISOR_DIRECTUS_CMD": NODE_STANDIN,
           "SUPERVISOR_LOG_FORMAT": "json"}  # fmt: skip
    r = await supervise("run", "--only", "start", env=env, cwd=layout.root, timeout=30)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "CONFIG_INVALID"
    assert r.failure["error"].startswith(f"PM2_INSTANCES={value!r} is not a number of workers")


async def test_pm2_instances_1_runs_directus_alone(
    layout: Layout, tmp_path: Path, cleanup: list[asyncio.subprocess.Process]
):
    """PM2_INSTANCES=1 needs no pm2 (none on PATH here) and changes nothing: Directus is the supervisor's child
    and its own status (143 after TERM) comes back."""
    log = tmp_path / "log"
    env = {"PATH": "/usr/bin:/bin", "PM2_INSTANCES": "1", "SUPERVISOR_DIRECTUS_CMD": STANDIN,
           "STANDIN_LOG": str(log), "SUPERVISOR_LOG_FORMAT": "json"}  # fmt: skip
    proc = await start_supervisor("run", "--only", "start", env=env, cwd=layout.root)
    cleanup.append(proc)
    await wait_for_text(log, "ready")
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=20)
    assert r.code == 143, r.stderr
    assert "pm2_instances" not in r.events("directus.exec")[0]
    assert os.path.basename(r.events("directus.exec")[0]["argv"].split()[1]) == "standin.py"
