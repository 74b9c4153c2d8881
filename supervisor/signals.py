"""Signal routing for the whole run: before Directus starts, SIGTERM/SIGINT cancel the boot cleanly (`Interrupted`,
exit 128+N); while it runs, they are forwarded to it, with SIGKILL after the stop timeout.

One receiver serves both stages, so there is no moment without a handler.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor.errors import Interrupted, SupervisorError

__all__ = ["run_routed"]


def run_routed(work: Callable[[Any], Awaitable[int]], stop_timeout: float, log: Any) -> int:
    """Run `work(child)` on anyio's asyncio backend with SIGTERM/SIGINT routed: while Directus runs they are
    forwarded to it (SIGKILL after `stop_timeout`); before that they cancel the boot cleanly (`Interrupted`)."""
    import anyio

    from phases.start import Child

    child = Child()
    received: list[int] = []

    async def kill_after(proc: Any) -> None:
        await anyio.sleep(stop_timeout)
        if proc.returncode is None:
            log.warning("directus.killed", pid=proc.pid, stop_timeout_s=stop_timeout)
            proc.kill()

    async def wrapper() -> int:
        result = 0
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            try:
                async with anyio.create_task_group() as tg:

                    async def watch() -> None:
                        async for signum in signals:
                            proc = child.process
                            if proc is not None and proc.returncode is None:
                                proc.send_signal(signum)
                                log.info("signal.forwarded", signal=signal.Signals(signum).name, pid=proc.pid)
                                if not child.stopping:
                                    child.stopping = True
                                    tg.start_soon(kill_after, proc)
                                continue
                            received.append(signum)
                            tg.cancel_scope.cancel()
                            return

                    tg.start_soon(watch)
                    result = await work(child)
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
