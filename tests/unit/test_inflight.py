"""The stop-message registry: a description outlives a cancelled block, not a finished or failed one."""

from __future__ import annotations

import asyncio

import pytest

from supervisor import errors, inflight


def test_a_cancelled_block_leaves_its_description_for_the_stop_message():
    """Cancellation unwinds through the block before `Interrupted` is made; the message still says what ran."""
    with (
        pytest.raises(asyncio.CancelledError),
        inflight.running(lambda: "file x: statement 2 of 3 was running."),
    ):
        raise asyncio.CancelledError
    try:
        assert errors.Interrupted(15, "SIGTERM").message == (
            "stopped by SIGTERM before Directus started: file x: statement 2 of 3 was running."
        )
    finally:
        inflight._descriptions.clear()


def test_a_finished_or_failed_block_leaves_nothing():
    """After a block ends normally or by an ordinary error, the generic message applies again."""
    with inflight.running(lambda: "a"):
        pass
    with pytest.raises(ValueError, match="bad"), inflight.running(lambda: "b"):
        raise ValueError("bad")
    assert inflight.current() is None
    assert "rolled back" in errors.Interrupted(2, "SIGINT").message
