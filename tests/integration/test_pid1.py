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

from tests.conftest import ROOT, STANDIN, Layout, finish, start_supervisor, wait_for_text


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
    shell stand-in (a Python one would reset them itself)."""
    log = tmp_path / "log"
    cmd = f"sh -c 'grep -E \"^Sig(Blk|Ign)\" /proc/$$/status > {log}; echo ready >> {log}; exec sleep 30'"
    proc = await start_supervisor("run", "--only", "start", env=_env(log, SUPERVISOR_DIRECTUS_CMD=cmd),
                                  cwd=layout.root)  # fmt: skip
    content = await wait_for_text(log, "ready")
    proc.send_signal(signal.SIGTERM)
    await finish(proc, timeout=20)
    fields = dict(line.split(":\t") for line in content.splitlines() if ":\t" in line)
    blocked, ignored = int(fields["SigBlk"], 16), int(fields["SigIgn"], 16)
    assert blocked == 0
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))


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


async def test_term_before_the_event_loop_exists_is_acted_on(layout: Layout, tmp_path: Path):
    """A TERM that arrives while the worker is still importing (no event loop yet) is queued, not lost: the boot
    stops with 143."""
    log = tmp_path / "log"
    proc = await start_supervisor("run", "--only", "start", env=_env(log), cwd=layout.root)
    await asyncio.sleep(0.1)  # past the fork (signals blocked), well before the worker's event loop
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=20)
    assert r.code == 143, r.stderr
    assert r.events("signal.forwarded")[0]["signal"] == "SIGTERM"
