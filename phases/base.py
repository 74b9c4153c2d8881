"""The phase interface. A phase answers three questions: what is pending, how to apply one step (recording it in
the same stroke), and what its state is for `status`. The runner owns ordering, locking, timing and logging, so a new
phase needs no change to the runner.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from structlog.typing import FilteringBoundLogger

from supervisor.lock import PhaseLock
from supervisor.settings import Settings

__all__ = ["PENDING_EXIT", "Outcome", "Phase", "PhaseContext", "Step", "check_verdict"]


PENDING_EXIT = 9  # `plan --check`: `migrate` would apply something


def check_verdict(exit_code: int, error_code: str | None, reason: str) -> dict[str, Any]:
    """A phase's answer for `plan --check`: 0 nothing to do, 9 something to apply, else the refusal's own code."""
    return {"exit_code": exit_code, "error_code": error_code, "reason": reason}


class Outcome(enum.Enum):
    """How a phase ended."""

    APPLIED = "applied"
    SKIPPED = "skipped"  # nothing pending; every re-run must land here


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseContext:
    """What a phase gets from the runner: settings, the connection that holds its lock, the lock, a logger."""

    settings: Settings
    conn: asyncpg.Connection
    lock: PhaseLock
    log: FilteringBoundLogger


class Step(Protocol):
    """**Protocol:** one unit of pending work; `name` is what the logs call it (a file name, say)."""

    @property
    def name(self) -> str: ...


class Phase(Protocol):
    """**Protocol:** one ordered boot step. Must be safe to re-run, and find nothing to do when re-run.

    Raise a `SupervisorError` subclass to stop the boot; anything else is a bug (exit 1).
    """

    name: str
    lock_id: int  # objid of the phase's advisory lock (classid is supervisor.lock.CLASSID)

    def preflight(self) -> None:
        """Offline checks before any connection (read files, parse): bad input fails before the database is touched."""

    async def pending(self, ctx: PhaseContext) -> Sequence[Step]:
        """Under the lock: re-read what is done, validate it, and return what is left, in order."""

    def apply(self, ctx: PhaseContext, steps: Sequence[Step]) -> AsyncIterator[tuple[Step, dict[str, Any]]]:
        """Apply the steps in order, recording each; yield each step once it is done, with fields for its log line
        (`duration_ms` at least). Stop at the first failure by raising, after yielding what was done."""

    async def report(self, conn: asyncpg.Connection, *, deep: bool = False) -> dict[str, Any]:
        """Read-only state for `status`, or with `deep` for `plan` (may ask Directus for a dry-run); takes no lock
        and changes nothing. A deep report carries `check` (`check_verdict`): what `migrate` would make of this
        phase now, for `plan --check`."""
