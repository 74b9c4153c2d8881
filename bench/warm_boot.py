"""Benchmark: boot to a 200 from /server/ping, for the real Directus, four ways, on the same database.

  (a) bare `directus start`;
  (b) the official image's flow, `directus bootstrap && directus start` (without pm2);
  (c) the naive five steps, all unconditionally (bench/naive-boot.sh);
  (d) the supervisor, `python -m supervisor run`.
Warm boots alternate between the four on one fully migrated database; each is timed from process start to the first
200 from /server/ping, then stopped with SIGTERM. Cold boots get a fresh database each. Prints Markdown tables.

    .venv/bin/python bench/warm_boot.py [--runs 7] [--cold-runs 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.directus_env import directus_env, install_directus, make_project
from tests.pg import LocalCluster, free_port


def boot(argv: list[str], env: dict[str, str], cwd: Path, port: int, timeout: float = 180) -> float | None:
    """Seconds from spawn to the first 200 on /server/ping (None if it never came), then SIGTERM and wait."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    elapsed = None
    while time.perf_counter() - t0 < timeout and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server/ping", timeout=1) as r:
                if r.status == 200:
                    elapsed = time.perf_counter() - t0
                    break
        except OSError:
            time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group: bash and the Directus it exec'd, or node
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--cold-runs", type=int, default=1)
    args = ap.parse_args()
    install = install_directus()
    cluster = LocalCluster().init().start()
    work = Path(tempfile.mkdtemp(prefix="supervisor-bench-"))
    project = make_project(work / "directus")
    port = free_port()
    try:
        base = {"DB_CLIENT": "pg", "DB_HOST": "127.0.0.1", "DB_PORT": str(cluster.port), "DB_USER": cluster.user,
                "DB_PASSWORD": cluster.password}  # fmt: skip

        def env_for(db: str) -> dict[str, str]:
            env = {**os.environ, **directus_env(install, port, {**base, "DB_DATABASE": db}, project)}
            env.update(PGHOST="127.0.0.1", PGPORT=str(cluster.port), PGUSER=cluster.user, PGPASSWORD=cluster.password,
                       PGDATABASE=db, PYTHONPATH=str(ROOT), SUPERVISOR_LOG_FORMAT="json")  # fmt: skip
            env["DIRECTUS"] = env["SUPERVISOR_DIRECTUS_CMD"]
            return env

        def create(db: str) -> None:
            subprocess.run(["psql", "-qX", cluster.dsn(), "-c", f"CREATE DATABASE {db}"], check=True)

        cli = directus_env(install, port, {}, project)["SUPERVISOR_DIRECTUS_CMD"]
        ways = {
            "(a) bare directus start": ["bash", "-c", f"exec {cli} start"],
            "(b) official image: bootstrap && start": ["bash", "-c", f"{cli} bootstrap && exec {cli} start"],
            "(c) naive five steps, unconditionally": ["bash", str(ROOT / "bench" / "naive-boot.sh")],
            "(d) supervisor run": [sys.executable, "-m", "supervisor", "run"],
        }
        cold: dict[str, list[float | None]] = {w: [] for w in ways if not w.startswith("(a)")}
        for rep in range(args.cold_runs):
            for i, (way, argv) in enumerate(ways.items()):
                if way in cold:
                    db = f"cold_{rep}_{i}"
                    create(db)
                    cold[way].append(boot(argv, env_for(db), project, port))
        create("warm")
        assert boot(ways["(d) supervisor run"], env_for("warm"), project, port) is not None
        warm: dict[str, list[float]] = {w: [] for w in ways}
        order = list(ways)
        for _ in range(args.runs):
            order = order[1:] + order[:1]
            for way in order:
                t = boot(ways[way], env_for("warm"), project, port)
                assert t is not None, f"{way} did not come up"
                warm[way].append(t)
        _print(args, warm, cold)
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _print(
    args: argparse.Namespace, warm: dict[str, list[float]], cold: dict[str, list[float | None]]
) -> None:
    bare = statistics.median(warm["(a) bare directus start"])
    print(f"Warm boot, process start to 200 from /server/ping, medians of {args.runs} alternating runs; "
          f"{os.cpu_count()} cores.\n")  # fmt: skip
    print("| way | warm boot (s) | min-max (s) | vs bare start |")
    print("|---|---:|---:|---:|")
    for way, runs in warm.items():
        m = statistics.median(runs)
        print(f"| {way} | {m:.2f} | {min(runs):.2f}-{max(runs):.2f} | {m / bare:.2f}x |")
    print(f"\nCold boot (fresh database), {args.cold_runs} run(s) each, to 200 from /server/ping:\n")
    print("| way | cold boot (s) |")
    print("|---|---:|")
    for way, times in cold.items():
        shown = ", ".join("never came up" if t is None else f"{t:.2f}" for t in times)
        print(f"| {way} | {shown} |")


if __name__ == "__main__":
    sys.exit(main())
