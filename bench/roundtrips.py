"""Benchmark: the supervisor's database round trips on a warm boot, counted by Postgres itself.

A fresh database gets the shipped fleet app through `python -m supervisor migrate` with the real Directus; then the
server logs every protocol step (`log_min_duration_statement = 0`) and one more `migrate` runs, the warm path of
every boot (`run` does the same four phases, then execs Directus). Each logged simple query (`statement:`), prepare
(`parse`) and bound execution (`execute`) is one round trip of the supervisor's connection; the connection's own
start-up (TLS, SCRAM) is not counted. The supervisor's session has no statement cache (a pooler in between would
break named statements), so a query with a result costs two round trips (a prepare: `parse`; then `parse`, `bind`
and `execute` in one exchange) and a simple query one. Prints a table, and with --list every exchange.

    .venv/bin/python bench/roundtrips.py [--list]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.directus_env import directus_env, install_directus, make_project
from tests.pg import LocalCluster, free_port

_STEP = re.compile(r"duration: [\d.]+ ms\s+(statement|parse|bind|execute)[^:]*: (.*)$")
# The supervisor names its session host:pid (application_name); the log_line_prefix shows it, so only the
# supervisor's lines are counted.
APP = socket.gethostname()[:40]


def count(log_text: str) -> tuple[collections.Counter[str], list[str]]:
    """Round trips by kind (statement, parse) of the lines whose prefix names `APP`, and the list."""
    kinds: collections.Counter[str] = collections.Counter()
    listed = []
    for line in log_text.splitlines():
        if f"[{APP}:" not in line:
            continue
        m = _STEP.search(line)
        if m and m.group(1) in ("statement", "parse"):  # one exchange each; bind and execute follow a parse
            kinds[m.group(1)] += 1
            listed.append(f"{m.group(1):9} {m.group(2)[:150]}")
    return kinds, listed


def measure(
    cluster: LocalCluster, env: dict[str, str], cwd: Path, runs: int = 1
) -> list[tuple[int, list[str]]]:
    """Run a warm `migrate` `runs` times with every protocol step logged; round trips and statements of each."""
    psql = ["psql", "-qX", cluster.dsn(), "-c"]
    subprocess.run([*psql, "ALTER SYSTEM SET log_min_duration_statement = 0"], check=True)
    subprocess.run([*psql, "ALTER SYSTEM SET log_line_prefix = '%m [%p] [%a] '"], check=True)
    subprocess.run([*psql, "SELECT pg_reload_conf()"], check=True, stdout=subprocess.DEVNULL)
    assert cluster.root is not None
    log = cluster.root / "log"
    out = []
    try:
        for _ in range(runs):
            start = log.stat().st_size
            proc = subprocess.run([sys.executable, "-m", "supervisor", "migrate"], env=env, cwd=cwd,
                                  capture_output=True, text=True, check=False)  # fmt: skip
            if proc.returncode != 0:
                raise SystemExit(f"warm migrate failed ({proc.returncode}):\n{proc.stderr}")
            with log.open(encoding="utf-8", errors="replace") as f:
                f.seek(start)
                kinds, listed = count(f.read())
            out.append((sum(kinds.values()), listed))
    finally:
        subprocess.run([*psql, "ALTER SYSTEM RESET log_min_duration_statement"], check=True)
        subprocess.run([*psql, "ALTER SYSTEM RESET log_line_prefix"], check=True)
        subprocess.run([*psql, "SELECT pg_reload_conf()"], check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print every statement of the warm run")
    args = ap.parse_args()
    install = install_directus()
    cluster = LocalCluster().init().start()
    work = Path(tempfile.mkdtemp(prefix="supervisor-bench-"))
    project = make_project(work / "directus")
    try:
        db = {"DB_CLIENT": "pg", "DB_HOST": "127.0.0.1", "DB_PORT": str(cluster.port), "DB_USER": cluster.user,
              "DB_PASSWORD": cluster.password, "DB_DATABASE": "fleet"}  # fmt: skip
        env = {**os.environ, **directus_env(install, free_port(), db, project), "PYTHONPATH": str(ROOT),
               "SUPERVISOR_LOG_FORMAT": "json"}  # fmt: skip
        subprocess.run(["psql", "-qX", cluster.dsn(), "-c", "CREATE DATABASE fleet"], check=True)
        cold = subprocess.run([sys.executable, "-m", "supervisor", "migrate"], env=env, cwd=project,
                              capture_output=True, text=True, check=False)  # fmt: skip
        if cold.returncode != 0:
            raise SystemExit(f"cold migrate failed ({cold.returncode}):\n{cold.stderr}")
        (total, listed), *_ = measure(cluster, env, project)
        kinds = collections.Counter(line.split()[0] for line in listed)
        print("Warm boot's database round trips (after connecting), `migrate` of the shipped app:\n")
        print("| simple queries | queries with a result | round trips |")
        print("|---:|---:|---:|")
        print(f"| {kinds['statement']} | {kinds['parse'] // 2} | {total} |")
        if args.list:
            print("\n" + "\n".join(listed))
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
