"""The ordered phases and how a command line selects among them."""

from __future__ import annotations

from phases.base import Phase
from phases.bootstrap import BootstrapPhase, DirectusInstall
from phases.schema import SchemaPhase
from phases.sql import SqlFolders, SqlPhase
from supervisor.errors import ConfigError
from supervisor.settings import Settings

__all__ = ["MIGRATE_PHASES", "PHASE_NAMES", "build_phases", "select_phases"]

PHASE_NAMES = ("pre-schema", "schema-apply", "post-schema", "bootstrap", "start")
MIGRATE_PHASES = PHASE_NAMES[:4]


def build_phases(settings: Settings) -> dict[str, Phase]:
    """The database phases by name, in boot order (`start` is not one: it runs Directus, see phases.start)."""
    folders = SqlFolders(settings.db_init_dir, settings.db_init_post_dir)
    table = settings.tracking_table
    install = DirectusInstall(settings)
    return {
        "pre-schema": SqlPhase(
            "pre-schema",
            settings.db_init_dir,
            "SUPERVISOR_DB_INIT_DIR",
            folders,
            table,
            settings.out_of_order,
        ),
        "schema-apply": SchemaPhase(settings, install),
        "post-schema": SqlPhase(
            "post-schema",
            settings.db_init_post_dir,
            "SUPERVISOR_DB_INIT_POST_DIR",
            folders,
            table,
            settings.out_of_order,
        ),
        "bootstrap": BootstrapPhase(install),
    }


def select_phases(
    verb: str, only: str | None = None, from_: str | None = None, until: str | None = None
) -> list[str]:
    """The phase names `verb` runs, honouring `--only`, `--from` and `--until`; refuses an empty or bad selection."""
    names = list(MIGRATE_PHASES if verb == "migrate" else PHASE_NAMES)
    for flag, value in (("--only", only), ("--from", from_), ("--until", until)):
        if value is not None and value not in names:
            raise ConfigError(
                f"{verb} {flag} {value}: not a phase of `{verb}`; choose one of {', '.join(names)}"
            )
    if only:
        return [only]
    start = names.index(from_) if from_ else 0
    end = names.index(until) + 1 if until else len(names)
    if start >= end:
        raise ConfigError(f"{verb} --from {from_} --until {until}: the selection is empty")
    return names[start:end]
