"""Benchmark: the resident cost and the signal-forwarding latency of the supervisor as PID-1-style parent.

Modes, each holding the same child (bench/signal_child.py, a stand-in for Directus):
  - supervisor (supervise mode): `python -m supervisor run --only start`, fork-split, Directus exec'd by the worker;
  - supervisor --exec: nothing resident (the child replaces it);
  - tini (Debian's tini 0.19, installed when missing), the reference C init;
  - a resident asyncio Python with the supervisor's libraries imported: what the parent would cost without the split.
Resident memory is VmRSS (and RssAnon) of the parent while the child runs. Latency is the time from `kill(parent,
SIGUSR1)` to the child's handler (both CLOCK_MONOTONIC), over many signals; "direct" signals the child itself.

    .venv/bin/python bench/pid1.py [--signals 300]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = f"{sys.executable} {ROOT / 'bench' / 'signal_child.py'}"
ASYNCIO_PARENT = (
    "import asyncio, asyncpg, anyio, structlog, tenacity, subprocess, sys\n"
    "async def main():\n"
    "    p = await asyncio.create_subprocess_exec(*sys.argv[1:])\n"
    "    asyncio.get_running_loop().add_signal_handler(10, lambda: p.send_signal(10))\n"
    "    await p.wait()\n"
    "asyncio.run(main())\n"
)


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            out[key] = int(value.split()[0])
    return out


def _wait_ready(times: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if times.exists() and "ready" in times.read_text():
            return
        time.sleep(0.02)
    raise SystemExit("the child never became ready")


def measure(name: str, argv: list[str], env: dict[str, str], signals: int, target: str) -> dict[str, object]:
    work = Path(tempfile.mkdtemp())
    times = work / "times"
    proc = subprocess.Popen(argv, env={**env, "BENCH_TIMES": str(times)}, cwd=work, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(times)
        time.sleep(0.5)
        mem = _status(proc.pid)
        child = proc.pid
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if target == "direct" and children:
            child = int(children[0])
        sent = []
        for _ in range(signals):
            before = len(times.read_text().splitlines())
            sent.append(time.monotonic_ns())
            os.kill(child, signal.SIGUSR1)
            while len(times.read_text().splitlines()) == before:
                time.sleep(0.0002)
            time.sleep(0.002)
        got = [int(x) for x in times.read_text().splitlines() if x.isdigit()]
        lat = [(g - s) / 1e6 for s, g in zip(sent, got, strict=True)]
        return {"mode": name, "rss_kb": mem.get("VmRSS"), "anon_kb": mem.get("RssAnon"),
                "median_ms": statistics.median(lat), "p95_ms": sorted(lat)[int(len(lat) * 0.95) - 1]}  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--signals", type=int, default=300)
    args = ap.parse_args()
    if not shutil.which("tini") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "tini"], check=False, stdout=subprocess.DEVNULL)
    env = {
        **os.environ,
        "SUPERVISOR_DIRECTUS_CMD": CHILD,
        "PYTHONPATH": str(ROOT),
        "SUPERVISOR_LOG_FORMAT": "json",
    }
    sup = [sys.executable, "-m", "supervisor", "run", "--only", "start"]
    modes = [
        ("child signalled directly (no parent)", [*sup, "--exec"], "direct"),
        ("supervisor, supervise mode (fork-split)", sup, "parent"),
        ("supervisor --exec (Directus replaces it: nothing resident)", [*sup, "--exec"], "parent"),
        (
            "resident asyncio Python with the libraries",
            [sys.executable, "-c", ASYNCIO_PARENT, *CHILD.split()],
            "parent",
        ),
    ]
    if shutil.which("tini"):
        modes.append(("tini 0.19 -s (reference)", ["tini", "-s", "--", *CHILD.split()], "parent"))
    rows = [measure(name, argv, env, args.signals, target) for name, argv, target in modes]
    print(f"Resident memory of the process the orchestrator starts, while the child runs; forwarding latency "
          f"over {args.signals} SIGUSR1 each.\n")  # fmt: skip
    print("| mode | VmRSS (MB) | RssAnon (MB) | latency median (ms) | p95 (ms) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        rss, anon = float(str(r["rss_kb"])) / 1024, float(str(r["anon_kb"])) / 1024
        print(f"| {r['mode']} | {rss:.1f} | {anon:.1f} | {r['median_ms']:.3f} | {r['p95_ms']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
