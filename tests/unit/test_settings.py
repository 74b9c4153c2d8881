"""Settings from Directus's DB_* variables and the SUPERVISOR_* variables and flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.errors import ConfigError
from supervisor.settings import Settings, parse_bool, parse_duration

BASE = {
    "DB_CLIENT": "pg",
    "DB_HOST": "db",
    "DB_PORT": "5432",
    "DB_DATABASE": "directus",
    "DB_USER": "directus",
}


def test_defaults_follow_the_contract():
    """Unset SUPERVISOR_* variables take the documented defaults."""
    s = Settings.load(BASE)
    assert (s.db_init_dir, s.db_init_post_dir, s.snapshot) == (
        Path("db-init"), Path("db-init-post"), Path("snapshots/schema.yaml"),
    )  # fmt: skip
    assert (s.wait_timeout, s.lock_timeout, s.stop_timeout) == (60, 600, 25)
    assert (
        s.tracking_table == "supervisor.migrations_applied"
        and not s.allow_destructive_schema
        and s.log_format == "auto"
    )
    assert not s.tracking_table_explicit  # so an earlier ledger in public is adopted (supervisor.adopt)
    assert s.db is not None and s.db.describe() == "directus@db:5432/directus"


@pytest.mark.parametrize("where", ["env", "flag"])
def test_a_tracking_table_set_even_to_the_default_is_explicit(where: str):
    """SUPERVISOR_TRACKING_TABLE (or --tracking-table) set, even to the default's value, is the user's choice."""
    value = {"SUPERVISOR_TRACKING_TABLE": "supervisor.migrations_applied"}
    s = Settings.load({**BASE, **value}) if where == "env" else Settings.load(BASE, value)
    assert s.tracking_table == "supervisor.migrations_applied" and s.tracking_table_explicit


def test_flags_win_over_env():
    """A flag (given by variable name) overrides the environment."""
    s = Settings.load({**BASE, "SUPERVISOR_LOCK_TIMEOUT": "10"}, {"SUPERVISOR_LOCK_TIMEOUT": "2m"})
    assert s.lock_timeout == 120


@pytest.mark.parametrize("client", ["pg", "postgres", "postgresql", "PostgreSQL"])
def test_accepts_every_postgres_client_name(client):
    """DB_CLIENT may be pg, postgres or postgresql (the Helm chart's spelling)."""
    assert Settings.load({**BASE, "DB_CLIENT": client}).db is not None


def test_connection_string_is_used_alone():
    """With DB_CONNECTION_STRING, Directus ignores DB_HOST and friends; so do we."""
    s = Settings.load(
        {"DB_CLIENT": "pg", "DB_CONNECTION_STRING": "postgres://u:s3cret!@h:6543/d?sslmode=require"}
    )
    assert s.db is not None and s.db.describe() == "u@h:6543/d"
    assert "s3cret!" in s.secrets()
    assert "s3cret" not in repr(s)


def test_password_file_is_verbatim_and_trailing_newline_warns(tmp_path):
    """X_FILE content is used as is (like Directus); a trailing newline yields a warning naming the variable."""
    f = tmp_path / "pw"
    f.write_text("hunter22\n")
    s = Settings.load({**BASE, "DB_PASSWORD_FILE": str(f)})
    assert s.db is not None and s.db.password == "hunter22\n"
    assert s.warnings[0][0] == "config.secret_file_trailing_newline"
    assert s.warnings[0][1]["variable"] == "DB_PASSWORD_FILE"
    assert "hunter22" not in repr(s)


def test_unreadable_secret_file_names_the_variable(tmp_path):
    """A missing X_FILE target is a configuration error that names the variable and path."""
    with pytest.raises(ConfigError, match="DB_PASSWORD_FILE: cannot read"):
        Settings.load({**BASE, "DB_PASSWORD_FILE": str(tmp_path / "missing")})


def test_both_value_and_file_is_an_error(tmp_path):
    """X and X_FILE together are refused, as the postgres image does."""
    f = tmp_path / "pw"
    f.write_text("x")
    with pytest.raises(ConfigError, match="both DB_PASSWORD and DB_PASSWORD_FILE"):
        Settings.load({**BASE, "DB_PASSWORD": "y", "DB_PASSWORD_FILE": str(f)})


def test_run_only_start_needs_no_db_settings():
    """`need_db=False` ignores DB_* entirely (main-container mode after an init container)."""
    assert Settings.load({}, need_db=False).db is None


def test_ssl_variables_turn_tls_on():
    """Any DB_SSL__* variable enables TLS, as node-postgres does with an ssl object."""
    s = Settings.load({**BASE, "DB_SSL__REJECT_UNAUTHORIZED": "false"})
    assert s.db is not None and s.db.ssl_enabled and s.db.ssl == {"reject_unauthorized": "false"}
    assert not Settings.load(BASE).db.ssl_enabled  # type: ignore[union-attr]


def test_search_path_is_a_comma_list():
    """DB_SEARCH_PATH is split on commas, as Directus does."""
    s = Settings.load({**BASE, "DB_SEARCH_PATH": "app, public"})
    assert s.db is not None and s.db.search_path == ("app", "public")


@pytest.mark.parametrize(
    ("raw", "seconds"), [("60", 60), ("1.5", 1.5), ("500ms", 0.5), ("90s", 90), ("10m", 600), ("1h", 3600)]
)
def test_durations(raw, seconds):
    """Durations take plain seconds or a unit."""
    assert parse_duration("X", raw) == seconds


@pytest.mark.parametrize(
    ("raw", "value"), [("1", True), ("TRUE", True), ("yes", True), ("0", False), ("", False), ("off", False)]
)
def test_booleans(raw, value):
    """Booleans accept the usual spellings."""
    assert parse_bool("X", raw) is value


def test_directus_cmd_is_split_like_a_shell_line():
    """SUPERVISOR_DIRECTUS_CMD is split with shell quoting rules."""
    s = Settings.load({**BASE, "SUPERVISOR_DIRECTUS_CMD": "node 'my dir/cli.js'"})
    assert s.directus_argv() == ("node", "my dir/cli.js")
    with pytest.raises(ConfigError, match="SUPERVISOR_DIRECTUS_CMD"):
        Settings.load({**BASE, "SUPERVISOR_DIRECTUS_CMD": "node 'unclosed"})
