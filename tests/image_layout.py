"""The official image's `/directus`, rebuilt from the pinned install, and egress that is dropped.

The image's `/directus` is the `directus` package itself (its Dockerfile runs `pnpm --filter directus deploy` and
keeps `name`, `version`, `type`, `exports` and `bin` of its package.json): `cli.js`, `version.js`, `package.json`,
and `node_modules` holding `@directus/api` and every other dependency. Here the package's own files are copied and
`node_modules` is a real folder of links to the cached install's entries: Node finds each package through its link
and loads it from its real path, as in the cached install, and a cache Directus writes under
`node_modules/.cache` stays in this folder instead of landing in the shared install.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
from pathlib import Path

from tests.directus_env import ROOT

__all__ = ["Blackhole", "build_image_dir", "path_without_directus"]

_PACKAGE_KEYS = ("name", "version", "type", "exports", "bin")  # what the image's Dockerfile keeps


def build_image_dir(install: Path, dest: Path) -> Path:
    """`dest` laid out like the image's /directus, with our content (db-init, db-init-post, snapshots) beside it."""
    package = install / "node_modules" / "directus"
    dest.mkdir(parents=True)
    for entry in package.iterdir():
        if entry.name not in ("package.json", "node_modules"):
            shutil.copy2(entry, dest / entry.name)
    meta = json.loads((package / "package.json").read_text())
    (dest / "package.json").write_text(json.dumps({k: meta[k] for k in _PACKAGE_KEYS if k in meta}, indent=2))
    modules = dest / "node_modules"
    modules.mkdir()
    for entry in (install / "node_modules").iterdir():
        if entry.name not in ("directus", ".cache", ".package-lock.json"):
            (modules / entry.name).symlink_to(entry)
    for name in ("db-init", "db-init-post", "snapshots"):
        shutil.copytree(ROOT / name, dest / name)
    for name in ("database", "extensions", "uploads"):
        (dest / name).mkdir()
    return dest


def path_without_directus(path: str) -> str:
    """PATH without any folder that holds a `directus` executable (so the image-layout rule is the one taken)."""
    keep = [p for p in path.split(os.pathsep) if p and not os.access(os.path.join(p, "directus"), os.X_OK)]
    return os.pathsep.join(keep)


class Blackhole:
    """A TCP listener on 127.0.0.1 that accepts and never answers: dropped egress, given to Node as its proxy.

    `connections` counts accepted connections; the sockets stay open (a proxy that went silent) until `close`.
    """

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(client)

    def proxy_env(self) -> dict[str, str]:
        """Every spelling of the proxy variables that Node's HTTP clients (axios included) read; NO_PROXY cleared."""
        return {
            "HTTPS_PROXY": self.url, "https_proxy": self.url, "HTTP_PROXY": self.url, "http_proxy": self.url,
            "NO_PROXY": "", "no_proxy": "",
        }  # fmt: skip

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._server.close()
        for s in self._held:
            s.close()
        self._thread.join(timeout=5)
