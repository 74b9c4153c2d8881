"""The real Directus boots whatever state its compile cache folder is in: warm, filled with garbage, holding another
Node version's entries, or impossible to create. Meaningful on Node >= 22.1 (the matrix's Node 22), where Node reads
and writes the folder; older Node ignores NODE_COMPILE_CACHE, and these boots must pass there too."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import asyncpg

from tests.conftest import Database, Result, finish, start_supervisor, supervise
from tests.e2e.conftest import wait_for_ping


def _node_version(fleet: Database) -> tuple[int, int]:
    node = fleet.env()["SUPERVISOR_DIRECTUS_CMD"].split()[0]
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.match(r"v(\d+)\.(\d+)", out.strip())
    assert m, out
    return int(m.group(1)), int(m.group(2))


async def _boot(fleet: Database, project: Path, cache: Path) -> Result:
    """`run` with this cache folder until /server/ping answers, then SIGTERM; Directus's 143 comes back."""
    proc = await start_supervisor("run", env=fleet.env(SUPERVISOR_NODE_COMPILE_CACHE=str(cache)), cwd=project)
    await wait_for_ping(int(fleet.extra_env["PORT"]))
    proc.send_signal(signal.SIGTERM)
    r = await finish(proc, timeout=30)
    assert r.code == 143, r.stderr
    # A warm boot: Directus was started early (supervisor.early), handed over once the phases found nothing to do,
    # and the loop supervised it: SIGTERM went to it, its 143 came back.
    (handed,) = r.events("directus.handed_over")
    assert r.events("directus.early_start")[0]["pid"] == handed["pid"]
    assert r.events("signal.forwarded")[0]["pid"] == handed["pid"]
    assert r.events("directus.exited")[0] == {
        **r.events("directus.exited")[0],
        "pid": handed["pid"],
        "exit_code": 143,
    }
    return r


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


async def test_directus_boots_with_a_warm_a_garbage_and_an_unusable_compile_cache(
    fleet: Database, conn: asyncpg.Connection, project: Path, tmp_path: Path
):
    """A first boot fills the folder (on Node >= 22.1); every entry overwritten with random bytes, plus a folder of
    junk keyed like another Node version's, still boots; a folder that cannot be created (its parent is a file)
    boots with one warning."""
    assert (await supervise("migrate", env=fleet.env(), cwd=project, timeout=300)).code == 0
    cache = tmp_path / "cache"
    await _boot(fleet, project, cache)
    written = _files(cache)
    if _node_version(fleet) >= (22, 1):
        assert written, "Node >= 22.1 wrote no compile cache"
    for f in written:
        f.write_bytes(os.urandom(max(16, f.stat().st_size)))
    (cache / "v22.0.0-x64-00000000-0").mkdir(parents=True)
    (cache / "v22.0.0-x64-00000000-0" / "0badcafe").write_bytes(os.urandom(4096))
    await _boot(fleet, project, cache)

    (tmp_path / "a-file").write_text("")
    r = await _boot(fleet, project, tmp_path / "a-file" / "cache")
    assert [e["folder"] for e in r.events("node_compile_cache.unusable")] == [
        str(tmp_path / "a-file" / "cache")
    ]
