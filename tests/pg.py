"""A throw-away PostgreSQL cluster from the local binaries, for tests, benchmarks and the demo.

SUPERVISOR_TEST_PG_VERSION (15, 16, 17 or 18) picks the server's major version: its binaries come from
`scripts/install-postgres`, installed on first use; unset, the newest local Debian binaries. As root the cluster
runs as the `postgres` user (initdb refuses root). Durability is off: these clusters live for minutes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PASSWORD", "VERSION_ENV", "LocalCluster", "bindir", "free_port", "requested_version"]

PASSWORD = "throwaway-pw-42"
VERSION_ENV = "SUPERVISOR_TEST_PG_VERSION"
_ROOT = Path(__file__).resolve().parent.parent


def requested_version() -> int | None:
    """The major version SUPERVISOR_TEST_PG_VERSION asks for, or None when it is unset."""
    value = os.environ.get(VERSION_ENV, "")
    if not value:
        return None
    if value not in ("15", "16", "17", "18"):
        raise RuntimeError(
            f"{VERSION_ENV}={value!r}: use 15, 16, 17 or 18 (or unset it for the local binaries)"
        )
    return int(value)


def bindir() -> Path:
    """The binaries of the requested version (SUPERVISOR_TEST_PG_VERSION), else the local default."""
    version = requested_version()
    return _installed(version) if version else _local_bindir()


@functools.cache
def _installed(version: int) -> Path:
    """`scripts/install-postgres VERSION`: installs on first use; a failure is an error, never another version."""
    script = _ROOT / "scripts" / "install-postgres"
    out = subprocess.run([str(script), str(version)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(
            f"{VERSION_ENV}={version}: scripts/install-postgres {version} failed (exit {out.returncode}):\n"
            f"{out.stderr.strip()}"
        )
    return Path(out.stdout.strip().splitlines()[-1])


def _local_bindir() -> Path:
    """The newest `/usr/lib/postgresql/N/bin`, else the folder of `initdb` on PATH."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists()), key=lambda p: int(p.parent.name)
    )
    if versions:
        return versions[-1]
    initdb = shutil.which("initdb")
    if not initdb:
        raise RuntimeError("no PostgreSQL server binaries found; install the Debian package postgresql")
    return Path(initdb).resolve().parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LocalCluster:
    """initdb + pg_ctl in a temporary folder, listening on 127.0.0.1 only."""

    port: int = 0
    user: str = "postgres"
    password: str = PASSWORD
    root: Path | None = None

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> LocalCluster:
        """Create the data directory (password auth over TCP, so wrong-password tests mean something)."""
        self.root = Path(tempfile.mkdtemp(prefix="supervisor-pg-"))
        self.port = self.port or free_port()
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self.root, pg.pw_uid, pg.pw_gid)
            os.chown(pwfile, pg.pw_uid, pg.pw_gid)
        self._run(
            str(bindir() / "initdb"),
            "-D", str(self.root / "data"),
            "-U", self.user,
            "--pwfile", str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        return self

    def start(self) -> LocalCluster:
        """Start the server and wait until it accepts connections."""
        assert self.root
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
            # Tests find a running statement by a marker in pg_stat_activity.query, which keeps only this many bytes
            # of a batch (many files in one message).
            "-c track_activity_query_size=65536"
        )
        self._run(
            str(bindir() / "pg_ctl"), "-D", str(self.root / "data"), "-o", opts,
            "-l", str(self.root / "log"), "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        """Stop the server at once."""
        if self.root and (self.root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run(
                    str(bindir() / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"
                )

    def destroy(self) -> None:
        """Stop and delete everything."""
        self.stop()
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        """A postgres:// URL for `database`."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"
