"""Fixtures: a real Postgres (env DSN, else testcontainers where Docker runs, else a throw-away local cluster), a
fresh database per test, a project layout in a temp folder, and a helper that runs the supervisor as a process.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import structlog

from tests import failure_record
from tests.pg import LocalCluster, bindir, requested_version

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by folder, so `-m postgres` or `-m 'not e2e'` select them."""
    for item in items:
        for folder, mark in (("integration", pytest.mark.postgres), ("e2e", pytest.mark.e2e)):
            if folder in item.path.parts:
                item.add_marker(mark)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Knobs of the fault suite (tests/fault): here, because options must be known before sub-folders load."""
    parser.addoption("--trials", type=int, default=None, help="fault suite: kill -9 trials (FAULT_TRIALS)")
    parser.addoption("--seed", type=int, default=None, help="fault suite: RNG seed (FAULT_SEED)")


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DB_* or SUPERVISOR_* variable of the developer's shell leaks into a test."""
    for key in list(os.environ):
        # SUPERVISOR_TEST_* choose the software under test (the matrix): they stay.
        if key.startswith(("DB_", "SUPERVISOR_")) and not key.startswith("SUPERVISOR_TEST_"):
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@dataclass(frozen=True)
class PgServer:
    """A Postgres server the tests may create databases on."""

    host: str
    port: int
    user: str
    password: str
    cluster: LocalCluster | None = None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"


def _docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return (
            subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """The session's Postgres: SUPERVISOR_TEST_DSN, else testcontainers, else a local throw-away cluster."""
    dsn = os.environ.get("SUPERVISOR_TEST_DSN")
    if dsn:
        u = urlsplit(dsn)
        yield PgServer(u.hostname or "127.0.0.1", u.port or 5432, u.username or "postgres", u.password or "")
        return
    if _docker_engine():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(f"postgres:{requested_version() or 16}", driver=None) as c:
            u = urlsplit(c.get_connection_url())
            yield PgServer(u.hostname or "", int(u.port or 5432), u.username or "", u.password or "")
        return
    cluster = LocalCluster().init().start()
    try:
        yield PgServer("127.0.0.1", cluster.port, cluster.user, cluster.password, cluster)
    finally:
        cluster.destroy()


def expected_pg_major(server: PgServer) -> int | None:
    """The major version the session's server must have: SUPERVISOR_TEST_PG_VERSION's, else that of the local
    binaries a throw-away cluster runs on (testcontainers: its image's); None for a DSN given without a version."""
    requested = requested_version()
    if requested is not None:
        return requested
    if server.cluster is not None:
        out = subprocess.run(
            [str(bindir() / "postgres"), "--version"], capture_output=True, text=True, check=True
        )
        return int(out.stdout.split()[-1].split(".")[0])
    return None if os.environ.get("SUPERVISOR_TEST_DSN") else 16


@dataclass
class Database:
    """A fresh database, and the environment a supervisor process needs to reach it."""

    server: PgServer
    name: str
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        return self.server.dsn(self.name)

    def env(self, **overrides: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "SUPERVISOR_"))}
        base.update(
            DB_CLIENT="pg",
            DB_HOST=self.server.host,
            DB_PORT=str(self.server.port),
            DB_DATABASE=self.name,
            DB_USER=self.server.user,
            DB_PASSWORD=self.server.password,
            SUPERVISOR_LOG_FORMAT="json",
            SUPERVISOR_WAIT_TIMEOUT="10",
        )
        base.update(self.extra_env)
        base.update(overrides)
        return {k: v for k, v in base.items() if v != ""}

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)


@pytest.fixture
async def db(pg: PgServer) -> AsyncIterator[Database]:
    """A new, empty database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield Database(pg, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def conn(db: Database) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test database, for arranging and asserting."""
    c = await db.connect()
    try:
        yield c
    finally:
        await c.close()


class Layout:
    """A project folder: db-init/, db-init-post/ and the files a test writes into them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pre = root / "db-init"
        self.post = root / "db-init-post"
        self.pre.mkdir()
        self.post.mkdir()

    def add(self, folder: str, name: str, sql: str | bytes) -> Path:
        path = (self.pre if folder == "pre" else self.post) / name
        path.write_bytes(sql.encode() if isinstance(sql, str) else sql)
        return path


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """An empty project layout in a temp folder (the supervisor's working directory in process tests)."""
    return Layout(tmp_path)


@dataclass
class Result:
    """A finished supervisor process: exit code, stdout, and its JSON log lines."""

    code: int
    stdout: str
    stderr: str

    @property
    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr.splitlines():
            # A child writing to the same stderr without a newline (a crashing stand-in's "Fatal Python error: ")
            # can put text before one of our lines: the JSON line is still read from its opening brace.
            start = line.find("{")
            if start < 0:
                continue
            try:
                out.append(json.loads(line[start:]))
            except ValueError:
                continue
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name]

    @property
    def failure(self) -> dict[str, Any]:
        failed = self.events("supervisor.failed")
        assert len(failed) == 1, self.stderr
        return failed[0]


_ENVS: dict[int, dict[str, str]] = {}  # pid -> environment, so `finish` can redact a recorded refusal


async def start_supervisor(*args: str, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """Start `python -m supervisor ARGS` as its own process (stdin closed, output captured)."""
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supervisor", *args,
        env={**env, "PYTHONPATH": pythonpath},
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    if failure_record.TARGET:
        _ENVS[proc.pid] = env
    return proc


async def finish(proc: asyncio.subprocess.Process, timeout: float = 60) -> Result:  # noqa: ASYNC109
    """Wait for a started supervisor and collect what it printed."""
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    result = Result(proc.returncode, out.decode(), err.decode())
    # Opt-in (SUPERVISOR_RECORD_FAILURES): feeds docs/bad-inputs.md, see scripts/bad_inputs_table.py.
    failure_record.record(result.code, result.logs, result.stderr, _ENVS.pop(proc.pid, {}))
    return result


async def supervise(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> Result:  # noqa: ASYNC109
    """Run the supervisor to completion."""
    return await finish(await start_supervisor(*args, env=env, cwd=cwd), timeout)


STANDIN = f"{sys.executable} {ROOT / 'tests' / 'standin.py'}"  # the stand-in Directus CLI (tests/standin.py)


def _read_or_empty(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def wait_for_text(path: Path, text: str, timeout: float = 20) -> str:  # noqa: ASYNC109
    """The file's content once `text` appears in it (a stand-in's log, say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = await asyncio.to_thread(_read_or_empty, path)
        if text in content:
            return content
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}: {_read_or_empty(path)!r}")
