"""What the supervisor has learnt about one database session, so a boot does not ask twice.

Kept per connection (a weak mapping: it goes with the connection) and only for facts nothing else can change while
the session lives, or that the runner forgets when something might have:
- `backend_pid`: the backend a statement of this session ran on. A session's backend never changes; behind a
  transaction pooler statements land on other backends, which the lock's checks compare against this one, exactly
  as they compare against a pid asked for just before (supervisor.lock).
- `relations`: the catalog's view of a supervisor table whose verdict was "ours, current" (supervisor.tables).
  No supervisor turns such a table into anything else (replicas only create a missing table or upgrade a legacy
  one), so the verdict stays true under a phase lock taken later. What could change it runs on this connection (a
  user's SQL file) or beside it (a Directus CLI step): the runner forgets the relations before and after a phase
  applies anything, and warm boots, which apply nothing, inspect each table once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    import asyncpg

__all__ = ["Session", "forget_relations", "of"]


@dataclass
class Session:
    """Facts about one connection's session."""

    backend_pid: int | None = None
    relations: dict[str, Any] = field(default_factory=dict)  # quoted name -> supervisor.tables.Relation


_sessions: WeakKeyDictionary[asyncpg.Connection, Session] = WeakKeyDictionary()


def of(conn: asyncpg.Connection) -> Session:
    """The facts kept for `conn` (empty at first)."""
    found = _sessions.get(conn)
    if found is None:
        found = _sessions[conn] = Session()
    return found


def forget_relations(conn: asyncpg.Connection) -> None:
    """Drop the remembered table verdicts of `conn`: something that could change a table is about to run or ran."""
    of(conn).relations.clear()
