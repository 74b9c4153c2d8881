"""The fault suite's fixtures: its knobs (trials, seed), a project with every kind of step, the supervisor run as its
own process group (so a test can kill it, or only part of it), and the checks a faulted database must pass.

Knobs: `--trials N` / FAULT_TRIALS (default 8, one per kill target, sized for CI: 2 cores, the suite in about 90 s)
and `--seed S` / FAULT_SEED (default: a fresh one per session, printed with every failure so it can be replayed).
The options themselves are declared in tests/conftest.py: pytest reads options before it loads sub-folders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from supervisor.lock import CLASSID
from tests.conftest import ROOT, Database, PgServer

DEFAULT_TRIALS = 8  # one per target of tests/fault/test_kill9.py; CI draws a fresh seed each run
TABLE = "migrations_applied"  # set explicitly, so the checks do not depend on the default
STANDIN = Path(__file__).with_name("directus_standin.py")
SNAPSHOT = "version: 1\ndirectus: 12.4.0\nvendor: postgres\ncollections: []\nfields: []\nsystemFields: []\nrelations: []\n"

# Each file leaves one row in fx_ran: a file applied twice shows as a count of 2. `{p}` is a pause in seconds (short
# for kill trials, long where a test must catch a statement running); `/* fx:NNN */` lets a test spot the statement
# in pg_stat_activity.
PRE = {
    "001_base.sql": "CREATE TABLE fx_ran (file text NOT NULL, at timestamptz DEFAULT clock_timestamp());\n"
    "CREATE TABLE fx_items (id serial PRIMARY KEY, v int);\n"
    "INSERT INTO fx_items (v) SELECT g % 97 FROM generate_series(1, 5000) g;\n"
    "INSERT INTO fx_ran (file) VALUES ('001_base.sql');\n",
    "002_slow.sql": "INSERT INTO fx_ran (file) VALUES ('002_slow.sql');\nSELECT pg_sleep({p}) /* fx:002 */;\n"
    "CREATE TABLE fx_two (id int);\n",
    "003_notx.sql": "-- supervisor: no-transaction\n"
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS fx_items_v ON fx_items (v);\nSELECT pg_sleep({p}) /* fx:003 */;\n"
    "INSERT INTO fx_ran (file) VALUES ('003_notx.sql');\n",
    "004_more.sql": "CREATE TABLE fx_four (id int);\nSELECT pg_sleep({p}) /* fx:004 */;\n"
    "INSERT INTO fx_ran (file) VALUES ('004_more.sql');\n",
}
POST = {
    # fx_vehicles exists only once schema-apply ran: post-schema must come after it.
    "101_unique.sql": "ALTER TABLE fx_vehicles ADD CONSTRAINT fx_vehicles_plate_unique UNIQUE (plate);\n"
    "INSERT INTO fx_ran (file) VALUES ('101_unique.sql');\n",
    "102_slow.sql": "SELECT pg_sleep({p}) /* fx:102 */;\nINSERT INTO fx_ran (file) VALUES ('102_slow.sql');\n",
    "103_notx.sql": "-- supervisor: no-transaction\n"
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS fx_vehicles_id_plate ON fx_vehicles (id, plate);\n"
    "SELECT pg_sleep({p}) /* fx:103 */;\nINSERT INTO fx_ran (file) VALUES ('103_notx.sql');\n",
    "104_last.sql": "INSERT INTO fx_ran (file) VALUES ('104_last.sql');\n",
}
FILES = {**PRE, **POST}
NO_TRANSACTION = {name for name, sql in FILES.items() if sql.startswith("-- supervisor: no-transaction")}


@dataclass(frozen=True)
class Knobs:
    """How many kill trials to run, and the seed their random points come from."""

    trials: int
    seed: int

    def rng(self, *salt: object) -> random.Random:
        """A generator for one trial: the same seed and salt give the same draws."""
        return random.Random(f"{self.seed}:{':'.join(map(str, salt))}")  # noqa: S311 (reproducible on purpose)

    def replay(self) -> str:
        """How to run this again with the same draws."""
        return (
            f"seed {self.seed} (replay: --seed {self.seed} --trials {self.trials}, or FAULT_SEED={self.seed})"
        )


@pytest.fixture(scope="session")
def knobs(request: pytest.FixtureRequest) -> Knobs:
    """--trials / FAULT_TRIALS and --seed / FAULT_SEED."""
    trials = request.config.getoption("--trials")
    if trials is None:
        trials = int(os.environ.get("FAULT_TRIALS", DEFAULT_TRIALS))
    seed = request.config.getoption("--seed")
    if seed is None:
        raw = os.environ.get("FAULT_SEED")
        seed = int(raw) if raw else random.SystemRandom().randrange(1, 2**31)
    return Knobs(trials, seed)


class Project:
    """A project folder with both SQL folders, a snapshot and the stand-in Directus CLI's scratch folder."""

    def __init__(self, root: Path, pause: float = 0.15, slow: str = "", slow_pause: float = 1.0) -> None:
        """`pause` is each file's pause; the file whose name starts with `slow` gets `slow_pause` instead."""
        self.root = root
        self.standin_dir = root / "standin"
        for folder in ("db-init", "db-init-post", "snapshots", "standin"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        for folder, files in (("db-init", PRE), ("db-init-post", POST)):
            for name, sql in files.items():
                p = slow_pause if slow and name.startswith(slow) else pause
                (root / folder / name).write_text(sql.replace("{p}", f"{p:g}"))
        (root / "snapshots" / "schema.yaml").write_text(SNAPSHOT)

    def env(self, db: Database, **overrides: str) -> dict[str, str]:
        """The supervisor's environment: this database, the stand-in CLI, a generous lock timeout."""
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
        settings = {
            "SUPERVISOR_DIRECTUS_CMD": f"{sys.executable} {STANDIN}",
            "SUPERVISOR_TRACKING_TABLE": TABLE,
            "SUPERVISOR_LOCK_TIMEOUT": "30",
            "SUPERVISOR_WAIT_TIMEOUT": "15",
            "FAULT_STANDIN_DIR": str(self.standin_dir),
            "FAULT_STANDIN_SLEEP": "0.3",
            "PYTHONPATH": pythonpath,
        }
        return db.env(**{**settings, **overrides})

    def started(self) -> list[tuple[int, str]]:
        """Every stand-in invocation so far: (pid, arguments)."""
        path = self.standin_dir / "started"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            pid, _, args = line.partition(" ")
            out.append((int(pid), args))
        return out

    def violations(self) -> list[str]:
        """What the stand-in saw run without its supervisor's lock."""
        path = self.standin_dir / "violations"
        return path.read_text().splitlines() if path.exists() else []

    def standins_left(self) -> list[tuple[int, str]]:
        """Stand-in processes that never ended normally and are still alive (not even a zombie)."""
        out = []
        for mark in self.standin_dir.iterdir():
            if mark.name.isdigit() and _alive(int(mark.name), "directus_standin"):
                out.append((int(mark.name), mark.read_text().split("\n", 1)[0]))
        return out


def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int, cmd_part: str) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z" and cmd_part in _cmdline(pid)


def group_members(pgid: int) -> list[tuple[int, str]]:
    """Live processes of process group `pgid`: (pid, command line)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat and stat[0] != "Z" and int(stat[2]) == pgid:
                out.append((int(entry), _cmdline(int(entry))))
    return out


@dataclass
class Launched:
    """A supervisor started in its own process group, its output going to files (readable while it runs)."""

    proc: asyncio.subprocess.Process
    out: Path
    err: Path
    t0: float = field(default_factory=time.monotonic)

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        lines = []
        text = self.err.read_text(errors="replace") if self.err.exists() else ""
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines

    def output(self) -> str:
        """stdout and stderr so far."""
        return "\n".join(p.read_text(errors="replace") for p in (self.out, self.err) if p.exists())

    def kill(self, *, whole_group: bool) -> list[int]:
        """SIGKILL the process group (the container dies), or only the supervisor's own processes in it (the
        supervisor dies, its Directus CLI step is left to the kernel and the supervisor's precautions)."""
        victims = [
            pid for pid, cmd in group_members(self.pgid) if whole_group or "directus_standin" not in cmd
        ]
        if whole_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
        else:
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return victims

    async def wait(self, timeout: float = 90) -> int:  # noqa: ASYNC109
        """The exit code (negative: killed by that signal)."""
        return await asyncio.wait_for(self.proc.wait(), timeout)


def _output_files(cwd: Path, name: str) -> tuple[Path, Path]:
    out, err = cwd / f"{name}.out", cwd / f"{name}.err"
    out.write_bytes(b"")
    err.write_bytes(b"")
    return out, err


async def launch(args: list[str], env: dict[str, str], cwd: Path, name: str) -> Launched:
    """Start `python -m supervisor ARGS` as the leader of a new process group."""
    out, err = _output_files(cwd, name)
    fds = os.open(out, os.O_WRONLY), os.open(err, os.O_WRONLY)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "supervisor", *args,
            env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=fds[0], stderr=fds[1],
            start_new_session=True,
        )  # fmt: skip
    finally:
        for fd in fds:
            os.close(fd)
    return Launched(proc, out, err)


async def run_to_end(args: list[str], env: dict[str, str], cwd: Path, name: str) -> tuple[int, Launched]:
    """Run the supervisor to completion."""
    launched = await launch(args, env, cwd, name)
    try:
        return await launched.wait(), launched
    finally:
        if launched.proc.returncode is None:
            launched.kill(whole_group=True)
            await launched.proc.wait()


@pytest.fixture
async def make_db(pg: PgServer) -> AsyncIterator[Any]:
    """`await make_db()`: a new, empty database on the session's server, dropped after the test."""
    admin = await asyncpg.connect(pg.dsn())
    made: list[str] = []

    async def make() -> Database:
        name = f"f_{random.SystemRandom().randrange(16**12):012x}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return Database(pg, name)

    try:
        yield make
    finally:
        for name in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def locks_held(conn: asyncpg.Connection) -> int:
    """The supervisor's advisory locks held in this database (by anyone)."""
    n: int = await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        CLASSID,
    )
    return n


async def wait_locks_free(conn: asyncpg.Connection, timeout: float = 15) -> float:  # noqa: ASYNC109
    """Seconds until no supervisor lock is held in this database; fails after `timeout`."""
    t0 = time.monotonic()
    while await locks_held(conn):
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"a supervisor advisory lock was still held {timeout}s after the kill")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def ledger(conn: asyncpg.Connection) -> dict[str, str]:
    """filename -> status of the tracking table (empty before it exists)."""
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE):
        return {}
    return {r["filename"]: r["status"] for r in await conn.fetch(f"SELECT filename, status FROM {TABLE}")}


async def ran(conn: asyncpg.Connection) -> dict[str, int]:
    """How many times each file's side effect happened."""
    if not await conn.fetchval("SELECT to_regclass('fx_ran') IS NOT NULL"):
        return {}
    return {
        r["file"]: r["n"] for r in await conn.fetch("SELECT file, count(*) AS n FROM fx_ran GROUP BY file")
    }


async def assert_nothing_half_applied(conn: asyncpg.Connection, context: str) -> None:
    """After a fault: a transactional file's side effect exists exactly when its row says applied; a no-transaction
    file is applied, absent, or marked running/failed (the next run refuses it); nothing ran twice."""
    rows, done = await ledger(conn), await ran(conn)
    assert all(n == 1 for n in done.values()), f"a file ran twice: {done} ({context})"
    for name in FILES:
        status = rows.get(name)
        if name in NO_TRANSACTION:
            assert status in (None, "applied", "running", "failed"), (name, status, context)
            if status is None:
                assert name not in done, f"{name} has a side effect but no row ({context})"
            if status == "applied":
                assert name in done, f"{name} recorded as applied without its side effect ({context})"
        else:
            assert (status == "applied") == (name in done), (
                f"{name}: row {status!r} but side effect {'present' if name in done else 'absent'} ({context})"
            )


async def resolve_half_applied(conn: asyncpg.Connection, output: str) -> str:
    """Follow the instructions of a HALF_APPLIED refusal: drop invalid indexes (step 1), then mark the file applied
    if its last statement's effect is there (2b), else delete its row so it runs again (2a). Returns the file."""
    failed = [e for e in _json_lines(output) if e.get("event") == "supervisor.failed"]
    assert failed and failed[-1].get("error_code") == "HALF_APPLIED", output
    message = failed[-1]["error"]
    name = next((n for n in NO_TRANSACTION if n in message), None)
    assert name, f"the refusal does not name a no-transaction file: {message}"
    assert f"DELETE FROM {TABLE} WHERE filename = '{name}'" in message, message
    assert f"UPDATE {TABLE} SET status = 'applied' WHERE filename = '{name}'" in message, message
    for row in await conn.fetch("SELECT indexrelid::regclass::text AS ix FROM pg_index WHERE NOT indisvalid"):
        await conn.execute(f"DROP INDEX {row['ix']}")
    if name in await ran(conn):
        await conn.execute(f"UPDATE {TABLE} SET status = 'applied' WHERE filename = '{name}'")
    else:
        await conn.execute(f"DELETE FROM {TABLE} WHERE filename = '{name}'")
    return name


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                out.append(value)
    return out


async def rerun_until_clean(
    args: list[str], env: dict[str, str], project: Project, conn: asyncpg.Connection, context: str
) -> list[str]:
    """Re-run the verb; a HALF_APPLIED refusal (exit 5) is resolved as its message says, then re-run again.
    Returns the files that needed resolving."""
    resolved: list[str] = []
    for attempt in range(4):
        code, launched = await run_to_end(args, env, project.root, f"rerun{attempt}")
        if code == 0:
            return resolved
        assert code == 5, f"re-run exited {code} ({context}):\n{launched.output()}"
        resolved.append(await resolve_half_applied(conn, launched.output()))
    raise AssertionError(f"still refused after resolving {resolved} ({context})")


async def assert_clean_end_state(conn: asyncpg.Connection, project: Project, context: str) -> None:
    """Every file applied exactly once, nothing half-applied, the schema applied once, no lock, no stand-in left,
    and no Directus step ever ran without its lock."""
    assert await ran(conn) == dict.fromkeys(FILES, 1), context
    assert await ledger(conn) == dict.fromkeys(FILES, "applied"), context
    invalid = await conn.fetchval("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
    assert invalid == 0, f"an INVALID index is left ({context})"
    assert await conn.fetchval("SELECT count(*) FROM fx_steps WHERE step = 'schema apply'") == 1, context
    assert await conn.fetchval("SELECT to_regclass('fx_items_v') IS NOT NULL"), context
    assert await conn.fetchval("SELECT to_regclass('fx_vehicles_id_plate') IS NOT NULL"), context
    assert await locks_held(conn) == 0, f"an advisory lock is left ({context})"
    assert project.standins_left() == [], f"a Directus stand-in outlived its run ({context})"
    assert project.violations() == [], f"a Directus step ran without its lock ({context})"
