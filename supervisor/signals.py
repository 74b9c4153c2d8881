"""Signals in the worker while the phases run: SIGTERM, SIGINT, SIGHUP and SIGQUIT cancel the boot cleanly (the
running statement is cancelled and rolled back, the lock released, a CLI step stopped) and end it with
`Interrupted` (exit 128+N); SIGUSR1, SIGUSR2 and SIGWINCH are logged and ignored until Directus runs.

No signal is lost or fatal between the fork and Directus (DESIGN §9):
- supervisor.__main__ blocks these signals first thing, and the worker keeps them blocked until `run_routed` has
  installed its receiver, so one that arrives during start-up is queued and acted on.
- Before the exec, `hand_over` lets a stop that the receiver caught reach it, and notes any later one;
  `stop_if_signalled` then refuses to start Directus when a stop came, with the signals blocked while it checks.
  SIGUSR1, SIGUSR2 and SIGWINCH are set to be ignored from then through the exec (Node resets ignored signals to
  their defaults at start-up, and Directus installs its own handlers).
- The one gap left is the few microseconds between the last check and the exec: a stop there takes its default
  action, which still ends the worker with 128+N before Directus runs.
- With an early start (supervisor.early) there is no exec: the worker hands a Node that is already running over to
  the resident parent and exits. A stop that comes after the last check is no longer acted on by the worker; the
  resident parent remembers that it forwarded one and sends it on to Directus after the hand-over
  (supervisor.pid1._adopt), so Directus starts and stops at once, with the same 128+N. SIGUSR1, SIGUSR2 and
  SIGWINCH sent in that moment are not sent on, as they would be ignored through an exec.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from supervisor.errors import Interrupted, SupervisorError

__all__ = ["HANDLED", "STOPS", "hand_over", "run_routed", "stop_if_signalled"]

STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
_IGNORED_UNTIL_START = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
HANDLED = (*STOPS, *_IGNORED_UNTIL_START)
_LOOP_TURNS = 10  # a signal the receiver caught needs three loop turns to reach `watch`; the rest is margin

_noted: list[int] = []  # stops caught after hand_over, by _note

T = TypeVar("T")


def run_routed(work: Callable[[], Awaitable[T]], log: Any) -> T:
    """Run `work()` on anyio's asyncio backend; a stopping signal cancels it and raises `Interrupted`.

    The signal mask and dispositions are as the caller had them on return (the signals stay queued, blocked, in
    the entrypoint), so an in-process caller such as a test gets its own back.
    """
    import anyio

    received: list[int] = []
    saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    saved = {sig: handler for sig in HANDLED if (handler := signal.getsignal(sig)) is not None}

    async def wrapper() -> T:
        with anyio.open_signal_receiver(*HANDLED) as signals:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {*HANDLED, signal.SIGCHLD})
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
            finally:
                # Queue what arrives from here on: leaving the receiver restores the default actions.
                signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        # Threads of the loop (the default executor) may still take a signal until it closes: not a fatal one.
        for sig in _IGNORED_UNTIL_START:
            signal.signal(sig, signal.SIG_IGN)
        if received:
            raise Interrupted(received[0], signal.Signals(received[0]).name)
        return result

    try:
        return anyio.run(wrapper)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)


async def hand_over() -> None:
    """Prepare the worker for Directus to replace it: call after the last phase, inside `run_routed`.

    SIGUSR1, SIGUSR2 and SIGWINCH are ignored from now through the exec (a pending one is discarded), so none can
    end the worker by its default action. A stop is noted by a plain handler from now on, for `stop_if_signalled`;
    one the receiver caught just before is given the loop turns it needs to reach `run_routed`, which then cancels
    this call and ends the boot with `Interrupted`. The default executor is shut down, so no idle thread of it
    (name lookups) is left to take a signal in place of this one.
    """
    import asyncio

    import anyio.lowlevel

    _noted.clear()
    for sig in _IGNORED_UNTIL_START:
        signal.signal(sig, signal.SIG_IGN)
    for sig in STOPS:
        signal.signal(sig, _note)
    for _ in range(_LOOP_TURNS):
        await anyio.lowlevel.checkpoint()
    await asyncio.get_running_loop().shutdown_default_executor()


def stop_if_signalled() -> None:
    """Raise `Interrupted` if a stop came since `hand_over`; else return with the stops at their default actions
    and blocked, so the caller's exec (which empties the mask) is the next thing to see one."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)  # also runs a _note that is still due
    for sig in STOPS:
        signal.signal(sig, signal.SIG_DFL)
    pending = signal.sigpending()
    came = [*_noted, *(sig for sig in STOPS if sig in pending)]
    if came:
        raise Interrupted(came[0], signal.Signals(came[0]).name)


def _note(signum: int, _frame: object) -> None:
    _noted.append(signum)


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
