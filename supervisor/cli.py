"""Command line: `run`, `migrate`, `status`, `plan`, `lint`, `baseline`. Parses flags and env into `Settings`, runs the verb,
and turns every outcome into one final log line and a documented exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from supervisor import early
from supervisor import log as logsetup
from supervisor.errors import ConfigError, SupervisorError
from supervisor.settings import LOG_LEVELS, Settings, parse_log_level
from supervisor.signals import hand_over, run_routed

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
        (
            "Directus CLI command, split like a shell line (default: node …/@directus/api/dist/cli/run.js of the "
            "Directus found as `directus` on PATH, else as ./cli.js: its CLI entry without the npm update check)"
        ),
    ),
    ("--wait-timeout", "SUPERVISOR_WAIT_TIMEOUT", "total time to wait for Postgres (default: 60s)"),
    ("--lock-timeout", "SUPERVISOR_LOCK_TIMEOUT", "time to wait for a phase lock (default: 600s)"),
    (
        "--stop-timeout",
        "SUPERVISOR_STOP_TIMEOUT",
        "after forwarding SIGTERM, when to SIGKILL Directus (default: 25s)",
    ),
    (
        "--step-timeout",
        "SUPERVISOR_STEP_TIMEOUT",
        "a Directus CLI step running longer is stopped, exit 8 (default: 600s)",
    ),
    (
        "--tracking-table",
        "SUPERVISOR_TRACKING_TABLE",
        "tracking table: name or schema.name, folded to lower case (default: supervisor.migrations_applied, "
        + "and an earlier ledger found as migrations_applied on the search path is moved there)",
    ),
    (
        "--log-format",
        "SUPERVISOR_LOG_FORMAT",
        "auto, json or console (default: auto: json unless stderr is a TTY)",
    ),
    ("--log-level", "SUPERVISOR_LOG_LEVEL", "debug, info, warning or error (default: info)"),
    (
        "--node-compile-cache",
        "SUPERVISOR_NODE_COMPILE_CACHE",
        (
            "folder handed to Directus as NODE_COMPILE_CACHE (Node >= 22.1), unless NODE_COMPILE_CACHE is set; "
            "off disables it (default: $XDG_CACHE_HOME or ~/.cache, then /directus-supervisor/node-compile-cache)"
        ),
    ),
    (
        "--out-of-order",
        "SUPERVISOR_OUT_OF_ORDER",
        "a new SQL file sorting before an applied one: warn (apply it, log a warning) or refuse (exit 5) (default: warn)",
    ),
)
_SWITCHES = (
    (
        "--allow-destructive-schema",
        "SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA",
        "let schema-apply drop collections, fields or indexes (copied into supervisor_backup first)",
    ),
    ("--force", "SUPERVISOR_FORCE", "do not skip schema-apply or bootstrap on a warm boot"),
)
_EPILOG = """\
Database: the supervisor reads Directus's own variables: DB_CLIENT (pg, postgres or postgresql), DB_HOST, DB_PORT,
DB_DATABASE, DB_USER, DB_PASSWORD, or DB_CONNECTION_STRING; DB_SSL__*; DB_SEARCH_PATH; and X_FILE for any of them
(read verbatim, as Directus does). Every flag above has the SUPERVISOR_* variable shown in its help; flags win.

Exit codes: 0 success; 1 internal error (a bug); 2 usage or configuration (a transaction-mode pooler included);
3 database unreachable, login rejected, a privilege missing (the GRANT is named), or connection lost (a running
Directus step is stopped); 4 migration failed (rolled back) or refused before running; 5 integrity refusal
(changed file, same name in both folders, half-applied file, a file out of order under --out-of-order refuse,
an earlier ledger in public beside ours);
6 lock timeout; 7 schema refusal; 8 Directus CLI step failed, timed out or printed a dry-run the supervisor cannot
read; run: Directus's own status, or 128+N when signal N ended it. plan --check: 0 nothing to apply,
9 migrate would apply something, else the code migrate would refuse with.

PM2_INSTANCES (no flag): above 1, or max, `start` runs that many Directus workers through pm2-runtime (on PATH) in
cluster mode, as the official image does; the exit status is then pm2-runtime's (0 after a stop by signal).

SUPERVISOR_EARLY_START (no flag; default on): run starts Node early, loading Directus's modules while the phases
run, and starts Directus from it once they are done (through a cold boot's steps only with 1 GiB of memory free;
killed unused on a failure); off execs Directus after the phases.
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
                "--exec",
                action="store_true",
                help="replace the process with Directus after the phases (refused as PID 1: exit 2)",
            )
    for verb, text in (
        (
            "status",
            "per phase: applied, pending, re-run (repeatable, changed), changed, half-applied and orphaned files",
        ),
        ("plan", "what `migrate` would do now, changing nothing"),
        ("lint", "offline checks of the SQL folders and the snapshot, no database"),
    ):
        p = verbs.add_parser(verb, parents=[common], help=text, description=text)
        p.add_argument("--json", action="store_true", help="print a JSON report on stdout")
        if verb == "plan":
            p.add_argument(
                "--check",
                action="store_true",
                help="for CI: exit 0 when migrate would do nothing, 9 when it would apply something, and the "
                "refusal's own code (2, 4, 5, 7, 8, ...) when it would refuse; --force plans as migrate --force",
            )
    p = verbs.add_parser(
        "baseline",
        parents=[common],
        help="record pending SQL files as applied without running them (adopting an existing database)",
        description="Record pending SQL files as applied without running them, under each SQL phase's lock, for a "
        "database whose objects already exist. Order is the boot order: the pre-schema folder, then the "
        "post-schema folder, each sorted byte-wise. A changed or half-applied file is refused (exit 5) as migrate "
        "refuses it. Prints what it recorded and what was already applied; a second run records nothing.",
    )
    p.add_argument(
        "--until",
        dest="until_file",
        metavar="FILE",
        help="record only up to and including FILE (a basename as the ledger keys it, or a path to a file of "
        "either folder; FILE in the post-schema folder includes every pre-schema file); a FILE in neither "
        "folder is refused (exit 2), nothing recorded",
    )
    return parser


TERMINATION_LOG_LIMIT = 4096  # bytes: Kubernetes keeps no more of a container's termination message


def termination_message(err: SupervisorError) -> str:
    """What `/dev/termination-log` gets: the whole reason (the changed files and their checksums, every destructive
    item), redacted like the log lines, cut at a line end to fit Kubernetes' 4 KB with a note saying so."""
    text = logsetup.redact_text(f"{err.error_code} (exit {err.code}): {err.message}").rstrip("\n") + "\n"
    data = text.encode("utf-8")
    if len(data) <= TERMINATION_LOG_LIMIT:
        return text
    note = "... [{} more bytes cut to fit the termination log; the container log has the whole message]\n"
    room = TERMINATION_LOG_LIMIT - len(note.format(len(data)).encode("utf-8"))
    head = data[:room].decode("utf-8", errors="ignore")
    if head.rfind("\n") > room // 2:  # end on a whole line when that keeps most of the text
        head = head[: head.rfind("\n") + 1]
    else:
        head += "\n"
    return head + note.format(len(data) - len(head.encode("utf-8")))


def _termination_log(err: SupervisorError) -> None:
    # Kubernetes shows this file in `kubectl describe pod`: why an init container failed.
    if os.access(TERMINATION_LOG, os.W_OK):
        try:
            with open(TERMINATION_LOG, "w", encoding="utf-8") as f:
                f.write(termination_message(err))
        except OSError:
            pass


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Parse, run, and return the exit code; logs exactly one final line."""
    env = os.environ if env is None else env
    args = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k.startswith("SUPERVISOR_")}
    fmt = (flags.get("SUPERVISOR_LOG_FORMAT") or env.get("SUPERVISOR_LOG_FORMAT") or "auto").lower()
    level_source = "--log-level" if flags.get("SUPERVISOR_LOG_LEVEL") else "SUPERVISOR_LOG_LEVEL"
    level_raw = flags.get("SUPERVISOR_LOG_LEVEL") or env.get("SUPERVISOR_LOG_LEVEL")
    level = (level_raw or "info").strip().lower()
    # A bad level is refused below (exit 2), once logging is up at info to say so.
    chosen = logsetup.configure(
        fmt if fmt in ("json", "console") else "auto", level if level in LOG_LEVELS else "info"
    )
    log = logsetup.get_logger()
    if (pid := early.running()) is not None:
        log.info("directus.early_start", pid=pid, until="the phases find nothing to do")
    elif early.failed is not None:
        log.warning(
            "directus.early_start_failed",
            error=early.failed,
            hint="the boot goes on; Directus is started the usual way once the phases are done",
        )
    try:
        parse_log_level(level_source, level_raw)
        from phases.registry import select_phases

        names = select_phases(args.verb, args.only, getattr(args, "from_", None), args.until) if args.verb in (
            "run", "migrate") else []  # fmt: skip
        if getattr(args, "exec", False) and os.getpid() == 1 and "start" in names:
            raise ConfigError(
                "run --exec is refused as PID 1: Directus would become PID 1, which ignores the SIGTERM that "
                "Directus re-raises on itself after shutting down, so every stop would wait for SIGKILL; drop "
                "--exec (the supervisor then stays as a small PID 1 that forwards signals and reaps)",
                error_code="EXEC_AS_PID1",
            )
        settings = Settings.load(env, flags, need_db=args.verb != "lint" and names != ["start"])
        logsetup.add_secrets(settings.secrets())
        for event, fields in settings.warnings:
            log.warning(event, **fields)
        if "start" in names and settings.pm2_instances != 1:  # a missing pm2 fails now, not after the phases
            from supervisor import pm2

            pm2.plan(settings.directus_argv(), settings.pm2_instances, env)
            for event, details in pm2.warnings(env, settings.stop_timeout):
                log.warning(event, **details)
        result = run_routed(lambda: _dispatch(args, names, settings, log), log)
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
    finally:
        early.cancel()  # the boot ends here without Directus: a Node waiting at its gate is killed
    return result


async def _dispatch(args: argparse.Namespace, names: list[str], settings: Settings, log: Any) -> int:
    from phases.registry import build_phases
    from supervisor.report import plan_check, print_plan, print_status
    from supervisor.runner import collect_status, run_phases

    phases = build_phases(settings)
    if args.verb in ("run", "migrate"):
        outcomes: dict[str, str] = {}
        if any(n != "start" for n in names):
            outcomes = await run_phases(settings, [phases[n] for n in names if n != "start"], log)
        if "start" not in names:
            from supervisor import clock

            log.info("supervisor.finished", verb=args.verb, outcomes=outcomes, exit_code=0, **clock.summary())
            return 0
        from phases.start import exec_directus

        await hand_over()
        exec_directus(settings, log, outcomes=outcomes)
    if args.verb == "baseline":
        from supervisor.baseline import baseline

        return await baseline(settings, args.until_file, log)
    if args.verb in ("status", "plan"):
        report = await collect_status(
            settings, lambda s: list(build_phases(s).values()), log, deep=args.verb == "plan"
        )
        code = 0
        if getattr(args, "check", False):
            report["check"] = plan_check(report)
            code = report["check"]["exit_code"]
            log.info(
                "plan.checked",
                **{k: v.split("\n", 1)[0] if isinstance(v, str) else v for k, v in report["check"].items()},
            )
        (print_plan if args.verb == "plan" else print_status)(report, as_json=args.json)
        return code
    from supervisor.lint import lint

    findings = lint(settings)
    errors = sum(f.severity == "error" for f in findings)
    if args.json:
        payload = {
            "findings": [f.as_dict() for f in findings],
            "errors": errors,
            "warnings": len(findings) - errors,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        lines = [f.render() for f in findings]
        lines.append(f"{errors} error(s), {len(findings) - errors} warning(s)")
        sys.stdout.write("\n".join(lines) + "\n")
    return 1 if errors else 0
