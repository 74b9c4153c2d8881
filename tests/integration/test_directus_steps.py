"""No Directus CLI step runs without its lock (a stand-in CLI, a real Postgres): a step whose lock session dies is
stopped (exit 3), a step dies with its supervisor (`kill -9`), and a hung step is stopped after
SUPERVISOR_STEP_TIMEOUT (exit 8)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import STANDIN, Database, Layout, finish, start_supervisor, wait_for_text

_LOCK_BACKENDS = """
SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
WHERE l.locktype = 'advisory' AND d.datname = current_database()
"""


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before or while /proc was read
        return False


async def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _standin_pid(log: Path) -> int:
    m = re.search(r"^pid (\d+) ", log.read_text(), re.MULTILINE)
    assert m, log.read_text()
    return int(m.group(1))


@asynccontextmanager
async def _standin_started(*args: str, env: dict[str, str], cwd: Path, log: Path) -> AsyncIterator[
    tuple[asyncio.subprocess.Process, int]
]:  # fmt: skip
    """A supervisor running ARGS, once its stand-in step is ready; both are killed afterwards whatever happened."""
    proc = await start_supervisor(*args, env=env, cwd=cwd)
    pid = None
    try:
        await wait_for_text(log, "ready")
        pid = _standin_pid(log)
        yield proc, pid
    finally:
        for p in (proc.pid, pid):
            if p is not None:
                with suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        with suppress(ProcessLookupError):
            await proc.wait()


@pytest.mark.parametrize("ignores_term", [False, True], ids=["stops-on-term", "needs-kill"])
async def test_a_step_whose_lock_session_is_terminated_is_stopped_with_exit_3(
    ignores_term: bool, db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
):
    """`pg_terminate_backend` on the lock's session while `directus bootstrap` runs: the step is stopped (TERM,
    or KILL a second later when it ignores TERM) and the supervisor exits 3 (LOCK_LOST) within 3 s, saying why;
    nothing is recorded."""
    log = tmp_path / "log"
    env = db.env(
        SUPERVISOR_DIRECTUS_CMD=STANDIN, STANDIN_LOG=str(log), STANDIN_SAY="migrating 0042_big_table"
    )
    if ignores_term:
        env["STANDIN_IGNORE_TERM"] = "1"
    async with _standin_started("migrate", "--only", "bootstrap", env=env, cwd=layout.root, log=log) as (
        proc,
        pid,
    ):
        holders = [r["pid"] for r in await conn.fetch(_LOCK_BACKENDS)]
        assert len(holders) == 1, holders
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", holders[0])
        assert await _gone_within(pid, 3.0), "the step outlived its lock by more than 3 s"
        r = await finish(proc, timeout=20)
    assert r.code == 3, r.stderr
    failure = r.failure
    assert failure["error_code"] == "LOCK_LOST"
    assert "`directus bootstrap` was stopped" in failure["error"]
    assert "bootstrap lock was lost" in failure["error"]
    assert "another replica could start the same step" in failure["error"]
    assert "running again repeats the step, under the lock" in failure["error"]
    assert "migrating 0042_big_table" in failure["error"]  # the step's last output
    assert r.events("directus.step_killed" if ignores_term else "directus.step_stopping")
    assert ("signal SIGTERM" in log.read_text()) is not ignores_term  # it ignored it: no handler ran
    assert await conn.fetchval("SELECT to_regclass('supervisor.supervisor_state')") is None
    assert await conn.fetchval(_LOCK_BACKENDS) is None


class _Proxy:
    """A TCP proxy in front of Postgres that can go silent: it stops forwarding without closing anything, as a
    dropped network path looks to both ends."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.silent = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(OSError):
            while chunk := await reader.read(65536):
                if self.silent.is_set():
                    await asyncio.Event().wait()  # hold the data, forever
                writer.write(chunk)
                await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            for w in self.writers:
                w.transport.abort()  # ends the backends, and with them any lock they still hold
            server.close()


async def test_a_silently_dropped_lock_connection_is_noticed_by_the_probe(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
):
    """A lock connection whose network path goes silent (no FIN, no RST) is caught by the periodic probe: the
    step is stopped within 3 s and the supervisor exits 3 (LOCK_LOST)."""
    log = tmp_path / "log"
    proxy = _Proxy(db.server.host, db.server.port)
    async with proxy.running() as port:
        env = db.env(
            SUPERVISOR_DIRECTUS_CMD=STANDIN, STANDIN_LOG=str(log), DB_HOST="127.0.0.1", DB_PORT=str(port)
        )
        async with _standin_started("migrate", "--only", "bootstrap", env=env, cwd=layout.root, log=log) as (
            proc,
            pid,
        ):
            await asyncio.sleep(1.5)  # a probe or two pass first
            assert _alive(pid)
            t0 = time.monotonic()
            proxy.silent.set()
            assert await _gone_within(pid, 3.0), "the step outlived its lock's connection by more than 3 s"
            assert time.monotonic() - t0 > 0.5  # it was the probe, not something else, that stopped it
            r = await finish(proc, timeout=20)
    assert r.code == 3, r.stderr
    assert r.failure["error_code"] == "LOCK_LOST"
    assert "no answer to a probe" in r.failure["error"]


async def test_a_dry_run_under_a_lock_is_stopped_when_the_lock_session_dies(
    db: Database, conn: asyncpg.Connection, tmp_path: Path
):
    """The schema phase's dry-run passes its lock to the CLI step: the lock session's death stops it (exit 3)."""
    from phases.schema import dry_run
    from supervisor.errors import DatabaseUnavailable
    from supervisor.lock import advisory_lock
    from supervisor.log import get_logger
    from supervisor.settings import Settings
    from supervisor.snapshot import load_snapshot

    log = tmp_path / "log"
    snap = tmp_path / "schema.yaml"
    snap.write_text(
        "version: 1\ndirectus: 12.4.0\nvendor: postgres\ncollections: []\nfields: []\nrelations: []\n"
    )
    settings = Settings.load(db.env(SUPERVISOR_DIRECTUS_CMD=STANDIN))
    os.environ["STANDIN_LOG"] = str(log)  # the step inherits the supervisor's environment
    lock_conn = await db.connect()
    try:
        async with advisory_lock(lock_conn, "schema-apply", 2, 5, get_logger()) as lock:

            async def terminate_when_ready() -> None:
                await wait_for_text(log, "ready")
                await conn.execute("SELECT pg_terminate_backend($1)", lock.backend_pid)

            killer = asyncio.create_task(terminate_when_ready())
            with pytest.raises(DatabaseUnavailable) as e:
                await asyncio.wait_for(dry_run(settings, load_snapshot(snap), get_logger(), lock), 20)
            await killer
    finally:
        del os.environ["STANDIN_LOG"]
        await lock_conn.close()
    assert e.value.error_code == "LOCK_LOST"
    assert "`directus schema apply --dry-run --yes" in e.value.message
    assert not _alive(_standin_pid(log))


async def test_a_step_dies_with_its_supervisor(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
):
    """`kill -9` of the supervisor during `directus bootstrap`: the kernel's parent-death signal ends the step at
    once, and the lock is free, so no step runs unlocked."""
    log = tmp_path / "log"
    env = db.env(SUPERVISOR_DIRECTUS_CMD=STANDIN, STANDIN_LOG=str(log), STANDIN_IGNORE_TERM="1")
    async with _standin_started("migrate", "--only", "bootstrap", env=env, cwd=layout.root, log=log) as (
        proc,
        pid,
    ):
        assert _alive(pid)
        proc.kill()
        assert await _gone_within(pid, 1.5), "the Directus step outlived its supervisor"
    deadline = time.monotonic() + 5
    while await conn.fetchval(_LOCK_BACKENDS) is not None:
        assert time.monotonic() < deadline, "the lock outlived the supervisor"
        await asyncio.sleep(0.05)


async def test_a_hung_step_is_stopped_after_the_step_timeout(
    db: Database, conn: asyncpg.Connection, layout: Layout, tmp_path: Path
):
    """A step still running after SUPERVISOR_STEP_TIMEOUT is stopped and the boot fails with exit 8
    (DIRECTUS_STEP_TIMEOUT), naming the step, the timeout and its last output; nothing is recorded."""
    log = tmp_path / "log"
    env = db.env(SUPERVISOR_DIRECTUS_CMD=STANDIN, STANDIN_LOG=str(log), SUPERVISOR_STEP_TIMEOUT="2s",
                 STANDIN_SAY="waiting for the lock of directus_migrations")  # fmt: skip
    proc = await start_supervisor("migrate", "--only", "bootstrap", env=env, cwd=layout.root)
    t0 = time.monotonic()
    r = await finish(proc, timeout=30)
    assert r.code == 8, r.stderr
    assert 2 < time.monotonic() - t0 < 10
    failure = r.failure
    assert failure["error_code"] == "DIRECTUS_STEP_TIMEOUT"
    assert "`directus bootstrap` was still running after SUPERVISOR_STEP_TIMEOUT (2s)" in failure["error"]
    assert "waiting for the lock of directus_migrations" in failure["error"]
    assert "raise SUPERVISOR_STEP_TIMEOUT" in failure["error"]
    assert "signal SIGTERM" in log.read_text()
    assert not _alive(_standin_pid(log))
    assert await conn.fetchval("SELECT to_regclass('supervisor.supervisor_state')") is None
    assert await conn.fetchval(_LOCK_BACKENDS) is None


async def test_the_end_of_a_step_never_leaves_the_lock_connection_busy(
    db: Database, conn: asyncpg.Connection
):
    """The lock watch stopped while its probe runs (the step just ended): the phase's next statement on that
    connection still runs (asyncpg waits for the cancelled probe), it does not fail as 'another operation is in
    progress'. A guard on the driver's behaviour the watch relies on."""
    from supervisor.directus import _LockWatch
    from supervisor.lock import PhaseLock

    class SlowProbe(PhaseLock):
        __slots__ = ()

        def on_holder(self) -> str:
            return f"pg_sleep(0.4) IS NOT NULL AND pg_backend_pid() = {self.backend_pid:d}"

    lock_conn = await db.connect()
    try:
        lock = SlowProbe(lock_conn, "bootstrap", 4, await lock_conn.fetchval("SELECT pg_backend_pid()"))
        watch = _LockWatch(lock, lambda: None)
        stopping = asyncio.create_task(watch.run())
        await asyncio.sleep(0.7)  # the first probe starts at 0.5 s and runs until 0.9 s
        stopping.cancel()
        with suppress(asyncio.CancelledError):
            await stopping
        assert watch.reason is None
        assert await lock_conn.fetchval("SELECT 42") == 42
    finally:
        await lock_conn.close()
