"""Demo: a throw-away local Postgres, then the real Directus booted through the supervisor (`run`: every phase,
then Directus supervised). Prints where to log in; Ctrl-C stops everything and deletes the database.

    scripts/demo            # boot and keep running until Ctrl-C
    scripts/demo --smoke    # boot, check /server/ping, stop (what the test suite runs)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.directus_env import ADMIN_EMAIL, ADMIN_PASSWORD, directus_env, install_directus, make_project
from tests.pg import LocalCluster, free_port


def _ping(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/server/ping", timeout=1) as r:  # noqa: S310 (http on 127.0.0.1)
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]
    install = install_directus()
    cluster = LocalCluster().init().start()
    project = make_project(Path(tempfile.mkdtemp(prefix="supervisor-demo-")) / "directus")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        subprocess.run(["psql", "-qX", cluster.dsn(), "-c", "CREATE DATABASE fleet"], check=True)
        db = {"DB_CLIENT": "pg", "DB_HOST": "127.0.0.1", "DB_PORT": str(cluster.port), "DB_DATABASE": "fleet",
              "DB_USER": cluster.user, "DB_PASSWORD": cluster.password}  # fmt: skip
        env = {**os.environ, **directus_env(install, port, db, project), "SUPERVISOR_LOG_FORMAT": "console",
               "PYTHONPATH": str(ROOT)}  # fmt: skip
        print(
            f"\n$ python -m supervisor run    (Postgres 127.0.0.1:{cluster.port}, Directus {url})\n",
            flush=True,
        )
        proc = subprocess.Popen([sys.executable, "-m", "supervisor", "run"], env=env, cwd=project)
        up = _ping(url, 180)
        if up:
            print(f"\nDirectus is up: {url}  (log in as {ADMIN_EMAIL} / {ADMIN_PASSWORD})", flush=True)
        if smoke or not up:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
            print(f"supervisor exited with {code} after SIGTERM", flush=True)
            return 0 if up and code == 128 + signal.SIGTERM else 1
        print("Ctrl-C stops Directus, the supervisor and the database.\n", flush=True)
        try:
            return proc.wait()
        except (
            KeyboardInterrupt
        ):  # the terminal sent SIGINT to the supervisor too; it forwards it to Directus
            return proc.wait(60)
    finally:
        cluster.destroy()
        shutil.rmtree(project.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
