"""The Directus boot supervisor: wait for Postgres, run the boot phases under advisory locks, supervise Directus.

The exceptions are re-exported lazily: `python -m supervisor` imports this package before its `__main__`, whose
first act blocks the handled signals, and importing supervisor.errors (with `typing`) here would delay that.
"""

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing is the cost avoided here
if TYPE_CHECKING:
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


def __getattr__(name: str) -> object:
    if name in __all__:
        from supervisor import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
