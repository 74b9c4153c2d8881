"""The pinned Directus for the demo, the end-to-end tests and the snapshot maker: where it is installed and the
environment that runs it on 127.0.0.1 only."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

__all__ = [
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "directus_cli",
    "directus_env",
    "install_directus",
    "make_project",
]

ROOT = Path(__file__).resolve().parent.parent
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "fleet-admin-pw"


def install_directus() -> Path:
    """The install folder of the pinned Directus (installs it on first use: scripts/install-directus)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "install-directus")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def directus_cli(install: Path) -> str:
    """SUPERVISOR_DIRECTUS_CMD for it: the CLI entry without the npm update check that `cli.js` runs first."""
    return f"node {install / 'node_modules' / '@directus' / 'api' / 'dist' / 'cli' / 'run.js'}"


def make_project(dest: Path) -> Path:
    """A project folder laid out like the image's /directus: the shipped content, a package.json (Directus looks
    for package extensions there), uploads/ and extensions/."""
    for name in ("db-init", "db-init-post", "snapshots"):
        shutil.copytree(ROOT / name, dest / name)
    (dest / "package.json").write_text(json.dumps({"name": "fleet", "private": True}))
    (dest / "uploads").mkdir()
    (dest / "extensions").mkdir()
    return dest


def directus_env(install: Path, port: int, db: dict[str, str], project: Path | None = None) -> dict[str, str]:
    """Directus's own settings for a local run: loopback only, no telemetry, a first admin."""
    return {
        **db,
        "SUPERVISOR_DIRECTUS_CMD": directus_cli(install),
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
