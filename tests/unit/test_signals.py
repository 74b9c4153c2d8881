"""The signal lists agree, the entrypoint's first act comes early, and `run_routed` gives an in-process caller its
signal state back."""

from __future__ import annotations

import signal
import subprocess
import sys

import supervisor.__main__ as entry
from supervisor import pid1, signals
from tests.conftest import ROOT


def test_the_entrypoint_blocks_what_the_loop_and_the_worker_handle():
    """__main__ keeps its own copy of the handled signals (to stay cheap): it matches pid1's and signals'."""
    assert entry.HANDLED == {*pid1.FORWARDED, signal.SIGCHLD} == {*signals.HANDLED, signal.SIGCHLD}


def test_importing_the_package_is_cheap():
    """`python -m supervisor` imports the package before __main__ can block the signals: the package alone
    imports neither supervisor.errors nor `typing`, and its exceptions still resolve."""
    code = (
        "import sys, supervisor\n"
        "print(sorted(m for m in sys.modules if m.startswith('supervisor') or m == 'typing'))\n"
        "print(supervisor.ConfigError.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out == ["['supervisor']", "supervisor.errors"]


def test_run_routed_restores_the_callers_signal_state():
    """The worker leaves the signals blocked for the entrypoint; an in-process caller (a test) gets its own mask
    and dispositions back, SIGUSR1 to SIGWINCH included."""
    before_mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    before = {sig: signal.getsignal(sig) for sig in signals.HANDLED}

    async def work() -> int:
        return 7

    assert signals.run_routed(work, log=None) == 7
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before_mask
    assert {sig: signal.getsignal(sig) for sig in signals.HANDLED} == before
