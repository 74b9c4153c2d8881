"""PID-1 duties, checked the way tini's and dumb-init's suites check them, with a stand-in Directus: every signal
forwarded, orphans reaped (as a child subreaper and as PID 1 of a new PID namespace), exit statuses, a clean
signal state for Directus."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, STANDIN, Layout, finish, start_supervisor, supervise, wait_for_text


def _env(log: Path, **extra: str) -> dict[str, str]:
    return {"SUPERVISOR_DIRECTUS_CMD": STANDIN, "STANDIN_LOG": str(log), "SUPERVISOR_LOG_FORMAT": "json",
            "PATH": "/usr/bin:/bin", **extra}  # fmt: skip


async def test_every_signal_is_forwarded_to_directus(layout: Layout, tmp_path: Path):
    """HUP, QUIT, USR1, USR2 and WINCH reach Directus and leave it running; TERM then stops it (143)."""
    log = tmp_path / "log"
    proc = await start_supervisor("run", "--only", "start", env=_env(log), cwd=layout.root)
    await wait_for_text(log, "ready")
    for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):
        proc.send_signal(sig)
        await wait_for_text(log, f"signal {sig.name}")
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=20)
    assert r.code == 143, r.stderr
    assert [e["signal"] for e in r.events("signal.forwarded")] == [
        "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGTERM",
    ]  # fmt: skip


async def test_a_second_term_does_not_double_kill(layout: Layout, tmp_path: Path):
    """Two TERMs in a row are both forwarded; Directus's own exit status (0 here) comes back, no SIGKILL."""
    log = tmp_path / "log"
    proc = await start_supervisor("run", "--only", "start", env=_env(log, STANDIN_EXIT="0"), cwd=layout.root)
    await wait_for_text(log, "ready")
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=20)
    assert r.code == 0, r.stderr
    assert r.events("directus.killed") == []


async def test_directus_starts_with_a_clean_signal_state(layout: Layout, tmp_path: Path):
    """No blocked signals, and neither SIGPIPE nor SIGXFSZ ignored (Python ignores both), per /proc status of a
    program run through a shell stand-in (a Python one would reset them itself). SIGUSR1, SIGUSR2 and SIGWINCH
    arrive ignored, so none is fatal before Directus has handlers (Node resets them: the next test)."""
    log = tmp_path / "log"
    # /proc/self of grep, not /proc/$$ of the shell: dash blocks every signal around its fork, and grep could read
    # the shell's mask in that instant.
    cmd = f"sh -c 'grep -E \"^Sig(Blk|Ign)\" /proc/self/status > {log}; echo ready >> {log}; exec sleep 30'"
    proc = await start_supervisor("run", "--only", "start", env=_env(log, SUPERVISOR_DIRECTUS_CMD=cmd),
                                  cwd=layout.root)  # fmt: skip
    content = await wait_for_text(log, "ready")
    proc.send_signal(signal.SIGTERM)
    await finish(proc, timeout=20)
    fields = dict(line.split(":\t") for line in content.splitlines() if ":\t" in line)
    blocked, ignored = int(fields["SigBlk"], 16), int(fields["SigIgn"], 16)
    assert blocked == 0
    assert not ignored & _bits(signal.SIGPIPE, signal.SIGXFSZ)
    assert ignored & _bits(signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH) == _bits(
        signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH
    )


def _bits(*sigs: signal.Signals) -> int:
    return sum(1 << (s - 1) for s in sigs)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node is part of this machine kind")
async def test_node_as_directus_gets_usr1_usr2_and_winch_back(layout: Layout, tmp_path: Path):
    """The supervisor hands SIGUSR1, SIGUSR2 and SIGWINCH over ignored; Node (Directus's runtime) resets inherited
    ignored signals to their defaults at start-up, so Directus receives them (and has no signal blocked)."""
    log = tmp_path / "log"
    script = (
        "const s = require('fs').readFileSync('/proc/self/status', 'utf8');"
        f"require('fs').writeFileSync({str(log)!r}, s.split('\\n').filter(l => l.startsWith('Sig')).join('\\n'))"
    )
    cmd = f'{shutil.which("node")} -e "{script}"'
    r = await supervise("run", "--only", "start", env=_env(log, SUPERVISOR_DIRECTUS_CMD=cmd), cwd=layout.root)
    assert r.code == 0, r.stderr
    fields = dict(line.split(":\t") for line in log.read_text().splitlines())
    assert int(fields["SigBlk"], 16) == 0
    assert not int(fields["SigIgn"], 16) & _bits(signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


async def test_orphans_are_reaped_as_a_child_subreaper(layout: Layout, tmp_path: Path):
    """Not PID 1: the supervisor is a child subreaper, so Directus's orphans are re-parented to it and reaped."""
    log = tmp_path / "log"
    proc = await start_supervisor(
        "run", "--only", "start", env=_env(log, STANDIN_ORPHANS="3"), cwd=layout.root
    )
    content = await wait_for_text(log, "ready")
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=20)
    assert r.code == 143
    assert f"ppid {proc.pid} " in content  # Directus is the supervisor's direct child (exec'd by the worker)
    assert "zombies 0" in content


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is part of this machine kind")
async def test_as_pid_1_in_a_new_pid_namespace_it_reaps_and_passes_statuses_on(
    layout: Layout, tmp_path: Path
):
    """`unshare --pid --fork --mount-proc`: the supervisor is PID 1; orphans are reaped, TERM is forwarded and the
    signal status comes back as 128+N; a plain exit code comes back as is."""
    log = tmp_path / "log"
    env = {**_env(log, STANDIN_ORPHANS="3"), "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        "unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "supervisor", "run", "--only", "start",
        env=env, cwd=layout.root, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    content = await wait_for_text(log, "ready")
    assert "ppid 1 " in content  # Directus's parent is the supervisor, and the supervisor is PID 1
    assert "zombies 0" in content
    children = (await asyncio.to_thread(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text)).split()
    signal_pid1 = int(children[0])  # unshare does not forward signals: send to our PID 1 by its outer pid
    await asyncio.to_thread(os.kill, signal_pid1, signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 143, err.decode()

    log2 = tmp_path / "log2"
    proc = await asyncio.create_subprocess_exec(
        "unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "supervisor", "run", "--only", "start",
        env={**_env(log2, STANDIN_EXIT_NOW="3"), "PYTHONPATH": str(ROOT)}, cwd=layout.root,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 3


async def test_term_while_the_worker_imports_stops_the_boot_cleanly(layout: Layout, tmp_path: Path):
    """A TERM that reaches the worker while it still imports (no handler yet) is queued, not fatal: the worker
    itself stops the boot (its INTERRUPTED line, 143) and Directus never starts. (A worker killed by TERM's default
    action would also exit 143 through the parent, but without that line.)"""
    log = tmp_path / "log"
    proc = await start_supervisor("run", "--only", "start", env=_env(log), cwd=layout.root)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = asyncio.get_running_loop().time() + 20
    while not (await asyncio.to_thread(children.read_text)).strip():  # the fork: the worker starts importing
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=20)
    assert r.code == 143, r.stderr
    assert r.events("signal.forwarded")[0]["signal"] == "SIGTERM"
    assert r.failure["error_code"] == "INTERRUPTED"
    assert "SIGTERM" in r.failure["error"]
    assert r.events("directus.exec") == []
    assert not log.exists()
