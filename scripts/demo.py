"""Demo: a throw-away local Postgres, the shipped SQL applied through the supervisor, and its status.

Run it with `scripts/demo`. The Directus phases come in a later release; for now this shows the engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg import LocalCluster


def main() -> int:
    cluster = LocalCluster().init().start()
    try:
        env = {
            **os.environ,
            "DB_CLIENT": "pg",
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(cluster.port),
            "DB_DATABASE": "postgres",
            "DB_USER": cluster.user,
            "DB_PASSWORD": cluster.password,
            "SUPERVISOR_LOG_FORMAT": "console",
        }
        cmd = [sys.executable, "-m", "supervisor"]
        print(
            f"\n$ python -m supervisor migrate --only pre-schema   (Postgres on 127.0.0.1:{cluster.port})",
            flush=True,
        )
        code = subprocess.run(
            [*cmd, "migrate", "--only", "pre-schema"], env=env, cwd=ROOT, check=False
        ).returncode
        print("\n$ python -m supervisor migrate --only pre-schema   (again: nothing to do)", flush=True)
        subprocess.run([*cmd, "migrate", "--only", "pre-schema"], env=env, cwd=ROOT, check=False)
        print("\n$ python -m supervisor status", flush=True)
        subprocess.run([*cmd, "status"], env=env, cwd=ROOT, check=False)
        return code
    finally:
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
