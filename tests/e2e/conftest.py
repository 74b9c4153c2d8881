"""Fixtures for the end-to-end tests: the pinned Directus, and a project folder with the shipped content.

The matrix chooses the Directus and the Node from SUPERVISOR_TEST_DIRECTUS and SUPERVISOR_TEST_NODE (see
tests/directus_env.py), the PostgreSQL from SUPERVISOR_TEST_PG_VERSION (tests/pg.py).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import Database
from tests.directus_env import directus_env, directus_version, install_directus, make_project
from tests.pg import free_port


@pytest.fixture(scope="session")
def directus_install() -> Path:
    """The requested Directus built for the requested Node, installed into the cache on first use."""
    return install_directus()


@pytest.fixture(scope="session")
def installed_version(directus_install: Path) -> str:
    """Its version, e.g. 12.4.0."""
    return directus_version(directus_install)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped db-init/, db-init-post/ and snapshots/ in the image's /directus layout, with the
    snapshot made by the requested Directus."""
    return make_project(tmp_path / "directus")


@pytest.fixture
def fleet(db: Database, directus_install: Path, project: Path) -> Database:
    """The test database, with Directus's settings (a free port on 127.0.0.1) in its environment."""
    db.extra_env.update(directus_env(directus_install, free_port(), {}, project))
    db.extra_env["SUPERVISOR_WAIT_TIMEOUT"] = "30"
    return db


async def wait_for_ping(port: int, timeout: float = 120) -> float:  # noqa: ASYNC109
    """Seconds until GET /server/ping answers 200."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with await asyncio.to_thread(
                urllib.request.urlopen, f"http://127.0.0.1:{port}/server/ping", None, 1
            ) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"/server/ping on port {port} did not answer within {timeout}s")


def child_executable(pid: int) -> Path:
    """The executable of the one child process of `pid` (the supervisor's Directus), resolved."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, f"process {pid} has children {children}, not one"
    return Path(f"/proc/{children[0]}/exe").resolve()
