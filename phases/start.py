"""`start`: Directus itself, as a supervised child (signals forwarded by the CLI's router, exit status passed on),
or, with `--exec`, in place of this process. Touches no database.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import Process

from supervisor.settings import Settings

__all__ = ["Child", "start_directus"]


@dataclass
class Child:
    """The running Directus, shared with the signal router so it can forward signals to it."""

    process: Process | None = None
    stopping: bool = field(default=False)


def exit_status(returncode: int) -> int:
    """A shell-style status: the code, or 128+N when signal N ended the process."""
    return 128 - returncode if returncode < 0 else returncode


async def start_directus(settings: Settings, child: Child, log: Any, *, replace: bool) -> int:
    """Run `directus start` until it exits; returns its status. With `replace`, exec it instead (no return)."""
    argv = (*settings.directus_argv(), "start")
    if replace:
        log.info("directus.exec", argv=" ".join(argv))
        if os.getpid() == 1:
            log.warning(
                "directus.pid1",
                hint="--exec makes Directus PID 1: nothing reaps zombies or forwards signals to its children; "
                "drop --exec to keep the supervisor as PID 1",
            )
        sys.stdout.flush()
        sys.stderr.flush()
        # Python ignores SIGPIPE and SIGXFSZ; exec keeps ignored signals ignored, so give Directus the defaults.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        os.execvp(argv[0], argv)  # noqa: S606 (argv is the configured Directus command)
    proc = await anyio.open_process(argv, stdin=None, stdout=None, stderr=None)
    child.process = proc
    log.info("directus.started", pid=proc.pid, argv=" ".join(argv))
    try:
        code = await proc.wait()
    finally:
        child.process = None
    status = exit_status(code)
    log.info("directus.exited", exit_code=status)
    return status
