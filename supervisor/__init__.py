"""The Directus boot supervisor: wait for Postgres, run the boot phases under advisory locks, supervise Directus."""

from supervisor.errors import (
    ConfigError,
    DatabaseUnavailable,
    DirectusStepFailed,
    IntegrityRefusal,
    Interrupted,
    LockTimeout,
    MigrationFailed,
    SchemaRefusal,
    SupervisorError,
)

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
