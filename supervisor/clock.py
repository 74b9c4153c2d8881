"""The supervisor's own time per boot: everything but Node (the interpreter, connecting, the checks, the SQL).

`supervisor_ms` = time since the process started (the kernel's start time of the entry point: the resident parent
when the boot is fork-split, 10 ms resolution) minus the time Directus CLI steps ran (Node, `node_ms`) and the time
spent waiting for a phase lock another replica held (`wait_ms`: that replica's work, mostly its Node). It goes into
the summary line of a boot (`directus.exec`, `supervisor.finished`), so the supervisor's cost stays visible.
"""

from __future__ import annotations

import os
import time

__all__ = ["add_node_ms", "add_wait_ms", "summary"]

_node_ms = 0  # summed durations of the Directus CLI steps of this process
_wait_ms = 0  # summed waits for phase locks held elsewhere


def add_node_ms(ms: int) -> None:
    """Count a Directus CLI step's duration as Node's time."""
    global _node_ms
    _node_ms += ms


def add_wait_ms(ms: int) -> None:
    """Count time spent waiting for a lock another session held."""
    global _wait_ms
    _wait_ms += ms


def _started_ms_ago(pid: int) -> int | None:
    """Milliseconds since process `pid` started, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return max(0, round((since_boot - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000))


def summary() -> dict[str, int]:
    """`boot_ms` (since the entry point started), `node_ms` (CLI steps), `wait_ms` (locks held elsewhere) and
    `supervisor_ms` (the rest); empty where the start time cannot be read."""
    from supervisor import pid1

    # In the fork-split worker, the boot began when the resident parent (the entry point) started.
    boot_ms = _started_ms_ago(os.getppid() if pid1.forked() else os.getpid())
    if boot_ms is None:
        return {}
    own = max(0, boot_ms - _node_ms - _wait_ms)
    return {"boot_ms": boot_ms, "node_ms": _node_ms, "wait_ms": _wait_ms, "supervisor_ms": own}
