"""Rendering `status` and `plan` for people (a table) and for tools (`--json` on stdout, alone)."""

from __future__ import annotations

import json
import sys
from typing import Any

from phases.base import PENDING_EXIT

__all__ = ["plan_check", "print_plan", "print_status"]


def print_status(report: dict[str, Any], *, as_json: bool) -> None:
    """`status`: a table of file counts per SQL phase, a line per Directus phase, then the files in question."""
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    cols = ("applied", "pending", "rerun", "changed", "half_applied", "orphaned")
    lines = [f"{'PHASE':<14}" + "".join(f"{c.upper():>14}" for c in cols)]
    details: list[str] = []
    for p in report["phases"]:
        if "applied" not in p:
            lines.append(f"{p['phase']:<14}  {_phase_summary(p)}")
            continue
        lines.append(f"{p['phase']:<14}" + "".join(f"{len(p.get(c, ())):>14}" for c in cols))
        for c in cols[1:]:
            for item in p.get(c, ()):
                name = (
                    item["file"] + f" ({item['done']}/{item['total']} statements)"
                    if isinstance(item, dict)
                    else f"{item} ({_RERUN})"
                    if c == "rerun"
                    else item
                )
                details.append(f"  {c:<13} {p['phase']:<12} {name}")
    history = [
        f"  {p['phase']:<12} {h['file']:<40} {h['applied_at'] or '?':<33} {h['applied_by'] or '?':<24} "
        + (
            f"{h['duration_ms']} ms"
            if h["duration_ms"] is not None
            else "baselined"
            if h.get("baselined")
            else "?"
        )
        for p in report["phases"]
        for h in p.get("applied_files", [])
    ]
    if history:
        history.insert(
            0, f"  {'PHASE':<12} {'APPLIED FILE':<40} {'APPLIED AT':<33} {'APPLIED BY':<24} DURATION"
        )
    out = _ledger_line(report) + "\n".join(lines)
    for block in (details, history, _backups(report)):
        out += "\n\n" + "\n".join(block) if block else ""
    out += "\n"
    sys.stdout.write(out)


def _backups(report: dict[str, Any]) -> list[str]:
    """The copies an allowed destructive apply kept (supervisor.backup), one line each."""
    lines = [
        f"  {b['backup']:<60} {b['created_at']:<33} {b['kind']:<7} {b['source']:<36} {b['rows']} row(s)"
        + ("" if b["present"] else "  MISSING (dropped by hand? delete its index row)")
        for b in report.get("backups", [])
    ]
    if lines:
        lines.insert(0, f"  {'BACKUP':<60} {'KEPT AT':<33} {'KIND':<7} {'SOURCE':<36} ROWS")
        lines.append(
            "  restore SQL: SELECT backup, restore_sql FROM supervisor_backup.backups;  (docs/operations.md)"
        )
    if report.get("backups_error"):
        lines.append(f"  backups: {report['backups_error']}")
    return lines


def print_plan(report: dict[str, Any], *, as_json: bool) -> None:
    """`plan`: per phase, what `migrate` would do, with destructive schema changes marked."""
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out: list[str] = [_ledger_line(report).rstrip("\n")] if "ledger" in report else []
    for p in report["phases"]:
        if "error" in p:
            out.append(f"{p['phase']:<14}cannot tell: {p['error']}")
        elif "pending" in p:
            problems = [f"{len(p[k])} {k.replace('_', '-')}" for k in ("changed", "half_applied") if p[k]]
            rerun, repeatable = p.get("rerun", []), set(p.get("repeatable", []))
            todo = sorted(
                p["pending"] + rerun, key=lambda n: n.encode()
            )  # folder order: the order they run in
            head = f"{len(todo)} file(s) to apply" if todo else "nothing to apply"
            out.append(
                f"{p['phase']:<14}{head}" + (f"; refused first: {', '.join(problems)}" if problems else "")
            )
            out += [
                f"{'':<16}{name}"
                + (f" ({_RERUN})" if name in rerun else " (repeatable)" if name in repeatable else "")
                for name in todo
            ]
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
                if c.get("backup"):
                    out.append(f"{'':<18}backup: {c['backup']}")
            if p.get("refused"):
                out.append(f"{'':<16}REFUSED without SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA (exit 7)")
        check = p.get("check") or {}
        if "pending" in p and check.get("exit_code") not in (None, 0, PENDING_EXIT):
            out.append(
                f"{'':<16}REFUSED (exit {check['exit_code']}, {check['error_code']}): {check['reason']}"
            )
    if "check" in report:
        c = report["check"]
        head = {0: "nothing to apply", PENDING_EXIT: "migrate would apply something"}.get(
            c["exit_code"], f"migrate would refuse ({c['error_code']}, in {c['phase']})"
        )
        out.append(f"\ncheck: exit {c['exit_code']}: {head}")
    sys.stdout.write("\n".join(out) + "\n")


_RERUN = "repeatable: changed, will re-run"


def plan_check(report: dict[str, Any]) -> dict[str, Any]:
    """`plan --check`'s verdict from a deep report: the first refusal in phase order (where `migrate` would stop,
    with its own exit code), else 9 when anything would be applied or run, else 0."""
    verdicts = [{**p["check"], "phase": p["phase"]} for p in report["phases"]]
    refusal = next((v for v in verdicts if v["exit_code"] not in (0, PENDING_EXIT)), None)
    if refusal:
        return refusal
    pending = [v for v in verdicts if v["exit_code"] == PENDING_EXIT]
    ledger = report.get("ledger") or {}
    if ledger.get("moves_to"):  # migrate would move an earlier release's ledger into the supervisor's schema
        pending.insert(
            0, {"phase": None, "reason": f"the ledger {ledger['table']} moves to {ledger['moves_to']}"}
        )
    if pending:
        reason = "; ".join(f"{v['phase']}: {v['reason']}" if v["phase"] else v["reason"] for v in pending)
        return {
            "exit_code": PENDING_EXIT,
            "error_code": "PENDING",
            "reason": reason,
            "phase": pending[0]["phase"],
        }
    return {"exit_code": 0, "error_code": None, "reason": "nothing to apply", "phase": None}


def _ledger_line(report: dict[str, Any]) -> str:
    """Where the ledger is: `ledger: schema.table`, with a note when it is still in an earlier release's place."""
    ledger = report.get("ledger")
    if not ledger:
        return ""
    return f"ledger: {ledger['table']}" + (f" ({ledger['note']})" if ledger.get("note") else "") + "\n\n"


def _phase_summary(p: dict[str, Any]) -> str:
    if "error" in p:
        return f"unknown: {p['error']}"
    if p["phase"] == "bootstrap":
        would = p.get("would_run")
        return f"would run: {would}" if would else f"done for Directus {p.get('bootstrapped_version')}"
    return f"{p.get('state')} (snapshot {p.get('snapshot')}, Directus {p.get('directus_version')})"
