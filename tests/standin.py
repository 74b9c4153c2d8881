"""A stand-in for the Directus CLI, for signal and exit-status tests that Directus cannot be made to produce.

python tests/standin.py --version          prints 12.4.0
python tests/standin.py start|bootstrap    writes its pid (and each signal it gets) to $STANDIN_LOG, then
                                            waits; SIGTERM/SIGINT end it with $STANDIN_EXIT (default: die by
                                            the signal); a start with $STANDIN_EXIT_NOW exits at once with it
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> int:
    if sys.argv[1:] == ["--version"]:
        print("12.4.0")
        return 0
    log = os.environ.get("STANDIN_LOG", os.devnull)

    def note(text: str) -> None:
        with open(log, "a", encoding="utf-8") as f:
            f.write(text + "\n")

    note(f"pid {os.getpid()} ppid {os.getppid()} {' '.join(sys.argv[1:])}")
    if "STANDIN_EXIT_NOW" in os.environ:
        return int(os.environ["STANDIN_EXIT_NOW"])

    def on_signal(signum: int, _frame: object) -> None:
        note(f"signal {signal.Signals(signum).name}")
        if "STANDIN_EXIT" in os.environ:
            sys.exit(int(os.environ["STANDIN_EXIT"]))
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if "STANDIN_IGNORE_TERM" in os.environ:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        note("ignoring SIGTERM")
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
