"""The resident supervisor: a small stdlib-only loop that forwards signals to Directus and reaps zombies.

"Fork-split": before anything else is imported, the process blocks the signals it handles (supervisor.__main__; so
one that arrives early is queued, not lost: PID 1 has no default actions) and forks. The child, the worker, keeps
them blocked until its own handlers are installed (supervisor.signals), runs the asyncio phases and then execs
Directus, so Directus keeps the worker's pid. The parent stays behind as this loop:
`sigwaitinfo` for the forwarded signals and SIGCHLD, `waitpid(-1)` for every zombie (its own child and orphans
re-parented to it, as PID 1 or as a child subreaper). Because the asyncio code lives in another process, the global
reaper cannot steal the exit statuses asyncio waits for, and the resident part costs only a bare interpreter.

Imports: os, signal, sys, time only; everything heavy is imported by the worker after the fork.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

__all__ = ["FORWARDED", "fork_split"]

FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
_STOPPING = (signal.SIGTERM, signal.SIGINT)  # after forwarding one of these, SIGKILL follows the stop timeout
# PM2_INSTANCES > 1 (supervisor.pm2): the worker makes pm2-runtime the leader of its own process group, which the
# Directus workers it forks join. pm2-runtime stops the group on TERM or INT, but HUP and QUIT end it by their
# default action without stopping the workers, and USR2 likewise: those two become TERM for pm2-runtime, and USR1,
# USR2 and WINCH go to the workers themselves, as they would reach a single Directus.
_PM2_AS_TERM = (signal.SIGHUP, signal.SIGQUIT)
_PR_SET_CHILD_SUBREAPER = 36
_WORKER_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)  # supervisor.signals.STOPS


_format = "auto"  # --log-format, else SUPERVISOR_LOG_FORMAT (set by fork_split)
# The worker's end of the exec pipe: it writes EXEC just before the exec of Directus and FAILED if that exec fails.
# The pipe is close-on-exec, so Directus never holds it; once the worker is reaped the parent reads what was written
# and knows whether Directus ran (`directus.exited`) or the worker ended before it (`supervisor.worker_exited`).
_exec_pipe: int | None = None
EXEC, FAILED = b"E", b"F"
# HANDOVER + pid: the worker started Directus early (supervisor.early) as its own child and is exiting; Directus,
# re-parented to the resident parent (PID 1 or a child subreaper), is supervised in its place.
HANDOVER = b"H"
_adopts = (
    False  # whether the resident parent reaps orphans (PID 1, or a child subreaper): set before the fork
)


def forked() -> bool:
    """In the worker: whether a resident parent supervises it (fork-split), rather than `run --exec`."""
    return _exec_pipe is not None


def can_adopt() -> bool:
    """In the worker: whether the resident parent adopts and reaps what this worker leaves behind, so a child of
    this worker can be handed over as Directus (supervisor.early)."""
    return _exec_pipe is not None and _adopts


def note_exec(stage: bytes) -> None:
    """In the worker: tell the resident parent that Directus is about to be exec'd (EXEC), or that it failed."""
    if _exec_pipe is not None:
        with contextlib.suppress(OSError):
            os.write(_exec_pipe, stage)


def _emit(level: str, event: str, **fields: object) -> None:
    """One log line in the supervisor's format (JSON unless console was asked for or stderr is a TTY)."""
    fmt = _format
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1e6) % 1000000:06d}Z"
    if fmt == "json" or (fmt != "console" and not sys.stderr.isatty()):
        line = json.dumps({**fields, "event": event, "level": level, "timestamp": stamp})
    else:
        line = f"{stamp} [{level:<9}] {event:<30} " + " ".join(f"{k}={v}" for k, v in fields.items())
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


def _subreaper() -> bool:
    # Not PID 1: become the reaper of orphaned descendants anyway (Linux >= 3.4), as tini -s does.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
            return True
    except (OSError, AttributeError):
        pass
    _emit("warning", "pid1.no_subreaper", hint="orphaned processes will be reaped by the real init")
    return False


def _status(wait_status: int) -> int:
    """A shell-style exit status from a wait status: the code, or 128+N for signal N."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.waitstatus_to_exitcode(wait_status)


def fork_split(stop_timeout: float, log_format: str | None = None) -> None:
    """Fork; return in the worker; never return in the parent, which forwards and reaps until the worker (later
    Directus) exits, then exits with its status.

    The worker returns with the handled signals still blocked: it imports for a few hundred milliseconds before
    its handlers exist, and a SIGUSR1 forwarded then would end it by the default action. supervisor.signals
    unblocks them once its receiver is installed; exec_directus hands Directus an empty mask.
    """
    global _format, _exec_pipe, _adopts
    _format = (log_format or os.environ.get("SUPERVISOR_LOG_FORMAT") or "auto").lower()
    handled = {*FORWARDED, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, handled)  # __main__ did so already; kept so this stands alone
    _adopts = os.getpid() == 1 or _subreaper()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    worker = os.fork()
    if worker == 0:
        os.close(read_end)
        _exec_pipe = write_end
        return
    os.close(write_end)
    os.set_blocking(read_end, False)
    sys.exit(_loop(worker, handled, stop_timeout, read_end))


def _loop(worker: int, handled: set[signal.Signals], stop_timeout: float, exec_pipe: int) -> int:
    kill_at: float | None = None
    killed = group_killed = handed_over = False
    stop: int | None = None  # the last stop forwarded to the worker before a hand-over (see _adopt)
    info: signal.struct_siginfo | None
    while True:
        if kill_at is None:
            info = signal.sigwaitinfo(handled)
        else:
            info = signal.sigtimedwait(handled, max(0.0, kill_at - time.monotonic()))
            if info is None:
                group = _leads_group(worker)
                _emit("warning", "directus.killed", pid=worker, stop_timeout_s=stop_timeout, group=group)
                if group:  # pm2-runtime and every worker of it, whatever state pm2 is in
                    _killpg(worker, signal.SIGKILL)
                    group_killed = True
                _kill(worker, signal.SIGKILL)
                kill_at = None
                killed = True
                continue
        if info.si_signo != signal.SIGCHLD:
            if not handed_over and info.si_signo in _WORKER_STOPS:
                stop = info.si_signo
            if _forward(worker, info.si_signo) in _STOPPING and kill_at is None:
                kill_at = time.monotonic() + stop_timeout
            continue
        group = _leads_group(worker)  # asked before the reap: a zombie still has its group
        status = _reap(worker)
        if status is not None and not handed_over:
            note = _read_all(exec_pipe)
            if note.startswith(HANDOVER):
                handed_over, worker = True, _adopt(worker, int(note[1:]), killed, stop)
                status = _ended(worker)
                if status is None:
                    continue
            elif note == EXEC:
                handed_over = True  # Directus replaced the worker
        if status is not None:
            if group:
                _end_group(worker, group_killed)
            if handed_over:
                _emit("info", "directus.exited", pid=worker, exit_code=status)
            else:  # the phases failed or were stopped, or the exec failed: the worker has said why
                _emit(
                    "info", "supervisor.worker_exited", pid=worker, exit_code=status, directus_started=False
                )
            _emit("info", "supervisor.finished", exit_code=status)
            return status


def _adopt(worker: int, directus: int, killed: bool, stop: int | None) -> int:
    """Supervise `directus` (an early start, now our child) in place of the worker that started it and is reaped.

    A stop forwarded to the worker before this point was meant for Directus: had it reached the worker before the
    worker's last check (supervisor.signals.stop_if_signalled), the worker would have stopped instead of handing
    over. After that check the worker no longer acts on it, and a signal sent while it exits reaches an exiting
    process or a zombie and is lost. So the stop is sent on to Directus here, once; an exec'd Directus keeps the
    worker's pid and has no such window."""
    raw = _others.pop(worker, 0)
    _emit("info", "directus.handed_over", pid=directus, worker=worker)
    if killed:  # the stop timeout ran out while the worker handed over: Directus gets the same
        _kill(directus, signal.SIGKILL)
        return directus
    ended_by = os.WTERMSIG(raw) if os.WIFSIGNALED(raw) and os.WTERMSIG(raw) in FORWARDED else None
    for signum in dict.fromkeys(s for s in (ended_by, stop) if s is not None):
        _forward(directus, signum)
    return directus


def _ended(pid: int) -> int | None:
    """The exit status of `pid`, a child of ours, if it has ended (reaped now, or by an earlier _reap)."""
    try:
        reaped, wait_status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped already: its status is the latest recorded for that pid
        if pid in _others:
            return _status(_others[pid])
        _emit("error", "directus.lost", pid=pid, hint="not a child of the supervisor after the hand-over")
        return 1
    return _status(wait_status) if reaped == pid else None


def _read_all(fd: int) -> bytes:
    data = b""
    with contextlib.suppress(OSError):  # BlockingIOError: nothing written (and a grandchild still holds it)
        while chunk := os.read(fd, 64):
            data += chunk
    return data


# Wait statuses of the processes reaped so far besides the one supervised (bounded: the boot's orphans), kept so a
# hand-over (HANDOVER) finds Directus's status even when it ended, and was reaped, before the worker.
_others: dict[int, int] = {}


def _reap(worker: int) -> int | None:
    """Reap every zombie; the worker's status if it was among them."""
    status = None
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == worker:
            status = _status(wait_status)
            _others[pid] = wait_status  # the raw status, for _adopt
        else:
            if len(_others) >= 64:  # only the latest matter: Directus is reaped after its worker ended
                del _others[next(iter(_others))]
            _others[pid] = wait_status


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _killpg(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _forward(worker: int, signum: int) -> int:
    """Send a received signal on, to Directus or (PM2) to the group; returns the signal pm2-runtime was sent."""
    name = signal.Signals(signum).name
    if not _leads_group(worker):  # Directus itself, or the worker before its exec
        _kill(worker, signum)
        _emit("info", "signal.forwarded", signal=name, pid=worker)
        return signum
    if signum in _STOPPING or signum in _PM2_AS_TERM:
        sent = signal.SIGTERM if signum in _PM2_AS_TERM else signum
        _kill(worker, sent)
        _emit(
            "info",
            "signal.forwarded",
            signal=name,
            pid=worker,
            sent=signal.Signals(sent).name,
            to="pm2-runtime",
        )
        return sent
    workers = [pid for pid in _group_members(worker) if pid != worker]
    for pid in workers:
        _kill(pid, signum)
    _emit("info", "signal.forwarded", signal=name, pids=workers, to="pm2 workers")
    return signum


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, from /proc."""
    members: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _end_group(pgid: int, killed: bool) -> None:
    """After pm2-runtime exits: SIGKILL any of its workers still running (pm2 stops them itself, so normally none;
    they would outlive it if it died abruptly) and reap them, so nothing of the group survives the supervisor.

    `killed`: the group was already SIGKILLed at the stop timeout. A worker can then still show as running for a
    moment (a SIGKILLed Node tears down its heap before it becomes a zombie); that is our own kill completing, not
    a worker pm2 left behind, so it is waited for, and only one still there after the wait is reported."""
    if killed:
        _wait_group(pgid, 2.0)
    left = _group_members(pgid)
    if not left:
        return
    _emit("warning", "pm2.workers_killed", pids=left, reason="still running after pm2-runtime exited")
    _killpg(pgid, signal.SIGKILL)
    _wait_group(pgid, 2.0)


def _wait_group(pgid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _group_members(pgid) and time.monotonic() < deadline:
        _reap(-1)
        time.sleep(0.01)
