"""The one exception hierarchy; each class carries its documented exit code.

```
SupervisorError              1  unexpected: a bug (traceback at debug level)
├── ConfigError              2  bad flag or env value, missing folder or snapshot, phase not available
├── DatabaseUnavailable      3  wait budget spent, connection rejected, privilege missing, or connection lost mid-phase
├── MigrationFailed          4  an SQL error; the file's transaction was rolled back
├── IntegrityRefusal         5  changed applied file, basename in both folders, half-applied file
├── LockTimeout              6  a phase lock stayed held elsewhere for the whole lock timeout
├── SchemaRefusal            7  destructive or mismatched snapshot
├── DirectusStepFailed       8  a Directus CLI step failed, printed an unreadable dry-run, or did not do as claimed
└── Interrupted              128+N  a signal N ended the boot
```

Every instance also has a stable `error_code` string (e.g. ``CHECKSUM_MISMATCH``) that ends up in the final log line
and in `/dev/termination-log`, so alerting can key on it. Messages are complete sentences that say what, where and how
to fix; they never contain secrets.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ConfigError",
    "DatabaseUnavailable",
    "DirectusStepFailed",
    "IntegrityRefusal",
    "Interrupted",
    "LockTimeout",
    "MigrationFailed",
    "SchemaRefusal",
    "SupervisorError",
]


class SupervisorError(Exception):
    """Base of every error the supervisor reports; anything else reaching `main()` is a bug (exit 1)."""

    exit_code: ClassVar[int] = 1
    default_error_code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, error_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code or self.default_error_code

    @property
    def code(self) -> int:
        """The process exit status for this error."""
        return self.exit_code


class ConfigError(SupervisorError):
    """Raised for a bad flag or environment value, a missing folder or snapshot (exit 2)."""

    exit_code = 2
    default_error_code = "CONFIG_INVALID"


class DatabaseUnavailable(SupervisorError):
    """Raised when Postgres cannot be reached in time, rejects the login, or drops the connection (exit 3)."""

    exit_code = 3
    default_error_code = "DB_UNAVAILABLE"


class MigrationFailed(SupervisorError):
    """Raised when an SQL file fails; its transaction has been rolled back (exit 4)."""

    exit_code = 4
    default_error_code = "MIGRATION_FAILED"


class IntegrityRefusal(SupervisorError):
    """Raised before applying anything when the files and the tracking table disagree (exit 5)."""

    exit_code = 5
    default_error_code = "INTEGRITY_REFUSAL"


class LockTimeout(SupervisorError):
    """Raised when a phase lock is still held elsewhere after the lock timeout (exit 6)."""

    exit_code = 6
    default_error_code = "LOCK_TIMEOUT"


class SchemaRefusal(SupervisorError):
    """Raised when the snapshot would destroy data or does not fit this Directus (exit 7)."""

    exit_code = 7
    default_error_code = "SCHEMA_REFUSED"


class DirectusStepFailed(SupervisorError):
    """Raised when a Directus CLI step fails, prints a dry-run the guard cannot read completely, or does not do
    what it claimed (exit 8)."""

    exit_code = 8
    default_error_code = "DIRECTUS_STEP_FAILED"


class Interrupted(SupervisorError):
    """Raised when signal `signum` ends the boot before Directus started (exit 128+N, as a shell reports it)."""

    default_error_code = "INTERRUPTED"

    def __init__(self, signum: int, name: str) -> None:
        from supervisor import inflight

        state = inflight.current() or (
            "the SQL file whose transaction was open, if any, was rolled back; files recorded as applied stay "
            "applied. Run again to continue."
        )
        super().__init__(f"stopped by {name} before Directus started: {state}")
        self.signum = signum

    @property
    def code(self) -> int:
        """128 + the signal number."""
        return 128 + self.signum
