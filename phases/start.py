"""`start`: Directus replaces the worker process (exec), touching no database.

In the default supervise mode the worker is the child of the resident loop (supervisor.pid1), which forwards
signals to it and passes its exit status on; with `--exec` the supervisor itself is replaced (refused as PID 1).
With PM2_INSTANCES above 1 the worker becomes `pm2-runtime` instead, which runs the Directus workers in cluster mode
(supervisor.pm2).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, NoReturn

from supervisor import clock, early, nodecache, pid1
from supervisor.settings import Settings
from supervisor.signals import stop_if_signalled

__all__ = ["exec_directus"]


def exec_directus(settings: Settings, log: Any, **fields: Any) -> NoReturn:
    """Replace this process with `directus start` (or pm2-runtime running it), with an empty signal mask and default
    dispositions (but for SIGUSR1, SIGUSR2 and SIGWINCH, ignored until Node resets them: see supervisor.signals);
    call after `supervisor.signals.hand_over`. A stop signal that came after the phases means Directus never starts
    (`Interrupted`, 128+N)."""
    pm2 = settings.pm2_instances != 1
    if pm2:
        from supervisor import pm2 as pm2_launch

        launch = pm2_launch.plan(settings.directus_argv(), settings.pm2_instances, os.environ)
        argv = launch.argv
        os.environ[pm2_launch.APP_VARIABLE] = launch.app_json()  # read and deleted by pm2.config.cjs
        fields = {**fields, "pm2_instances": settings.pm2_instances, "directus_script": launch.script}
    else:
        argv = (*settings.directus_argv(), "start")
    # pm2-runtime passes its environment on to the workers, so they get the compile cache too.
    env = nodecache.child_env(settings.node_compile_cache, log)
    waiting = None
    if pm2 or not settings.early_start:
        early.cancel()
    else:  # a Directus started early, waiting at its gate (supervisor.early)
        waiting, unused = early.take(settings.directus_argv(), env)
        if unused:
            log.warning("directus.early_start_unused", reason=unused, hint="starting Directus the usual way")
    try:
        stop_if_signalled()
        if waiting is not None:
            fields = {**fields, "early_start": True}
        log.info("directus.exec", argv=" ".join(argv), **fields, **clock.summary())
        sys.stdout.flush()
        sys.stderr.flush()
        if waiting is not None:
            # The resident parent learns Directus's pid first, then Directus goes on; a stop that arrives from
            # here on is sent on to Directus by the resident parent (supervisor.pid1._adopt).
            pid1.note_exec(pid1.HANDOVER + str(waiting.pid).encode())
    except BaseException:
        # Anything up to the note (a stop, a closed stdout): the Node at the gate must not outlive this worker.
        if waiting is not None:
            early.kill(waiting)
        raise
    if waiting is not None:
        early.go(waiting)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os._exit(0)
    # Python ignores SIGPIPE and SIGXFSZ, and exec keeps ignored signals ignored: give Directus the defaults.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    if pm2 and pid1.forked():
        # pm2-runtime leads a process group of its own, which the workers it forks join: the resident loop can
        # then send signals to the workers and, after the stop timeout, SIGKILL the whole group. Not under
        # `--exec`: there no loop is left to do so, and a new group would leave a terminal's job control.
        os.setpgid(0, 0)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # a stop from here on ends the worker by default: 128+N
    pid1.note_exec(pid1.EXEC)
    try:
        os.execvpe(argv[0], argv, env)  # noqa: S606 (argv is the configured Directus command)
    except OSError as e:
        from supervisor.errors import ConfigError

        pid1.note_exec(pid1.FAILED)

        what = "pm2-runtime (PM2_INSTANCES)" if pm2 else "SUPERVISOR_DIRECTUS_CMD"
        raise ConfigError(
            f"cannot start Directus with `{' '.join(argv)}`: {e.strerror}; check {what}",
            error_code="DIRECTUS_CMD_INVALID",
        ) from e
