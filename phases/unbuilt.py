"""Placeholders for the phases a later release fills in; selecting one is refused before anything is touched."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from phases.base import PhaseContext, Step
from supervisor.errors import ConfigError

__all__ = ["NotBuiltPhase"]


class NotBuiltPhase:
    """A registered phase that this version cannot run yet."""

    def __init__(self, name: str, lock_id: int) -> None:
        self.name = name
        self.lock_id = lock_id

    def preflight(self) -> None:
        """Refuse at once (exit 2), before any connection, so nothing is half-done."""
        raise ConfigError(
            f"the {self.name} phase is not built yet in this version; select the SQL phases alone, for example "
            "`migrate --only pre-schema` or `migrate --only post-schema`",
            error_code="PHASE_NOT_BUILT",
        )

    async def pending(self, ctx: PhaseContext) -> Sequence[Step]:
        """Never reached: `preflight` refuses."""
        raise AssertionError(self.name)

    def apply(self, ctx: PhaseContext, steps: Sequence[Step]) -> AsyncIterator[tuple[Step, dict[str, Any]]]:
        """Never reached: `preflight` refuses."""
        raise AssertionError(self.name)

    async def report(self, conn: asyncpg.Connection) -> dict[str, Any]:
        """Say so in `status`."""
        return {"phase": self.name, "state": "not built yet"}
