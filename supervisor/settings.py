"""Settings: Directus's own `DB_*` variables (with `*_FILE` secrets) plus the `SUPERVISOR_*` variables.

Everything is parsed once, in `main()`, into frozen values that are passed down explicitly. A bad value raises
`ConfigError` (exit 2) naming the variable; a secret's value never appears in a message or a repr.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from supervisor import nodecache
from supervisor.errors import ConfigError
from supervisor.pm2 import parse_instances
from supervisor.tablename import parse_table_name

__all__ = [
    "DEFAULT_TRACKING_TABLE",
    "LOG_LEVELS",
    "OUT_OF_ORDER",
    "PG_CLIENTS",
    "DbSettings",
    "Settings",
    "parse_bool",
    "parse_duration",
    "parse_log_level",
]

PG_CLIENTS = ("pg", "postgres", "postgresql")
# In a schema of its own: Directus lists every table of its schema (public) as a collection.
DEFAULT_TRACKING_TABLE = "supervisor.migrations_applied"
# ASCII digits only: `\d` and float() also take other scripts' digits (full-width digits, say), which Directus does not.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.ASCII)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
LOG_LEVELS = ("debug", "info", "warning", "error")
OUT_OF_ORDER = ("warn", "refuse")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SSLMODES = (
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
)  # libpq's, as asyncpg takes them
# `db:5432` or `[::1]:5432`; a bare IPv6 address has more than one colon and no brackets
_HOST_WITH_PORT = re.compile(r"^(\[[^\]]+\]|[^:\s/\[]+):(\d+)$")


def parse_duration(name: str, raw: str) -> float:
    """Seconds from `60`, `60s`, `500ms`, `10m` or `1h`; `name` is the variable or flag, for the message."""
    m = _DURATION.match(raw)
    if not m:
        raise ConfigError(f"{name}={raw!r} is not a duration; use seconds like 60, or 500ms, 90s, 10m, 1h")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_log_level(source: str, raw: str | None) -> str:
    """`SUPERVISOR_LOG_LEVEL` (or `--log-level`, named by `source`), lower-cased; unset or empty means info."""
    level = (raw or "info").strip().lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{source}={raw!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
    return level


def parse_bool(name: str, raw: str) -> bool:
    """`1/true/yes/on` or `0/false/no/off/empty`, case-insensitive."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use 1/true/yes or 0/false/no")


class _Env:
    """Reads variables the way Directus does, `X_FILE` included, and collects warnings for later logging."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.warnings: list[tuple[str, dict[str, str]]] = []

    def get(self, name: str) -> str | None:
        file_var = f"{name}_FILE"
        if file_var not in self.env:
            return self.env.get(name)
        if name in self.env:
            raise ConfigError(f"both {name} and {file_var} are set; set only one of them")
        path = self.env[file_var]
        try:
            # Verbatim, as Directus reads it: we fail exactly when Directus would (directus #24184).
            content = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise ConfigError(f"{file_var}: cannot read {path}: {reason}") from e
        if content.endswith(("\n", "\r")):
            self.warnings.append(
                (
                    "config.secret_file_trailing_newline",
                    {
                        "variable": file_var,
                        "hint": f"the file ends in a newline, which Directus keeps as part of {name}; "
                        f"write it with: printf %s 'VALUE' > {path}",
                    },
                )
            )
        return content


@dataclass(frozen=True, slots=True, kw_only=True)
class DbSettings:
    """How to reach Postgres, read from Directus's own variables."""

    host: str
    port: int
    database: str
    user: str
    password: str | None = field(default=None, repr=False)
    dsn: str | None = field(
        default=None, repr=False
    )  # DB_CONNECTION_STRING: when set, Directus uses it alone
    ssl: dict[str, str] = field(default_factory=dict, repr=False)  # DB_SSL__* keys, lower-cased
    ssl_enabled: bool = False
    search_path: tuple[str, ...] = ()
    password_from_file: str | None = None  # the *_FILE variable the password came from, for auth hints
    query_password: str | None = field(default=None, repr=False)  # DB_CONNECTION_STRING's ?password=

    def describe(self) -> str:
        """`user@host:port/database`, safe to log."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    def secrets(self) -> list[str]:
        """Values the log redaction must never let through."""
        out = [s for s in (self.password, self.dsn, self.query_password) if s]
        if self.dsn:
            pw = urlsplit(self.dsn).password
            if pw:
                out += [pw, unquote(pw)]
        out += [v for k, v in self.ssl.items() if k in ("key", "passphrase") and v]
        return out

    @classmethod
    def from_env(cls, e: _Env) -> DbSettings:
        client = e.get("DB_CLIENT")
        if client is None:
            raise ConfigError(
                "DB_CLIENT is not set; set DB_CLIENT=pg (the supervisor, like this image, needs Postgres)"
            )
        if client.strip().lower() not in PG_CLIENTS:
            raise ConfigError(
                f"DB_CLIENT={client!r} is not Postgres; the supervisor supports {', '.join(PG_CLIENTS)} "
                "(note the official image defaults to sqlite3)"
            )
        ssl = {k[len("DB_SSL__") :].lower(): e.get(k) or "" for k in _ssl_keys(e.env)}
        ssl_flag = e.get("DB_SSL")
        ssl_enabled = bool(ssl) or (ssl_flag is not None and parse_bool("DB_SSL", ssl_flag))
        search_path = _search_path(e.get("DB_SEARCH_PATH") or "")
        dsn = e.get("DB_CONNECTION_STRING")
        if dsn:
            return cls._from_dsn(dsn, search_path)
        missing = [v for v in ("DB_HOST", "DB_PORT", "DB_DATABASE", "DB_USER") if e.get(v) is None]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} not set; Directus needs DB_HOST, DB_PORT, DB_DATABASE and DB_USER "
                "(or DB_CONNECTION_STRING)"
            )
        host = e.get("DB_HOST") or ""
        if m := _HOST_WITH_PORT.match(host.strip()):
            name, port = m.group(1).strip("[]"), m.group(2)
            raise ConfigError(
                f"DB_HOST={host!r} includes a port; set DB_HOST={name} and DB_PORT={port} (Directus reads them apart)"
            )
        if "://" in host:
            raise ConfigError(
                "DB_HOST holds a URL; set DB_HOST to the host name alone, or put the URL in DB_CONNECTION_STRING"
            )
        port_raw = e.get("DB_PORT") or ""
        # isascii: isdigit() and int() also accept other scripts' digits (full-width digits, say), which Directus does not.
        if not (port_raw.strip().isdigit() and port_raw.isascii()) or not 0 < int(port_raw) < 65536:
            raise ConfigError(
                f"DB_PORT={port_raw!r} is not a TCP port: use a number from 1 to 65535 in ASCII digits (e.g. 5432)"
            )
        return cls(
            host=host,
            port=int(port_raw),
            database=e.get("DB_DATABASE") or "",
            user=e.get("DB_USER") or "",
            password=e.get("DB_PASSWORD"),
            ssl=ssl,
            ssl_enabled=ssl_enabled,
            search_path=search_path,
            password_from_file="DB_PASSWORD_FILE" if "DB_PASSWORD_FILE" in e.env else None,
        )

    @classmethod
    def _from_dsn(cls, dsn: str, search_path: tuple[str, ...]) -> DbSettings:
        try:
            url = urlsplit(dsn)
            port = url.port or 5432
        except ValueError as e:
            raise ConfigError("DB_CONNECTION_STRING is not a valid postgres:// URL") from e
        if url.scheme not in ("postgres", "postgresql"):
            raise ConfigError("DB_CONNECTION_STRING must start with postgres:// or postgresql://")
        # libpq's query parameters (?host=...&user=...) override the URL's parts, for the driver and so for messages.
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        sslmode = query.get("sslmode")
        if sslmode is not None and sslmode not in _SSLMODES:
            raise ConfigError(
                f"DB_CONNECTION_STRING has sslmode={sslmode!r}; use one of {', '.join(_SSLMODES)} "
                "(require when the server must use TLS, disable when it has none)"
            )
        port_raw = query.get("port")
        if port_raw is not None:
            if not (port_raw.isascii() and port_raw.isdigit() and 0 < int(port_raw) < 65536):
                raise ConfigError(
                    f"DB_CONNECTION_STRING has port={port_raw!r}, which is not a TCP port (1-65535)"
                )
            port = int(port_raw)
        user = query.get("user") or unquote(url.username or "")
        return cls(
            host=query.get("host") or url.hostname or "localhost",
            port=port,
            database=query.get("dbname") or query.get("database") or unquote(url.path.lstrip("/")) or user,
            user=user,
            dsn=dsn,
            search_path=search_path,
            query_password=query.get("password"),
        )


def _search_path(raw: str) -> tuple[str, ...]:
    """DB_SEARCH_PATH's schema names; each is quoted when used (as Directus's knex does), so none may be quoted."""
    parts = tuple(p.strip() for p in raw.split(",") if p.strip())
    quoted = [p for p in parts if '"' in p]
    if quoted:
        bare = ",".join(p.replace('"', "") for p in parts)
        raise ConfigError(
            f"DB_SEARCH_PATH={raw!r} has a quoted name ({quoted[0]}); the supervisor and Directus quote each name "
            f"themselves, so write the names bare, comma-separated: DB_SEARCH_PATH={bare}"
        )
    return parts


def _ssl_keys(env: Mapping[str, str]) -> list[str]:
    keys = {k.removesuffix("_FILE") for k in env if k.startswith("DB_SSL__")}
    return sorted(keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the supervisor takes from the environment and its flags."""

    db: DbSettings | None
    db_init_dir: Path = Path("db-init")
    db_init_post_dir: Path = Path("db-init-post")
    snapshot: Path = Path("snapshots/schema.yaml")
    directus_cmd: tuple[str, ...] = ()
    wait_timeout: float = 60.0
    lock_timeout: float = 600.0
    stop_timeout: float = 25.0
    step_timeout: float = 600.0
    allow_destructive_schema: bool = False
    tracking_table: str = DEFAULT_TRACKING_TABLE
    # SUPERVISOR_TRACKING_TABLE (or its flag) was set: the user chose the ledger, so no old one is adopted from the
    # search path's schema (supervisor.adopt).
    tracking_table_explicit: bool = False
    log_format: str = "auto"
    # A new file that sorts before an applied one: `warn` applies it with a warning, `refuse` exits 5.
    out_of_order: str = "warn"
    force: bool = False
    # PM2_INSTANCES (supervisor.pm2): 1 runs Directus alone; more, or "max", runs it in pm2-runtime's cluster mode.
    pm2_instances: int | str = 1
    # Node's compile cache folder for Directus (supervisor.nodecache); None: off.
    node_compile_cache: Path | None = None
    # Whether `run` may start Node early, loading Directus's modules while the phases check (supervisor.early).
    early_start: bool = True
    warnings: tuple[tuple[str, dict[str, str]], ...] = ()

    def secrets(self) -> list[str]:
        """Every secret value the logs must redact."""
        return self.db.secrets() if self.db else []

    def directus_argv(self) -> tuple[str, ...]:
        """The Directus CLI command: the configured one as given, else `node …/@directus/api/dist/cli/run.js` of the
        Directus found as `directus` on PATH or `./cli.js` (no npm update check: supervisor.directus_entry)."""
        if self.directus_cmd:
            return self.directus_cmd
        from supervisor.directus_entry import default_command  # only here: most verbs never need it

        return default_command()

    @classmethod
    def load(
        cls, env: Mapping[str, str], flags: Mapping[str, str | None] | None = None, *, need_db: bool = True
    ) -> Settings:
        """Build settings from `env`; a non-None entry of `flags` (keyed by variable name) wins over the env.

        `need_db=False` (for `run --only start`) skips the `DB_*` variables entirely.
        """
        merged = dict(env)
        merged.update({k: v for k, v in (flags or {}).items() if v is not None})
        e = _Env(merged)
        db = DbSettings.from_env(e) if need_db else None

        def get(name: str, default: str) -> str:
            value = e.get(name)
            return default if value is None or value == "" else value

        raw_table = e.get("SUPERVISOR_TRACKING_TABLE")
        table = parse_table_name(
            raw_table or DEFAULT_TRACKING_TABLE,
            _source(flags, env, "SUPERVISOR_TRACKING_TABLE"),
        )
        log_format = get("SUPERVISOR_LOG_FORMAT", "auto").lower()
        if log_format not in ("auto", "json", "console"):
            raise ConfigError(f"SUPERVISOR_LOG_FORMAT={log_format!r} must be auto, json or console")
        raw_order = get("SUPERVISOR_OUT_OF_ORDER", "warn")
        out_of_order = raw_order.strip().lower()
        if out_of_order not in OUT_OF_ORDER:
            raise ConfigError(
                f"{_source(flags, env, 'SUPERVISOR_OUT_OF_ORDER')}={raw_order!r} is not warn or refuse: warn applies "
                "a new file that sorts before an applied one and logs a warning, refuse exits 5 instead"
            )
        return cls(
            db=db,
            db_init_dir=Path(get("SUPERVISOR_DB_INIT_DIR", "db-init")),
            db_init_post_dir=Path(get("SUPERVISOR_DB_INIT_POST_DIR", "db-init-post")),
            snapshot=Path(get("SUPERVISOR_SNAPSHOT", "snapshots/schema.yaml")),
            directus_cmd=_directus_cmd(e.get("SUPERVISOR_DIRECTUS_CMD")),
            wait_timeout=parse_duration("SUPERVISOR_WAIT_TIMEOUT", get("SUPERVISOR_WAIT_TIMEOUT", "60")),
            lock_timeout=parse_duration("SUPERVISOR_LOCK_TIMEOUT", get("SUPERVISOR_LOCK_TIMEOUT", "600")),
            stop_timeout=parse_duration("SUPERVISOR_STOP_TIMEOUT", get("SUPERVISOR_STOP_TIMEOUT", "25")),
            step_timeout=_positive("SUPERVISOR_STEP_TIMEOUT", get("SUPERVISOR_STEP_TIMEOUT", "600")),
            allow_destructive_schema=parse_bool(
                "SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA", get("SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA", "0")
            ),
            tracking_table=table,
            tracking_table_explicit=bool(raw_table),
            log_format=log_format,
            out_of_order=out_of_order,
            force=parse_bool("SUPERVISOR_FORCE", get("SUPERVISOR_FORCE", "0")),
            pm2_instances=parse_instances(merged.get("PM2_INSTANCES")),  # no _FILE: pm2 reads it plainly
            node_compile_cache=nodecache.parse_setting(e.get("SUPERVISOR_NODE_COMPILE_CACHE"), merged),
            early_start=parse_bool("SUPERVISOR_EARLY_START", get("SUPERVISOR_EARLY_START", "1")),
            warnings=tuple(e.warnings),
        )


def _source(flags: Mapping[str, str | None] | None, env: Mapping[str, str], variable: str) -> str:
    """Where a setting's value came from, for messages: its flag, its variable, or the variable's `_FILE`."""
    if (flags or {}).get(variable) is not None:
        return "--" + variable.removeprefix("SUPERVISOR_").lower().replace("_", "-")
    return f"{variable} (read from {variable}_FILE)" if f"{variable}_FILE" in env else variable


def _positive(name: str, raw: str) -> float:
    seconds = parse_duration(name, raw)
    if seconds <= 0:
        raise ConfigError(f"{name}={raw!r} must be more than 0 (it bounds how long a step may run)")
    return seconds


def _directus_cmd(raw: str | None) -> tuple[str, ...]:
    if raw is None or not raw.strip():
        return ()  # resolved by Settings.directus_argv() only when a Directus step needs it
    try:
        argv = tuple(shlex.split(raw))
    except ValueError as e:
        raise ConfigError(f"SUPERVISOR_DIRECTUS_CMD cannot be split like a shell command line: {e}") from e
    if not argv:
        raise ConfigError("SUPERVISOR_DIRECTUS_CMD is empty")
    return argv
