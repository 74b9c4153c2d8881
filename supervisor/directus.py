"""Running the Directus CLI as a step: stdin closed, colour off, output streamed into the logs with phase context and
kept for checks, and a bounded stop (SIGTERM, then SIGKILL) when the step is cancelled by a signal, runs longer than
SUPERVISOR_STEP_TIMEOUT, or loses the phase lock it runs under.

Why a step must never outlive its lock: two replicas running `directus bootstrap` or `schema apply` at once is the
race the supervisor exists to prevent (directus#23707). So the step dies with the supervisor (the kernel's
parent-death signal, set in the child between fork and exec) and is stopped when the lock's session dies (a watch
on the lock connection while the step runs).

Directus's exit codes are not trusted alone: callers check the output and the database as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from structlog.typing import FilteringBoundLogger

from supervisor import clock, inflight, nodecache
from supervisor.errors import ConfigError, DatabaseUnavailable, DirectusStepFailed
from supervisor.lock import PhaseLock
from supervisor.schemadiff import strip_ansi
from supervisor.settings import Settings

__all__ = ["CliResult", "directus_version", "run_cli"]

_STEP_STOP_S = 10.0  # a CLI step cancelled by a signal or over its timeout gets this long after SIGTERM
_LOCK_LOST_STOP_S = 1.0  # ... and this long when its lock is gone: it is running unprotected already
# Lock watch: a probe every 0.5 s, each allowed 1.5 s (a healthy server answers `SELECT` in milliseconds even under
# load: it takes no lock), so a silently dropped path is noticed within 2 s and the step killed within 3 s.
_PROBE_EVERY_S = 0.5
_PROBE_TIMEOUT_S = 1.5
_DRAIN_S = 5.0  # after the step ended, how long its output may stay open (held by a child of its own)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True, slots=True)
class CliResult:
    """A finished CLI step."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    duration_ms: int

    def tail(self, lines: int = 15) -> str:
        """The last lines of both streams, for error messages."""
        return _tail(self.stdout + "\n" + self.stderr, lines)


def _tail(text: str, lines: int = 15) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in kept) if kept else "  | (no output)"


def cli_env(settings: Settings, log: Any) -> dict[str, str]:
    """The environment for CLI steps: the supervisor's own, with colour off and info logging on, so the output can
    be parsed (`No changes to apply.` is an info line: a LOG_LEVEL of warn would hide it), and Node's compile cache
    (supervisor.nodecache)."""
    env = nodecache.child_env(settings.node_compile_cache, log)
    return {**env, "FORCE_COLOR": "0", "NO_COLOR": "1", "LOG_LEVEL": "info"}


@functools.cache
def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the kernel SIGKILL the child when this process dies (`kill -9` included).

    SIGKILL, not TERM: by then the lock's session is gone with its socket, so the step must stop at once. The
    signal is tied to the forking *thread*: asyncio forks from the event-loop thread, which lives as long as the
    supervisor. If the supervisor died between fork and prctl, the signal never comes: the child then sees another
    parent and exits. Only the CLI process itself is covered: a process it started of its own would be orphaned.
    Runs between fork and exec, so it calls only a function resolved beforehand.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = _libc().prctl
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            os._exit(1)  # the supervisor is already gone: nothing holds the lock any more

    return preexec


async def _pump(
    stream: asyncio.StreamReader | None, name: str, sink: list[str], log: FilteringBoundLogger
) -> None:
    if stream is None:
        return
    buffer = b""
    while chunk := await stream.read(65536):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = strip_ansi(raw.decode("utf-8", "replace")).rstrip("\r")
            sink.append(line)
            if line.strip():
                log.info("directus.output", stream=name, line=line)
    if buffer:
        sink.append(strip_ansi(buffer.decode("utf-8", "replace")))


class _LockWatch:
    """Watches the lock's session while a step runs: a termination listener (an ended session, at once) plus a
    periodic probe on the backend that holds the lock (a silently dropped path shows only on a probe). The step
    holds no query on that connection meanwhile, so probing it is safe."""

    def __init__(self, lock: PhaseLock, on_lost: Callable[[], None]) -> None:
        self.lock = lock
        self.on_lost = on_lost
        self.reason: str | None = None

    def _lost(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.on_lost()

    def _terminated(self, _conn: object) -> None:
        self._lost("the connection was closed")

    async def run(self) -> None:
        conn = self.lock.conn
        if conn.is_closed():
            self._lost("the connection was already closed")
            return
        conn.add_termination_listener(self._terminated)
        try:
            while self.reason is None:
                await anyio.sleep(_PROBE_EVERY_S)
                try:
                    # Stopped mid-probe when the step ends: asyncpg cancels the query and the phase's next
                    # statement waits for that, so the connection is never left busy.
                    with anyio.fail_after(_PROBE_TIMEOUT_S):
                        holder = await conn.fetchval(f"SELECT {self.lock.on_holder()}")
                except TimeoutError:
                    # The session may be alive behind a dead path; it is useless either way: end it, so nothing
                    # later runs on a connection whose lock we can no longer vouch for.
                    self._lost(f"no answer to a probe within {_PROBE_TIMEOUT_S:g}s")
                    conn.terminate()
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
                    self._lost(f"{type(e).__name__}: {e}")
                else:
                    if not holder:
                        self._lost("the probe ran on another backend than the one that took the lock")
        finally:
            conn.remove_termination_listener(self._terminated)


async def run_cli(
    settings: Settings, args: Sequence[str], log: FilteringBoundLogger, *, lock: PhaseLock | None = None
) -> CliResult:
    """Run `<directus> ARGS` to completion, under `lock` when given (the step is stopped if its session dies).

    A cancellation (a signal) stops it with SIGTERM, then SIGKILL. Raises `DirectusStepFailed` (exit 8) when it
    runs longer than `settings.step_timeout`, and `DatabaseUnavailable` (exit 3) when the lock's session died.
    """
    argv = (*settings.directus_argv(), *args)
    step = "directus " + " ".join(args)
    t0 = time.monotonic()
    out: list[str] = []
    err: list[str] = []
    log.info("directus.step_started", argv=" ".join(argv))
    preexec = _die_with_parent()
    if preexec is None:
        log.warning(
            "directus.no_parent_death_signal", hint="not Linux: a killed supervisor leaves the step running"
        )
    # asyncio, not anyio.open_process: only subprocess's preexec_fn can set the parent-death signal in the child.
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(settings, log),
            # A preexec_fn is unsafe when other threads hold locks the child needs; this one only calls prctl.
            preexec_fn=preexec,
        )
    except OSError as e:
        raise ConfigError(
            f"cannot run the Directus CLI `{' '.join(argv)}`: {e.strerror or e}; check SUPERVISOR_DIRECTUS_CMD",
            error_code="DIRECTUS_CMD_INVALID",
        ) from e
    waiting = anyio.CancelScope()
    watching = anyio.CancelScope()
    draining = anyio.CancelScope()
    watch = _LockWatch(lock, waiting.cancel) if lock is not None else None
    timed_out = False

    async def pump_both() -> None:
        with draining:
            async with anyio.create_task_group() as pumps:
                pumps.start_soon(_pump, proc.stdout, "stdout", out, log)
                pumps.start_soon(_pump, proc.stderr, "stderr", err, log)

    async def watch_lock(watch: _LockWatch) -> None:
        with watching:
            await watch.run()

    async def _supervise_step() -> None:
        nonlocal timed_out
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump_both)
            if watch is not None:
                tg.start_soon(watch_lock, watch)
            with waiting, anyio.move_on_after(settings.step_timeout) as timer:
                await proc.wait()
            watching.cancel()
            timed_out = timer.cancelled_caught
            if watch is not None and watch.reason is not None:
                log.error("directus.step_lock_lost", step=step, lock=watch.lock.name, reason=watch.reason)
                await _stop(proc, log, _LOCK_LOST_STOP_S)
            elif timed_out:
                log.error("directus.step_timeout", step=step, timeout_s=settings.step_timeout)
                await _stop(proc, log, _STEP_STOP_S)
            draining.deadline = anyio.current_time() + _DRAIN_S

    try:
        with inflight.running(lambda: _stopped_step(step)):
            await _supervise_step()
    except BaseException:
        await _stop(proc, log, _STEP_STOP_S)  # a signal: stop the step before the boot unwinds
        raise
    if draining.cancelled_caught:
        log.warning("directus.output_left_open", step=step, hint="a child process of the step still holds it")
    assert proc.returncode is not None
    result = CliResult(
        argv, proc.returncode, "\n".join(out), "\n".join(err), round((time.monotonic() - t0) * 1000)
    )
    clock.add_node_ms(result.duration_ms)
    log.info(
        "directus.step_finished", argv=" ".join(argv), exit_code=result.code, duration_ms=result.duration_ms
    )
    if watch is not None and watch.reason is not None:
        raise DatabaseUnavailable(
            f"`{step}` was stopped because the database session holding the {watch.lock.name} lock was lost "
            f"({watch.reason}): without the lock another replica could start the same step. The supervisor recorded "
            f"nothing, so running again repeats the step, under the lock. Last output:\n"
            f"{result.tail()}",
            error_code="LOCK_LOST",
        )
    if timed_out:
        raise DirectusStepFailed(
            f"`{step}` was still running after SUPERVISOR_STEP_TIMEOUT ({settings.step_timeout:g}s) and was "
            f"stopped (SIGTERM, then SIGKILL); nothing was recorded. Last output:\n{result.tail()}\n"
            "If it waits on something (the database, a lock held by another session, the network), fix that; if "
            "the step is only slow (a large migration), raise SUPERVISOR_STEP_TIMEOUT.",
            error_code="DIRECTUS_STEP_TIMEOUT",
        )
    return result


def _stopped_step(step: str) -> str:
    """What a stop signal leaves behind when it cuts `step` off (for the stop message)."""
    if "--dry-run" in step or "--version" in step:
        kept = "a dry-run changes nothing."
    elif step.startswith("directus schema apply"):
        kept = "Directus applies a snapshot in one transaction, so nothing of it was kept."
    else:
        kept = (
            "Directus runs its own migrations one at a time, each committed on its own: those that finished stay, "
            "and the next `directus bootstrap` carries on from the first one still pending."
        )
    return (
        f"`{step}` was running and was stopped (SIGTERM, then SIGKILL {_STEP_STOP_S:g} s later); {kept} The "
        "supervisor recorded nothing for it, so the next boot runs it again, under its lock. SQL files recorded "
        "as applied stay applied."
    )


async def _stop(proc: asyncio.subprocess.Process, log: FilteringBoundLogger, grace_s: float) -> None:
    with anyio.CancelScope(shield=True):
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                proc.send_signal(signal.SIGTERM)
            log.info("directus.step_stopping", pid=proc.pid, grace_s=grace_s)
            with anyio.move_on_after(grace_s):
                await proc.wait()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            log.warning("directus.step_killed", pid=proc.pid, grace_s=grace_s)
            await proc.wait()


def directus_version(argv: Sequence[str]) -> str | None:
    """The installed Directus version, read from its package.json next to the CLI script (no Node start)."""
    import shutil

    candidates = [Path(a) for a in argv if a.endswith((".js", ".mjs", ".cjs"))]
    exe = shutil.which(argv[0]) if argv else None
    if exe:
        candidates.append(Path(exe))
    for script in candidates:
        try:
            here = script.resolve()
        except OSError:
            continue
        for folder in here.parents:
            for pkg in (folder / "package.json", folder / "node_modules" / "directus" / "package.json"):
                version = _package_version(pkg)
                if version:
                    return version
    return None


def _package_version(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("name") == "directus" and isinstance(data.get("version"), str):
        return str(data["version"])
    return None
