"""Bench helper: a child that notes, for every SIGUSR1, the CLOCK_MONOTONIC time it arrived (one line each)."""

from __future__ import annotations

import os
import signal
import sys
import time

out = open(os.environ["BENCH_TIMES"], "a", buffering=1, encoding="ascii")  # noqa: SIM115 (lives as long as the process)
signal.signal(signal.SIGUSR1, lambda *_: out.write(f"{time.monotonic_ns()}\n"))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
out.write("ready\n")
while True:
    time.sleep(1)
