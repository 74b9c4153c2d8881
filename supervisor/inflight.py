"""What the boot is in the middle of, so that a stop message tells the truth about it.

A stop signal cancels the work wherever it is, and the message is made far from there (`errors.Interrupted`). Code
whose interruption would leave something behind that the generic message does not cover (a no-transaction file
part-way) registers a description while it runs; the description stays registered when the block is cancelled, so
the stop message can still read it. An ordinary error removes it: it carries its own message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["current", "running"]

_descriptions: list[Callable[[], str]] = []


@contextmanager
def running(describe: Callable[[], str]) -> Iterator[None]:
    """Register `describe` (what a stop now would leave behind) for the block; kept when the block is cancelled."""
    _descriptions.append(describe)
    try:
        yield
    except Exception:
        _descriptions.remove(describe)  # an error carries its own message
        raise
    # No `finally`: a stop (cancellation, a BaseException) unwinds through here before its message is made.
    _descriptions.remove(describe)


def current() -> str | None:
    """The description registered last, or None."""
    return _descriptions[-1]() if _descriptions else None
