"""The stop message of a no-transaction file follows how far it got, up to and including its final record."""

from __future__ import annotations

from pathlib import Path

from phases.sql import _NoTransactionState
from supervisor.sqlfile import SqlFile


def _state(tmp_path: Path) -> _NoTransactionState:
    path = tmp_path / "005_index.sql"
    path.write_text("-- supervisor: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\nVACUUM t;\n")
    return _NoTransactionState(
        SqlFile(path, path.read_bytes()), 2, "migrations_applied", marking=True, marked=True
    )


def test_a_stop_after_the_file_was_recorded_does_not_ask_to_run_it_again(tmp_path: Path) -> None:
    """Once every statement committed and the row says applied, the message must not advise deleting the row (that
    would apply the file twice), as it did when a connection loss came during the reset that follows the file."""
    state = _state(tmp_path)
    state.done, state.finishing, state.finished = 2, True, True
    text = state.describe()
    assert "recorded as applied" in text and "DELETE" not in text


def test_a_stop_while_recording_the_end_says_to_mark_it_applied_not_to_delete(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.done, state.finishing = 2, True
    text = state.describe()
    assert "all 2 of its statements were committed" in text
    assert "SET status = 'applied'" in text and "do not delete the row" in text


def test_a_stop_mid_file_still_says_which_statements_committed(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.done, state.sent = 1, True
    text = state.describe()
    assert "statement 1 of 2 was committed and recorded" in text and "NOT rolled back" in text
