"""Early start: Node loads Directus's modules while the phases run, and starts Directus only once they are done.

Loading Directus's modules is most of a warm `directus start` (about 90% of it on Node 22 with a warm compile cache:
`cli/run.js` imports `cli/index.js`, which imports every command, the server and the app). The worker spawns
`node --import gate.mjs?fd=3 …/cli/run.js start` before it connects; the gate (supervisor/gate.mjs) imports that
module graph and then blocks on a pipe. Evaluating those modules opens no database connection and no port and writes
no file but Node's compile cache (checked with `strace -f` on Directus 12.4.0, Node 22: no connect, bind or listen;
the only network call is a netlink query of the interfaces). Settings that make Node act before the gate exist:
a Redis (`REDIS*`, `*_STORE=redis`: the cache bus subscribes, the rate limiters connect at load time), configured in
the environment or the working directory's `.env`; a `CONFIG_PATH` (not looked into); NODE_OPTIONS that preload a
module, open a debugger port or read another env file. With any of them there is no early start.

- The phases are done (nothing to do on a warm boot; on a cold or upgrade boot, after the SQL files and Directus's
  steps: the loaded modules depend on nothing those change, only on the environment and the files compared in
  `take`): the worker writes `go` to the gate and hands Directus over: it tells the resident
  parent (supervisor.pid1) the pid through the exec pipe and exits; Node, re-parented to the resident parent (PID 1
  or a child subreaper), is supervised from then on exactly as an exec'd Directus is: signals, stop timeout, exit
  status. A stop signal in between ends the worker, and the resident parent sends it on to Directus.
- Anything else (Postgres not answering yet, a failure, a signal): the Node process is killed
  (SIGKILL) and reaped before the worker exits (`cancel`), so nothing ran; if the worker is killed itself, the gate
  reads end of file and kills itself. A Node that ended before the hand-over (an old Node without `--import`, an
  error while loading), or whose `.env` or `*_FILE` secrets changed while it waited, is not used (`take`): Directus
  is exec'd as without an early start.

Only for the default command (`node …/@directus/api/dist/cli/run.js`), without PM2, and only in the fork-split worker
whose resident parent can adopt Node (supervisor.pid1.can_adopt).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
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
    was started with, and the files it read as it loaded (Directus goes on only if they are what `start` would
    use, and unchanged). A plain class: this module is imported before the heavy imports, and dataclasses costs
    milliseconds there."""

    __slots__ = ("command", "env", "files", "gate", "pid")

    def __init__(
        self, pid: int, gate: int, command: tuple[str, ...], env: dict[str, str], files: tuple[object, ...]
    ) -> None:
        self.pid, self.gate, self.command, self.env, self.files = pid, gate, command, env, files


_current: Early | None = None
failed: str | None = None  # why an early start was attempted and failed (logged by supervisor.cli)


def applicable(argv: Sequence[str]) -> bool:
    """Whether `argv` is the default Directus command, `node <…>/@directus/api/dist/cli/run.js`."""
    return len(argv) == 2 and os.path.basename(argv[0]) == "node" and argv[1].endswith(ENTRY_SUFFIX)


def start_guessed(directus_cmd: str | None, compile_cache: str | None, environ: Mapping[str, str]) -> None:
    """In the fork-split worker of `run`, first thing (supervisor.__main__): start Node behind the gate with the
    command and environment that `start` will most likely use, guessed from `--directus-cmd` or
    SUPERVISOR_DIRECTUS_CMD (`directus_cmd`), `--node-compile-cache` or SUPERVISOR_NODE_COMPILE_CACHE
    (`compile_cache`) and PM2_INSTANCES, before settings are parsed and the heavy modules imported. Any doubt: no
    early start. A wrong guess costs nothing but the work: `take` compares both with the real ones."""
    try:
        _start_guessed(directus_cmd, compile_cache, environ)
    except Exception as e:  # noqa: BLE001 - an optimisation must not fail the boot: Directus is exec'd as usual
        global failed
        cancel()
        failed = f"{type(e).__name__}: {e}"  # logged once logging is set up (supervisor.cli)


def _start_guessed(directus_cmd: str | None, compile_cache: str | None, environ: Mapping[str, str]) -> None:
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
    """Whether Node may act on the outside world before the gate: Directus's modules connect to a configured Redis
    as they load (its cache bus subscribes and its rate limiters connect), set in the environment or in the `.env`
    file Directus reads from the working directory; a config file elsewhere (CONFIG_PATH) is not looked into; and
    NODE_OPTIONS can load modules (an APM or OpenTelemetry agent that registers and reports as it loads), open a
    debugger port or read another env file, all before the gate runs."""
    if environ.get("CONFIG_PATH"):
        return True
    if any(flag.startswith(_NODE_OPTIONS_BEFORE_GATE) for flag in environ.get("NODE_OPTIONS", "").split()):
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


# Node options that act before the gate: preloaded modules, loaders, a debugger port, another env file.
_NODE_OPTIONS_BEFORE_GATE = (
    "-r",
    "--require",
    "--import",
    "--loader",
    "--experimental-loader",
    "--inspect",
    "--debug",
    "--env-file",
)


def _read_files(env: Mapping[str, str], cwd: str) -> tuple[tuple[str, int, int, int] | None, ...]:
    """What Directus's modules read from files as they load, as (path, inode, size, mtime): the working directory's
    `.env` and every `*_FILE` secret (DB_PASSWORD_FILE, SECRET_FILE, ...). A sidecar may write or rotate them while
    Node waits at the gate; Directus must then not go on with what it read before."""
    paths = [os.path.join(cwd, ".env"), *(v for k, v in sorted(env.items()) if k.endswith("_FILE") and v)]
    states: list[tuple[str, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            states.append(None)
            continue
        states.append((path, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(states)


def start(argv: Sequence[str], env: Mapping[str, str]) -> int | None:
    """Spawn `argv` + `start` behind the gate; its pid, or None when `node` cannot be found (no early start)."""
    global _current
    node = shutil.which(argv[0], path=env.get("PATH"))
    if node is None:
        return None
    files = _read_files(env, os.getcwd())  # before the spawn: a change from here on is seen
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
    _current = Early(pid, write_end, tuple(argv), dict(env), files)
    return pid


# A Node waiting at the gate holds Directus's modules (about 265 MB resident on Node 20 with Directus 12.4.0) beside
# each Directus step of a cold or upgrade boot (about as much again): it waits through them only with this much
# memory free, else it is killed and Directus is exec'd after the phases.
ROOM_TO_WAIT_MIB = 1024
_MIB = 1024 * 1024


def room_mib(root: str = "/") -> int | None:
    """MiB of memory this process may still use: the least of the system's MemAvailable and what its memory cgroup
    (v2 or v1, found through /proc/self/cgroup, or the cgroup mount's root as a container sees it) leaves under its
    limit; None when none of them can be read. `root` is for tests."""
    free: list[int] = []
    for line in _read(os.path.join(root, "proc/meminfo")).splitlines():
        if line.startswith("MemAvailable:") and line.split()[1].isdigit():
            free.append(int(line.split()[1]) // 1024)
    places = [("sys/fs/cgroup", "memory.max", "memory.current"),
              ("sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes")]  # fmt: skip
    folders = {(os.path.join(root, mount), limit, used) for mount, limit, used in places}
    for line in _read(os.path.join(root, "proc/self/cgroup")).splitlines():
        number, controllers, path = [*line.split(":", 2), "", ""][:3]
        v2 = number == "0" and not controllers
        if v2 or "memory" in controllers.split(","):
            mount, limit, used = places[0] if v2 else places[1]
            folders.add((os.path.join(root, mount, path.lstrip("/")), limit, used))
    for folder, limit, used in folders:
        cap, now = _read(os.path.join(folder, limit)).strip(), _read(os.path.join(folder, used)).strip()
        if cap.isdigit() and now.isdigit():
            free.append(max(0, int(cap) - int(now)) // _MIB)
    return min(free) if free else None


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


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
    if _read_files(env, os.getcwd()) != early.files:
        kill(early)
        return None, "a file Directus read as it loaded (.env or a *_FILE secret) changed since"
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


def cancel() -> int | None:
    """Kill and reap the Node process at the gate, if any (the boot ends without Directus, or waits for Postgres);
    its pid, or None if there was none."""
    global _current
    early, _current = _current, None
    if early is None:
        return None
    kill(early)
    return early.pid


def kill(early: Early) -> None:
    """Kill and reap `early` (SIGKILL: it must do nothing more, not even shut down). The reap is bounded: a Node
    stuck in the kernel (a hung network mount) must not stall the event loop and its lock watcher; one left
    unreaped is reaped by the resident parent once this worker ends."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(early.pid, signal.SIGKILL)
    os.close(early.gate)
    deadline = time.monotonic() + 5.0
    while True:
        try:
            if os.waitpid(early.pid, os.WNOHANG)[0] != 0 or time.monotonic() > deadline:
                return
        except ChildProcessError:
            return
        time.sleep(0.005)


def go(early: Early) -> None:
    """Let the Node process at the gate run Directus (it may have ended meanwhile: its status then tells)."""
    with contextlib.suppress(OSError):
        os.write(early.gate, b"go\n")
    os.close(early.gate)
