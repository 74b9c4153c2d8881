"""The Directus schema snapshot: loading it, and checking that it fits this database and this Directus."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from supervisor.errors import ConfigError, SchemaRefusal
from supervisor.sqlfile import SqlFile

__all__ = ["Snapshot", "check_fit", "load_snapshot", "needs_system_fields", "parse_version"]

_SYSTEM_FIELDS_SINCE = (11, 13, 0)  # Directus PR #25127: snapshots list indexed system fields from here on


def parse_version(text: str) -> tuple[int, int, int]:
    """`12.4.0` → (12, 4, 0); suffixes such as `-rc.1` are ignored."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"not a version: {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


@dataclass(frozen=True)
class Snapshot:
    """A snapshot file: read (and checksummed) up front, parsed only when it is about to be used, because a warm
    boot with an unchanged snapshot needs only the checksum."""

    path: Path
    source: SqlFile  # same UTF-8 check and normalised checksum as the SQL files

    @property
    def checksum(self) -> str:
        """`sha256:` of the normalised text."""
        return self.source.checksum

    @cached_property
    def data(self) -> dict[str, Any]:
        """The parsed document; a malformed file is a configuration error naming file:line:col."""
        return _parse(self.path, self.source.text)

    @property
    def directus(self) -> str:
        """The Directus version that made it."""
        return str(self.data.get("directus", ""))

    @property
    def vendor(self) -> str:
        """The database vendor it was made on."""
        return str(self.data.get("vendor", ""))

    @property
    def has_system_fields(self) -> bool:
        """Whether it lists the indexed system fields (Directus >= 11.13)."""
        return "systemFields" in self.data


def load_snapshot(path: Path) -> Snapshot:
    """Read the snapshot; a missing or non-UTF-8 file is a configuration error."""
    if not path.is_file():
        raise ConfigError(
            f"SUPERVISOR_SNAPSHOT: the snapshot {path} ({path.absolute()}) does not exist; make it with "
            "`directus schema snapshot` or point SUPERVISOR_SNAPSHOT at it",
            error_code="SNAPSHOT_MISSING",
        )
    snapshot = Snapshot(path, SqlFile(path, path.read_bytes()))
    _ = snapshot.checksum
    return snapshot


def _parse(path: Path, text: str) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: about 8x faster on a real snapshot
    try:
        data: Any = yaml.load(text, Loader=loader) if path.suffix in (".yaml", ".yml") else _json(text)  # noqa: S506
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
    return data


def _json(text: str) -> Any:
    import json

    return json.loads(text)


def needs_system_fields(version: str) -> bool:
    """Whether a snapshot for Directus `version` must list `systemFields` (else applying drops system indexes)."""
    try:
        return parse_version(version) >= _SYSTEM_FIELDS_SINCE
    except ValueError:
        return False


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
    if needs_system_fields(installed) and not snapshot.has_system_fields:
        raise SchemaRefusal(
            f"{snapshot.path}: the snapshot has no `systemFields`, so Directus {installed} would drop the indexes "
            "of its system tables (directus_activity, directus_revisions, ...). Re-make it with "
            "`directus schema snapshot` from this version.",
            error_code="SNAPSHOT_SYSTEM_FIELDS",
        )
