"""Connection settings a user gets wrong are refused when read (exit 2), naming the variable and the fix (issue 9)."""

from __future__ import annotations

import pytest

from supervisor.errors import ConfigError
from supervisor.settings import Settings

BASE = {"DB_CLIENT": "pg", "DB_HOST": "db", "DB_PORT": "5432", "DB_DATABASE": "d", "DB_USER": "u"}


def _load(**env: str) -> Settings:
    return Settings.load({**BASE, **env})


def test_quoted_search_path_is_refused_with_the_bare_form():
    """`"$user", public` copied from SHOW search_path: each name is quoted for you, so the quotes must go."""
    with pytest.raises(ConfigError) as e:
        _load(DB_SEARCH_PATH='"$user", public')
    assert e.value.code == 2
    assert "DB_SEARCH_PATH=$user,public" in e.value.message


def test_bare_search_path_is_kept():
    """Unquoted names, spaces around commas allowed."""
    assert _load(DB_SEARCH_PATH="$user, app").db.search_path == ("$user", "app")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("host", "name", "port"),
    [("db:5432", "db", "5432"), ("10.0.0.1:6543", "10.0.0.1", "6543"), ("[::1]:5433", "::1", "5433")],
)
def test_host_with_a_port_is_refused(host: str, name: str, port: str):
    """DB_HOST=host:port names both variables to set apart."""
    with pytest.raises(ConfigError) as e:
        _load(DB_HOST=host)
    assert f"DB_HOST={name} and DB_PORT={port}" in e.value.message


@pytest.mark.parametrize("host", ["::1", "fe80::1", "db.example.com", "/var/run/postgresql"])
def test_ipv6_names_and_socket_folders_are_hosts(host: str):
    """An IPv6 address has colons but no single `:port`; a socket folder is a host for libpq."""
    assert _load(DB_HOST=host).db.host == host  # type: ignore[union-attr]


def test_url_in_db_host_points_to_the_connection_string():
    """A URL in DB_HOST is refused, pointing at DB_CONNECTION_STRING."""
    with pytest.raises(ConfigError, match="DB_CONNECTION_STRING"):
        _load(DB_HOST="postgres://u:p@db/d")


def test_bogus_sslmode_in_the_dsn_is_refused():
    """sslmode must be one of libpq's; the message lists them and never shows the password."""
    with pytest.raises(ConfigError) as e:
        Settings.load({"DB_CLIENT": "pg", "DB_CONNECTION_STRING": "postgres://u:s3cret@h/d?sslmode=bogus"})
    assert "sslmode='bogus'" in e.value.message and "verify-full" in e.value.message
    assert "s3cret" not in e.value.message


def test_dsn_query_parameters_describe_the_target_and_hide_the_password():
    """?host=, ?port=, ?user=, ?dbname= win over the URL's parts; ?password= is a secret."""
    s = Settings.load(
        {
            "DB_CLIENT": "pg",
            "DB_CONNECTION_STRING": "postgresql:///ignored?host=/run/pg&port=6000&user=app&dbname=prod&password=p%26w",
        }
    )
    assert s.db is not None
    assert s.db.describe() == "app@/run/pg:6000/prod"
    assert "p&w" in s.secrets()


def test_bad_port_in_the_dsn_query_is_refused():
    """?port= must be a TCP port."""
    with pytest.raises(ConfigError, match="port='x'"):
        Settings.load({"DB_CLIENT": "pg", "DB_CONNECTION_STRING": "postgresql://h/d?port=x"})


@pytest.mark.parametrize(
    ("ssl", "variable"),
    [
        ({"ca": "garbage-ca"}, "DB_SSL__CA"),
        ({"cert": "garbage-cert", "key": "secret-key-text"}, "DB_SSL__CERT"),
    ],
)
def test_unusable_tls_material_names_the_variable_not_its_content(ssl: dict[str, str], variable: str):
    """Garbage in DB_SSL__CA or DB_SSL__CERT/KEY is a configuration error (exit 2), never echoed back."""
    from supervisor.db import _ssl_context
    from supervisor.settings import DbSettings

    db = DbSettings(host="h", port=5432, database="d", user="u", ssl=ssl, ssl_enabled=True)
    with pytest.raises(ConfigError) as e:
        _ssl_context(db)
    assert e.value.code == 2 and e.value.error_code == "DB_CONFIG_INVALID"
    assert variable in e.value.message
    assert not any(v in e.value.message for v in ssl.values())
