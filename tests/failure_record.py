"""Opt-in recorder of the supervisor's refusals, the raw material of docs/bad-inputs.md.

With SUPERVISOR_RECORD_FAILURES=<file> set when pytest starts, every supervisor process a test runs
through tests/conftest.py (`supervise`, `finish`) that exits 2..8 appends one JSON line to <file>:
{"test", "exit_code", "error_code", "first_line"}; `scripts/bad_inputs_table.py` turns it into the table.

The line is made stable and safe before it is written: temp folders, the repository, database names, ports,
pids, host names, throw-away role names, uids and timestamps become placeholders, and every password-like value
(from the process's environment, a DSN, `password=…`) becomes `<password>`, so a recorded run neither leaks a
secret nor churns the committed table. The variable is read once at import: the autouse `_clean_environ`
fixture removes SUPERVISOR_* from each test.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV = "SUPERVISOR_RECORD_FAILURES"
TARGET = os.environ.get(ENV) or None
ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)

_TMP = re.escape(tempfile.gettempdir().rstrip("/"))
# Order matters: the longer, more specific shapes first.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(://[^:/@\s]*:)[^@\s]+@"), r"\1<password>@"),  # user:pw@ in a DSN
    (re.compile(r"(password\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s&,;)]+)", re.IGNORECASE), r"\1<password>"),
    (re.compile(_TMP + r"/pytest-of-[^/\s]+/pytest-\d+/[^/\s'\"]+"), "<tmp>"),
    (re.compile(_TMP + r"/(?:pytest-\d+|tmp[\w-]+|supervisor-[\w-]+)"), "<tmp>"),
    (re.compile(r"\bt_[0-9a-f]{12}\b"), "<db>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d(?::?\d\d)?|Z)?"), "<time>"),
    # Process ids, never a small literal like "PID 1" (which the messages mean as such).
    (re.compile(r"\b((?:pid|backend)\s*=?\s*)\d{2,}"), r"\1<pid>"),
    (re.compile(r"\b(instead of )\d{2,}"), r"\1<pid>"),
    (re.compile(r"\b(uid )\d+"), r"\1<uid>"),
    (re.compile(r"\br_[0-9a-f]{8}\b"), "<role>"),  # the throw-away roles of privilege tests
    (re.compile(r"\b((?:127\.0\.0\.1|localhost|\[::1\]|<host>):)\d{2,5}\b"), r"\1<port>"),
    (re.compile(r"\b(port\s*[= ]\s*)\d{4,5}\b", re.IGNORECASE), r"\1<port>"),
]


def normalize(text: str, secrets: Iterable[str] = (), ports: Iterable[str] = ()) -> str:
    """`text` with machine- and run-specific parts as placeholders and every secret as `<password>`.

    Idempotent, so the table builder may apply it again to an old recording.
    """
    for secret in sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "<password>")
    text = text.replace(str(ROOT), "<repo>")
    home = str(Path.home())
    if home not in ("/", ""):
        text = text.replace(home, "~")
    host = socket.gethostname()
    if len(host) >= 8 or (len(host) >= 4 and any(c.isdigit() or c in "-." for c in host)):  # not a plain word
        text = re.sub(rf"\b{re.escape(host)}\b", "<host>", text)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    for port in {p for p in ports if p.isascii() and p.isdigit() and len(p) >= 4}:
        text = re.sub(rf"(?<![\d<]){port}(?!\d)", "<port>", text)
    return text


def _secrets_and_ports(env: Mapping[str, str]) -> tuple[set[str], set[str]]:
    from tests.pg import PASSWORD

    secrets, ports = {PASSWORD}, set()
    for key, value in env.items():
        if SECRET_KEY.search(key) and value:
            secrets.add(value)
        if key.endswith("PORT") and value:
            ports.add(value.strip())
        if "://" in value:
            try:
                u = urlsplit(value)
                if u.password:
                    secrets.add(u.password)
                if u.port:
                    ports.add(str(u.port))
            except ValueError:
                continue
    return secrets, ports


def _usage_error(stderr: str) -> str | None:
    """argparse's own refusal (exit 2 before logging is set up): its `error:` line."""
    for line in stderr.splitlines():
        if ": error: " in line:
            return line.split(": error: ", 1)[1]
    return None


def record(code: int, logs: list[dict[str, Any]], stderr: str, env: Mapping[str, str]) -> None:
    """Append one line to the recording for a refusal (2..8); a no-op when recording is off.

    A process without a `supervisor.failed` line is recorded only for argparse's usage errors: anything else
    (Directus's own status passed through by `run`) is not the supervisor's refusal.
    """
    if TARGET is None or not 2 <= code <= 8:
        return
    failed = [e for e in logs if e.get("event") == "supervisor.failed"]
    if failed:
        error_code = failed[-1].get("error_code")
        text = str(failed[-1].get("error", ""))
    else:
        usage = _usage_error(stderr)
        if usage is None:
            return
        error_code, text = None, usage
    first = next((line for line in text.splitlines() if line.strip()), "")
    secrets, ports = _secrets_and_ports(env)
    entry = {
        "test": os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0],
        "exit_code": code,
        "error_code": error_code,
        "first_line": normalize(first.strip(), secrets, ports),
    }
    with open(TARGET, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
