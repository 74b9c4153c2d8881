"""The Directus schema snapshot: loading it, and checking that it fits this database and this Directus."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.errors import ConfigError, SchemaRefusal
from supervisor.sqlfile import SqlFile

__all__ = ["Snapshot", "check_fit", "load_snapshot", "parse_version"]

_SYSTEM_FIELDS_SINCE = (11, 13, 0)  # Directus PR #25127: snapshots list indexed system fields from here on


def parse_version(text: str) -> tuple[int, int, int]:
    """`12.4.0` → (12, 4, 0); suffixes such as `-rc.1` are ignored."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"not a version: {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


@dataclass(frozen=True)
class Snapshot:
    """A parsed snapshot file."""

    path: Path
    checksum: str
    directus: str
    vendor: str
    has_system_fields: bool
    collections: tuple[str, ...]


def load_snapshot(path: Path) -> Snapshot:
    """Read and parse the snapshot; a missing or malformed file is a configuration error naming file:line."""
    import yaml

    if not path.is_file():
        raise ConfigError(
            f"SUPERVISOR_SNAPSHOT: the snapshot {path} ({path.absolute()}) does not exist; make it with "
            "`directus schema snapshot` or point SUPERVISOR_SNAPSHOT at it",
            error_code="SNAPSHOT_MISSING",
        )
    source = SqlFile(path, path.read_bytes())  # same UTF-8 check and normalised checksum as SQL files
    try:
        data: Any = yaml.safe_load(source.text) if path.suffix in (".yaml", ".yml") else _json(source.text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: the snapshot is not valid YAML: {getattr(e, 'problem', e)}") from e
    except ValueError as e:
        raise ConfigError(f"{path}: the snapshot is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("collections"), list):
        raise ConfigError(
            f"{path}: not a Directus snapshot (no `collections` list); make it with `directus schema snapshot`"
        )
    return Snapshot(
        path=path,
        checksum=source.checksum,
        directus=str(data.get("directus", "")),
        vendor=str(data.get("vendor", "")),
        has_system_fields="systemFields" in data,
        collections=tuple(str(c.get("collection")) for c in data["collections"] if isinstance(c, dict)),
    )


def _json(text: str) -> Any:
    import json

    return json.loads(text)


def check_fit(snapshot: Snapshot, installed: str, *, force: bool) -> None:
    """Refuse (exit 7) a snapshot for another vendor, another Directus version (unless forced), or one without
    `systemFields` on a Directus that would then drop the indexes of its system tables."""
    if snapshot.vendor != "postgres":
        raise SchemaRefusal(
            f"{snapshot.path}: the snapshot is for vendor {snapshot.vendor or '(none)'!r}, this database is "
            "postgres; make the snapshot from a Directus on Postgres",
            error_code="SNAPSHOT_VENDOR",
        )
    if snapshot.directus != installed and not force:
        raise SchemaRefusal(
            f"{snapshot.path}: the snapshot was made by Directus {snapshot.directus or '(unknown)'}, this is "
            f"Directus {installed}. Snapshots from another version can silently drop columns (missing keys read as "
            "deletions). Re-make it with this version (`directus schema snapshot`), or set SUPERVISOR_FORCE=1 to "
            "apply it anyway.",
            error_code="SNAPSHOT_VERSION",
        )
    try:
        needs_system_fields = parse_version(installed) >= _SYSTEM_FIELDS_SINCE
    except ValueError:
        needs_system_fields = False
    if needs_system_fields and not snapshot.has_system_fields:
        raise SchemaRefusal(
            f"{snapshot.path}: the snapshot has no `systemFields`, so Directus {installed} would drop the indexes "
            "of its system tables (directus_activity, directus_revisions, ...). Re-make it with "
            "`directus schema snapshot` from this version.",
            error_code="SNAPSHOT_SYSTEM_FIELDS",
        )
