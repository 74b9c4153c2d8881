"""Connecting to Postgres: wait with bounded retries, classify failures, and own the connection's lifetime.

Only failures that can heal are retried (refused, not yet resolvable, starting up, too many connections). A rejected
login or a missing database fails at once: waiting will not fix a password.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import asyncpg
from structlog.typing import FilteringBoundLogger
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random,
)

from supervisor import early
from supervisor.errors import ConfigError, DatabaseUnavailable
from supervisor.settings import DbSettings

__all__ = [
    "QUIET",
    "application_name",
    "connect",
    "connection",
    "is_connection_loss",
    "is_pooler_error",
    "lost_connection",
    "rollback",
    "session_reset_sql",
    "transaction_pooler",
]

_ATTEMPT_TIMEOUT_S = 10.0
_MIN_ATTEMPT_S = 0.1  # the shortest connection attempt worth making (a local connect takes a few ms)
_CLOSE_TIMEOUT_S = 5.0
# Server-side keepalives make a backend whose client was `kill -9`ed go away (and drop its advisory locks) within
# about idle + interval * count seconds instead of the kernel's two hours.
_SERVER_SETTINGS = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}
_CHECK_INTERVAL = "2s"  # client_connection_check_interval (PG >= 14): notice a dead client mid-statement


# First statement of the supervisor's own DDL transactions: "schema ... already exists, skipping" and the like are
# NOTICEs about our bookkeeping, not about the user's files, and stay out of the log (WARNINGs still come through).
QUIET = "SET LOCAL client_min_messages TO warning"


def application_name() -> str:
    """`host:pid`, shown in `pg_stat_activity` so a waiting replica can name the lock holder."""
    return f"{socket.gethostname()}:{os.getpid()}"[:63]


_NO_TLS = (
    "rejected SSL upgrade"  # asyncpg's ConnectionError when the server answers the TLS request with "no"
)
# Startup errors that are a session setting's fault (DB_SEARCH_PATH, `options` in DB_CONNECTION_STRING), not the login's.
_SETTING_SQLSTATES = frozenset(
    {"22023", "42704"}
)  # invalid_parameter_value, undefined_object (unknown parameter)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ssl.SSLError | ConfigError):
        return False  # a certificate problem or a bad setting does not heal by waiting
    if _NO_TLS in str(exc):
        return False  # the server has no TLS: waiting will not give it one
    if _PARAMETER_REFUSED in str(exc):
        return False  # a pooler's configuration does not heal by waiting
    return isinstance(
        exc,
        OSError  # refused, reset, unix socket not there yet, DNS not yet resolvable (socket.gaierror)
        | TimeoutError
        | asyncpg.CannotConnectNowError  # 57P03: starting up / shutting down / in recovery
        | asyncpg.TooManyConnectionsError  # 53300
        | asyncpg.PostgresConnectionError,  # 08xxx
    )


def _describe(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, TimeoutError) and not str(exc):  # not "TimeoutError: TimeoutError"
        return "TimeoutError: no answer within the connection attempt's time"
    text = str(exc) or type(exc).__name__
    return f"{sqlstate} {text}" if sqlstate else f"{type(exc).__name__}: {text}"


def _fix(db: DbSettings, *parts: str) -> str:
    """Where the user sets `parts` (database, host, port): their DB_* variables, or the connection string."""
    if db.dsn:
        return f"the {' and '.join(parts)} in DB_CONNECTION_STRING"
    return " and ".join(f"DB_{p.upper()}" for p in parts)


def _config_rejected(db: DbSettings, exc: BaseException) -> ConfigError | None:
    """A connection failure that a setting caused and only a changed setting heals (exit 2), else None."""
    where = f"{db.host}:{db.port}"
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return ConfigError(
            f"the connection settings are invalid: {exc}. Fix {'DB_CONNECTION_STRING' if db.dsn else 'the DB_* variables'}.",
            error_code="DB_CONFIG_INVALID",
        )
    if _NO_TLS in str(exc):
        asks = "sslmode in DB_CONNECTION_STRING asks" if db.dsn else "DB_SSL / DB_SSL__* settings ask"
        return ConfigError(
            f"the server at {where} does not accept TLS connections, but the {asks} for it ({_describe(exc)}). "
            "Either enable ssl on the Postgres server, or connect without TLS "
            + ("(sslmode=disable or prefer)." if db.dsn else "(unset DB_SSL and the DB_SSL__* variables)."),
            error_code="DB_TLS_UNAVAILABLE",
        )
    if getattr(exc, "sqlstate", None) in _SETTING_SQLSTATES:
        source = " and ".join(
            s
            for s, on in (
                ("DB_SEARCH_PATH", db.search_path),
                ("the options parameter of DB_CONNECTION_STRING", db.dsn),
            )
            if on
        )
        return ConfigError(
            f"the server at {where} refused a session setting at login: {_describe(exc)}. Fix "
            f"{source or 'the session settings'}"
            + (
                ": DB_SEARCH_PATH takes schema names, comma-separated and unquoted."
                if db.search_path
                else "."
            ),
            error_code="DB_CONFIG_INVALID",
        )
    return None


def _rejected(db: DbSettings, exc: BaseException) -> DatabaseUnavailable | ConfigError:
    config = _config_rejected(db, exc)
    if config is not None:
        return config
    target = f"database {db.database!r} as user {db.user!r} at {db.host}:{db.port}"
    if _PARAMETER_REFUSED in str(exc):
        path = (
            " PgBouncer 1.18 cannot pass DB_SEARCH_PATH's search_path at login either (ignoring it would run the "
            "migrations in the wrong schema): with DB_SEARCH_PATH, connect to Postgres itself."
            if db.search_path
            else ""
        )
        return ConfigError(
            f"the server at {db.host}:{db.port} refused the login: {_describe(exc)}. That is PgBouncer, which "
            "refuses startup parameters it does not know. Either point the supervisor at Postgres itself "
            f"({_fix(db, 'host', 'port')}), or add to pgbouncer.ini: ignore_startup_parameters = "
            f"{','.join(_SERVER_SETTINGS)} and use a pool in session mode (pool_mode = session): transaction pooling "
            f"breaks the supervisor's session advisory locks.{path}",
            error_code="POOLER_STARTUP_PARAMETER",
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return DatabaseUnavailable(
            f"Postgres has no {target.replace('database ', 'database named ', 1)}: {_describe(exc)}. "
            f"Create it (CREATE DATABASE) or fix {_fix(db, 'database')}.",
            error_code="DB_MISSING",
        )
    hint = (
        "Check the user and password in DB_CONNECTION_STRING, and pg_hba.conf."
        if db.dsn
        else "Check DB_USER and DB_PASSWORD (or DB_PASSWORD_FILE) and pg_hba.conf."
    )
    if db.password_from_file and db.password and db.password.endswith(("\n", "\r")):
        hint = (
            f"{db.password_from_file} ends in a newline, which is used as part of the password (as Directus does); "
            "write the file without it: printf %s 'PASSWORD' > FILE."
        )
    if isinstance(exc, ssl.SSLError):
        hint = "Check DB_SSL__* (CA, certificate, key) or the sslmode in DB_CONNECTION_STRING."
    return DatabaseUnavailable(
        f"Postgres rejected the connection to {target}: {_describe(exc)}. {hint}", error_code="DB_AUTH_FAILED"
    )


def _ssl_context(db: DbSettings) -> ssl.SSLContext | bool:
    if not db.ssl_enabled:
        return False  # node-postgres (Directus) does not use TLS unless DB_SSL* asks for it
    try:
        ctx = ssl.create_default_context(cadata=db.ssl.get("ca") or None)
    except (ssl.SSLError, ValueError) as e:
        raise ConfigError(
            f"DB_SSL__CA does not hold a usable PEM certificate ({e}); give it the CA certificate's text, "
            "-----BEGIN CERTIFICATE----- included, or use DB_SSL__CA_FILE with the path of that file",
            error_code="DB_CONFIG_INVALID",
        ) from e
    if db.ssl.get("reject_unauthorized", "true").strip().lower() in ("false", "0", "no"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if db.ssl.get("cert"):
        try:
            with _pem_files(db.ssl["cert"], db.ssl.get("key", "")) as (cert, key):
                ctx.load_cert_chain(cert, key or None, password=db.ssl.get("passphrase") or None)
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(
                f"DB_SSL__CERT and DB_SSL__KEY (with DB_SSL__PASSPHRASE) do not make a usable client certificate "
                f"({type(e).__name__}: {getattr(e, 'reason', None) or 'cannot be loaded'}); give them the PEM text "
                "of the certificate and of its private key",
                error_code="DB_CONFIG_INVALID",
            ) from e
    return ctx


@contextmanager
def _pem_files(cert: str, key: str) -> Iterator[tuple[str, str]]:
    # ssl only loads client certificates from files; Directus takes them inline (or through *_FILE).
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        paths = []
        for name, content in (("cert.pem", cert), ("key.pem", key)):
            path = os.path.join(d, name)
            if content:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(content)
            paths.append(path if content else "")
        yield paths[0], paths[1]


async def connect(db: DbSettings, timeout: float = _ATTEMPT_TIMEOUT_S) -> asyncpg.Connection:  # noqa: ASYNC109
    """One connection attempt, with the session settings the supervisor relies on."""
    settings = {"application_name": application_name(), **_SERVER_SETTINGS}
    if db.search_path:
        settings["search_path"] = ",".join(f'"{p}"' for p in db.search_path)
    # No named prepared statements: behind a transaction pooler (PgBouncer pool_mode = transaction) they clash
    # between clients (DuplicatePreparedStatementError) or vanish between statements, and the driver would crash
    # before the lock checks can say what is wrong. Queries with arguments then travel as unnamed statements, parsed
    # and executed in one exchange. The hot path (SQL files) uses the simple protocol and does not notice.
    kwargs: dict[str, Any] = {"timeout": timeout, "server_settings": settings, "statement_cache_size": 0}
    conn: asyncpg.Connection
    if db.dsn:
        conn = await asyncpg.connect(db.dsn, **kwargs)
    else:
        conn = await asyncpg.connect(
            host=db.host,
            port=db.port,
            user=db.user,
            password=db.password,
            database=db.database,
            ssl=_ssl_context(db),
            **kwargs,
        )
    if conn.get_server_version().major >= 14:
        await conn.execute(f"SET client_connection_check_interval = '{_CHECK_INTERVAL}'")
    return conn


def session_reset_sql(conn: asyncpg.Connection) -> str:
    """SQL that puts the session back to the state `connect` gave it: what a migration file SET or SET ROLEd is gone.

    `RESET ALL` returns every setting to its session default, which includes what the startup packet set
    (application_name, keepalives, DB_SEARCH_PATH's search_path), but not the session user, hence `SET SESSION
    AUTHORIZATION DEFAULT` (which also ends a `SET ROLE`). The setting `connect` SETs after the startup is SET
    again. Not DISCARD: it cannot run in a transaction block, and it would drop what the session must keep (the
    phase's advisory lock, the batch's temporary progress sequence).
    """
    sql = "SET SESSION AUTHORIZATION DEFAULT; RESET ALL"
    if conn.get_server_version().major >= 14:
        sql += f"; SET client_connection_check_interval = '{_CHECK_INTERVAL}'"
    return sql


def _version(conn: asyncpg.Connection) -> str:
    v = conn.get_server_version()
    return f"{v.major}.{v.micro}" if v.major >= 10 else f"{v.major}.{v.minor}.{v.micro}"


async def wait_for_postgres(db: DbSettings, budget_s: float, log: FilteringBoundLogger) -> asyncpg.Connection:
    """Connect, retrying what can heal with capped exponential backoff and jitter, within `budget_s` in total."""
    t0 = time.monotonic()
    deadline = t0 + budget_s

    def before_sleep(rs: RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome else None
        # Postgres is not up yet (often still starting beside us): a Node loading Directus early would compete
        # with it for the CPU for as long as that takes, for a boot that may well have work to do.
        if (pid := early.cancel()) is not None:
            log.info("directus.early_start_cancelled", pid=pid, reason="waiting for Postgres")
        log.info(
            "db.retrying",
            target=db.describe(),
            attempt=rs.attempt_number,
            sleep_s=round(rs.upcoming_sleep, 2),
            error=_describe(exc) if exc else None,
        )

    backoff = wait_exponential(multiplier=0.1, max=2.0) + wait_random(0, 0.3)

    def wait(rs: RetryCallState) -> float:
        # The budget is the whole wait: the last sleep is shortened so an attempt still fits before the deadline.
        return max(0.0, min(backoff(rs), deadline - time.monotonic() - _MIN_ATTEMPT_S))

    def stop(_rs: RetryCallState) -> bool:
        # `wait` leaves at least this much after its sleep, so this is the budget spent.
        return deadline - time.monotonic() < _MIN_ATTEMPT_S

    retrying = AsyncRetrying(
        stop=stop,
        # Exponential from 0.1 s, capped at 2 s, plus up to 0.3 s of jitter (spelled so tenacity 8.3 to 9.x agree).
        wait=wait,
        retry=retry_if_exception(_transient),
        before_sleep=before_sleep,
        sleep=anyio.sleep,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                # Each attempt ends by the deadline too: a 0.5 s budget against a host that never answers is 0.5 s.
                remaining = max(_MIN_ATTEMPT_S, min(_ATTEMPT_TIMEOUT_S, deadline - time.monotonic()))
                conn = await connect(db, remaining)
    except ConfigError:
        raise
    except Exception as exc:
        if not _transient(exc):
            raise _rejected(db, exc) from exc
        raise DatabaseUnavailable(
            f"Postgres at {db.host}:{db.port} (database {db.database!r}, user {db.user!r}) was not reachable "
            f"within {budget_s:g}s; last error: {_describe(exc)}. Check {_fix(db, 'host', 'port')} "
            "and that Postgres is running, or raise SUPERVISOR_WAIT_TIMEOUT.",
            error_code="DB_UNREACHABLE",
        ) from exc
    log.info(
        "db.connected",
        target=db.describe(),
        server_version=_version(conn),
        duration_ms=round((time.monotonic() - t0) * 1000),
    )
    return conn


@asynccontextmanager
async def connection(
    db: DbSettings, budget_s: float, log: FilteringBoundLogger
) -> AsyncIterator[asyncpg.Connection]:
    """Wait for Postgres and own the connection: closed gracefully even when cancelled, else terminated."""
    conn = await wait_for_postgres(db, budget_s, log)
    try:
        yield conn
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        if is_pooler_error(e):
            raise transaction_pooler(f"A prepared statement clashed or vanished ({_describe(e)}).") from e
        raise
    finally:
        with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
            await conn.close()
        conn.terminate()  # harmless once closed; ends it when close did not finish


_PARAMETER_REFUSED = (
    "unsupported startup parameter"  # PgBouncer's FATAL for a startup parameter it does not track
)
# SQLSTATEs of prepared statements that clash or vanish: only a pooler that shares server connections between
# clients makes them happen to a driver that names its statements uniquely per connection.
_POOLER_SQLSTATES = frozenset({"42P05", "26000"})  # duplicate_prepared_statement, invalid_sql_statement_name


def is_pooler_error(exc: BaseException) -> bool:
    """True when `exc` is a driver error that only a transaction (or statement) pooler in between can cause."""
    if getattr(exc, "sqlstate", None) in _POOLER_SQLSTATES:
        return True
    return (
        isinstance(exc, asyncpg.PostgresError)
        and "prepared statement" in str(exc)
        and "does not exist" in str(exc)
    )


def transaction_pooler(what: str) -> ConfigError:
    """The refusal (exit 2) for a connection whose statements do not all run in one Postgres session.

    `what` says what was seen and what became of the work, as a sentence."""
    return ConfigError(
        f"{what} The connection goes through a pooler in transaction (or statement) pooling mode, such as PgBouncer "
        "with pool_mode = transaction, which runs consecutive statements on different Postgres sessions. That breaks "
        "the session advisory locks that keep two replicas from applying the same migration, so the supervisor "
        "refuses to run through it. Point the supervisor at Postgres itself (DB_HOST and DB_PORT, or "
        "DB_CONNECTION_STRING, of the Postgres server; in Kubernetes that can be the migrate init container alone), "
        "or at a PgBouncer pool in session mode (pool_mode = session).",
        error_code="TRANSACTION_POOLER",
    )


def is_connection_loss(exc: BaseException) -> bool:
    """True when `exc` means the session is gone, and with it any advisory lock it held."""
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc)  # "connection is closed"; other interface errors are our bugs
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.exceptions.AdminShutdownError  # 57P01: pg_terminate_backend or shutdown
        | asyncpg.exceptions.CrashShutdownError
        | OSError,
    )


def lost_connection(exc: BaseException, where: str, outcome: str | None = None) -> DatabaseUnavailable:
    """The error for a connection that died mid-phase: the lock went with it, so the phase stops. `outcome` says what
    became of the work that was running (default: an open transaction, which the server rolls back)."""
    return DatabaseUnavailable(
        f"the database connection was lost {where} ({_describe(exc)}); its advisory lock went with it, so the "
        "phase stopped. "
        + (outcome or "Any transaction it had open was rolled back by the server; run again to continue."),
        error_code="CONNECTION_LOST",
    )


async def rollback(conn: asyncpg.Connection) -> None:
    """End a failed or interrupted transaction, even while being cancelled; a dead connection has already ended it,
    and one that cannot say ROLLBACK within 5 s is closed (the server rolls back when the session ends)."""
    if conn.is_closed():
        return
    with anyio.move_on_after(5, shield=True):
        try:
            await conn.execute("ROLLBACK")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            conn.terminate()
