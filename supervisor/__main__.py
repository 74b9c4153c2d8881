"""`python -m supervisor` (and the `directus-supervisor` script): the container entrypoint.

Its first act blocks the signals the supervisor handles, so one that arrives before a handler exists is queued
rather than lost (PID 1 has no default actions) or fatal (SIGUSR1's default action ends a process); the resident
loop (supervisor.pid1) or the worker's receiver (supervisor.signals) takes them from there. Only the interpreter's
own start-up, before this module runs, stays exposed.

Before importing anything heavy it decides whether to fork-split (supervisor.pid1): `run` that ends in Directus
(without `--exec`), and any `run`/`migrate` that is PID 1. The worker then runs the command line as usual.
"""

import os
import signal
import sys

# The signals handled (DESIGN §9), plus SIGCHLD for the resident loop; supervisor.pid1 and supervisor.signals
# hold the same lists (a unit test checks), not imported here to keep this first step cheap.
HANDLED = frozenset(
    {
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGWINCH,
        signal.SIGCHLD,
    }
)


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _stop_timeout(argv: list[str]) -> float:
    # A small copy of settings.parse_duration: importing supervisor.settings here would grow the resident parent.
    raw = _flag(argv, "--stop-timeout") or os.environ.get("SUPERVISOR_STOP_TIMEOUT") or "25"
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    unit = next((u for u in ("ms", "s", "m", "h") if raw.strip().endswith(u)), "")
    try:
        return float(raw.strip().removesuffix(unit) or "x") * units.get(unit, 1.0)
    except ValueError:
        return 25.0  # the worker reports the bad value (exit 2)


def _fork_split_mode(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether to fork-split, and the worker's argv (`run` gets `--exec`: Directus replaces the worker)."""
    if not argv or argv[0] not in ("run", "migrate") or "-h" in argv or "--help" in argv:
        return False, argv
    ends_in_start = argv[0] == "run" and all(_flag(argv, f) in (None, "start") for f in ("--only", "--until"))
    if ends_in_start and "--exec" not in argv:
        return True, [*argv, "--exec"]
    return os.getpid() == 1 and "--exec" not in argv, argv


def main() -> int:
    """Entry point: block the handled signals, fork-split where needed, then the command line."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    argv = sys.argv[1:]
    split, worker_argv = _fork_split_mode(argv)
    if split:
        from supervisor.pid1 import fork_split

        fork_split(_stop_timeout(argv), _flag(argv, "--log-format"))  # returns only in the worker
        if (
            argv[0] == "run"
            and _flag(argv, "--only") is None
            and _flag(argv, "--until") in (None, "start")
            and (_flag(argv, "--from") != "start")
            # on by default; anything but a plain "yes" waits for the settings (an invalid value is exit 2 there)
            and os.environ.get("SUPERVISOR_EARLY_START", "1").strip().lower() in ("1", "true", "yes", "on")
        ):
            # Node loads Directus's modules while the phases check the database; it starts Directus only if
            # they all pass (supervisor.early), else it is killed.
            from supervisor.early import start_guessed

            start_guessed(
                _flag(argv, "--directus-cmd") or os.environ.get("SUPERVISOR_DIRECTUS_CMD"),
                _flag(argv, "--node-compile-cache") or os.environ.get("SUPERVISOR_NODE_COMPILE_CACHE"),
                os.environ,
            )
    from supervisor.cli import main as cli_main

    try:
        return cli_main(worker_argv)
    finally:
        if "supervisor.early" in sys.modules:  # also when the command line itself was refused (SystemExit)
            sys.modules["supervisor.early"].cancel()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown (about 25 ms of freeing modules on every boot): every resource is already closed by
    # its context manager and both streams are flushed.
    os._exit(code)
