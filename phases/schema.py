"""`schema-apply`: `directus schema apply` of the snapshot, guarded and verified.

1. the snapshot must fit (vendor postgres, this Directus version, `systemFields` where needed): else exit 7;
2. Directus installed and migrated first (`bootstrap`, under its own lock);
3. `--dry-run`, parsed strictly: a line the parser cannot read is a refusal (exit 8), never an empty diff; a
   deletion, an index or unique-constraint drop, a primary-key or type change is refused (exit 7) unless
   SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA is set, listing each item and the rows that would lose data;
4. apply, then verify (Directus's exit code alone proves nothing): a second dry-run must show no changes; on a
   database Directus was installed on in this boot and holding nothing of the snapshot, the database itself must
   show every collection, field, relation and system index of it (supervisor.schemacheck), saving a Node start;
5. record the snapshot checksum and Directus version: a warm boot with both unchanged skips the phase entirely.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from phases.base import PENDING_EXIT, PhaseContext, Step, check_verdict
from phases.bootstrap import NOT_INSTALLED, DirectusInstall, NamedStep, bootstrap_reason, ensure_bootstrapped
from supervisor.backup import plan_backups
from supervisor.backup_keep import keep_backups
from supervisor.directus import CliResult, run_cli
from supervisor.errors import DirectusStepFailed, SchemaRefusal, SupervisorError
from supervisor.lock import PhaseLock
from supervisor.schemacheck import CREATED, Expected, expected, present
from supervisor.schemadiff import Change, Diff, UnreadableDryRun, multiline_values, parse_dry_run
from supervisor.settings import Settings
from supervisor.snapshot import Snapshot, check_fit, load_snapshot
from supervisor.state import StateTable

__all__ = ["SchemaPhase", "dry_run"]


async def dry_run(
    settings: Settings, snapshot: Snapshot, log: Any, lock: PhaseLock | None = None, *, applied: bool = False
) -> Diff:
    """`directus schema apply --dry-run`, parsed; refuses output that is neither a diff nor 'no changes', and a diff
    with any line it cannot read. Under the phase's `lock` when applying; `plan` runs it without one (it changes
    nothing). `applied`: the snapshot was applied just before (the verifying dry-run)."""
    result = await run_cli(
        settings, ["schema", "apply", "--dry-run", "--yes", str(snapshot.path.absolute())], log, lock=lock
    )
    return _parse(result, applied=applied, multiline=multiline_values(snapshot.data))


def _parse(result: CliResult, *, applied: bool = False, multiline: frozenset[str] = frozenset()) -> Diff:
    if result.code != 0:
        raise DirectusStepFailed(
            f"`{' '.join(result.argv)}` failed (exit {result.code}):\n{result.tail()}",
            error_code="SCHEMA_DIFF_FAILED",
        )
    try:
        diff = parse_dry_run(result.stdout, multiline)
    except UnreadableDryRun as e:
        raise DirectusStepFailed(
            _unreadable(result, e, applied=applied), error_code="SCHEMA_DIFF_UNREADABLE"
        ) from e
    if not diff.installed:
        raise DirectusStepFailed(
            "Directus says it is not installed on this database although bootstrap ran; check that DB_* and "
            f"DB_SEARCH_PATH are the same for Directus and the supervisor:\n{result.tail()}",
            error_code="DIRECTUS_NOT_INSTALLED",
        )
    return diff


def _unreadable(result: CliResult, e: UnreadableDryRun, *, applied: bool) -> str:
    """The refusal for a dry-run the parser cannot read completely: the guard cannot tell what would change."""
    where = f"line {e.line_no} of its output, {e.line!r}: {e.reason}" if e.line_no else e.reason
    done = (
        "Directus reported the snapshot applied, but this check of it could not be read, so it is not recorded "
        "and the next boot checks again"
        if applied
        else "The snapshot was not applied and nothing was recorded"
    )
    return (
        f"`{' '.join(result.argv)}` printed a dry-run this supervisor cannot read completely ({where}), so it "
        f"cannot tell what applying the snapshot would change. {done}. This Directus version may print a format "
        "the supervisor does not know: upgrade the supervisor, or report the line with the Directus version."
        f"\n{result.tail()}"
    )


class SchemaPhase:
    """Phase 2."""

    name = "schema-apply"
    lock_id = 2

    def __init__(self, settings: Settings, install: DirectusInstall) -> None:
        self.settings = settings
        self.install = install
        self._snapshot: Snapshot | None = None

    @property
    def snapshot(self) -> Snapshot:
        """The parsed snapshot (read once)."""
        if self._snapshot is None:
            self._snapshot = load_snapshot(self.settings.snapshot)
        return self._snapshot

    def preflight(self) -> None:
        """The snapshot exists and parses, before any connection."""
        _ = self.snapshot

    async def pending(self, ctx: PhaseContext) -> Sequence[Step]:
        """Nothing when this snapshot was applied with this Directus version (the warm-boot skip)."""
        reason = await self._reason(ctx.conn, await self.install.version(ctx.log))
        return [NamedStep(self.snapshot.path.name, reason)] if reason else []

    async def _reason(self, conn: asyncpg.Connection, version: str) -> str | None:
        """Why the phase must run, or None for the warm-boot skip."""
        done, installed = await StateTable(conn, self.settings.tracking_table).read(self.name)
        if self.settings.force:
            return "forced (SUPERVISOR_FORCE)"
        if done is None or not installed:
            return "no snapshot applied yet"
        if done.snapshot_checksum != self.snapshot.checksum:
            return "the snapshot changed"
        if done.directus_version != version:
            return f"Directus {done.directus_version} -> {version}"
        return None

    async def apply(
        self, ctx: PhaseContext, steps: Sequence[Step]
    ) -> AsyncIterator[tuple[Step, dict[str, Any]]]:
        """Check, bootstrap if needed, dry-run, guard, apply, verify, record."""
        for step in steps:
            yield step, await self._apply(ctx)

    async def _apply(self, ctx: PhaseContext) -> dict[str, Any]:
        t0 = time.monotonic()
        version = await self.install.version(ctx.log)
        check_fit(self.snapshot, version, force=ctx.settings.force)
        bootstrapped = await ensure_bootstrapped(ctx, self.install)
        try:
            return await self._guard_and_apply(ctx, version, bootstrapped=bootstrapped, t0=t0)
        except SupervisorError as e:
            if bootstrapped:
                # The snapshot was not applied, but the database did change in this boot: say so, so that nobody
                # reads "nothing was applied" as "the database is as it was" (an upgrade ran Directus's migrations).
                e.message += (
                    f"\nNote: before this, `directus bootstrap` ran in this boot ({bootstrapped}) and applied "
                    f"Directus {version}'s own migrations; they are committed and recorded (bootstrap phase) and "
                    "stay. Only the snapshot was not applied."
                )
                e.args = (e.message,)
            raise

    async def _guard_and_apply(
        self, ctx: PhaseContext, version: str, *, bootstrapped: str | None, t0: float
    ) -> dict[str, Any]:
        snap = self.snapshot
        want = expected(snap.data)
        fresh = bootstrapped == NOT_INSTALLED and await _nothing_there(ctx, want)
        if fresh:
            # Just installed on a database holding nothing of the snapshot: there is nothing to drop, so skip the
            # guard's dry-run (one Node start, about 3 s of a cold boot); the outcome is verified in the database.
            diff = None
            ctx.log.info(
                "schema.fresh_database",
                hint="nothing to destroy; applying without the guard's dry-run, verifying in the database",
            )
        else:
            diff = await dry_run(ctx.settings, snap, ctx.log, ctx.lock)
        fields: dict[str, Any] = {
            "changes": len(diff.changes) if diff else "all",
            "directus_version": version,
        }
        if diff is None or not diff.empty:
            destructive = diff.destructive if diff else []
            if destructive and not ctx.settings.allow_destructive_schema:
                raise SchemaRefusal(
                    await self._refusal(ctx.conn, destructive, bootstrapped=bootstrapped, version=version),
                    error_code="SCHEMA_DESTRUCTIVE",
                )
            for change in destructive:
                ctx.log.warning("schema.destructive_allowed", change=change.describe())
            if destructive:
                fields["backups"] = await self._keep(ctx, destructive, version)
            result = await run_cli(
                ctx.settings, ["schema", "apply", "--yes", str(snap.path.absolute())], ctx.log, lock=ctx.lock
            )
            if result.code != 0:
                raise DirectusStepFailed(
                    f"`directus schema apply` failed (exit {result.code}); Directus applies a snapshot in one "
                    "transaction, so it should have been rolled back; nothing was recorded, so the next boot's "
                    f"dry-run shows what remains:\n{result.tail()}",
                    error_code="SCHEMA_APPLY_FAILED",
                )
            if fresh:
                await _verify_in_database(ctx, want)
            else:
                left = await dry_run(ctx.settings, snap, ctx.log, ctx.lock, applied=True)
                if not left.empty:
                    raise DirectusStepFailed(
                        f"`directus schema apply` reported success but {len(left.changes)} change(s) remain: "
                        + "; ".join(c.describe() for c in left.changes[:10]),
                        error_code="SCHEMA_NOT_APPLIED",
                    )
        duration_ms = round((time.monotonic() - t0) * 1000)
        await StateTable(ctx.conn, ctx.settings.tracking_table).put(
            self.name, version, snap.checksum, duration_ms
        )
        return {**fields, "duration_ms": duration_ms}

    async def _keep(self, ctx: PhaseContext, destructive: list[Change], version: str) -> int:
        """Copy what the apply will drop into supervisor_backup first (supervisor.backup); a copy that cannot be
        made stops the apply here, before anything is dropped. Returns the number of copies."""
        plan = await plan_backups(ctx.conn, destructive)
        if plan.refusals:
            raise plan.refusal(self.snapshot.path)
        kept = await keep_backups(
            ctx.conn,
            plan,
            snapshot_checksum=self.snapshot.checksum,
            directus_version=version,
            log=ctx.log,
        )
        return len(kept)

    async def _refusal(
        self,
        conn: asyncpg.Connection,
        destructive: list[Change],
        *,
        bootstrapped: str | None = None,
        version: str = "",
    ) -> str:
        lines = [
            f"  - {c.describe()}: {c.destructive_reason}{await _rows_at_risk(conn, c)}" for c in destructive
        ]
        text = (
            f"{self.snapshot.path}: applying this snapshot would destroy data, so it was not applied:\n"
            + "\n".join(lines)
            + "\nIf that is intended, set SUPERVISOR_ALLOW_DESTRUCTIVE_SCHEMA=1 for one run; otherwise fix the "
            "snapshot (was it made by another Directus version, or from a database missing these collections?)."
        )
        if bootstrapped and bootstrapped != NOT_INSTALLED and _mostly_system_index_drops(destructive):
            text += (
                f"\nHint: these are mostly index drops on Directus's own system fields, and `directus bootstrap` "
                f"has just run Directus {version}'s migrations here. The snapshot was probably made with Directus "
                f"{version} from a database still on the older version's migrations, so its systemFields lack the "
                "indexes those migrations add. Do not allow destructive changes for this (it would drop those "
                f"indexes); re-make the snapshot with Directus {version} from a database its migrations have "
                "already run on (this one has now; or a staging copy: `directus bootstrap`, then `directus schema "
                f"snapshot {self.snapshot.path.name}`), and deploy that snapshot."
            )
        return text

    async def report(self, conn: asyncpg.Connection, *, deep: bool = False) -> dict[str, Any]:
        """The recorded apply against the current snapshot and Directus; with `deep`, the dry-run diff too."""
        from supervisor.log import get_logger

        log = get_logger()
        done = await StateTable(conn, self.settings.tracking_table).get(self.name)
        version = await self.install.version(log)
        reason = await self._reason(conn, version)
        out: dict[str, Any] = {
            "phase": self.name,
            "snapshot": str(self.settings.snapshot),
            "snapshot_checksum": self.snapshot.checksum,
            "applied_checksum": done.snapshot_checksum if done else None,
            "applied_with": done.directus_version if done else None,
            "directus_version": version,
            "state": "up to date" if reason is None else "pending",
            "would_run": reason,
        }
        if deep and reason is None:
            out["check"] = check_verdict(0, None, "up to date")
        elif deep:
            out["check"] = check_verdict(PENDING_EXIT, "PENDING", f"runs: {reason}")
            # the dry-run and the guard; its `check` replaces the one above where migrate would refuse
            out.update(await self._plan(conn, version, log))
        return out

    async def _plan(self, conn: asyncpg.Connection, version: str, log: Any) -> dict[str, Any]:
        """The dry-run diff and what the guard would make of it; `check` set when `migrate` would refuse."""
        try:
            check_fit(self.snapshot, version, force=self.settings.force)
        except SchemaRefusal as e:
            return {"refusal": e.message, "check": check_verdict(e.code, e.error_code, e.message)}
        if not await conn.fetchval("SELECT to_regclass('directus_collections') IS NOT NULL"):
            return {"diff": None, "note": "Directus is not installed yet: bootstrap runs first, then every "
                    "collection of the snapshot is created"}  # fmt: skip
        out: dict[str, Any] = {}
        upgrade = await bootstrap_reason(conn, StateTable(conn, self.settings.tracking_table), version)
        if upgrade:
            # `migrate` runs `directus bootstrap` (Directus's own migrations) before its dry-run; this dry-run
            # sees the database before them, so it cannot show what those migrations change (system indexes).
            out["note"] = (
                f"`directus bootstrap` runs first ({upgrade}), so this diff is computed against the database "
                "before Directus's own migrations run: after bootstrap the diff can differ (for example system "
                "field index drops from a snapshot made on a database still on the old migrations)"
            )
        diff = await dry_run(self.settings, self.snapshot, log)
        backups = await plan_backups(conn, diff.destructive)
        changes = [
            {
                "change": c.describe(),
                "destructive": c.destructive_reason,
                "rows_at_risk": await _rows_at_risk(conn, c),
                **({"backup": backups.note(c)} if c.destructive_reason else {}),
            }
            for c in diff.changes
        ]
        refused = bool(diff.destructive) and not self.settings.allow_destructive_schema
        out.update({"diff": changes, "refused": refused})
        if refused:
            out["check"] = check_verdict(
                SchemaRefusal.exit_code, "SCHEMA_DESTRUCTIVE", await self._refusal(conn, diff.destructive)
            )
        elif backups.refusals:
            refusal = backups.refusal(self.snapshot.path)
            out["check"] = check_verdict(refusal.code, refusal.error_code, refusal.message)
        return out


async def _nothing_there(ctx: PhaseContext, want: Expected) -> bool:
    """Whether the database holds none of what the snapshot's apply creates (no table, column or Directus record
    of it): then nothing can be dropped, and presence alone proves the apply. Else the dry-runs decide."""
    found, _ = await present(ctx.conn, want)
    there = [i for i in found if i.kind in CREATED]
    if there:
        ctx.log.info(
            "schema.found_before_apply",
            items=len(there),
            first=[i.describe() for i in there[:5]],
            hint="guarding and verifying with dry-runs",
        )
    return not there


async def _verify_in_database(ctx: PhaseContext, want: Expected) -> None:
    """After a fresh apply: every collection, field, relation and system index of the snapshot is there (exit 8 if
    not: `schema apply` exited 0 without doing what it claims)."""
    t0 = time.monotonic()
    _, missing = await present(ctx.conn, want)
    if missing:
        raise DirectusStepFailed(
            f"`directus schema apply` reported success but {len(missing)} item(s) of the snapshot are not in the "
            "database: "
            + "; ".join(i.describe() for i in missing[:10])
            + ("; ..." if len(missing) > 10 else "")
            + ". Nothing was recorded, so the next boot tries again; check that DB_* and DB_SEARCH_PATH are the "
            "same for Directus and the supervisor, and Directus's output above.",
            error_code="SCHEMA_NOT_APPLIED",
        )
    ctx.log.info(
        "schema.verified",
        items=len(want.items),
        how="database",
        duration_ms=round((time.monotonic() - t0) * 1000),
    )


def _mostly_system_index_drops(destructive: list[Change]) -> bool:
    """True when more than half of the destructive items are index drops on Directus's system fields (and nothing
    else about them is destructive): the mark of a snapshot made from a database still on older migrations."""
    drops = [
        c
        for c in destructive
        if c.section == "system fields"
        and (c.destructive_reason or "").startswith("drops an index")
        and not any(w in (c.destructive_reason or "") for w in ("unique", "primary key", "column type"))
    ]
    return 2 * len(drops) > len(destructive)


async def _rows_at_risk(conn: asyncpg.Connection, change: Change) -> str:
    table = '"' + change.collection.replace('"', '""') + '"'
    try:
        if change.section == "collections":
            n = await conn.fetchval(f"SELECT count(*) FROM {table}")
        elif change.section == "fields" and change.field_name:
            column = '"' + change.field_name.replace('"', '""') + '"'
            n = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {column} IS NOT NULL")
        else:
            return ""
    except asyncpg.PostgresError:
        return ""
    return f" ({n} row(s) hold data)"
