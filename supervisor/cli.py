"""Command line: `run`, `migrate`, `status`, `plan`, `lint`. Parses flags and env into `Settings`, runs the verb,
and turns every outcome into one final log line and a documented exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from supervisor import log as logsetup
from supervisor.errors import ConfigError, Interrupted, SupervisorError
from supervisor.settings import Settings

__all__ = ["build_parser", "main"]

TERMINATION_LOG = "/dev/termination-log"

# (flag, variable, help)
_SETTINGS_FLAGS = (
    ("--db-init-dir", "SUPERVISOR_DB_INIT_DIR", "pre-schema SQL folder (default: db-init)"),
    ("--db-init-post-dir", "SUPERVISOR_DB_INIT_POST_DIR", "post-schema SQL folder (default: db-init-post)"),
    ("--snapshot", "SUPERVISOR_SNAPSHOT", "Directus schema snapshot (default: snapshots/schema.yaml)"),
    (
        "--directus-cmd",
        "SUPERVISOR_DIRECTUS_CMD",
        "Directus CLI command, split like a shell line (default: `directus` on PATH, else `node cli.js`)",
    ),
    ("--wait-timeout", "SUPERVISOR_WAIT_TIMEOUT", "total time to wait for Postgres (default: 60s)"),
    ("--lock-timeout", "SUPERVISOR_LOCK_TIMEOUT", "time to wait for a phase lock (default: 600s)"),
    (
        "--stop-timeout",
        "SUPERVISOR_STOP_TIMEOUT",
        "after forwarding SIGTERM, when to SIGKILL Directus (default: 25s)",
    ),
    (
        "--tracking-table",
        "SUPERVISOR_TRACKING_TABLE",
        "tracking table, may be schema-qualified (default: migrations_applied)",
    ),
    (
        "--log-format",
        "SUPERVISOR_LOG_FORMAT",
        "auto, json or console (default: auto: json unless stderr is a TTY)",
    ),
    ("--log-level", "SUPERVISOR_LOG_LEVEL", "debug, info, warning or error (default: info)"),
)
_SWITCHES = (
    (
        "--allow-destructive-schema",
        "SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA",
        "let schema-apply drop collections, fields or indexes",
    ),
    ("--force", "SUPERVISOR_FORCE", "do not skip schema-apply or bootstrap on a warm boot"),
)
_EPILOG = """\
Database: the supervisor reads Directus's own variables: DB_CLIENT (pg, postgres or postgresql), DB_HOST, DB_PORT,
DB_DATABASE, DB_USER, DB_PASSWORD, or DB_CONNECTION_STRING; DB_SSL__*; DB_SEARCH_PATH; and X_FILE for any of them
(read verbatim, as Directus does). Every flag above has the SUPERVISOR_* variable shown in its help; flags win.

Exit codes: 0 success; 1 internal error (a bug); 2 usage or configuration; 3 database unreachable or login
rejected; 4 migration failed (rolled back); 5 integrity refusal (changed file, same name in both folders,
half-applied file); 6 lock timeout; 7 schema refusal; 8 Directus CLI step failed; run: Directus's own status, or
128+N when signal N ended it.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree; every setting flag names its environment variable."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("settings (each also read from the variable in brackets)")
    for flag, var, text in _SETTINGS_FLAGS:
        group.add_argument(flag, dest=var, metavar="VALUE", help=f"{text} [{var}]")
    for flag, var, text in _SWITCHES:
        group.add_argument(flag, dest=var, action="store_const", const="1", help=f"{text} [{var}]")

    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
        description="Boot supervisor for Directus on PostgreSQL: wait for Postgres, run pre-schema SQL, apply the "
        "schema snapshot, run post-schema SQL, bootstrap, then start Directus - each step under its own advisory "
        "lock, exactly once across replicas.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, text in (
        ("run", "run the phases, then supervise Directus (the container entrypoint)"),
        ("migrate", "run phases 1-4 then exit (Kubernetes init container, CI dry-runs)"),
    ):
        p = verbs.add_parser(
            verb,
            parents=[common],
            help=text,
            description=text,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sel = p.add_mutually_exclusive_group()
        sel.add_argument("--only", metavar="PHASE", help="run just this phase")
        sel.add_argument("--until", metavar="PHASE", help="stop after this phase")
        if verb == "run":
            sel.add_argument("--from", dest="from_", metavar="PHASE", help="start at this phase")
            p.add_argument(
                "--exec", action="store_true", help="replace the process with Directus after the phases"
            )
    for verb, text in (
        ("status", "per phase: applied, pending, changed, half-applied and orphaned files"),
        ("plan", "what `migrate` would do now, changing nothing"),
        ("lint", "offline checks of the SQL folders and the snapshot, no database"),
    ):
        p = verbs.add_parser(verb, parents=[common], help=text, description=text)
        p.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    return parser


def _termination_log(err: SupervisorError) -> None:
    # Kubernetes shows this file in `kubectl describe pod`: why an init container failed, in one line.
    if os.access(TERMINATION_LOG, os.W_OK):
        first = err.message.split("\n", 1)[0]
        try:
            with open(TERMINATION_LOG, "w", encoding="utf-8") as f:
                f.write(f"{err.error_code} (exit {err.code}): {first}"[:4000] + "\n")
        except OSError:
            pass


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Parse, run, and return the exit code; logs exactly one final line."""
    env = os.environ if env is None else env
    args = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k.startswith("SUPERVISOR_")}
    fmt = (flags.get("SUPERVISOR_LOG_FORMAT") or env.get("SUPERVISOR_LOG_FORMAT") or "auto").lower()
    level = (flags.get("SUPERVISOR_LOG_LEVEL") or env.get("SUPERVISOR_LOG_LEVEL") or "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        level = "info"
    chosen = logsetup.configure(fmt if fmt in ("json", "console") else "auto", level)
    log = logsetup.get_logger()
    try:
        from phases.registry import select_phases

        names = select_phases(args.verb, args.only, getattr(args, "from_", None), args.until) if args.verb in (
            "run", "migrate") else []  # fmt: skip
        settings = Settings.load(env, flags, need_db=args.verb != "lint" and names != ["start"])
        logsetup.add_secrets(settings.secrets())
        for event, fields in settings.warnings:
            log.warning(event, **fields)
        result = _run_async(
            lambda child: _dispatch(args, names, settings, child, log), settings.stop_timeout, log
        )
    except SupervisorError as e:
        first, _, rest = e.message.partition("\n")
        if chosen == "console" and rest:
            # A console reader gets the snippet as lines, not as an escaped string; JSON keeps it in one field.
            log.error("supervisor.failed", error=first, exit_code=e.code, error_code=e.error_code)
            sys.stderr.write(logsetup.redact_text(rest) + "\n")
        else:
            log.error("supervisor.failed", error=e.message, exit_code=e.code, error_code=e.error_code)
        _termination_log(e)
        return e.code
    except Exception as e:
        log.error(
            "supervisor.failed",
            error=f"{type(e).__name__}: {e}",
            exit_code=1,
            error_code="INTERNAL",
            hint="this is a bug; rerun with SUPERVISOR_LOG_LEVEL=debug for the traceback and report it",
        )
        log.debug("supervisor.traceback", exc_info=True)
        _termination_log(SupervisorError(f"{type(e).__name__}: {e}"))
        return 1
    return result


def _run_async(work: Callable[[Any], Awaitable[int]], stop_timeout: float, log: Any) -> int:
    """Run `work(child)` on anyio's asyncio backend with SIGTERM/SIGINT routed: while Directus runs they are
    forwarded to it (SIGKILL after `stop_timeout`); before that they cancel the boot cleanly (`Interrupted`)."""
    import anyio

    from phases.start import Child

    child = Child()
    received: list[int] = []

    async def kill_after(proc: Any) -> None:
        await anyio.sleep(stop_timeout)
        if proc.returncode is None:
            log.warning("directus.killed", pid=proc.pid, stop_timeout_s=stop_timeout)
            proc.kill()

    async def wrapper() -> int:
        result = 0
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            try:
                async with anyio.create_task_group() as tg:

                    async def watch() -> None:
                        async for signum in signals:
                            proc = child.process
                            if proc is not None and proc.returncode is None:
                                proc.send_signal(signum)
                                log.info("signal.forwarded", signal=signal.Signals(signum).name, pid=proc.pid)
                                if not child.stopping:
                                    child.stopping = True
                                    tg.start_soon(kill_after, proc)
                                continue
                            received.append(signum)
                            tg.cancel_scope.cancel()
                            return

                    tg.start_soon(watch)
                    result = await work(child)
                    tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                raise _first_error(group) from None
        if received:
            raise Interrupted(received[0], signal.Signals(received[0]).name)
        return result

    return anyio.run(wrapper)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a task group: our own first, else the first of any kind."""
    flat: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        e = stack.pop(0)
        if isinstance(e, BaseExceptionGroup):
            stack[:0] = list(e.exceptions)
        else:
            flat.append(e)
    ours = [e for e in flat if isinstance(e, SupervisorError)]
    return (ours or flat)[0]


async def _dispatch(
    args: argparse.Namespace, names: list[str], settings: Settings, child: Any, log: Any
) -> int:
    from phases.registry import build_phases
    from supervisor.runner import collect_status, run_phases

    phases = build_phases(settings)
    if args.verb in ("run", "migrate"):
        outcomes: dict[str, str] = {}
        if any(n != "start" for n in names):
            outcomes = await run_phases(settings, [phases[n] for n in names if n != "start"], log)
        if "start" not in names:
            log.info("supervisor.finished", verb=args.verb, outcomes=outcomes, exit_code=0)
            return 0
        from phases.start import start_directus

        code = await start_directus(settings, child, log, replace=args.exec)
        log.info("supervisor.finished", verb=args.verb, outcomes=outcomes, exit_code=code)
        return code
    if args.verb in ("status", "plan"):
        report = await collect_status(settings, list(phases.values()), log, deep=args.verb == "plan")
        (_print_plan if args.verb == "plan" else _print_status)(report, as_json=args.json)
        return 0
    raise ConfigError(f"`{args.verb}` is not built yet in this version", error_code="VERB_NOT_BUILT")


def _print_status(report: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    cols = ("applied", "pending", "changed", "half_applied", "orphaned")
    lines = [f"{'PHASE':<14}" + "".join(f"{c.upper():>14}" for c in cols)]
    details: list[str] = []
    for p in report["phases"]:
        if "applied" not in p:
            lines.append(f"{p['phase']:<14}  {_phase_summary(p)}")
            continue
        lines.append(f"{p['phase']:<14}" + "".join(f"{len(p[c]):>14}" for c in cols))
        for c in cols[1:]:
            for item in p[c]:
                name = (
                    item["file"] + f" ({item['done']}/{item['total']} statements)"
                    if isinstance(item, dict)
                    else item
                )
                details.append(f"  {c:<13} {p['phase']:<12} {name}")
    out = "\n".join(lines) + ("\n\n" + "\n".join(details) if details else "") + "\n"
    sys.stdout.write(out)


def _print_plan(report: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out: list[str] = []
    for p in report["phases"]:
        if "error" in p:
            out.append(f"{p['phase']:<14}cannot tell: {p['error']}")
        elif "pending" in p:
            problems = [f"{len(p[k])} {k.replace('_', '-')}" for k in ("changed", "half_applied") if p[k]]
            head = f"{len(p['pending'])} file(s) to apply" if p["pending"] else "nothing to apply"
            out.append(
                f"{p['phase']:<14}{head}" + (f"; refused first: {', '.join(problems)}" if problems else "")
            )
            out += [f"{'':<16}{name}" for name in p["pending"]]
        elif not p.get("would_run"):
            out.append(f"{p['phase']:<14}nothing to do")
        else:
            out.append(f"{p['phase']:<14}runs: {p['would_run']}")
            if p.get("refusal"):
                out.append(f"{'':<16}REFUSED: {p['refusal']}")
            if p.get("note"):
                out.append(f"{'':<16}{p['note']}")
            for c in p.get("diff") or []:
                mark = f"  ! {c['destructive']}{c['rows_at_risk']}" if c["destructive"] else ""
                out.append(f"{'':<16}{c['change']}{mark}")
            if p.get("refused"):
                out.append(f"{'':<16}REFUSED without SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA (exit 7)")
    sys.stdout.write("\n".join(out) + "\n")


def _phase_summary(p: dict[str, Any]) -> str:
    if "error" in p:
        return f"unknown: {p['error']}"
    if p["phase"] == "bootstrap":
        would = p.get("would_run")
        return f"would run: {would}" if would else f"done for Directus {p.get('bootstrapped_version')}"
    return f"{p.get('state')} (snapshot {p.get('snapshot')}, Directus {p.get('directus_version')})"
