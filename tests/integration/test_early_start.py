"""The early start (supervisor/early.py): Node loads Directus's modules behind a gate while the phases check the
database, and is killed, having started nothing, when they fail or a signal stops the boot. A stand-in Directus
package laid out as `@directus/api/dist/cli/` notes when its modules were imported and when run.js ran; the machine's
Node runs it. The hand-over itself (checks pass: /server/ping, then SIGTERM and 143) is proved by the real Directus's
warm boots in tests/e2e/test_compile_cache_e2e.py."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import Database, Layout, finish, start_supervisor, supervise, wait_for_text

SNAPSHOT = "version: 1\ndirectus: 12.4.0\nvendor: postgres\ncollections: []\nfields: []\nsystemFields: []\nrelations: []\n"
INDEX = 'import { appendFileSync } from "node:fs";\nappendFileSync(process.env.FAKE_LOG, `imported ${process.pid}\\n`);\n'
RUN = (
    'import "./index.js";\nimport { appendFileSync } from "node:fs";\n'
    "appendFileSync(process.env.FAKE_LOG, `started ${process.pid}\\n`);\nsetInterval(() => {}, 1000);\n"
)


@pytest.fixture
def fake(layout: Layout, tmp_path: Path) -> dict[str, str]:
    """The stand-in Directus package and the environment pointing at it."""
    cli = tmp_path / "pkg" / "node_modules" / "@directus" / "api" / "dist" / "cli"
    cli.mkdir(parents=True)
    (cli / "index.js").write_text(INDEX)
    (cli / "run.js").write_text(RUN)
    (layout.root / "snapshots").mkdir()
    (layout.root / "snapshots" / "schema.yaml").write_text(SNAPSHOT)
    return {
        "SUPERVISOR_DIRECTUS_CMD": f"node {cli / 'run.js'}",
        "FAKE_LOG": str(tmp_path / "fake.log"),
        "SUPERVISOR_NODE_COMPILE_CACHE": "off",
    }


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_refusing_check_kills_the_early_node_before_it_starts_anything(
    db: Database, layout: Layout, fake: dict[str, str]
):
    """An applied file changed: `run` refuses (exit 5, as before); the Node started early had loaded the modules
    (or was loading them) and is gone, run.js never ran."""
    layout.add("pre", "001.sql", "CREATE TABLE t (id int);")
    assert (await supervise("migrate", "--only", "pre-schema", env=db.env(**fake), cwd=layout.root)).code == 0
    layout.add("pre", "001.sql", "CREATE TABLE t (id bigint);")
    log = Path(fake["FAKE_LOG"])
    r = await supervise("run", env=db.env(**fake), cwd=layout.root)
    assert r.code == 5, r.stderr
    pid = r.events("directus.early_start")[0]["pid"]
    assert _gone(pid)
    assert r.events("directus.exec") == []
    assert "started" not in _text(log)
    assert r.events("supervisor.worker_exited")[0]["directus_started"] is False


async def test_term_while_node_waits_at_the_gate(
    db: Database, conn: asyncpg.Connection, layout: Layout, fake: dict[str, str]
):
    """SIGTERM while the phases wait for a lock and Node waits at the gate with Directus's modules loaded: exit
    143 within seconds, Node killed, nothing of Directus ran, no lock left."""
    from supervisor.lock import CLASSID

    log = Path(fake["FAKE_LOG"])
    await conn.execute(
        f"SELECT pg_advisory_lock({CLASSID}, 1)"
    )  # the pre-schema lock, held by "another replica"
    try:
        proc = await start_supervisor(
            "run", env=db.env(**fake, SUPERVISOR_LOCK_TIMEOUT="60"), cwd=layout.root
        )
        await wait_for_text(log, "imported")
        deadline = time.monotonic() + 20
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%:%' AND pid <> pg_backend_pid()"
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        r = await finish(proc, timeout=20)
    finally:
        await conn.execute(f"SELECT pg_advisory_unlock({CLASSID}, 1)")
    assert r.code == 143, r.stderr
    assert time.monotonic() - t0 < 8
    pid = r.events("directus.early_start")[0]["pid"]
    assert f"imported {pid}" in _text(log)
    assert _gone(pid)
    assert "started" not in _text(log)
    assert r.events("directus.exec") == []
    assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


async def test_no_early_start_for_another_command_or_with_exec(
    db: Database, layout: Layout, fake: dict[str, str]
):
    """A Directus command that is not `node …/@directus/api/dist/cli/run.js`, and `--exec` (no resident parent to
    adopt Node), start nothing early."""
    layout.add("pre", "001.sql", "SELECT * FROM missing_table;")
    other = {
        **fake,
        "SUPERVISOR_DIRECTUS_CMD": f"node --no-warnings {fake['SUPERVISOR_DIRECTUS_CMD'].split()[1]}",
    }
    for env, args in ((other, ("run",)), (fake, ("run", "--exec"))):
        r = await supervise(*args, env=db.env(**env), cwd=layout.root)
        assert r.code == 4, r.stderr
        assert r.events("directus.early_start") == []


async def test_no_early_start_where_directus_would_connect_to_redis_when_loaded(
    db: Database, layout: Layout, fake: dict[str, str]
):
    """Directus's modules connect to a configured Redis as they load: REDIS in the environment, a store set to redis
    in the working directory's .env, or a CONFIG_PATH that is not looked into: no early start."""
    layout.add("pre", "001.sql", "SELECT * FROM missing_table;")
    cases: list[tuple[dict[str, str], str]] = [
        ({"REDIS": "redis://127.0.0.1:1"}, ""),
        ({}, "RATE_LIMITER_ENABLED=true\nRATE_LIMITER_STORE='redis'\n"),
        ({"CONFIG_PATH": str(layout.root / "config.js")}, ""),
        ({}, "PUBLIC_URL=http://example.com\n"),  # the control: nothing of Redis
    ]
    for extra, dotenv in cases:
        (layout.root / ".env").write_text(dotenv)
        r = await supervise("run", env=db.env(**fake, **extra), cwd=layout.root)
        assert r.code == 4, r.stderr
        assert len(r.events("directus.early_start")) == (0 if extra or dotenv.count("redis") else 1), (
            extra,
            dotenv,
        )


HANDOVER_DRIVER = """
import os, signal, sys, time
from supervisor import pid1
from supervisor.__main__ import HANDLED
signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
pid1.fork_split(5.0, "json")  # returns in the worker; the parent supervises it
standin, log, mode = sys.argv[1:4]
child = os.posix_spawn(sys.executable, [sys.executable, standin, "start"], dict(os.environ), setsigmask=())
while ("ready" if mode != "ended" else "SigBlk") not in (open(log).read() if os.path.exists(log) else ""):
    time.sleep(0.01)
if mode == "ended":
    time.sleep(0.3)  # the stand-in exits 7 at once: a zombie of this worker, handed over as such
pid1.note_exec(pid1.HANDOVER + str(child).encode())
if mode == "stopped":  # a stop forwarded to the worker after its note: it ends the worker, and is meant for Directus
    os.kill(os.getpid(), signal.SIGTERM)
if mode == "window":  # a stop sent to the supervisor, forwarded to the worker while it exits: lost with the worker
    os.kill(os.getppid(), signal.SIGTERM)
    time.sleep(0.3)
    os._exit(0)
signal.pthread_sigmask(signal.SIG_SETMASK, set())
os._exit(0)
"""


@pytest.mark.parametrize(
    ("mode", "code"), [("stopped", 143), ("window", 143), ("ended", 7), ("running", 143)]
)
async def test_the_resident_parent_supervises_the_handed_over_directus(
    mode: str, code: int, layout: Layout, tmp_path: Path
):
    """The hand-over seen from the resident parent (supervisor.pid1), with a worker that hands over a stand-in:
    a stop that ended the worker after its note reaches Directus (`stopped`), and so does one that the worker never
    acted on because it was exiting (`window`: the stop dies with the worker; without the resident parent's replay
    Directus would be SIGKILLed after the stop timeout, 137); a Directus that ended before the worker
    did has its status passed on (`ended`); a running one gets the signals sent to the supervisor (`running`)."""
    from tests.conftest import ROOT, STANDIN

    log = tmp_path / "log"
    driver = tmp_path / "driver.py"
    driver.write_text(HANDOVER_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STANDIN_LOG": str(log)}
    if mode == "ended":
        env["STANDIN_EXIT_NOW"] = "7"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(driver), STANDIN.split()[1], str(log), mode, env=env, cwd=layout.root,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    if mode == "running":
        await wait_for_text(log, "ready")
        deadline = time.monotonic() + 10
        while True:  # the worker has exited: the parent's only child is the stand-in
            children = _text(Path(f"/proc/{proc.pid}/task/{proc.pid}/children")).split()
            if len(children) == 1 and f"pid {children[0]}" in _text(log):
                break
            assert time.monotonic() < deadline, children
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    r = await finish(proc, timeout=20)
    assert r.code == code, r.stderr
    assert time.monotonic() - t0 < 4.5  # the driver's stop timeout is 5 s: no SIGKILL
    assert r.events("directus.killed") == []
    (handed,) = r.events("directus.handed_over")
    assert f"pid {handed['pid']} " in _text(log)
    assert r.events("directus.exited") == [
        {**r.events("directus.exited")[0], "pid": handed["pid"], "exit_code": code}
    ]
    if mode != "ended":
        assert "signal SIGTERM" in _text(log)
        assert r.events("signal.forwarded")[-1]["pid"] == handed["pid"]


def _processes_running(needle: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if needle.encode() in cmdline and state != "Z":
                found.append(int(entry))
    return found


async def test_a_refused_command_line_leaves_no_node_behind(
    db: Database, layout: Layout, fake: dict[str, str]
):
    """A command line argparse refuses (exit 2, before logging is set up) ends the early Node too."""
    r = await supervise("run", "--no-such-flag", env=db.env(**fake), cwd=layout.root)
    assert r.code == 2, r.stderr
    await asyncio.sleep(0.2)
    assert _processes_running(fake["SUPERVISOR_DIRECTUS_CMD"].split()[1]) == []


def test_a_node_started_with_another_command_or_environment_is_killed_not_used(fake: dict[str, str]):
    """`take` hands over only a Node started with the command and environment Directus gets now: another
    environment (or command) kills it and says why; the caller then execs Directus as without an early start."""
    from supervisor import early

    command = fake["SUPERVISOR_DIRECTUS_CMD"].split()
    env = {**os.environ, "FAKE_LOG": fake["FAKE_LOG"]}
    for other_command, other_env in ((command, {**env, "X": "1"}), ([command[0], command[1] + "x"], env)):
        pid = early.start(command, env)
        assert pid is not None and early.running() == pid
        waiting, reason = early.take(other_command, other_env)
        assert waiting is None and reason is not None and "another command or environment" in reason
        assert _gone(pid) and early.running() is None
    pid = early.start(command, env)
    waiting, reason = early.take(command, env)
    assert waiting is not None and waiting.pid == pid and reason is None
    early.kill(waiting)
    assert _gone(pid)
