"""SUPERVISOR_NODE_COMPILE_CACHE reaches every Node child the supervisor starts (a stand-in here, noting what it got):
the CLI steps and `start`."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import ROOT, Database, Layout, supervise

ENV_STANDIN = f"{sys.executable} {ROOT / 'tests' / 'env_standin.py'}"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"SUPERVISOR_DIRECTUS_CMD": ENV_STANDIN, "ENV_STANDIN_LOG": str(tmp_path / "calls"),
            "SUPERVISOR_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"),
            **extra}  # fmt: skip


def _calls(tmp_path: Path) -> list[tuple[str, str]]:
    lines = (tmp_path / "calls").read_text().splitlines()
    return [(args, value) for args, value in (line.split("\t") for line in lines)]


async def test_start_gets_the_default_folder_under_the_users_cache(layout: Layout, tmp_path: Path):
    """Unset, the folder is $XDG_CACHE_HOME/directus-supervisor/node-compile-cache, made if missing; without
    XDG_CACHE_HOME, ~/.cache/... ."""
    xdg = tmp_path / "xdg"
    r = await supervise(
        "run", "--only", "start", env=_env(tmp_path, XDG_CACHE_HOME=str(xdg)), cwd=layout.root
    )
    assert r.code == 0, r.stderr
    folder = xdg / "directus-supervisor" / "node-compile-cache"
    assert _calls(tmp_path) == [("start", str(folder))]
    assert folder.is_dir()
    r = await supervise("run", "--only", "start", env=_env(tmp_path), cwd=layout.root)
    assert r.code == 0, r.stderr
    assert _calls(tmp_path)[-1] == ("start", str(tmp_path / "home" / ".cache" / "directus-supervisor" /
                                              "node-compile-cache"))  # fmt: skip


async def test_a_cli_step_gets_it_too_and_the_users_own_variable_wins(
    db: Database, layout: Layout, tmp_path: Path
):
    """`status` asks the Directus CLI for its version (a CLI step): it gets the folder given by the setting; a
    NODE_COMPILE_CACHE set by the user is passed on unchanged instead, to both."""
    mine = tmp_path / "mine"
    env = db.env(**_env(tmp_path, SUPERVISOR_NODE_COMPILE_CACHE=str(mine)))
    assert (await supervise("status", env=env, cwd=layout.root)).code == 0
    assert ("--version", str(mine)) in _calls(tmp_path)
    theirs = db.env(**_env(tmp_path, SUPERVISOR_NODE_COMPILE_CACHE=str(mine), NODE_COMPILE_CACHE="/theirs"))
    (tmp_path / "calls").unlink()
    assert (await supervise("status", env=theirs, cwd=layout.root)).code == 0
    r = await supervise("run", "--only", "start", env=theirs, cwd=layout.root)
    assert r.code == 0, r.stderr
    assert _calls(tmp_path) == [("--version", "/theirs"), ("start", "/theirs")]


async def test_off_hands_nothing_and_an_unusable_folder_only_warns(layout: Layout, tmp_path: Path):
    """`off` (any case) leaves NODE_COMPILE_CACHE unset. A folder that cannot be created (its parent is a file) is
    a warning naming it, the variable is left unset, and Directus starts all the same."""
    r = await supervise("run", "--only", "start", env=_env(tmp_path, SUPERVISOR_NODE_COMPILE_CACHE="Off"),
                        cwd=layout.root)  # fmt: skip
    assert (r.code, _calls(tmp_path)) == (0, [("start", "-")]), r.stderr
    (tmp_path / "a-file").write_text("")
    bad = tmp_path / "a-file" / "cache"
    r = await supervise("run", "--only", "start", env=_env(tmp_path, SUPERVISOR_NODE_COMPILE_CACHE=str(bad)),
                        cwd=layout.root)  # fmt: skip
    assert r.code == 0, r.stderr
    assert _calls(tmp_path)[-1] == ("start", "-")
    warned = r.events("node_compile_cache.unusable")
    assert len(warned) == 1 and warned[0]["folder"] == str(bad) and "cannot be created" in warned[0]["reason"]
