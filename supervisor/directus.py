"""Running the Directus CLI as a step: stdin closed, colour off, output streamed into the logs with phase context and
kept for checks, and a bounded stop (SIGTERM, then SIGKILL) when the step is cancelled by a signal.

Directus's exit codes are not trusted alone: callers check the output and the database as well.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process
from structlog.typing import FilteringBoundLogger

from supervisor.errors import ConfigError
from supervisor.schemadiff import strip_ansi
from supervisor.settings import Settings

__all__ = ["CliResult", "directus_version", "run_cli"]

_STEP_STOP_S = 10.0  # a CLI step gets this long after SIGTERM before SIGKILL


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
        text = (self.stdout + "\n" + self.stderr).strip().splitlines()
        return "\n".join(f"  | {line}" for line in text[-lines:])


def cli_env() -> dict[str, str]:
    """The environment for CLI steps: the supervisor's own, with colour off and info logging on, so the output can
    be parsed (`No changes to apply.` is an info line: a LOG_LEVEL of warn would hide it)."""
    return {**os.environ, "FORCE_COLOR": "0", "NO_COLOR": "1", "LOG_LEVEL": "info"}


async def _pump(
    stream: ByteReceiveStream | None, name: str, sink: list[str], log: FilteringBoundLogger
) -> None:
    if stream is None:
        return
    buffer = b""
    async for chunk in stream:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = strip_ansi(raw.decode("utf-8", "replace")).rstrip("\r")
            sink.append(line)
            if line.strip():
                log.info("directus.output", stream=name, line=line)
    if buffer:
        sink.append(strip_ansi(buffer.decode("utf-8", "replace")))


async def run_cli(settings: Settings, args: Sequence[str], log: FilteringBoundLogger) -> CliResult:
    """Run `<directus> ARGS` to completion; a cancellation (a signal) stops it with SIGTERM, then SIGKILL."""
    argv = (*settings.directus_argv(), *args)
    _require_executable(argv)
    t0 = time.monotonic()
    out: list[str] = []
    err: list[str] = []
    log.info("directus.step_started", argv=" ".join(argv))
    async with await anyio.open_process(argv, stdin=subprocess.DEVNULL, env=cli_env()) as proc:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pump, proc.stdout, "stdout", out, log)
                tg.start_soon(_pump, proc.stderr, "stderr", err, log)
                code = await proc.wait()
        except BaseException:
            await _stop(proc, log)  # before anyio's own close, which would SIGKILL at once
            raise
    result = CliResult(argv, code, "\n".join(out), "\n".join(err), round((time.monotonic() - t0) * 1000))
    log.info("directus.step_finished", argv=" ".join(argv), exit_code=code, duration_ms=result.duration_ms)
    return result


def _require_executable(argv: Sequence[str]) -> None:
    """Refuse a CLI command that cannot start (exit 2): spawning it would raise an OSError, which the phases would
    take for a lost database connection."""
    import shutil

    if shutil.which(argv[0]) is None:
        raise ConfigError(
            f"cannot run the Directus CLI `{' '.join(argv)}`: {argv[0]} is not an executable file (nor found on "
            "PATH); check SUPERVISOR_DIRECTUS_CMD",
            error_code="DIRECTUS_CMD_INVALID",
        )


async def _stop(proc: Process, log: FilteringBoundLogger) -> None:
    with anyio.CancelScope(shield=True):
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            log.info("directus.step_stopping", pid=proc.pid, grace_s=_STEP_STOP_S)
            with anyio.move_on_after(_STEP_STOP_S):
                await proc.wait()
        if proc.returncode is None:
            proc.kill()
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
