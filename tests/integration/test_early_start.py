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

from tests.conftest import ROOT, Database, Layout, Result, finish, start_supervisor, supervise, wait_for_text

SNAPSHOT = "version: 1\ndirectus: 12.4.0\nvendor: postgres\ncollections: []\nfields: []\nsystemFields: []\nrelations: []\n"
# The stand-in's modules: index.js notes its import (and, with FAKE_FAIL_EARLY, fails when loaded behind the gate);
# run.js runs the CLI steps through the fault suite's Python stand-in and, for `start`, notes that Directus started
# and stays up (with FAKE_SPAWN after starting a worker thread and a forked child, as an extension might).
INDEX = """import { appendFileSync } from "node:fs";
appendFileSync(process.env.FAKE_LOG, `imported ${process.pid}\\n`);
if (process.env.FAKE_FAIL_EARLY && process.execArgv.some((a) => a.includes("gate.mjs"))) process.exit(9);
"""
RUN = """import "./index.js";
import { appendFileSync } from "node:fs";
import { fork, spawnSync } from "node:child_process";
import { Worker } from "node:worker_threads";
const log = (text) => appendFileSync(process.env.FAKE_LOG, text + "\\n");
if (process.argv[2] !== "start") {
  const args = [process.env.FAKE_STANDIN, ...process.argv.slice(2)];
  const r = spawnSync(process.env.FAKE_PYTHON, args, { stdio: "inherit" });
  process.exit(r.status ?? 1);
}
log(`started ${process.pid}`);
if (process.env.FAKE_SPAWN) {
  const thread = new Worker(new URL("./thread.cjs", import.meta.url));
  thread.on("error", (e) => log(`thread error ${e}`));
  fork(new URL("./child.cjs", import.meta.url).pathname);
}
setInterval(() => {}, 1000);
"""
THREAD = """require("node:fs").appendFileSync(process.env.FAKE_LOG, "thread ok\\n");"""
CHILD = """require("node:fs").appendFileSync(process.env.FAKE_LOG, `child ok ${JSON.stringify(process.execArgv)}\\n`);
process.disconnect();
"""


@pytest.fixture
def fake(layout: Layout, tmp_path: Path) -> dict[str, str]:
    """The stand-in Directus package and the environment pointing at it."""
    cli = tmp_path / "pkg" / "node_modules" / "@directus" / "api" / "dist" / "cli"
    cli.mkdir(parents=True)
    (cli / "index.js").write_text(INDEX)
    (cli / "run.js").write_text(RUN)
    (cli / "child.cjs").write_text(CHILD)
    (cli / "thread.cjs").write_text(THREAD)
    (layout.root / "snapshots").mkdir()
    (layout.root / "snapshots" / "schema.yaml").write_text(SNAPSHOT)
    (tmp_path / "standin").mkdir()
    # Its version, read without a Node start as from a real install (else the boot would ask `--version`).
    (tmp_path / "pkg" / "node_modules" / "directus").mkdir()
    (tmp_path / "pkg" / "node_modules" / "directus" / "package.json").write_text(
        '{"name": "directus", "version": "12.4.0"}'
    )
    return {
        "SUPERVISOR_DIRECTUS_CMD": f"node {cli / 'run.js'}",
        "FAKE_LOG": str(tmp_path / "fake.log"),
        "FAKE_PYTHON": sys.executable,
        "FAKE_STANDIN": str(ROOT / "tests" / "fault" / "directus_standin.py"),
        "FAULT_STANDIN_DIR": str(tmp_path / "standin"),
        "FAULT_STANDIN_SLEEP": "0",
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


async def test_no_early_start_for_another_command_with_exec_or_when_turned_off(
    db: Database, layout: Layout, fake: dict[str, str]
):
    """A Directus command that is not `node …/@directus/api/dist/cli/run.js`, `--exec` (no resident parent to
    adopt Node) and SUPERVISOR_EARLY_START=off start nothing early; a value that is not a boolean is exit 2 before
    anything runs, and starts no Node either."""
    layout.add("pre", "001.sql", "SELECT * FROM missing_table;")
    other = {
        **fake,
        "SUPERVISOR_DIRECTUS_CMD": f"node --no-warnings {fake['SUPERVISOR_DIRECTUS_CMD'].split()[1]}",
    }
    off = {**fake, "SUPERVISOR_EARLY_START": "off"}
    for env, args in ((other, ("run",)), (fake, ("run", "--exec")), (off, ("run",))):
        r = await supervise(*args, env=db.env(**env), cwd=layout.root)
        assert r.code == 4, r.stderr
        assert r.events("directus.early_start") == []
    r = await supervise("run", env=db.env(**fake, SUPERVISOR_EARLY_START="later"), cwd=layout.root)
    assert r.code == 2, r.stderr
    assert "SUPERVISOR_EARLY_START='later' is not a boolean" in r.stderr
    assert r.events("directus.early_start") == []
    assert "imported" not in _text(Path(fake["FAKE_LOG"]))


async def test_no_early_start_where_node_would_act_before_the_gate(
    db: Database, layout: Layout, fake: dict[str, str]
):
    """Directus's modules connect to a configured Redis as they load (REDIS in the environment, a store set to redis
    in the working directory's .env), a CONFIG_PATH is not looked into, and NODE_OPTIONS can preload an agent, open a
    debugger port or read another env file before the gate: no early start for any of them. Harmless
    NODE_OPTIONS, and a .env without Redis, keep it."""
    layout.add("pre", "001.sql", "SELECT * FROM missing_table;")
    cases: list[tuple[dict[str, str], str, bool]] = [
        ({"REDIS": "redis://127.0.0.1:1"}, "", False),
        ({}, "RATE_LIMITER_ENABLED=true\nRATE_LIMITER_STORE='redis'\n", False),
        ({"CONFIG_PATH": str(layout.root / "config.js")}, "", False),
        ({"NODE_OPTIONS": "--max-old-space-size=512 --require dd-trace/init"}, "", False),
        ({"NODE_OPTIONS": "-r ./agent.js"}, "", False),
        ({"NODE_OPTIONS": "--import=@opentelemetry/auto-instrumentations-node/register"}, "", False),
        ({"NODE_OPTIONS": "--experimental-loader ./x.mjs"}, "", False),
        ({"NODE_OPTIONS": "--inspect=0.0.0.0:9229"}, "", False),
        ({"NODE_OPTIONS": "--env-file=/run/other.env"}, "", False),
        ({"NODE_OPTIONS": "--max-old-space-size=512 --enable-source-maps"}, "", True),  # the controls
        ({}, "PUBLIC_URL=http://example.com\n", True),
    ]
    for extra, dotenv, early in cases:
        (layout.root / ".env").write_text(dotenv)
        r = await supervise("run", env=db.env(**fake, **extra), cwd=layout.root)
        assert r.code == 4, r.stderr
        assert len(r.events("directus.early_start")) == early, (extra, dotenv)


def test_an_early_start_that_fails_is_logged_and_the_boot_goes_on(monkeypatch, fake: dict[str, str]):
    """An optimisation never fails a boot: an unexpected error while starting Node early leaves no Node, is kept
    for the log (`directus.early_start_failed`, supervisor.cli), and the caller goes on."""
    from supervisor import directus_entry, early, pid1

    def broken(cwd: str, path: str) -> tuple[tuple[str, ...], str]:
        raise RuntimeError("the working directory was removed")

    monkeypatch.setattr(pid1, "can_adopt", lambda: True)
    monkeypatch.setattr(directus_entry, "find_default", broken)
    monkeypatch.setattr(early, "failed", None)
    early.start_guessed(None, "off", {**os.environ, **fake})
    assert early.running() is None
    assert early.failed == "RuntimeError: the working directory was removed"


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
    db: Database, layout: Layout, fake: dict[str, str], tmp_path: Path
):
    """A command line argparse refuses (exit 2, before logging is set up) ends the early Node too. A `node` first
    on PATH notes its pid and execs the real one, which proves a Node was started."""
    import shutil

    real = shutil.which("node")
    assert real is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pids = tmp_path / "node.pids"
    wrapper = bin_dir / "node"
    wrapper.write_text(f'#!/bin/sh\necho $$ >> {pids}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    env = db.env(**fake)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    r = await supervise("run", "--no-such-flag", env=env, cwd=layout.root)
    assert r.code == 2, r.stderr
    started = [int(p) for p in _text(pids).split()]
    assert len(started) == 1
    assert _gone(started[0])
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


async def _warm(db: Database, layout: Layout, fake: dict[str, str]) -> None:
    """A cold migrate, through the stand-in, so that the next `run` finds nothing to do."""
    r = await supervise("migrate", env=db.env(**fake), cwd=layout.root)
    assert r.code == 0, r.stderr


async def _stop_when_started(proc: asyncio.subprocess.Process, log: Path, pid: int | None = None) -> None:
    await wait_for_text(log, f"started {pid}" if pid else "started")
    proc.send_signal(signal.SIGTERM)


async def test_a_warm_run_hands_the_early_node_over_and_it_starts_directus(
    db: Database, layout: Layout, fake: dict[str, str]
):
    """Nothing to do: the Node that loaded the modules early is the Directus that starts (the same pid), it
    imported them once, and it is supervised as Directus (TERM: 143)."""
    layout.add("pre", "001.sql", "CREATE TABLE t (id int);")
    await _warm(db, layout, fake)
    fake = {**fake, "FAKE_LOG": fake["FAKE_LOG"] + ".warm"}
    log = Path(fake["FAKE_LOG"])
    proc = await start_supervisor("run", env=db.env(**fake), cwd=layout.root)
    await _stop_when_started(proc, log)
    r = await finish(proc, timeout=20)
    assert r.code == 143, r.stderr
    pid = r.events("directus.early_start")[0]["pid"]
    assert r.events("directus.exec")[0]["early_start"] is True
    assert r.events("directus.handed_over")[0]["pid"] == pid
    assert _text(log).splitlines() == [f"imported {pid}", f"started {pid}"]


async def test_on_a_cold_boot_the_early_node_waits_through_the_work_and_then_starts_directus(
    db: Database, conn: asyncpg.Connection, layout: Layout, fake: dict[str, str]
):
    """Pending SQL and Directus steps: the early Node waits at its gate while they run (alive, run.js not run, seen
    while the file's statement runs), the steps run in Nodes of their own, and once the phases are done the early
    Node is the Directus that starts (the same pid, handed over; TERM: 143)."""
    layout.add("pre", "001.sql", "SELECT pg_sleep(2);")
    log = Path(fake["FAKE_LOG"])
    proc = await start_supervisor("run", env=db.env(**fake), cwd=layout.root)
    deadline = time.monotonic() + 20
    while not await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(2)%' AND pid <> pg_backend_pid()"
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    (early_pid,) = [int(line.split()[1]) for line in _text(log).splitlines() if line.startswith("imported")]
    assert not _gone(early_pid) and "started" not in _text(log)
    await _stop_when_started(proc, log)
    r = await finish(proc, timeout=30)
    assert r.code == 143, r.stderr
    assert r.events("directus.early_start")[0]["pid"] == early_pid
    # bootstrap runs inside schema-apply on an empty database (Directus must exist before its schema is applied)
    assert [e["phase"] for e in r.events("directus.early_start_waits")] == ["pre-schema", "schema-apply"]
    assert r.events("directus.step_started")  # bootstrap and schema apply ran, in Nodes of their own
    assert r.events("directus.exec")[0]["early_start"] is True
    assert r.events("directus.handed_over")[0]["pid"] == early_pid
    started = [line for line in _text(log).splitlines() if line.startswith("started")]
    assert started == [f"started {early_pid}"]


async def test_an_early_node_that_ended_or_read_a_changed_file_is_not_used(
    db: Database, conn: asyncpg.Connection, layout: Layout, fake: dict[str, str], tmp_path: Path
):
    """The early Node is used only if it is still waiting and the files Directus read as it loaded are unchanged:
    one that failed while loading, and one whose `*_FILE` secret was rewritten while it waited at the gate, are not
    handed over; Directus is started the usual way and the log says why."""
    from supervisor.lock import CLASSID

    await _warm(db, layout, fake)
    log = Path(fake["FAKE_LOG"])
    r = await _run_until_started(db, layout, {**fake, "FAKE_FAIL_EARLY": "1"}, log)
    fake = {**fake, "FAKE_LOG": fake["FAKE_LOG"] + ".2"}
    log = Path(fake["FAKE_LOG"])
    assert "Node ended while it loaded" in r.events("directus.early_start_unused")[0]["reason"]

    secret = tmp_path / "secret"
    secret.write_text("one")
    await conn.execute(f"SELECT pg_advisory_lock({CLASSID}, 1)")  # the pre-schema lock: the boot waits
    try:
        proc = await start_supervisor("run", env=db.env(**fake, SECRET_FILE=str(secret)), cwd=layout.root)
        await wait_for_text(log, "imported")
        secret.write_text("two, rotated by a sidecar")
    finally:
        await conn.execute(f"SELECT pg_advisory_unlock({CLASSID}, 1)")
    await _stop_when_started(proc, log)
    r = await finish(proc, timeout=20)
    assert r.code == 143, r.stderr
    assert "changed since" in r.events("directus.early_start_unused")[0]["reason"]
    assert r.events("directus.handed_over") == []
    assert _gone(r.events("directus.early_start")[0]["pid"])


async def _run_until_started(db: Database, layout: Layout, env: dict[str, str], log: Path) -> Result:
    proc = await start_supervisor("run", env=db.env(**env), cwd=layout.root)
    await _stop_when_started(proc, log)
    r = await finish(proc, timeout=20)
    assert r.code == 143, r.stderr
    assert r.events("directus.handed_over") == []
    assert "early_start" not in r.events("directus.exec")[0]
    return r


async def test_the_early_node_is_given_up_while_postgres_is_not_up(layout: Layout, fake: dict[str, str]):
    """Postgres does not answer yet: the early Node is killed at the first retry rather than compete with a
    Postgres that is still starting, and the boot goes on waiting as without it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    env = {**os.environ, **fake, "DB_CLIENT": "pg", "DB_HOST": "127.0.0.1", "DB_PORT": str(port),
           "DB_DATABASE": "x", "DB_USER": "x", "DB_PASSWORD": "x", "SUPERVISOR_WAIT_TIMEOUT": "2",
           "SUPERVISOR_LOG_FORMAT": "json"}  # fmt: skip
    r = await supervise("run", env=env, cwd=layout.root)
    assert r.code == 3, r.stderr
    pid = r.events("directus.early_start")[0]["pid"]
    (cancelled,) = r.events("directus.early_start_cancelled")
    assert cancelled == {**cancelled, "pid": pid, "reason": "waiting for Postgres"}
    assert _gone(pid)


@pytest.mark.parametrize("sent", [None, b"stop\n", b"go"])
def test_the_gate_kills_node_unless_it_reads_go(fake: dict[str, str], sent: bytes | None):
    """The gate fails closed: its pipe closed without a word (the worker is gone), a wrong word, or "go" without
    its newline followed by the end of the pipe: Node SIGKILLs itself and run.js never runs."""
    from supervisor import early

    command = fake["SUPERVISOR_DIRECTUS_CMD"].split()
    env = {**os.environ, **fake}
    pid = early.start(command, env)
    waiting, _ = early.take(command, env)
    assert waiting is not None and waiting.pid == pid
    asyncio.run(wait_for_text(Path(fake["FAKE_LOG"]), f"imported {pid}"))
    if sent is not None:
        os.write(waiting.gate, sent)
    os.close(waiting.gate)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert "started" not in _text(Path(fake["FAKE_LOG"]))


def test_after_go_worker_threads_and_forked_children_do_not_meet_the_gate(fake: dict[str, str]):
    """Worker threads inherit Node's `--import` of the gate and forked children get process.execArgv: the gate
    does nothing in a worker thread and is taken out of execArgv after "go", so both run as without it (the
    child's execArgv is empty) and the modules are imported once."""
    from supervisor import early

    command = fake["SUPERVISOR_DIRECTUS_CMD"].split()
    env = {**os.environ, **fake, "FAKE_SPAWN": "1"}
    log = Path(fake["FAKE_LOG"])
    pid = early.start(command, env)
    waiting, _ = early.take(command, env)
    assert pid is not None and waiting is not None
    try:
        early.go(waiting)
        text = asyncio.run(wait_for_text(log, "child ok"))
        text = asyncio.run(wait_for_text(log, "thread ok"))
        assert "child ok []" in text
        assert "error" not in text
        assert text.count("imported") == 1
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@pytest.mark.parametrize("room_needed", [0, 10**9])
def test_the_early_node_waits_through_work_only_with_memory_to_spare(
    fake: dict[str, str], room_needed: int, monkeypatch
):
    """A phase with work: the Node at the gate stays (`directus.early_start_waits`, with the free memory) when the
    memory free is at least early.ROOM_TO_WAIT_MIB; with less it is killed (`directus.early_start_cancelled`, naming
    the free memory), as it would hold Directus's modules beside each Directus step."""
    import structlog

    from supervisor import early
    from supervisor.runner import _early_start_through

    monkeypatch.setattr(early, "ROOM_TO_WAIT_MIB", room_needed)
    command = fake["SUPERVISOR_DIRECTUS_CMD"].split()
    pid = early.start(command, {**os.environ, **fake})
    assert pid is not None
    with structlog.testing.capture_logs() as logs:
        _early_start_through(pid, "pre-schema", structlog.get_logger())
    (event,) = logs
    try:
        if room_needed == 0:
            assert event["event"] == "directus.early_start_waits" and event["memory_free_mib"] > 0
            assert early.running() == pid and not _gone(pid)
        else:
            assert event["event"] == "directus.early_start_cancelled"
            assert (
                "pre-schema has work and only" in event["reason"]
                and "MiB of memory are free" in event["reason"]
            )
            assert early.running() is None and _gone(pid)
    finally:
        early.cancel()
