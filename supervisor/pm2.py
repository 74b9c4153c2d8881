"""`PM2_INSTANCES` above 1: `start` runs that many Directus workers through `pm2-runtime` in cluster mode, as the
official Directus image does (its CMD ends in `pm2-runtime start ecosystem.config.cjs`).

The supervisor starts `pm2-runtime start supervisor/pm2.config.cjs`, a copy of the image's ecosystem file that reads
the same `PM2_*` variables; the Directus entry it runs is the supervisor's own resolved Directus command, handed over
in `SUPERVISOR_PM2_APP`. Everything is checked before the first phase runs (`plan`), so a missing pm2 or a command
pm2 cannot run in cluster mode is an exit 2 at start-up, not after the migrations.

What pm2-runtime does with signals (pm2 7.0.4, lib/binaries/Runtime4Docker.js), which supervisor.pid1 builds on:
- TERM or INT: it sends each worker SIGINT, SIGKILLs any still running after `kill_timeout` (`PM2_KILL_TIMEOUT`,
  1600 ms by default) and exits 0. So a stopped group exits 0, not Directus's 143.
- HUP, QUIT and USR2 end pm2-runtime by their default action without stopping its workers; the resident loop
  therefore turns HUP and QUIT into TERM for pm2-runtime and sends USR1, USR2 and WINCH to the workers themselves.
- With `PM2_AUTO_RESTART` not `true` (the default), once no worker is left it exits 2 (after about 10 s); an app
  that fails to start (a bad config) makes it exit 0, which is why the entry is checked here first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import ConfigError

__all__ = ["APP_VARIABLE", "CONFIG", "Pm2Launch", "parse_instances", "plan", "warnings"]

CONFIG = Path(__file__).with_name("pm2.config.cjs")
APP_VARIABLE = "SUPERVISOR_PM2_APP"  # read and deleted by pm2.config.cjs
_COUNT = re.compile(r"^[0-9]+$", re.ASCII)
# Node options whose value may follow as the next word (`--import x`), so that word is not the script. (V8's
# options, such as --max-old-space-size, take theirs only after `=`.)
_NODE_OPTIONS_WITH_VALUE = frozenset(
    {"-r", "--require", "--import", "--loader", "--experimental-loader", "-C", "--conditions", "--env-file",
     "--title", "--input-type", "--inspect-port"}
)  # fmt: skip
_NODE_EVAL = frozenset({"-e", "--eval", "-p", "--print", "-", "-i", "--interactive", "--test"})


def parse_instances(raw: str | None) -> int | str:
    """`PM2_INSTANCES`: unset or empty is 1 (no pm2); a whole number from 1 up; `max` (one worker per CPU, as pm2
    counts them). pm2 itself reads 0 as max, -N as "CPUs minus N" and anything unreadable as max; those are refused
    here (exit 2) rather than guessed."""
    if raw is None or not raw.strip():
        return 1
    value = raw.strip()
    if value.lower() == "max":
        return "max"
    if _COUNT.match(value) and int(value) >= 1:
        return int(value)
    digits = value.lstrip("+-")
    if _COUNT.match(digits) and int(digits) == 0:
        hint = "pm2 would read 0 as one worker per CPU: write max if that is meant"
    elif _COUNT.match(digits) and value.startswith("-"):
        hint = (
            "pm2 would read -N as one worker per CPU less N, which depends on the host: give the count itself"
        )
    else:
        hint = "give a whole number of Directus workers from 1 up, or max"
    raise ConfigError(
        f"PM2_INSTANCES={raw!r} is not a number of workers: {hint} (1 or unset: Directus runs without pm2)"
    )


@dataclass(frozen=True, slots=True)
class Pm2Launch:
    """How to start the group: the argv to exec and the app handed to pm2.config.cjs."""

    argv: tuple[str, ...]
    script: str
    args: tuple[str, ...]
    node_args: tuple[str, ...]
    instances: int | str

    def app_json(self) -> str:
        """The value of `SUPERVISOR_PM2_APP`."""
        return json.dumps(
            {"script": self.script, "args": list(self.args), "node_args": list(self.node_args),
             "instances": self.instances}
        )  # fmt: skip


def plan(directus_cmd: tuple[str, ...], instances: int | str, env: Mapping[str, str]) -> Pm2Launch:
    """The pm2-runtime command line for `directus_cmd start` in `instances` cluster workers; raises `ConfigError`
    (exit 2) for anything that would keep the group from starting. Called at start-up, before any phase, and
    again just before the exec."""
    mode = (env.get("PM2_EXEC_MODE") or "cluster").strip()
    if mode != "cluster":
        raise ConfigError(
            f"PM2_EXEC_MODE={mode!r} is not supported: with PM2_INSTANCES={instances} the supervisor runs Directus "
            "in pm2's cluster mode only (workers sharing one port); unset PM2_EXEC_MODE or set it to cluster"
        )
    runtime = shutil.which("pm2-runtime", path=env.get("PATH", os.defpath))
    node, node_args, script, args = _node_entry(directus_cmd, env, instances)
    if runtime is None:
        raise ConfigError(_missing_pm2(instances, script), error_code="PM2_MISSING")
    _check_home(env)
    # pm2-runtime is a Node script; run it with the Node that the Directus command names, so the workers (forked
    # from it by Node's cluster module) run on that Node too, as `node …/run.js` alone would.
    real = os.path.realpath(runtime)
    argv = (node, real) if node and _is_node_script(real) else (runtime,)
    return Pm2Launch(
        argv=(*argv, "start", str(CONFIG)),
        script=script,
        args=(*args, "start"),
        node_args=node_args,
        instances=instances,
    )


def warnings(env: Mapping[str, str], stop_timeout: float) -> list[tuple[str, dict[str, object]]]:
    """Settings that work against each other: pm2 waits `PM2_KILL_TIMEOUT` (1600 ms unless set) for a worker to stop
    before its own SIGKILL, and the supervisor SIGKILLs the whole group after its stop timeout."""
    raw = (env.get("PM2_KILL_TIMEOUT") or "").strip()
    if _COUNT.match(raw) and int(raw) / 1000 >= stop_timeout:
        return [
            ("pm2.kill_timeout_too_long", {
                "pm2_kill_timeout_ms": int(raw), "stop_timeout_s": stop_timeout,
                "hint": "the supervisor SIGKILLs every worker at SUPERVISOR_STOP_TIMEOUT, before pm2's own SIGKILL "
                "and before Directus has drained; set PM2_KILL_TIMEOUT below it",
            })
        ]  # fmt: skip
    return []


def _node_entry(
    cmd: tuple[str, ...], env: Mapping[str, str], instances: int | str
) -> tuple[str | None, tuple[str, ...], str, tuple[str, ...]]:
    """(node, node flags, script, arguments) of the Directus command; cluster mode forks Node workers from a
    script, so a command that is neither `node [FLAGS] SCRIPT …` nor a Node script on PATH is refused."""
    shown = " ".join(cmd)
    path = env.get("PATH", os.defpath)
    if os.path.basename(cmd[0]) in ("node", "nodejs"):
        node = shutil.which(cmd[0], path=path) or cmd[0]
        i = 1
        flags: list[str] = []
        while i < len(cmd) and cmd[i].startswith("-"):
            if cmd[i] in _NODE_EVAL or cmd[i] == "--":
                break
            flags.append(cmd[i])
            if cmd[i] in _NODE_OPTIONS_WITH_VALUE and i + 1 < len(cmd):
                flags.append(cmd[i + 1])
                i += 1
            i += 1
        if i >= len(cmd) or cmd[i] in _NODE_EVAL or cmd[i] == "--":
            raise ConfigError(_not_a_script(instances, shown, "names no script for Node to run"))
        script = os.path.abspath(cmd[i])
        if not os.path.isfile(script):
            raise ConfigError(
                _not_a_script(instances, shown, f"runs {cmd[i]}, which is not a file (from {os.getcwd()})")
            )
        return node, tuple(flags), script, cmd[i + 1 :]
    found = shutil.which(cmd[0], path=path) if os.sep not in cmd[0] else cmd[0]
    if found is None or not os.path.isfile(found):
        raise ConfigError(_not_a_script(instances, shown, f"runs {cmd[0]}, which is not found"))
    real = os.path.realpath(found)
    if not _is_node_script(real):
        raise ConfigError(_not_a_script(instances, shown, f"runs {real}, which is not a Node script"))
    return None, (), real, cmd[1:]


def _check_home(env: Mapping[str, str]) -> None:
    """pm2 keeps its sockets, pid files and log files in PM2_HOME (default `$HOME/.pm2`); where it cannot create
    them, pm2-runtime hangs at start-up, neither serving nor exiting (tried with pm2 7.0.4), so refuse up front."""
    home = env.get("PM2_HOME") or (os.path.join(env["HOME"], ".pm2") if env.get("HOME") else None)
    if home is None:
        raise ConfigError(
            "PM2_INSTANCES is set but neither PM2_HOME nor HOME is: pm2 keeps its state in PM2_HOME (default "
            "$HOME/.pm2); set PM2_HOME to a writable folder"
        )
    existing = os.path.abspath(home)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not (os.path.isdir(existing) and os.access(existing, os.W_OK | os.X_OK)):
        what = "PM2_HOME" if env.get("PM2_HOME") else "$HOME/.pm2 (PM2_HOME unset)"
        raise ConfigError(
            f"{what}={home} cannot be written: {existing} is not a writable folder, and pm2 keeps its sockets, "
            "pid files and log files there (pm2-runtime would hang at start-up); set PM2_HOME to a writable folder"
        )


def _is_node_script(path: str) -> bool:
    """A file Node runs: a .js/.mjs/.cjs name, or a `#!…node` first line (`directus` on PATH links to cli.js)."""
    if path.endswith((".js", ".mjs", ".cjs")):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"node" in first


def _not_a_script(instances: int | str, shown: str, why: str) -> str:
    return (
        f"PM2_INSTANCES={instances} runs Directus in pm2's cluster mode, which forks Node workers from a script, "
        f"but the Directus command `{shown}` {why}; set SUPERVISOR_DIRECTUS_CMD to "
        "`node /path/to/node_modules/@directus/api/dist/cli/run.js` (or a Node script such as Directus's cli.js), "
        "or unset PM2_INSTANCES"
    )


def _missing_pm2(instances: int | str, script: str) -> str:
    text = (
        f"PM2_INSTANCES={instances} needs pm2-runtime on PATH (the official Directus image installs pm2 globally), "
        "and PATH has none: install pm2 (`npm install --global pm2@7`) or put the folder that holds pm2-runtime "
        "on PATH, or unset PM2_INSTANCES to run a single Directus without pm2"
    )
    head, sep, _ = script.rpartition(f"{os.sep}node_modules{os.sep}")
    bundled = os.path.join(head, "node_modules", ".bin", "pm2-runtime")
    if sep and os.path.isfile(bundled):
        text += (
            f"; this Directus install ships one (@directus/api depends on pm2): {os.path.dirname(bundled)}"
        )
    return text
