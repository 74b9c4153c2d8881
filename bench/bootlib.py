"""Shared parts of the boot benchmarks (cold_boot.py, upgrade_boot.py, warm_boot.py, replicas.py): a throw-away
Postgres, the shipped fleet app in a project folder, the real Directus, and a timer from process start to the first
200 from /server/ping.

Every way runs the Directus CLI the same way (`node …/@directus/api/dist/cli/run.js`, without the npm update check of
`cli.js`). The supervisor's own time per boot (`supervisor_ms`, everything but Node: interpreter, connecting, the
checks, the database verification) is read from its summary log line.
"""

from __future__ import annotations

import compileall
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.directus_env import directus_env, install_directus, make_project
from tests.pg import LocalCluster, free_port

SUPERVISOR = [sys.executable, "-m", "supervisor", "run"]


def header(title: str) -> str:
    """A line naming the run: what, when, on what machine, and how loaded it was."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{title} — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, load average {load} at the start"
    )


@dataclass
class Boot:
    """One timed boot: seconds to the first 200 (None: never came up) and, for the supervisor, its own time."""

    seconds: float | None
    supervisor_ms: int | None = None


def boot(argv: list[str], env: dict[str, str], cwd: Path, port: int, timeout: float = 240) -> Boot:
    """Spawn, poll /server/ping every 10 ms, then SIGTERM the whole process group and wait for it."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)  # fmt: skip
        elapsed = None
        while time.perf_counter() - t0 < timeout and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server/ping", timeout=1) as r:
                    if r.status == 200:
                        elapsed = time.perf_counter() - t0
                        break
            except OSError:
                time.sleep(0.01)
        stop(proc)
        err.seek(0)
        return Boot(elapsed, supervisor_ms(err.read().decode("utf-8", "replace")))


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (bash and the Directus it started, or the supervisor), SIGKILL after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def supervisor_ms(log: str) -> int | None:
    """`supervisor_ms` from the supervisor's summary line (`directus.exec` or `supervisor.finished`), if any."""
    for line in log.splitlines():
        if line.startswith("{") and '"supervisor_ms"' in line:
            try:
                value = json.loads(line).get("supervisor_ms")
            except ValueError:
                continue
            if isinstance(value, int):
                return value
    return None


@dataclass
class Rig:
    """A Postgres cluster, a project folder and the Directus to boot; `env_for(db)` is everything a boot needs."""

    install: Path
    node_bin: Path | None = None  # a folder holding `node` to put first on PATH (Node 22), else the machine's
    cluster: LocalCluster = field(default_factory=LocalCluster)
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="supervisor-bench-")))
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.project = make_project(self.work / "directus")
        self._n = 0

    @property
    def cli(self) -> str:
        """The Directus CLI command line."""
        return directus_env(self.install, self.port, {}, self.project)["SUPERVISOR_DIRECTUS_CMD"]

    def env_for(
        self, db: str, *, install: Path | None = None, node_bin: Path | None = None, **extra: str
    ) -> dict[str, str]:
        """The environment of a boot on database `db` (another Directus install and Node if given)."""
        c = self.cluster
        base = {"DB_CLIENT": "pg", "DB_HOST": "127.0.0.1", "DB_PORT": str(c.port), "DB_USER": c.user,
                "DB_PASSWORD": c.password, "DB_DATABASE": db}  # fmt: skip
        env = {**os.environ, **directus_env(install or self.install, self.port, base, self.project)}
        env.update(PGHOST="127.0.0.1", PGPORT=str(c.port), PGUSER=c.user, PGPASSWORD=c.password, PGDATABASE=db,
                   PYTHONPATH=str(ROOT), SUPERVISOR_LOG_FORMAT="json", DIRECTUS=env["SUPERVISOR_DIRECTUS_CMD"])  # fmt: skip
        node_bin = node_bin or self.node_bin
        if node_bin:
            env["PATH"] = f"{node_bin}{os.pathsep}{env['PATH']}"
        env.update(extra)
        return env

    def psql(self, sql: str, db: str = "postgres") -> None:
        subprocess.run(["psql", "-qX", "-v", "ON_ERROR_STOP=1", self.cluster.dsn(db), "-c", sql], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip

    def fresh(self, template: str | None = None) -> str:
        """A new database (a copy of `template` if given); its name."""
        self._n += 1
        name = f"bench_{self._n}"
        self.psql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return name


def precompile() -> None:
    """Byte-compile the supervisor's sources, as `pip install` does in the image. Without it, a shell with
    PYTHONDONTWRITEBYTECODE=1 (this machine's default) compiles every module from source on every boot, about 45 ms
    of CPU that the image never pays, and `supervisor_ms` would include it."""
    for package in ("supervisor", "phases"):
        if not compileall.compile_dir(ROOT / package, quiet=1):
            raise SystemExit(f"cannot byte-compile {ROOT / package}")


@contextmanager
def rig(install: Path | None = None, node_bin: Path | None = None) -> Iterator[Rig]:
    """A started Rig, destroyed afterwards."""
    precompile()
    r = Rig(install or install_directus(), node_bin)
    r.cluster.init().start()
    try:
        yield r
    finally:
        r.cluster.destroy()
        shutil.rmtree(r.work, ignore_errors=True)


def _median(runs: list[Boot]) -> float | None:
    ok = [b.seconds for b in runs if b.seconds is not None]
    return statistics.median(ok) if ok else None


def table(title: str, rows: dict[str, list[Boot]], bases: list[str], unit: str = "boot (s)") -> str:
    """A Markdown table: each way's median, spread, ratio to each of `bases`' medians, and supervisor_ms."""
    medians = {b: _median(rows[b]) for b in bases}
    head = f"| way | {unit} | min-max (s) | " + " | ".join(f"vs {b}" for b in bases) + " | supervisor_ms |"
    lines = [title, "", head, "|---|---:|---:|" + "---:|" * len(bases) + "---:|"]
    for name, runs in rows.items():
        ok = [b.seconds for b in runs if b.seconds is not None]
        m = _median(runs)
        if m is None:
            lines.append(f"| {name} | never came up ({len(runs)} run(s)) |" + " |" * (len(bases) + 2))
            continue
        failed = len(runs) - len(ok)
        note = f" ({failed} of {len(runs)} never came up)" if failed else ""
        ratios = " | ".join(f"{m / b:.2f}x" if b else "-" for b in medians.values())
        own = [b.supervisor_ms for b in runs if b.supervisor_ms is not None]
        own_text = f"{statistics.median(own):.0f}" if own else ""
        lines.append(f"| {name} | {m:.2f}{note} | {min(ok):.2f}-{max(ok):.2f} | {ratios} | {own_text} |")
    return "\n".join(lines)
