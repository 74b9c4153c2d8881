"""`start`: Directus replaces the worker process (exec), touching no database.

In the default supervise mode the worker is the child of the resident loop (supervisor.pid1), which forwards
signals to it and passes its exit status on; with `--exec` the supervisor itself is replaced (refused as PID 1).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, NoReturn

from supervisor import clock, nodecache, pid1
from supervisor.settings import Settings
from supervisor.signals import stop_if_signalled

__all__ = ["exec_directus"]


def exec_directus(settings: Settings, log: Any, **fields: Any) -> NoReturn:
    """Replace this process with `directus start`, with an empty signal mask and default dispositions (but for
    SIGUSR1, SIGUSR2 and SIGWINCH, ignored until Node resets them: see supervisor.signals); call after
    `supervisor.signals.hand_over`. A stop signal that came after the phases means Directus never starts
    (`Interrupted`, 128+N)."""
    argv = (*settings.directus_argv(), "start")
    env = nodecache.child_env(settings.node_compile_cache, log)
    stop_if_signalled()
    log.info("directus.exec", argv=" ".join(argv), **fields, **clock.summary())
    sys.stdout.flush()
    sys.stderr.flush()
    # Python ignores SIGPIPE and SIGXFSZ, and exec keeps ignored signals ignored: give Directus the defaults.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # a stop from here on ends the worker by default: 128+N
    pid1.note_exec(pid1.EXEC)
    try:
        os.execvpe(argv[0], argv, env)  # noqa: S606 (argv is the configured Directus command)
    except OSError as e:
        from supervisor.errors import ConfigError

        pid1.note_exec(pid1.FAILED)

        raise ConfigError(
            f"cannot start Directus with `{' '.join(argv)}`: {e.strerror}; check SUPERVISOR_DIRECTUS_CMD",
            error_code="DIRECTUS_CMD_INVALID",
        ) from e
