"""Phase selection, exit codes, log redaction, connection-error classification and the termination log."""

from __future__ import annotations

import io
import json
import socket

import asyncpg
import pytest

from phases.registry import select_phases
from supervisor import cli, errors
from supervisor import log as logsetup
from supervisor.db import _transient


def test_selection_honours_only_from_until():
    """--only, --from and --until cut the ordered phase list; migrate never includes start."""
    assert select_phases("migrate") == ["pre-schema", "schema-apply", "post-schema", "bootstrap"]
    assert select_phases("run")[-1] == "start"
    assert select_phases("migrate", only="post-schema") == ["post-schema"]
    assert select_phases("migrate", until="schema-apply") == ["pre-schema", "schema-apply"]
    assert select_phases("run", from_="bootstrap") == ["bootstrap", "start"]
    with pytest.raises(errors.ConfigError, match="not a phase of `migrate`"):
        select_phases("migrate", only="start")


def test_exit_codes_match_the_contract():
    """Each error class carries its documented exit code; a signal maps to 128+N."""
    assert [c.exit_code for c in (
        errors.SupervisorError, errors.ConfigError, errors.DatabaseUnavailable, errors.MigrationFailed,
        errors.IntegrityRefusal, errors.LockTimeout, errors.SchemaRefusal, errors.DirectusStepFailed,
    )] == [1, 2, 3, 4, 5, 6, 7, 8]  # fmt: skip
    assert errors.Interrupted(15, "SIGTERM").code == 143


def test_redaction_hides_secret_keys_and_values():
    """Secret-named keys and registered secret values never reach the output."""
    out = io.StringIO()
    logsetup.configure("json", stream=out)
    logsetup.add_secrets(["pa55word-xyz"])
    logsetup.get_logger().info(
        "x", password="p", note="dsn postgres://u:pa55word-xyz@h/d", nested={"token": "t"}
    )
    line = json.loads(out.getvalue())
    assert line["password"] == "***" and line["nested"] == {"token": "***"}
    assert line["note"] == "dsn postgres://u:***@h/d"
    assert set(line) >= {"timestamp", "level", "event"} and line["level"] == "info"


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionRefusedError(), True),
        (socket.gaierror(-2, "Name or service not known"), True),
        (TimeoutError(), True),
        (asyncpg.CannotConnectNowError("starting up"), True),
        (asyncpg.TooManyConnectionsError("too many"), True),
        (asyncpg.InvalidPasswordError("bad"), False),
        (asyncpg.InvalidCatalogNameError("no db"), False),
        (asyncpg.InvalidAuthorizationSpecificationError("no pg_hba entry"), False),
    ],
)
def test_only_healing_failures_are_retried(exc, transient):
    """Refused, DNS, starting up and too-many-connections retry; auth and missing database do not."""
    assert _transient(exc) is transient


def test_failure_writes_the_termination_log(tmp_path, monkeypatch):
    """A failure leaves a one-line summary for `kubectl describe pod` where that file is writable."""
    target = tmp_path / "termination-log"
    target.write_text("")
    monkeypatch.setattr(cli, "TERMINATION_LOG", str(target))
    code = cli.main(["migrate", "--only", "pre-schema", "--log-format", "json"], env={"DB_CLIENT": "sqlite3"})
    assert code == 2
    assert (
        target.read_text() == "CONFIG_INVALID (exit 2): DB_CLIENT='sqlite3' is not Postgres; the supervisor "
        "supports pg, postgres, postgresql (note the official image defaults to sqlite3)\n"
    )


def test_help_lists_every_supervisor_variable(capsys):
    """`--help` of a verb names every SUPERVISOR_* variable it reads."""
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"], env={})
    text = capsys.readouterr().out
    for var in (
        "SUPERVISOR_DB_INIT_DIR",
        "SUPERVISOR_DB_INIT_POST_DIR",
        "SUPERVISOR_SNAPSHOT",
        "SUPERVISOR_DIRECTUS_CMD",
        "SUPERVISOR_WAIT_TIMEOUT",
        "SUPERVISOR_LOCK_TIMEOUT",
        "SUPERVISOR_STOP_TIMEOUT",
        "SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA",
        "SUPERVISOR_TRACKING_TABLE",
        "SUPERVISOR_LOG_FORMAT",
    ):
        assert var in text
