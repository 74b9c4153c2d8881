"""No signal is fatal or lost from the first instant of `run` to Directus (DESIGN §9).

Each handled signal is sent to `run` at several moments, counted from the instant the entrypoint has blocked the
signals (its first act: Python's own start-up before it is out of reach): while the worker imports, while a phase
runs against a real Postgres, and once Directus (the stand-in, tests/standin.py) runs. A stop ends the boot with
128+N through the clean path (the worker's INTERRUPTED line, Directus never started) or reaches Directus; SIGUSR1,
SIGUSR2 and SIGWINCH never end anything: ignored until Directus runs, forwarded after. The race points that timing
cannot hit (a stop just before the exec) are forced with tests/signal_hook.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from supervisor.state import StateTable
from tests.conftest import (
    ROOT,
    STANDIN,
    Database,
    Layout,
    PgServer,
    Result,
    finish,
    start_supervisor,
    wait_for_text,
)

STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
ALL = (*STOPS, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
_MASK = sum(1 << (s - 1) for s in (*ALL, signal.SIGCHLD))
OFFSETS = (
    0.0,
    0.02,
    0.05,
    0.1,
    0.2,
    0.4,
    0.8,
)  # s after the block; the worker imports for 0.2-0.5 s, then execs
TABLE = "migrations_applied"
When = Callable[[asyncio.subprocess.Process], Awaitable[None]]


def _blocked_or_gone(pid: int, deadline: float) -> None:
    """Wait until the entrypoint has blocked the handled signals, or forked (its resident loop waits in
    sigtimedwait, which shows the waited-for signals as unblocked meanwhile), or exited."""
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return  # exited: the caller's checks say why
        blocked = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
        if blocked & _MASK == _MASK or children.strip():
            return
        time.sleep(0.001)
    raise AssertionError(f"pid {pid} never blocked the handled signals")


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def after(seconds: float) -> When:
    """`seconds` after the entrypoint has blocked the handled signals."""

    async def when(proc: asyncio.subprocess.Process) -> None:
        await asyncio.to_thread(_blocked_or_gone, proc.pid, time.monotonic() + 30)
        await asyncio.sleep(seconds)

    return when


def once_ready(log: Path) -> When:
    """Once Directus (the stand-in) runs, its handlers installed."""

    async def when(_proc: asyncio.subprocess.Process) -> None:
        await wait_for_text(log, "ready", timeout=30)

    return when


@dataclass
class Trial:
    """One signal sent at one moment, and all that came of it."""

    sig: signal.Signals
    r: Result
    standin: str  # the stand-in's log ("" if Directus never started)
    ready_at_send: bool  # Directus ran, its handlers installed, when the signal was sent
    stopped_early: bool  # ended before the test's own final SIGTERM

    def check(self) -> None:
        """The signal was neither fatal by a default action nor lost, and nothing hung or needed SIGKILL."""
        name = self.sig.name
        where = f"{name}: exit {self.r.code}\n{self.standin}\n{self.r.stderr[-3000:]}"
        assert name in [e["signal"] for e in self.r.events("signal.forwarded")], where
        assert self.r.events("directus.killed") == [], where
        if self.stopped_early:
            assert self.sig in STOPS, where  # never a default action of USR1, USR2 or WINCH (138, 140)
            # (Python prints "Fatal Python error: " and "init_import_site: ..." in two writes: one of our lines may
            # come in between.)
            if self.r.code == 1 and "init_import_site: Failed to import the site module" in self.r.stderr:
                # The stand-in (a Python program) got the forwarded SIGINT while its own interpreter was starting
                # and exited 1, which the supervisor passed on as Directus's own status (Node would end 130).
                assert self.sig == signal.SIGINT and self.r.events("directus.exec") and self.standin == "", (
                    where
                )
                return
            assert self.r.code == 128 + self.sig, where
            failed = self.r.events("supervisor.failed")
            if failed:  # the clean stop: the boot was cancelled and Directus never started
                assert failed[0]["error_code"] == "INTERRUPTED", where
                assert name in failed[0]["error"], where
                assert self.standin == "", where
            else:  # Directus had been started and ended on the signal (forwarded to it)
                assert self.r.events("directus.exec"), where
            return
        assert self.sig not in (signal.SIGTERM, signal.SIGINT), where  # a lost stop: Directus ran on
        assert self.r.code == 143, where  # the test's own final SIGTERM
        assert "ready" in self.standin, where
        assert "signal SIGTERM" in self.standin, where
        if self.ready_at_send or self.sig in STOPS:  # forwarded to Directus, which noted it
            assert f"signal {name}" in self.standin, where


async def _settle(
    proc: asyncio.subprocess.Process, sig: signal.Signals, log: Path, ready_at_send: bool
) -> bool:
    """Wait until the supervisor exits (True) or the signal has visibly not stopped it (False); never forever."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            return True
        text = await asyncio.to_thread(_text, log)
        noted = f"signal {sig.name}" in text
        if sig in (signal.SIGHUP, signal.SIGQUIT) and noted:
            return False  # reached Directus, which notes them and runs on
        if sig not in STOPS and "ready" in text and (noted or not ready_at_send):
            return False  # ignored before Directus ran, or forwarded to it
        try:
            await asyncio.wait_for(proc.wait(), 0.05)
        except TimeoutError:
            continue
        return True
    raise AssertionError(
        f"{sig.name}: the supervisor neither stopped nor reached Directus within 30 s (a hang)"
    )


async def run_trial(
    sig: signal.Signals, when: When, *args: str, env: dict[str, str], cwd: Path, log: Path
) -> Trial:
    """Start `python -m supervisor ARGS`, send `sig` at `when`, then end it with SIGTERM if it still runs."""
    proc = await start_supervisor(*args, env=env, cwd=cwd)
    try:
        await when(proc)
        ready_at_send = "ready" in await asyncio.to_thread(_text, log)
        if proc.returncode is None:
            proc.send_signal(sig)
        stopped_early = await _settle(proc, sig, log, ready_at_send)
        if not stopped_early:
            proc.send_signal(signal.SIGTERM)
        r = await finish(proc, timeout=30)
    except BaseException as e:
        # Directus holds the output pipes: end the whole tree, or waiting for the supervisor never returns.
        states = "\n".join(await asyncio.to_thread(_states, await asyncio.to_thread(_tree, proc.pid)))
        err = await _end_tree(proc)
        log_text = await asyncio.to_thread(_text, log)
        raise AssertionError(f"{sig.name}: {e!r}\n{states}\n{log_text}\n{err.decode()[-3000:]}") from e
    return Trial(sig, r, await asyncio.to_thread(_text, log), ready_at_send, stopped_early)


def _tree(pid: int) -> list[int]:
    """The pid and its descendants, parents first."""
    found = [pid]
    for each in found:
        for task in Path(f"/proc/{each}/task").glob("*"):
            with contextlib.suppress(OSError):
                found.extend(int(child) for child in (task / "children").read_text().split())
    return found


def _states(pids: list[int]) -> list[str]:
    lines = []
    for pid in pids:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            keep = [line for line in status if line.startswith(("State", "PPid", "Sig", "ShdPnd"))]
            lines.append(f"{pid}: " + " ".join(" ".join(line.split()) for line in keep))
    return lines


async def _bounded(limit: asyncio.Semaphore, trial: Awaitable[Trial]) -> Trial:
    async with limit:
        return await trial


def _standin_env(log: Path, **extra: str) -> dict[str, str]:
    return {"SUPERVISOR_DIRECTUS_CMD": STANDIN, "STANDIN_LOG": str(log), "SUPERVISOR_LOG_FORMAT": "json",
            "PATH": "/usr/bin:/bin", **extra}  # fmt: skip


@pytest.mark.parametrize("sig", ALL, ids=lambda s: s.name)
async def test_each_signal_at_each_moment_of_run_only_start(
    sig: signal.Signals, layout: Layout, tmp_path: Path
):
    """`run --only start` (no database): the signal at 0-800 ms after the block (the worker still importing, or
    about to exec) and once Directus runs. A stop ends it with 128+N (the clean stop, or Directus's own status);
    USR1/USR2/WINCH never end it (ignored, then forwarded); nothing hangs."""
    limit = asyncio.Semaphore(4)
    moments: list[tuple[str, When, Path]] = []
    for offset in OFFSETS:
        log = tmp_path / f"log-{offset}"
        moments.append((f"{offset}s", after(offset), log))
    ready_log = tmp_path / "log-ready"
    moments.append(("ready", once_ready(ready_log), ready_log))
    trials = await asyncio.gather(*(
        _bounded(limit, run_trial(sig, when, "run", "--only", "start", env=_standin_env(log), cwd=layout.root,
                                  log=log))
        for _, when, log in moments
    ))  # fmt: skip
    for (label, _, _), trial in zip(moments, trials, strict=True):
        try:
            trial.check()
        except AssertionError as e:
            raise AssertionError(f"{sig.name} at {label}: {e}") from e
    assert trials[-1].ready_at_send  # the last moment really was with Directus running


@asynccontextmanager
async def fresh_database(pg: PgServer) -> AsyncIterator[Database]:
    """A new database with Directus marked as bootstrapped (so `run --from post-schema` starts no CLI step)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        db = Database(pg, name)
        conn = await db.connect()
        try:
            await conn.execute("CREATE TABLE directus_collections (collection text)")
            await StateTable(conn, TABLE).put("bootstrap", "12.4.0", None, 0)
        finally:
            await conn.close()
        yield db
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def in_the_phase(db: Database) -> When:
    """While post-schema's file runs its `pg_sleep` (the phase's lock held, its transaction open)."""

    async def when(proc: asyncio.subprocess.Process) -> None:
        conn = await db.connect()
        try:
            deadline = time.monotonic() + 30
            while not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                          "'%pg_sleep(0.6)%' AND pid <> pg_backend_pid() AND datname = current_database()"):  # fmt: skip
                assert proc.returncode is None, "the supervisor ended before the phase ran"
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    return when


async def _phase_trial(
    pg: PgServer, sig: signal.Signals, moment: str, layout: Layout, tmp_path: Path
) -> tuple[Trial, bool, int, int]:
    log = tmp_path / f"log-{sig.name}-{moment}"
    async with fresh_database(pg) as db:
        env = db.env(SUPERVISOR_DIRECTUS_CMD=STANDIN, STANDIN_LOG=str(log), SUPERVISOR_TRACKING_TABLE=TABLE)
        when = in_the_phase(db) if moment == "in-phase" else after(0.15)
        trial = await run_trial(sig, when, "run", "--from", "post-schema", env=env, cwd=layout.root, log=log)
        conn = await db.connect()
        try:
            created = await conn.fetchval("SELECT to_regclass('t') IS NOT NULL")
            recorded = 0
            if await conn.fetchval(f"SELECT to_regclass('{TABLE}') IS NOT NULL"):
                recorded = await conn.fetchval(f"SELECT count(*) FROM {TABLE} WHERE filename = '001.sql'")
            locks = await conn.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND d.datname = current_database()"
            )
        finally:
            await conn.close()
    return trial, created, recorded, locks


async def test_each_signal_while_the_phases_run_against_postgres(
    pg: PgServer, layout: Layout, tmp_path: Path
):
    """`run --from post-schema` with a real Postgres, each signal early (connecting) and in the middle of the
    file: a stop ends the boot with 128+N, the file rolled back and not recorded, no lock left, Directus never
    started; USR1/USR2/WINCH are ignored: the file is applied once and Directus starts."""
    layout.add("post", "001.sql", "CREATE TABLE t (id int);\nSELECT pg_sleep(0.6);")
    limit = asyncio.Semaphore(3)
    cases = [(sig, moment) for sig in ALL for moment in ("early", "in-phase")]
    results = await asyncio.gather(
        *(_bounded_phase(limit, pg, sig, moment, layout, tmp_path) for sig, moment in cases)
    )
    for (sig, moment), (trial, created, recorded, locks) in zip(cases, results, strict=True):
        label = f"{sig.name} {moment}"
        try:
            trial.check()
            assert locks == 0
            if sig in STOPS and moment == "in-phase":
                assert trial.stopped_early
                assert trial.r.failure["error_code"] == "INTERRUPTED"
                assert (created, recorded) == (False, 0)  # rolled back, not recorded
            elif trial.stopped_early and trial.r.events("supervisor.failed"):
                assert recorded in (0, 1)  # stopped before or after the file: never half
                assert created == bool(recorded)
            else:  # the boot went on to Directus: the file applied exactly once
                assert (created, recorded) == (True, 1)
                assert trial.r.events("directus.exec")
        except AssertionError as e:
            raise AssertionError(f"{label}: {e}\n{trial.r.stderr[-3000:]}") from e


async def _bounded_phase(
    limit: asyncio.Semaphore, pg: PgServer, sig: signal.Signals, moment: str, layout: Layout, tmp_path: Path
) -> tuple[Trial, bool, int, int]:
    async with limit:
        return await _phase_trial(pg, sig, moment, layout, tmp_path)


# --- the exec race, forced ----------------------------------------------------------------------------------------


async def _hooked(point: str, *args: str, env: dict[str, str], cwd: Path) -> Result:
    pythonpath = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "tests" / "signal_hook.py"), point, *args,
        env={**env, "PYTHONPATH": pythonpath}, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        return await finish(proc, timeout=30)
    except TimeoutError:  # the stop was lost and Directus runs on: end it all, and say so
        await _end_tree(proc)
        raise AssertionError("the SIGTERM was lost: the supervisor and Directus kept running") from None


async def _end_tree(proc: asyncio.subprocess.Process) -> bytes:
    """SIGKILL the supervisor and its descendants (Directus holds the output pipes); its stderr."""
    for pid in reversed(await asyncio.to_thread(_tree, proc.pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    return err


@pytest.mark.parametrize("point", ["exec-directus", "os-exec"])
async def test_a_term_just_before_the_exec_means_directus_never_starts(
    point: str, layout: Layout, tmp_path: Path
):
    """Regression (issue 8): a SIGTERM that reaches the worker after the phases, just before the exec, was caught
    by the event loop's handler and dropped by the exec, and Directus started anyway. At the start of
    exec_directus it now ends the boot cleanly (INTERRUPTED, 143); at the very exec it takes its default action
    (143). Either way Directus never runs."""
    log = tmp_path / "log"
    r = await _hooked(point, "run", "--only", "start", env=_standin_env(log), cwd=layout.root)
    assert r.code == 143, r.stderr
    assert not log.exists(), log.read_text()
    if point == "exec-directus":
        assert r.failure["error_code"] == "INTERRUPTED"
        assert r.events("directus.exec") == []


async def test_a_term_right_after_the_last_phase_means_directus_never_starts(
    pg: PgServer, layout: Layout, tmp_path: Path
):
    """Regression (issue 8): a SIGTERM caught by the event loop right after the last phase (its handler ran, its
    callback not yet) is honoured: INTERRUPTED, 143, the phase's work kept and recorded, Directus never started."""
    log = tmp_path / "log"
    layout.add("post", "001.sql", "CREATE TABLE t (id int);")
    async with fresh_database(pg) as db:
        env = db.env(SUPERVISOR_DIRECTUS_CMD=STANDIN, STANDIN_LOG=str(log), SUPERVISOR_TRACKING_TABLE=TABLE)
        r = await _hooked("phases-done", "run", "--from", "post-schema", env=env, cwd=layout.root)
        conn = await db.connect()
        try:
            assert await conn.fetchval(f"SELECT count(*) FROM {TABLE} WHERE filename = '001.sql'") == 1
        finally:
            await conn.close()
    assert r.code == 143, r.stderr
    assert r.failure["error_code"] == "INTERRUPTED"
    assert not log.exists(), log.read_text()


# --- --exec as PID 1 ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is part of this machine kind")
async def test_exec_as_pid_1_is_refused(layout: Layout, tmp_path: Path):
    """Regression (issue 8): `run --exec` as PID 1 made Directus PID 1, which ignores the SIGTERM Directus re-raises
    after shutting down, so a stop waited for SIGKILL. It is refused (exit 2, EXEC_AS_PID1) before anything runs;
    without --exec the same command as PID 1 starts Directus under the resident supervisor."""
    log = tmp_path / "log"
    env = {**_standin_env(log, STANDIN_EXIT_NOW="0"), "PYTHONPATH": str(ROOT)}
    command = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "supervisor", "run", "--only",
               "start"]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*command, "--exec", env=env, cwd=layout.root,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    r = await finish(proc, timeout=30)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "EXEC_AS_PID1"
    assert "PID 1" in r.failure["error"]
    assert "drop --exec" in r.failure["error"]
    assert not log.exists()

    proc = await asyncio.create_subprocess_exec(*command, env=env, cwd=layout.root,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    r = await finish(proc, timeout=30)
    assert r.code == 0, r.stderr
    assert "ppid 1 " in log.read_text()  # Directus ran as the child of the resident supervisor, PID 1
