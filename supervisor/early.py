"""Early start: Node loads Directus's modules while the warm-boot checks run, and starts Directus only once they pass.

Loading Directus's modules is most of a warm `directus start` (about 90% of it on Node 22 with a warm compile cache:
`cli/run.js` imports `cli/index.js`, which imports every command, the server and the app). The worker spawns
`node --import gate.mjs?fd=3 …/cli/run.js start` before it connects; the gate (supervisor/gate.mjs) imports that
module graph and then blocks on a pipe. Evaluating those modules opens no database connection and no port and writes
no file but Node's compile cache (checked with `strace -f` on Directus 12.4.0, Node 22: no connect, bind or listen;
the only network call is a netlink query of the interfaces). Settings that make modules connect at load time exist:
a Redis (`REDIS*`, `*_STORE=redis`: the cache bus subscribes, the rate limiters connect): with one configured in
the environment or the working directory's `.env`, or a `CONFIG_PATH` (not looked into), there is no early start.

- The checks pass: the worker writes `go` to the gate and hands Directus over (`hand_over`): it tells the resident
  parent (supervisor.pid1) the pid through the exec pipe and exits; Node, re-parented to the resident parent (PID 1
  or a child subreaper), is supervised from then on exactly as an exec'd Directus is: signals, stop timeout, exit
  status. A stop signal in between ends the worker, and the resident parent sends it on to Directus.
- Anything else (a phase has work, a failure, a signal): the Node process is killed (SIGKILL) and reaped before the
  worker exits (`cancel`), so nothing ran; if the worker is killed itself, the gate reads end of file and kills
  itself. A Node that ended before the hand-over (an old Node without `--import`, an error while loading) is reaped
  and Directus is exec'd as without an early start.

Only for the default command (`node …/@directus/api/dist/cli/run.js`), without PM2, and only in the fork-split worker
whose resident parent can adopt Node (supervisor.pid1.can_adopt).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["GATE", "Early", "applicable", "cancel", "go", "kill", "running", "start", "start_guessed", "take"]

GATE = Path(__file__).with_name("gate.mjs")
ENTRY_SUFFIX = "/@directus/api/dist/cli/run.js"
FD = 3  # the gate's pipe in Node
# Reset to their default actions in Node, as exec_directus leaves them (Python's ignored SIGPIPE and SIGXFSZ too).
_DEFAULTS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGCHLD,
    signal.SIGPIPE,
    signal.SIGXFSZ,
)


class Early:
    """A Node process waiting at the gate: its pid, the write end of its pipe, and the command and environment it
    was started with (Directus goes on only if they are what `start` would use). A plain class: this module is
    imported before the heavy imports, and dataclasses costs milliseconds there."""

    __slots__ = ("command", "env", "gate", "pid")

    def __init__(self, pid: int, gate: int, command: tuple[str, ...], env: dict[str, str]) -> None:
        self.pid, self.gate, self.command, self.env = pid, gate, command, env


_current: Early | None = None


def applicable(argv: Sequence[str]) -> bool:
    """Whether `argv` is the default Directus command, `node <…>/@directus/api/dist/cli/run.js`."""
    return len(argv) == 2 and os.path.basename(argv[0]) == "node" and argv[1].endswith(ENTRY_SUFFIX)


def start_guessed(directus_cmd: str | None, compile_cache: str | None, environ: Mapping[str, str]) -> None:
    """In the fork-split worker of `run`, first thing (supervisor.__main__): start Node behind the gate with the
    command and environment that `start` will most likely use, guessed from `--directus-cmd` or
    SUPERVISOR_DIRECTUS_CMD (`directus_cmd`), `--node-compile-cache` or SUPERVISOR_NODE_COMPILE_CACHE
    (`compile_cache`) and PM2_INSTANCES, before settings are parsed and the heavy modules imported. Any doubt: no
    early start. A wrong guess costs nothing but the work: `take` compares both with the real ones."""
    import shlex

    from supervisor import directus_entry, nodecache, pid1
    from supervisor.errors import ConfigError

    if not pid1.can_adopt() or (environ.get("PM2_INSTANCES") or "1").strip() not in ("", "1"):
        return
    if _connects_at_load(environ, Path.cwd()):
        return
    try:
        if directus_cmd is not None and directus_cmd.strip():
            command = tuple(shlex.split(directus_cmd))
        else:
            command, _source = directus_entry.find_default(os.getcwd(), environ.get("PATH", os.defpath))
    except (ValueError, ConfigError, OSError):
        return
    if applicable(command):
        start(command, nodecache.node_env(nodecache.parse_setting(compile_cache, environ), environ))


def _connects_at_load(environ: Mapping[str, str], cwd: Path) -> bool:
    """Whether Directus's modules may open a connection when loaded: a Redis configured (its cache bus subscribes
    and its rate limiters connect at load time) in the environment or in the `.env` file Directus reads from the
    working directory, or a config file elsewhere (CONFIG_PATH) that is not looked into."""
    if environ.get("CONFIG_PATH"):
        return True
    pairs = list(environ.items())
    try:
        text = (cwd / ".env").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.strip().removeprefix("export ").partition("=")
        pairs.append((key.strip(), value.strip().strip("\"'")))
    return any(k.startswith("REDIS") or (k.endswith("_STORE") and v.lower() == "redis") for k, v in pairs)


def start(argv: Sequence[str], env: Mapping[str, str]) -> int | None:
    """Spawn `argv` + `start` behind the gate; its pid, or None when `node` cannot be found (no early start)."""
    global _current
    node = shutil.which(argv[0], path=env.get("PATH"))
    if node is None:
        return None
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    if read_end == FD:  # dup2 onto itself would keep close-on-exec
        read_end, old = os.dup(read_end), read_end
        os.close(old)
    node_argv = [argv[0], "--import", f"{GATE.as_uri()}?fd={FD}", argv[1], "start"]
    try:
        pid = os.posix_spawn(
            node,
            node_argv,
            dict(env),
            file_actions=[(os.POSIX_SPAWN_DUP2, read_end, FD)],
            setsigmask=(),
            setsigdef=_DEFAULTS,
        )
    except OSError:
        os.close(write_end)
        return None
    finally:
        os.close(read_end)
    _current = Early(pid, write_end, tuple(argv), dict(env))
    return pid


def running() -> int | None:
    """The pid of the Node process at the gate, if one was started."""
    return _current.pid if _current is not None else None


def take(command: Sequence[str], env: Mapping[str, str]) -> tuple[Early | None, str | None]:
    """The Node process at the gate, if there is one, it is still alive, and it was started with `command` and
    `env`; else None (exec Directus instead) and, if one was started, why it is not used (it is killed and reaped)."""
    global _current
    early, _current = _current, None
    if early is None:
        return None, None
    if early.command != tuple(command) or early.env != dict(env):
        kill(early)
        return None, "started with another command or environment than Directus gets now"
    try:
        pid, status = os.waitpid(early.pid, os.WNOHANG)
    except ChildProcessError:
        pid, status = early.pid, 0
    if pid == 0:
        return early, None
    os.close(early.gate)
    return (
        None,
        f"Node ended while it loaded Directus's modules (exit status {os.waitstatus_to_exitcode(status)})",
    )


def cancel() -> None:
    """Kill and reap the Node process at the gate, if any: the boot ends without Directus."""
    global _current
    early, _current = _current, None
    if early is not None:
        kill(early)


def kill(early: Early) -> None:
    """Kill and reap `early` (SIGKILL: it must do nothing more, not even shut down)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(early.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(early.pid, 0)
    os.close(early.gate)


def go(early: Early) -> None:
    """Let the Node process at the gate run Directus (it may have ended meanwhile: its status then tells)."""
    with contextlib.suppress(OSError):
        os.write(early.gate, b"go\n")
    os.close(early.gate)
