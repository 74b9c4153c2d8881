"""The default Directus CLI command: `node …/@directus/api/dist/cli/run.js`, found from the installed Directus.

The `directus` bin is the `directus` package's `cli.js` (the official image's `/directus/cli.js`). Before it imports
`@directus/api/cli/run.js` it asks the npm registry whether a newer Directus exists (`@directus/update-check`: an 8 s
timeout that a proxy can stretch, and a failure is not cached), on every call. With egress dropped every CLI step of
a boot would stall on it. The default therefore runs the same entry without the check, from the same install:

1. `directus` on PATH: its real file (npm and pnpm link the bin to the package's `cli.js`) gives the package;
2. else `./cli.js` in the working directory: the official image's `/directus` *is* the `directus` package.

From the package, `@directus/api` is found as Node finds it from `cli.js` (the package's own `node_modules`, then each
parent folder's), and `cli/run.js` through that package's `exports`. A Directus that is found without that entry is a
configuration error (exit 2): the supervisor never falls back to `cli.js` and its registry call on its own.
An explicit `SUPERVISOR_DIRECTUS_CMD` is used as given and never reaches this module.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.errors import ConfigError

if TYPE_CHECKING:  # supervisor.early imports this module before the heavy imports: keep it light
    from typing import Any

__all__ = ["default_command", "find_default"]

_API = ("@directus", "api")
_EXPORT = "./cli/run.js"
_HOW = (
    "set SUPERVISOR_DIRECTUS_CMD to the Directus CLI, e.g. `node /directus/node_modules/@directus/api/dist/cli/run.js` "
    "(or `node /directus/cli.js`, which first calls the npm registry on every step)"
)


def default_command(cwd: Path | None = None, path: str | None = None) -> tuple[str, ...]:
    """`("node", "<api>/dist/cli/run.js")` for the Directus found as `directus` on `path` (default: PATH), else as
    `cli.js` in `cwd` (default: the working directory). Raises `ConfigError` (DIRECTUS_CMD_INVALID) when there is no
    Directus, or one without that entry. Resolved once per (cwd, PATH); the choice is logged once."""
    here = str(Path(cwd) if cwd is not None else Path.cwd())
    return _resolve(here, os.environ.get("PATH", os.defpath) if path is None else path)


@functools.cache
def _resolve(cwd: str, path: str) -> tuple[str, ...]:
    argv, source = find_default(cwd, path)
    from supervisor.log import get_logger  # only here: settings stay importable without the logging set-up

    get_logger().info("directus.cli_chosen", argv=" ".join(argv), found=source, hint="no npm update check")
    return argv


def find_default(cwd: str, path: str) -> tuple[tuple[str, ...], str]:
    """`default_command`'s choice and where it was found, without logging or caching (supervisor.early)."""
    found = shutil.which("directus", path=path)
    if found:
        package = _package_of_bin(Path(found))
        source = f"`directus` on PATH ({found})"
    elif (Path(cwd) / "cli.js").is_file():
        package = Path(cwd)
        source = f"cli.js in the working directory ({cwd})"
        if not _is_directus_package(package):
            raise _invalid(
                f"{package / 'cli.js'} is not the Directus CLI: {package / 'package.json'} does not name the "
                "`directus` package"
            )
    else:
        raise _invalid(
            f"no Directus found: no `directus` on PATH and no cli.js in the working directory ({cwd})"
        )
    return ("node", str(_entry(package, source))), source


def _package_of_bin(found: Path) -> Path:
    """The `directus` package a `directus` on PATH belongs to: npm links the bin to `<package>/cli.js`; a bin folder
    (`node_modules/.bin`) that holds a copy or a shim sits beside the package."""
    real = found.resolve()
    if _is_directus_package(real.parent):
        return real.parent
    beside = found.parent.parent / "directus"
    if found.parent.name == ".bin" and _is_directus_package(beside):
        return beside
    raise _invalid(
        f"`directus` on PATH is {found} (really {real}), which is not the cli.js of a `directus` package, so the CLI "
        "entry without the npm update check cannot be found from it"
    )


def _entry(package: Path, source: str) -> Path:
    """`<@directus/api>/<exports["./cli/run.js"]>`, with `@directus/api` resolved from `package` as Node does."""
    looked: list[str] = []
    folder = package.resolve()  # Node resolves from cli.js's real path
    for parent in (folder, *folder.parents):
        if parent.name == "node_modules":
            continue
        api = parent.joinpath("node_modules", *_API)
        looked.append(str(api))
        if (api / "package.json").is_file():
            break
    else:
        raise _invalid(
            f"Directus found as {source}, but not its @directus/api package (looked in {', '.join(looked)})"
        )
    target = _export(api / "package.json")
    script = api / target if target else None
    if script is None or not script.is_file():
        raise _invalid(
            f"Directus found as {source}, but its CLI entry without the npm update check is missing: "
            f"{api / 'package.json'} exports {_EXPORT!r} as {target!r}"
            + (f", and {script} does not exist" if script else "")
        )
    return script


def _export(package_json: Path) -> str | None:
    exports = _read(package_json).get("exports")
    target = exports.get(_EXPORT) if isinstance(exports, dict) else None
    return target if isinstance(target, str) and target.startswith("./") else None


def _is_directus_package(folder: Path) -> bool:
    return _read(folder / "package.json").get("name") == "directus" and (folder / "cli.js").is_file()


def _read(package_json: Path) -> dict[str, Any]:
    try:
        data = json.loads(package_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _invalid(what: str) -> ConfigError:
    return ConfigError(f"{what}; {_HOW}", error_code="DIRECTUS_CMD_INVALID")
