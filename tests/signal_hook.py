"""Runs `python -m supervisor ARGS` with the worker sending itself SIGTERM at one exact point on its way to Directus,
for the race tests that timing alone cannot hit:

    python tests/signal_hook.py POINT ARGS...

POINT is `phases-done` (right after the last phase, before anything else runs), `exec-directus` (at the start of
phases.start.exec_directus) or `os-exec` (at the `os.exec` audit event, the last Python step before execve).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from typing import Any


def _term_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def _install(point: str) -> None:
    if point == "os-exec":

        def hook(event: str, _args: tuple[Any, ...]) -> None:
            if event == "os.exec":
                _term_self()

        sys.addaudithook(hook)
    elif point == "exec-directus":
        import phases.start

        original_exec = phases.start.exec_directus

        def exec_directus(*args: Any, **kwargs: Any) -> Any:
            _term_self()
            return original_exec(*args, **kwargs)

        phases.start.exec_directus = exec_directus
    elif point == "phases-done":
        import supervisor.runner

        original_run = supervisor.runner.run_phases

        async def run_phases(*args: Any, **kwargs: Any) -> Any:
            result = await original_run(*args, **kwargs)
            _term_self()
            return result

        supervisor.runner.run_phases = run_phases
    else:
        raise SystemExit(f"unknown point {point!r}")


if __name__ == "__main__":
    _install(sys.argv.pop(1))
    sys.argv[0] = "supervisor"
    runpy.run_module("supervisor", run_name="__main__", alter_sys=True)
