"""A stand-in for the Directus CLI, for signal, reaping and exit-status tests that Directus cannot be made to produce.

    python tests/standin.py --version          prints 12.4.0
    python tests/standin.py start|bootstrap    notes its pid, parent, signal mask and ignored signals in
                                                $STANDIN_LOG, then waits, noting each signal it gets.
Variables: STANDIN_EXIT_NOW=n exits at once with n; STANDIN_EXIT=n exits with n on SIGTERM/SIGINT (default: die
by the signal); STANDIN_IGNORE_TERM ignores SIGTERM; STANDIN_ORPHANS=n leaves n orphaned zombies-to-be behind and
notes how many zombies its parent still has half a second later. STANDIN_SAY=text prints text on stdout before it
notes `ready`.
"""

from __future__ import annotations

import os
import signal
import sys
import time

_NOTED = (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


def _proc_status(field: str) -> str:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(line.split()[1] for line in f if line.startswith(field + ":"))


def _zombies_of(parent: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == parent:
            count += 1
    return count


def _orphan() -> None:
    # The child forks a grandchild and exits at once; the grandchild exits shortly after, an orphan whose zombie
    # goes to the nearest reaper (PID 1, or a child subreaper).
    if os.fork() == 0:
        if os.fork() == 0:
            time.sleep(0.1)
            os._exit(0)
        os._exit(0)
    os.wait()


def main() -> int:
    if sys.argv[1:] == ["--version"]:
        print("12.4.0")
        return 0
    log = os.environ.get("STANDIN_LOG", os.devnull)

    def note(text: str) -> None:
        with open(log, "a", encoding="utf-8") as f:
            f.write(text + "\n")

    note(f"pid {os.getpid()} ppid {os.getppid()} {' '.join(sys.argv[1:])}")
    note(f"SigBlk {_proc_status('SigBlk')} SigIgn {_proc_status('SigIgn')}")
    if "STANDIN_EXIT_NOW" in os.environ:
        return int(os.environ["STANDIN_EXIT_NOW"])

    def on_signal(signum: int, _frame: object) -> None:
        note(f"signal {signal.Signals(signum).name}")
        if signum in _NOTED:
            return
        if "STANDIN_EXIT" in os.environ:
            signal.signal(
                signum, signal.SIG_IGN
            )  # like Directus: a repeated signal during shutdown is ignored
            sys.exit(int(os.environ["STANDIN_EXIT"]))
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGINT, *_NOTED):
        signal.signal(sig, on_signal)
    if "STANDIN_IGNORE_TERM" in os.environ:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        note("ignoring SIGTERM")
    orphans = int(os.environ.get("STANDIN_ORPHANS", "0"))
    if orphans:
        for _ in range(orphans):
            _orphan()
        time.sleep(0.6)
        note(f"zombies {_zombies_of(os.getppid())}")
    if "STANDIN_SAY" in os.environ:
        print(os.environ["STANDIN_SAY"], flush=True)
    note("ready")
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
