"""Benchmark: 500 SQL migrations (a table and an index each), cold apply and no-op re-run, as whole processes.

Peers measured in the same run, on the same throw-away Postgres and the same files:
  - dbmate (the Go binary from the npm package `dbmate`, pinned in bench/package.json), `dbmate up`;
  - the classic shell runner, one psql per file (bench/psql-runner.sh);
  - the supervisor, `python -m supervisor migrate --only pre-schema`.
Runs alternate between tools; each cold apply gets a fresh database. Prints a Markdown table (medians).

    .venv/bin/python bench/sql_migrations.py [--files 500] [--cold-runs 3] [--noop-runs 10] [--tools a,b]

`--tools supervisor,dbmate` leaves out a peer (bench/all does so at 5,000 files, where one psql per file takes
minutes per run and shows nothing new: it grows linearly).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg import LocalCluster

BENCH = ROOT / "bench"


def install_dbmate() -> Path:
    """`npm ci` the pinned dbmate into a cache folder keyed on the lockfile; returns the native binary."""
    lock = (BENCH / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "directus-supervisor"
    target = cache / f"bench-peers-{hashlib.sha256(lock).hexdigest()[:12]}"
    arch = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    binary = target / "node_modules" / "@dbmate" / f"linux-{arch}" / "bin" / "dbmate"
    if not binary.exists():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(BENCH / name, target / name)
        # `npm ci` refuses this lockfile: npm records only the optional binary of the platform it ran on.
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=target, check=True)
    return binary


def generate(root: Path, n: int) -> tuple[Path, Path]:
    """The same n migrations as a supervisor layout and as dbmate files (with its up/down markers)."""
    sup, dbm = root / "supervisor", root / "dbmate"
    (sup / "db-init").mkdir(parents=True)
    (sup / "db-init-post").mkdir()
    dbm.mkdir()
    for i in range(1, n + 1):
        sql = f"CREATE TABLE bench_{i:04d} (id bigint PRIMARY KEY, v text);\nCREATE INDEX bench_{i:04d}_v ON bench_{i:04d} (v);\n"
        (sup / "db-init" / f"{i:04d}_table.sql").write_text(sql)
        (dbm / f"{i:04d}_table.sql").write_text(f"-- migrate:up\n{sql}\n-- migrate:down\n")
    return sup, dbm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--noop-runs", type=int, default=10)
    ap.add_argument(
        "--tools", default="supervisor,dbmate,psql per file", help="comma-separated, dbmate included"
    )
    args = ap.parse_args()
    chosen = [t.strip() for t in args.tools.split(",")]

    from bootlib import precompile  # byte-compiled, as in the image (see bootlib)

    precompile()
    dbmate = install_dbmate()
    cluster = LocalCluster().init().start()
    work = Path(tempfile.mkdtemp(prefix="supervisor-bench-"))
    try:
        sup_dir, dbm_dir = generate(work, args.files)
        pg_env = {"PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": cluster.user,
                  "PGPASSWORD": cluster.password}  # fmt: skip

        def env_for(db: str) -> dict[str, str]:
            return {
                **os.environ, **pg_env, "PGDATABASE": db,
                "DB_CLIENT": "pg", "DB_HOST": "127.0.0.1", "DB_PORT": str(cluster.port), "DB_DATABASE": db,
                "DB_USER": cluster.user, "DB_PASSWORD": cluster.password, "SUPERVISOR_LOG_FORMAT": "json",
                "PYTHONPATH": str(ROOT),
            }  # fmt: skip

        tools: dict[str, Callable[[str], tuple[list[str], Path]]] = {
            "supervisor": lambda db: (
                [sys.executable, "-m", "supervisor", "migrate", "--only", "pre-schema"],
                sup_dir,
            ),
            "dbmate": lambda db: (
                [
                    str(dbmate),
                    "--url",
                    f"{cluster.dsn(db)}?sslmode=disable",
                    "--migrations-dir",
                    str(dbm_dir),
                    "--no-dump-schema",
                    "up",
                ],
                work,
            ),
            "psql per file": lambda db: (
                ["bash", str(BENCH / "psql-runner.sh"), str(sup_dir / "db-init")],
                work,
            ),
        }
        unknown = set(chosen) - set(tools)
        if unknown or "dbmate" not in chosen:
            ap.error(
                f"--tools: choose from {', '.join(tools)}, dbmate included (the reference); got {args.tools!r}"
            )
        tools = {t: tools[t] for t in chosen}
        cold: dict[str, list[float]] = {t: [] for t in tools}
        noop: dict[str, list[float]] = {t: [] for t in tools}
        order = list(tools)
        # A first, unmeasured apply warms the new cluster's caches, which would otherwise penalise whoever goes first.
        warm = "bench_warmup"
        subprocess.run(["psql", "-qX", "-c", f"CREATE DATABASE {warm}"], env=env_for("postgres"), check=True)
        _timed(*tools["dbmate"](warm), env_for(warm))
        for rep in range(args.cold_runs):
            order = order[1:] + order[:1]  # rotate, so no tool always runs first
            for tool in order:
                cmd = tools[tool]
                db = f"bench_{rep}_{tool.replace(' ', '_')}"
                subprocess.run(
                    ["psql", "-qX", "-c", f"CREATE DATABASE {db}"], env=env_for("postgres"), check=True
                )
                argv, cwd = cmd(db)
                cold[tool].append(_timed(argv, cwd, env_for(db)))
                if rep == 0:
                    # Let the server settle (autovacuum would analyze 500 new tables during the runs), then time
                    # the re-run that a warm boot does.
                    subprocess.run(["psql", "-qX", "-c", "VACUUM ANALYZE"], env=env_for(db), check=True)
                    noop[tool] = [_timed(argv, cwd, env_for(db)) for _ in range(args.noop_runs)]
                count = subprocess.run(
                    ["psql", "-qXtA", "-c", "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bench_%'"],
                    env=env_for(db), check=True, capture_output=True, text=True,
                ).stdout.strip()  # fmt: skip
                assert count == str(args.files), f"{tool} created {count} tables, expected {args.files}"
        _print_table(args, cold, noop)
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return elapsed


def _print_table(
    args: argparse.Namespace, cold: dict[str, list[float]], noop: dict[str, list[float]]
) -> None:
    ref_cold = statistics.median(cold["dbmate"])
    print(f"{args.files} migrations (CREATE TABLE + CREATE INDEX each); medians of {args.cold_runs} cold applies "
          f"(fresh database each) and {args.noop_runs} no-op re-runs; whole processes; {os.cpu_count()} cores, "
          f"Python {platform.python_version()}.\n")  # fmt: skip
    print("| tool | cold apply (s) | min-max (s) | cold vs dbmate | no-op re-run (s) | min-max (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for tool, runs in cold.items():
        c, n = statistics.median(runs), statistics.median(noop[tool])
        print(
            f"| {tool} | {c:.2f} | {min(runs):.2f}-{max(runs):.2f} | {c / ref_cold:.2f}x | {n:.3f} "
            f"| {min(noop[tool]):.3f}-{max(noop[tool]):.3f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
