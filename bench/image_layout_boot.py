"""Cold boot in the official image's layout, with egress open or dropped (issue 10, item 1).

    python bench/image_layout_boot.py [--runs N] [--egress open|dropped|both] [--cmd default|cli.js]

A folder laid out as the image's `/directus` (tests/image_layout.py), a throw-away Postgres, a fresh database per
run, `run` with cwd there and no `directus` on PATH; the time is from the start of the supervisor to the first
200 from /server/ping. "dropped" points every proxy variable at a listener that accepts and never answers; with
`both` the runs alternate between open and dropped. `--cmd cli.js` sets SUPERVISOR_DIRECTUS_CMD="node ./cli.js" (the old default) for comparison; it is given up on after
`--limit` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.directus_env import directus_env, install_directus
from tests.image_layout import Blackhole, build_image_dir, path_without_directus
from tests.pg import LocalCluster, free_port


def _ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server/ping", None, 1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


async def _boot(cluster: LocalCluster, image: Path, n: int, *, drop: bool, cmd: str, limit: float) -> str:
    db = f"image_boot_{n}"
    admin = await asyncpg.connect(cluster.dsn())
    await admin.execute(f'CREATE DATABASE "{db}"')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(directus_env(install_directus(), port, {}, image))
    env.pop("SUPERVISOR_DIRECTUS_CMD")
    if cmd == "cli.js":
        env["SUPERVISOR_DIRECTUS_CMD"] = "node ./cli.js"
    env.update(
        DB_CLIENT="pg", DB_HOST="127.0.0.1", DB_PORT=str(cluster.port), DB_DATABASE=db, DB_USER=cluster.user,
        DB_PASSWORD=cluster.password, SUPERVISOR_LOG_FORMAT="json", PATH=path_without_directus(env["PATH"]),
        PYTHONPATH=str(ROOT),
    )  # fmt: skip
    hole = Blackhole() if drop else None
    if hole:
        env.update({k: v for k, v in hole.proxy_env().items() if v})
    log = image.parent / f"boot-{n}.log"
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "supervisor", "run", env=env, cwd=image,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
        elapsed = None
        while time.monotonic() - t0 < limit and proc.returncode is None:
            if await asyncio.to_thread(_ping, port):
                elapsed = time.monotonic() - t0
                break
            await asyncio.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        await proc.wait()
    calls = hole.connections if hole else 0
    if hole:
        hole.close()
    await admin.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
    await admin.close()
    if elapsed is None:
        return f"no ping within {limit:.0f}s (exit {proc.returncode}; proxy connections {calls}; log {log})"
    return f"{elapsed:.1f}s (proxy connections {calls}; load average {os.getloadavg()[0]:.1f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cmd", choices=("default", "cli.js"), default="default")
    parser.add_argument("--limit", type=float, default=90)
    parser.add_argument("--egress", choices=("open", "dropped", "both"), default="both")
    args = parser.parse_args()
    cluster = LocalCluster().init().start()
    try:
        image = build_image_dir(install_directus(), Path(tempfile.mkdtemp()) / "directus")
        modes = ["open", "dropped"] if args.egress == "both" else [args.egress]
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        n = 0
        for _ in range(args.runs):
            for mode in modes:  # alternating, so the machine's load weighs on both alike
                n += 1
                line = await _boot(cluster, image, n, drop=mode == "dropped", cmd=args.cmd, limit=args.limit)
                print(f"{args.cmd:8} egress {mode:8} run {n}: {line}", flush=True)
                if line[0].isdigit():
                    times[mode].append(float(line.split("s", 1)[0]))
        for mode, got in times.items():
            if got:
                print(f"{args.cmd:8} egress {mode:8} median {statistics.median(got):.1f}s of {len(got)}")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    asyncio.run(main())
