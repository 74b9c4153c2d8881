"""`bootstrap`: `directus bootstrap` (install the system tables, run Directus's migrations), once per Directus version.

Skipped when this Directus version is recorded as bootstrapped on this database and its tables exist; a Directus
upgrade runs it again (that is how its migrations run). `schema-apply` uses the same helper before applying, under
this phase's lock, because `directus schema apply` on an uninstalled database does nothing and exits 0.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from phases.base import PENDING_EXIT, PhaseContext, Step, check_verdict
from supervisor.directus import directus_version, run_cli
from supervisor.errors import ConfigError, DirectusStepFailed
from supervisor.lock import advisory_lock
from supervisor.settings import Settings
from supervisor.state import StateTable

__all__ = [
    "BOOTSTRAP_LOCK",
    "NOT_INSTALLED",
    "BootstrapPhase",
    "DirectusInstall",
    "NamedStep",
    "ensure_bootstrapped",
]

BOOTSTRAP_LOCK = 4
NOT_INSTALLED = "Directus is not installed on this database"


@dataclass(frozen=True, slots=True)
class NamedStep:
    """A step that is not a file: what it is, and why it runs."""

    name: str
    reason: str


class DirectusInstall:
    """The Directus this supervisor runs; its version is read once (from package.json, else `--version`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._version: str | None = None

    async def version(self, log: Any) -> str:
        """The installed Directus version, e.g. `12.4.0`."""
        if self._version is None:
            argv = self.settings.directus_argv()
            found = directus_version(argv)
            if found is None:
                _require_scripts(argv)
                result = await run_cli(self.settings, ["--version"], log)
                m = re.search(r"\d+\.\d+\.\d+", result.stdout)
                if result.code != 0 or not m:
                    raise DirectusStepFailed(
                        f"cannot tell the Directus version: no package.json next to "
                        f"`{' '.join(self.settings.directus_argv())}` and `--version` gave nothing usable "
                        f"(exit {result.code}):\n{result.tail()}\nCheck SUPERVISOR_DIRECTUS_CMD.",
                        error_code="DIRECTUS_NOT_FOUND",
                    )
                found = m.group(0)
            self._version = found
        return self._version


def _require_scripts(argv: tuple[str, ...]) -> None:
    """Refuse (exit 2) a CLI command whose script is not there: `node` would fail with a stack trace (exit 8)."""
    for arg in argv[1:]:
        if arg.endswith((".js", ".mjs", ".cjs")) and not Path(arg).is_file():
            raise ConfigError(
                f"cannot run the Directus CLI `{' '.join(argv)}`: the script {arg} ({Path(arg).absolute()}) does "
                "not exist; check SUPERVISOR_DIRECTUS_CMD (for example node "
                "/directus/node_modules/@directus/api/dist/cli/run.js, Directus's CLI without the npm update check "
                "that cli.js makes first), or unset it to use the Directus found on PATH or as ./cli.js. Relative "
                "paths resolve against the working directory.",
                error_code="DIRECTUS_CMD_INVALID",
            )


async def bootstrap_reason(conn: asyncpg.Connection, state: StateTable, version: str) -> str | None:
    """Why `directus bootstrap` must run now, or None when this version is bootstrapped here already."""
    done, installed = await state.read("bootstrap")
    if not installed:
        return NOT_INSTALLED
    if done is None:
        return "no bootstrap recorded by the supervisor yet"
    if done.directus_version != version:
        return f"Directus {done.directus_version} -> {version}: its migrations must run"
    return None


async def run_bootstrap(ctx: PhaseContext, install: DirectusInstall, reason: str) -> dict[str, Any]:
    """`directus bootstrap`, then check that it did what it claims, then record it."""
    version = await install.version(ctx.log)
    ctx.log.info("bootstrap.running", reason=reason, directus_version=version)
    result = await run_cli(ctx.settings, ["bootstrap"], ctx.log, lock=ctx.lock)
    if result.code != 0:
        raise DirectusStepFailed(
            f"`directus bootstrap` failed (exit {result.code}):\n{result.tail()}",
            error_code="BOOTSTRAP_FAILED",
        )
    installed = await ctx.conn.fetchval(
        "SELECT to_regclass('directus_collections') IS NOT NULL AND to_regclass('directus_migrations') IS NOT NULL"
    )
    if not installed or not await ctx.conn.fetchval("SELECT count(*) FROM directus_migrations"):
        raise DirectusStepFailed(
            "`directus bootstrap` exited 0 but the database has no Directus system tables or migrations; check "
            f"DB_* and DB_SEARCH_PATH point Directus at the same database as the supervisor:\n{result.tail()}",
            error_code="BOOTSTRAP_FAILED",
        )
    await StateTable(ctx.conn, ctx.settings.tracking_table).put(
        "bootstrap", version, None, result.duration_ms
    )
    return {"duration_ms": result.duration_ms, "directus_version": version}


async def ensure_bootstrapped(ctx: PhaseContext, install: DirectusInstall) -> str | None:
    """Bootstrap first if needed, under the bootstrap lock (nested in the caller's), so it happens exactly once.

    Returns why this call ran `directus bootstrap` (`NOT_INSTALLED`: Directus was installed on an empty database,
    so no user collection exists yet), or None when it did not run it.
    """
    state = StateTable(ctx.conn, ctx.settings.tracking_table)
    version = await install.version(ctx.log)
    if await bootstrap_reason(ctx.conn, state, version) is None:
        return None
    async with advisory_lock(ctx.conn, "bootstrap", BOOTSTRAP_LOCK, ctx.settings.lock_timeout, ctx.log):
        reason = await bootstrap_reason(ctx.conn, state, version)  # re-read under the lock
        if reason is None:
            return None
        await run_bootstrap(ctx, install, reason)
        return reason


class BootstrapPhase:
    """Phase 4."""

    name = "bootstrap"
    lock_id = BOOTSTRAP_LOCK

    def __init__(self, install: DirectusInstall) -> None:
        self.install = install

    def preflight(self) -> None:
        """Nothing to read offline."""

    async def pending(self, ctx: PhaseContext) -> Sequence[Step]:
        """One step when this Directus version is not bootstrapped here (or `--force`), else nothing."""
        state = StateTable(ctx.conn, ctx.settings.tracking_table)
        reason = await bootstrap_reason(ctx.conn, state, await self.install.version(ctx.log))
        if reason is None and ctx.settings.force:
            reason = "forced (SUPERVISOR_FORCE)"
        return [NamedStep("directus bootstrap", reason)] if reason else []

    async def apply(
        self, ctx: PhaseContext, steps: Sequence[Step]
    ) -> AsyncIterator[tuple[Step, dict[str, Any]]]:
        """Run it."""
        for step in steps:
            yield step, await run_bootstrap(ctx, self.install, getattr(step, "reason", ""))

    async def report(self, conn: asyncpg.Connection, *, deep: bool = False) -> dict[str, Any]:
        """Whether bootstrap would run, and what was recorded."""
        from supervisor.log import get_logger

        state = StateTable(conn, self.install.settings.tracking_table)
        version = await self.install.version(get_logger())
        done = await state.get("bootstrap")
        reason = await bootstrap_reason(conn, state, version)
        if reason is None and self.install.settings.force:
            reason = "forced (SUPERVISOR_FORCE)"  # as `pending` decides
        out: dict[str, Any] = {
            "phase": self.name,
            "directus_version": version,
            "bootstrapped_version": done.directus_version if done else None,
            "would_run": reason,
        }
        if deep:
            out["check"] = (
                check_verdict(PENDING_EXIT, "PENDING", f"runs: {reason}")
                if reason
                else check_verdict(0, None, "nothing to do")
            )
        return out
