"""`SUPERVISOR_NODE_COMPILE_CACHE`: a folder for Node's on-disk compile cache, handed to Directus.

Node >= 22.1 reads `NODE_COMPILE_CACHE` and keeps the V8 code it compiled for Directus's modules there, so a later
start skips most of the compiling (a bare `directus start` on Node 22 went from about 2.2 s to 1.9 s here). Every
Node child the supervisor starts gets it (the CLI steps and `start`), unless the user set `NODE_COMPILE_CACHE`
themselves: theirs is kept. Older Node ignores the variable.

Why it is safe to share a folder between versions and to pre-warm it: Node keys the cache by its own version,
architecture and flags (a subfolder per key, `v22.23.5-x64-<hash>-<uid>`), checks each entry's checksum before using
it, and falls back to compiling on any mismatch or read error. A folder that cannot be created or written is a
warning, never a failure: Directus then compiles as it would without a cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["OFF", "child_env", "default_folder", "node_env", "parse_setting"]

OFF = "off"
VARIABLE = "NODE_COMPILE_CACHE"
_checked: dict[str, str | None] = {}  # folder -> why it is unusable (None: usable), checked once per process
_warned: set[str] = set()  # folders warned about


def default_folder(env: Mapping[str, str]) -> Path | None:
    """`$XDG_CACHE_HOME` (else `~/.cache`) `/directus-supervisor/node-compile-cache`; None when no absolute home
    can be found (the cache is then off)."""
    xdg = env.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "directus-supervisor" / "node-compile-cache"
    home = env.get("HOME") or os.path.expanduser("~")
    return (
        Path(home) / ".cache" / "directus-supervisor" / "node-compile-cache" if os.path.isabs(home) else None
    )


def parse_setting(raw: str | None, env: Mapping[str, str]) -> Path | None:
    """The folder SUPERVISOR_NODE_COMPILE_CACHE names (absolute), None for `off`; unset or empty: the default."""
    if raw is None or not raw.strip():
        return default_folder(env)
    if raw.strip().lower() == OFF:
        return None
    return Path(raw).absolute()


def _problem(folder: Path) -> str | None:
    """Why Node could not write its cache into `folder` (created here if missing), or None."""
    key = str(folder)
    if key not in _checked:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _checked[key] = None if os.access(folder, os.W_OK | os.X_OK) else "it is not writable"
        except OSError as e:
            _checked[key] = f"it cannot be created ({e.strerror or e})"
    return _checked[key]


def node_env(folder: Path | None, base: Mapping[str, str]) -> dict[str, str]:
    """`child_env` without its warning."""
    env = dict(base)
    if folder is None or VARIABLE in env:
        return env
    if _problem(folder) is None or folder.is_dir():
        env[VARIABLE] = str(folder)
    return env


def child_env(folder: Path | None, log: Any, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a Node child: `base` (the supervisor's own) with NODE_COMPILE_CACHE set to `folder`,
    unless the user set NODE_COMPILE_CACHE or the cache is off. A folder that cannot be created is left out; one
    that exists but cannot be written is still handed over (a pre-warmed read-only cache is read); both warn once."""
    base = os.environ if base is None else base
    env = node_env(folder, base)
    problem = None if folder is None or VARIABLE in base else _problem(folder)
    if problem and str(folder) not in _warned:
        _warned.add(str(folder))
        log.warning(
            "node_compile_cache.unusable",
            folder=str(folder),
            reason=problem,
            hint="Directus still starts, compiling its modules as without a cache; point "
            "SUPERVISOR_NODE_COMPILE_CACHE at a writable folder, or set it to off",
        )
    return env
