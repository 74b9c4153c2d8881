"""A throw-away PgBouncer (Debian's `pgbouncer`) in front of a test Postgres, in session or transaction pooling mode.

Its own ini, auth file and log in a temporary folder, on a free port; never the system service. PgBouncer refuses to
run as root, so as root it runs as the `postgres` user (the folder is handed to that user so it can read the ini).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.pg import free_port

__all__ = ["PgBouncer"]

# Startup parameters asyncpg sends that PgBouncer 1.18 does not track: without them listed, it refuses the login.
# Listed parameters are dropped, not forwarded (harmless here: keepalives between PgBouncer and Postgres).
_IGNORED = "extra_float_digits,options,tcp_keepalives_idle,tcp_keepalives_interval,tcp_keepalives_count"


def _binary() -> str:
    path = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if not path:
        raise RuntimeError("pgbouncer is not installed: run scripts/setup (Debian package pgbouncer)")
    return path


@dataclass
class PgBouncer:
    """PgBouncer listening on 127.0.0.1, every database forwarded to `pg_host:pg_port` in `pool_mode`."""

    pg_host: str
    pg_port: int
    user: str
    password: str
    pool_mode: str = "transaction"
    pool_size: int = 10
    ignore_startup_parameters: str = (
        _IGNORED  # "": PgBouncer's default, which refuses asyncpg's keepalive settings
    )
    port: int = 0
    root: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> PgBouncer:
        """Write the ini and auth file, start PgBouncer in the foreground and wait until it accepts connections."""
        self.root = Path(tempfile.mkdtemp(prefix=f"supervisor-pgbouncer-{self.pool_mode}-"))
        self.port = self.port or free_port()
        ini = self.root / "pgbouncer.ini"
        # SCRAM towards the client, with the plain password in the auth file so PgBouncer can log in to Postgres
        # (scram-sha-256 there too) as the same user.
        (self.root / "userlist.txt").write_text(f'"{self.user}" "{self.password}"\n')
        ini.write_text(
            "[databases]\n"
            f"* = host={self.pg_host} port={self.pg_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {self.root / 'userlist.txt'}\n"
            f"pool_mode = {self.pool_mode}\ndefault_pool_size = {self.pool_size}\nmax_client_conn = 200\n"
            f"ignore_startup_parameters = {self.ignore_startup_parameters}\n"
            f"logfile = {self.root / 'pgbouncer.log'}\npidfile = {self.root / 'pgbouncer.pid'}\n"
        )
        kwargs: dict[str, object] = {}
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, pg.pw_uid, pg.pw_gid)
            kwargs = {"user": pg.pw_uid, "group": pg.pw_gid, "extra_groups": []}
        self._proc = subprocess.Popen(
            [_binary(), str(ini)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **kwargs,  # type: ignore[call-overload]
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self._proc.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on port {self.port} within 15s: {self.log()}")

    def log(self) -> str:
        """PgBouncer's log so far."""
        path = self.root / "pgbouncer.log" if self.root else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        """Shut down at once (SIGTERM is PgBouncer's immediate shutdown) and delete the folder."""
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
