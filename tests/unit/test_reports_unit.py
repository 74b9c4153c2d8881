"""Reports without a database: the termination log's content and size, and the redaction of short secrets."""

from __future__ import annotations

import pytest

from phases.base import check_verdict
from supervisor import log as logsetup
from supervisor.cli import TERMINATION_LOG_LIMIT, termination_message
from supervisor.errors import IntegrityRefusal, SchemaRefusal
from supervisor.report import plan_check


@pytest.fixture(autouse=True)
def _fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers its own secrets; the process-wide set is put back afterwards."""
    monkeypatch.setattr(logsetup, "_secrets", set())
    monkeypatch.setattr(logsetup, "_short_secrets", {})


def test_termination_message_carries_the_whole_reason():
    """Not only the first line: the changed files with both checksums reach `kubectl describe pod`."""
    err = IntegrityRefusal(
        "2 applied file(s) changed since they were applied:\n"
        "  db-init/001.sql: applied as sha256:aaa, now sha256:bbb\n"
        "  db-init/002.sql: applied as sha256:ccc, now sha256:ddd\n"
        "Applied migrations must not be edited.",
        error_code="CHECKSUM_MISMATCH",
    )
    text = termination_message(err)
    assert text.startswith("CHECKSUM_MISMATCH (exit 5): 2 applied file(s) changed")
    assert "db-init/002.sql: applied as sha256:ccc, now sha256:ddd" in text
    assert text.endswith("Applied migrations must not be edited.\n")


def test_a_long_reason_is_cut_at_a_line_end_within_4_kb_with_a_note():
    """A destructive refusal listing hundreds of items fits Kubernetes' 4096 bytes, ends on a whole item, and says
    how much was cut and where the rest is; multi-byte text is never split inside a character."""
    items = "\n".join(f"  Delete field vehicles.feld_ä{i} (1234 rows at risk)" for i in range(300))
    text = termination_message(SchemaRefusal(f"the snapshot would drop:\n{items}\nNothing was applied."))
    data = text.encode("utf-8")
    assert len(data) <= TERMINATION_LOG_LIMIT
    body, note = text.rstrip("\n").rsplit("\n", 1)
    assert body.startswith("SCHEMA_REFUSED (exit 7): the snapshot would drop:")
    assert body.endswith("rows at risk)")  # the last item kept is whole
    assert "more bytes cut" in note and "container log" in note
    cut = int(note.split("[", 1)[1].split(" ", 1)[0])
    full = f"SCHEMA_REFUSED (exit 7): the snapshot would drop:\n{items}\nNothing was applied.\n".encode()
    assert cut == len(full) - len(body.encode()) - 1


def test_short_passwords_are_redacted_where_they_stand_as_the_password():
    """A 1-3 character password is hidden in a URL, after a password key and as a quoted value, and in the
    termination log; the same letters in ordinary text stay."""
    logsetup.add_secrets(["ab", "x"])
    assert logsetup.redact_text("postgres://u:ab@h:5432/db") == "postgres://u:***@h:5432/db"
    assert logsetup.redact_text("host=h password=ab user=u") == "host=h password=*** user=u"
    assert logsetup.redact_text("PGPASSWORD: 'x'") == "PGPASSWORD: '***'"
    assert logsetup.redact_text('invalid value "ab" for x') == 'invalid value "***" for x'
    prose = "a cab, ab x 12 about taxes"
    assert logsetup.redact_text(prose) == prose
    msg = termination_message(IntegrityRefusal("cannot use postgres://u:x@h/db\nsecond line password=ab"))
    assert "u:***@h" in msg and "password=***" in msg and ":x@" not in msg and "=ab" not in msg


def test_long_secrets_are_still_redacted_anywhere():
    """Four characters and more: replaced wherever they appear, as before."""
    logsetup.add_secrets(["s3cr3t-value"])
    assert logsetup.redact_text("x s3cr3t-valuey") == "x ***y"


def test_plan_check_reports_the_first_refusal_over_any_pending_work():
    """`migrate` stops at the first refusal in phase order, even after applying earlier phases' files: that
    refusal's code is the verdict; without one, pending work is 9; else 0."""
    pending = {"phase": "pre-schema", "check": check_verdict(9, "PENDING", "2 file(s) to apply")}
    schema = {"phase": "schema-apply", "check": check_verdict(7, "SCHEMA_DESTRUCTIVE", "drops")}
    post = {"phase": "post-schema", "check": check_verdict(4, "SQL_SYNTAX", "syntax")}
    done = {"phase": "bootstrap", "check": check_verdict(0, None, "nothing to do")}
    verdict = plan_check({"phases": [pending, schema, post, done]})
    assert (verdict["exit_code"], verdict["error_code"], verdict["phase"]) == (
        7,
        "SCHEMA_DESTRUCTIVE",
        "schema-apply",
    )
    assert plan_check({"phases": [pending, done]})["exit_code"] == 9
    assert plan_check({"phases": [done]})["exit_code"] == 0


def test_plan_check_counts_moving_an_earlier_ledger_as_work():
    """An earlier release's ledger that `migrate` would move into the supervisor's schema is something `migrate`
    does: 9 even when no phase has anything to apply, the move named first; a refusal still wins."""
    done = {"phase": "bootstrap", "check": check_verdict(0, None, "nothing to do")}
    moving = {
        "table": "public.migrations_applied",
        "legacy": True,
        "moves_to": "supervisor.migrations_applied",
    }
    verdict = plan_check({"ledger": moving, "phases": [done]})
    assert (verdict["exit_code"], verdict["phase"]) == (9, None)
    assert verdict["reason"] == "the ledger public.migrations_applied moves to supervisor.migrations_applied"
    refused = {"phase": "pre-schema", "check": check_verdict(5, "CHECKSUM_MISMATCH", "changed")}
    assert plan_check({"ledger": moving, "phases": [refused, done]})["exit_code"] == 5
    assert plan_check({"ledger": {**moving, "moves_to": None}, "phases": [done]})["exit_code"] == 0
