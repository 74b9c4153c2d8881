"""structlog set-up: JSON lines off a TTY, a console view on one, and a processor that redacts secrets.

Global state lives here alone: the redaction set (filled once settings are parsed) and structlog's own config.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

__all__ = ["REDACTED", "add_secrets", "configure", "get_logger", "redact", "redact_text"]

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|dsn|connection_string|private_key", re.IGNORECASE
)
_SHORT = 4  # secrets shorter than this are redacted only where they stand as a secret (see add_secrets)
_secrets: set[str] = set()
_short_secrets: dict[str, list[re.Pattern[str]]] = {}


def add_secrets(values: Iterable[str]) -> None:
    """Register values that must never reach a log line.

    A value of 4 characters or more is replaced wherever it appears. A shorter one (a 1-3 character password) would
    blank out ordinary words and numbers that way ("a", "12"), so it is replaced where it stands as the secret:
    as the password in a URL (`user:pw@`), after a password key (`password=pw`, `PGPASSWORD: pw`, quoted or not),
    and as a whole quoted value (`'pw'`, `"pw"`).
    """
    for v in values:
        if len(v) >= _SHORT:
            _secrets.add(v)
        elif v and v not in _short_secrets:
            e = re.escape(v)
            end = r"(?=['\"]?(?:[\s,;&@/)}\]]|$))"
            _short_secrets[v] = [
                re.compile(rf"(?<=:){e}(?=@)"),
                re.compile(rf"(?i)(?<=(?:pass|word|sswd|rase))(\s*[=:]\s*['\"]?){e}{end}"),
                re.compile(rf"(['\"]){e}(?=\1)"),
            ]


def _scrub_text(value: str) -> str:
    for s in _secrets:
        if s in value:
            value = value.replace(s, REDACTED)
    for v, patterns in _short_secrets.items():
        if v in value:
            value = patterns[0].sub(REDACTED, value)
            value = patterns[1].sub(lambda m: m.group(1) + REDACTED, value)
            value = patterns[2].sub(lambda m: m.group(1) + REDACTED, value)
    return value


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact_text(text: str) -> str:
    """`text` with every registered secret value replaced by `***`."""
    result: str = _scrub(text)
    return result


def redact(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """**Processor:** replace secret-named keys and every registered secret value with `***`."""
    return {k: REDACTED if _SECRET_KEY.search(k) else _scrub(v) for k, v in event.items()}


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> str:
    """Configure structlog for the process; returns the format chosen (`json` or `console`).

    `auto` picks console when the stream is a TTY, else JSON. Tracebacks never include local variables: they would
    put DSNs and passwords into container logs.
    """
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        tail: list[Any] = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            redact,
            structlog.processors.JSONRenderer(),
        ]
    else:
        tail = [
            structlog.processors.format_exc_info,  # render first, so the traceback text is redacted too
            redact,
            structlog.dev.ConsoleRenderer(
                colors=out.isatty(),
                exception_formatter=structlog.dev.plain_traceback,
            ),
        ]
    structlog.configure(
        processors=shared + tail,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    return fmt


def get_logger() -> FilteringBoundLogger:
    """The supervisor's logger."""
    logger: FilteringBoundLogger = structlog.get_logger()
    return logger
