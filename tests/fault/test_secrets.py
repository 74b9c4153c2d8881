"""The database password never appears in any output of any failure path: stdout, stderr (JSON and console, info and
debug level) and the termination log, neither as typed nor percent-encoded.

Three passwords: a long distinctive one, a short one (4 characters) and one full of URL-special characters (which
must be percent-encoded in DB_CONNECTION_STRING). Each failure path runs with each of them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

import asyncpg
import pytest

from tests.conftest import ROOT, Database, PgServer
from tests.fault.conftest import STANDIN
from tests.pg import free_port

pytestmark = pytest.mark.postgres

PASSWORDS = {
    "long": "Fx-Sekrit-9f3Kq7Lm",
    "short": "Zq7k",
    "url-special": "p@ss:w/rd?#%&= +x;'",
}
RUN_CLI = Path(__file__).with_name("run_cli.py")


@dataclass(frozen=True)
class Who:
    """A login role with the password under test, and a database it owns."""

    server: PgServer
    role: str
    password: str
    database: str

    def dsn(self, password: str | None = None, host: str | None = None, port: str | None = None) -> str:
        pw = quote(self.password if password is None else password, safe="")
        return f"postgresql://{self.role}:{pw}@{host or self.server.host}:{port or self.server.port}/{self.database}"


@dataclass(frozen=True)
class Path_:
    """A failure path: the environment it needs (beyond DB_CLIENT and the log settings) and its exit codes."""

    name: str
    env: Callable[[Who, Path], dict[str, str]]
    codes: tuple[int, ...]
    sql: str = "SELECT 1;"


def _plain(who: Who, **over: str) -> dict[str, str]:
    base = {
        "DB_HOST": who.server.host,
        "DB_PORT": str(who.server.port),
        "DB_DATABASE": who.database,
        "DB_USER": who.role,
        "DB_PASSWORD": who.password,
    }
    return {**base, **over}


def _password_file(who: Who, tmp: Path) -> dict[str, str]:
    secret = tmp / "db-password"
    secret.write_text(who.password + "\n")  # the trailing newline breaks the login, as it does for Directus
    env = _plain(who)
    del env["DB_PASSWORD"]
    return {**env, "DB_PASSWORD_FILE": str(secret)}


def _echoing_dsn(who: Who) -> str:
    return who.dsn() + "?target_session_attrs=" + quote(who.password, safe="")


PATHS = [
    Path_("unreachable", lambda w, _: _plain(w, DB_HOST="127.0.0.1", DB_PORT=str(free_port())), (3,)),
    Path_("unresolvable host", lambda w, _: _plain(w, DB_HOST="fx-no-such-host.invalid"), (3,)),
    Path_("bad port value", lambda w, _: _plain(w, DB_PORT="54x32"), (2,)),
    Path_("missing database", lambda w, _: _plain(w, DB_DATABASE="fx_no_such_database"), (3,)),
    Path_("wrong password", lambda w, _: _plain(w, DB_USER=w.role + "_other"), (3,)),
    Path_("password file with a newline", _password_file, (3,)),
    Path_("sql error", lambda w, _: _plain(w), (4,), sql="SELECT 1/0;"),
    Path_("dsn: sql error", lambda w, _: {"DB_CONNECTION_STRING": w.dsn()}, (4,), sql="SELECT 1/0;"),
    Path_(
        "dsn: wrong password", lambda w, _: {"DB_CONNECTION_STRING": w.dsn(password=w.password + "x")}, (3,)
    ),
    Path_("dsn: unreachable", lambda w, _: {"DB_CONNECTION_STRING": w.dsn(port=str(free_port()))}, (3,)),
    Path_("dsn: bad port value", lambda w, _: {"DB_CONNECTION_STRING": w.dsn(port="99999")}, (2,)),
    # asyncpg quotes a bad parameter's value in its error; here the value is the password.
    Path_("dsn: parameter error", lambda w, _: {"DB_CONNECTION_STRING": _echoing_dsn(w)}, (2, 3)),
    Path_("directus step prints it", lambda w, _: {**_plain(w), "FAULT_STANDIN_LEAK": "1"}, (8,)),
    Path_(
        "directus cli missing", lambda w, _: {**_plain(w), "SUPERVISOR_DIRECTUS_CMD": "/nonexistent/fx"}, (2,)
    ),
]


@pytest.fixture
async def roles(pg: PgServer, db: Database) -> AsyncIterator[dict[str, Who]]:
    """A superuser role per password (and one with another password, for the wrong-password path), owning `db`."""
    admin = await asyncpg.connect(pg.dsn())
    made = []
    try:
        out = {}
        for kind, password in PASSWORDS.items():
            role = f"fx_{kind.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
            literal = password.replace("'", "''")
            await admin.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{literal}'")
            await admin.execute(f"CREATE ROLE {role}_other LOGIN PASSWORD 'something-else-entirely'")
            made += [role, f"{role}_other"]
            out[kind] = Who(pg, role, password, db.name)
        yield out
    finally:
        owner = await asyncpg.connect(pg.dsn(db.name))  # the tracking table a role made belongs to it
        for role in made:
            await owner.execute(f"DROP OWNED BY {role}")
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await owner.close()
        await admin.close()


def _forms(password: str) -> set[str]:
    """The password as typed and in every encoding a URL could carry it."""
    return {password, quote(password, safe=""), quote(password), quote_plus(password)}


async def _run(path: Path_, who: Who, tmp: Path, fmt: str, level: str) -> tuple[int, str, str]:
    folder = tmp / f"{path.name.replace(' ', '_').replace(':', '')}-{fmt}-{level}"
    for sub in ("db-init", "db-init-post", "standin"):
        (folder / sub).mkdir(parents=True)
    (folder / "db-init" / "001.sql").write_text(path.sql)
    termination = folder / "termination-log"
    termination.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "SUPERVISOR_"))}
    env.update(
        DB_CLIENT="pg",
        SUPERVISOR_LOG_FORMAT=fmt,
        SUPERVISOR_LOG_LEVEL=level,
        SUPERVISOR_WAIT_TIMEOUT="1",
        SUPERVISOR_DIRECTUS_CMD=f"{sys.executable} {STANDIN}",
        FAULT_STANDIN_DIR=str(folder / "standin"),
        FAULT_TERMINATION_LOG=str(termination),
        PYTHONPATH=str(ROOT),
    )
    env.update(path.env(who, folder))
    args = (
        ["migrate", "--only", "bootstrap"] if "directus" in path.name else ["migrate", "--only", "pre-schema"]
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(RUN_CLI), *args,
        env=env, cwd=folder, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return (
        proc.returncode,
        out.decode(errors="replace") + err.decode(errors="replace"),
        termination.read_text(),
    )


# Output formats and levels per password: every path runs in each combination listed for that password.
STYLES = {
    "long": (("json", "debug"), ("console", "info")),
    "short": (("console", "debug"),),
    "url-special": (("json", "debug"),),
}


@pytest.mark.parametrize("kind", list(PASSWORDS))
async def test_no_failure_path_prints_the_password(kind: str, roles: dict[str, Who], tmp_path: Path):
    """Every failure path (JSON and console, debug and info level): the documented exit code, a termination log
    line, and the password nowhere, in any form."""
    who = roles[kind]
    limit = asyncio.Semaphore(4)

    async def one(path: Path_, fmt: str, level: str) -> tuple[str, Path_, int, str, str]:
        async with limit:
            return (f"{path.name} ({fmt}, {level})", path, *await _run(path, who, tmp_path, fmt, level))

    results = await asyncio.gather(*(one(p, fmt, level) for p in PATHS for fmt, level in STYLES[kind]))
    leaks = []
    for label, path, code, output, termination in results:
        assert code in path.codes, f"{label}: exit {code}, expected {path.codes}:\n{output}"
        assert termination.strip(), f"{label}: nothing in the termination log"
        for form in _forms(who.password):
            if form in output:
                leaks.append(f"{label}: in stdout/stderr as {form!r}")
            if form in termination:
                leaks.append(f"{label}: in the termination log as {form!r}: {termination.strip()}")
    assert leaks == []
