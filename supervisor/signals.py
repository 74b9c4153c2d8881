"""Signals in the worker while the phases run: SIGTERM, SIGINT, SIGHUP and SIGQUIT cancel the boot cleanly (the
running statement is cancelled and rolled back, the lock released, a CLI step stopped) and end it with
`Interrupted` (exit 128+N); SIGUSR1, SIGUSR2 and SIGWINCH are logged and ignored until Directus runs.

The fork-split parent (supervisor.pid1) blocks these signals before forking; the worker unblocks them only once
this receiver is installed, so one that arrives during start-up is queued and acted on, never lost.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor.errors import Interrupted, SupervisorError

__all__ = ["STOPS", "run_routed"]

STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
_IGNORED_UNTIL_START = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


def run_routed(work: Callable[[], Awaitable[int]], log: Any) -> int:
    """Run `work()` on anyio's asyncio backend; a stopping signal cancels it and raises `Interrupted`."""
    import anyio

    received: list[int] = []

    async def wrapper() -> int:
        result = 0
        with anyio.open_signal_receiver(*STOPS, *_IGNORED_UNTIL_START) as signals:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {*STOPS, *_IGNORED_UNTIL_START, signal.SIGCHLD})
            try:
                async with anyio.create_task_group() as tg:

                    async def watch() -> None:
                        async for signum in signals:
                            if signum in _IGNORED_UNTIL_START:
                                log.info(
                                    "signal.ignored",
                                    signal=signal.Signals(signum).name,
                                    until="Directus runs",
                                )
                                continue
                            received.append(signum)
                            tg.cancel_scope.cancel()
                            return

                    tg.start_soon(watch)
                    result = await work()
                    tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                raise _first_error(group) from None
        if received:
            raise Interrupted(received[0], signal.Signals(received[0]).name)
        return result

    return anyio.run(wrapper)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a task group: our own first, else the first of any kind."""
    flat: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        e = stack.pop(0)
        if isinstance(e, BaseExceptionGroup):
            stack[:0] = list(e.exceptions)
        else:
            flat.append(e)
    ours = [e for e in flat if isinstance(e, SupervisorError)]
    return (ours or flat)[0]
