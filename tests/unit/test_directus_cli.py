"""Directus CLI steps offline: SUPERVISOR_STEP_TIMEOUT (parsed like the other durations, never zero, in --help) and
a Directus command that cannot run."""

from __future__ import annotations

import pytest

from supervisor import cli
from supervisor.errors import ConfigError
from supervisor.settings import Settings

BASE = {
    "DB_CLIENT": "pg",
    "DB_HOST": "db",
    "DB_PORT": "5432",
    "DB_DATABASE": "directus",
    "DB_USER": "directus",
}


def test_the_step_timeout_defaults_to_ten_minutes_and_takes_units_and_the_flag():
    """Unset: 600 s; `90s`, `2m`, `500ms` parse; the flag wins over the variable."""
    assert Settings.load(BASE).step_timeout == 600
    assert Settings.load({**BASE, "SUPERVISOR_STEP_TIMEOUT": "2m"}).step_timeout == 120
    assert Settings.load({**BASE, "SUPERVISOR_STEP_TIMEOUT": "500ms"}).step_timeout == 0.5
    flags = {"SUPERVISOR_STEP_TIMEOUT": "90s"}
    assert Settings.load({**BASE, "SUPERVISOR_STEP_TIMEOUT": "2m"}, flags).step_timeout == 90


@pytest.mark.parametrize("raw", ["0", "0s", "soon", "-5"])
def test_a_zero_or_unreadable_step_timeout_is_a_configuration_error(raw: str):
    """A timeout that would stop every step at once, or is not a duration, is exit 2 naming the variable."""
    with pytest.raises(ConfigError, match="SUPERVISOR_STEP_TIMEOUT") as e:
        Settings.load({**BASE, "SUPERVISOR_STEP_TIMEOUT": raw})
    assert e.value.code == 2


def test_help_names_the_step_timeout(capsys: pytest.CaptureFixture[str]):
    """`migrate --help` lists --step-timeout with its variable and default."""
    with pytest.raises(SystemExit):
        cli.main(["migrate", "--help"], env={})
    text = " ".join(capsys.readouterr().out.split())
    assert "--step-timeout VALUE" in text
    assert "(default: 600s) [SUPERVISOR_STEP_TIMEOUT]" in text


async def test_a_directus_command_that_cannot_run_is_a_configuration_error(tmp_path):
    """A CLI step whose command does not exist is exit 2 (DIRECTUS_CMD_INVALID) naming it, not an internal error."""
    from supervisor.directus import run_cli
    from supervisor.log import get_logger

    missing = tmp_path / "no-such-directus"
    settings = Settings.load({**BASE, "SUPERVISOR_DIRECTUS_CMD": str(missing)})
    with pytest.raises(ConfigError, match="no-such-directus") as e:
        await run_cli(settings, ["bootstrap"], get_logger())
    assert e.value.error_code == "DIRECTUS_CMD_INVALID"
    assert e.value.code == 2
