"""The pinned pm2 (pm2/package-lock.json) for the PM2_INSTANCES tests: installed into the cache by scripts/install-pm2."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

__all__ = ["install_pm2", "kill_tree", "pm2_env"]

ROOT = Path(__file__).resolve().parent.parent


def install_pm2() -> Path:
    """The folder holding `pm2-runtime` (installs pm2 on first use)."""
    out = subprocess.run([str(ROOT / "scripts" / "install-pm2")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def pm2_env(bin_dir: Path, home: Path) -> dict[str, str]:
    """PATH with pm2-runtime and the machine's Node, and a PM2_HOME of the test's own (pm2 keeps its sockets,
    pid files and log files there; two runs must not share one)."""
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.pathsep.join([str(bin_dir), "/usr/local/bin", "/usr/bin", "/bin"]),
        "PM2_HOME": str(home),
    }


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every descendant (from /proc): a failing test leaves no pm2-runtime or worker behind."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        with contextlib.suppress(OSError), open(f"/proc/{p}/task/{p}/children", encoding="ascii") as f:
            todo.extend(int(c) for c in f.read().split())
    for p in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
