"""Where SUPERVISOR_NODE_COMPILE_CACHE points (supervisor.nodecache.parse_setting) and what a Node child gets."""

from __future__ import annotations

from pathlib import Path

import structlog
from structlog.testing import capture_logs

from supervisor.nodecache import child_env, parse_setting
from supervisor.settings import Settings


def test_default_is_under_xdg_cache_home_else_home():
    """Unset or empty: $XDG_CACHE_HOME/directus-supervisor/node-compile-cache when XDG_CACHE_HOME is absolute,
    else ~/.cache/...; a relative XDG_CACHE_HOME is ignored, as the XDG spec says."""
    tail = Path("directus-supervisor") / "node-compile-cache"
    assert parse_setting(None, {"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x") / tail
    assert parse_setting("", {"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == Path("/h/.cache") / tail


def test_off_and_a_relative_folder():
    """`off` in any case disables it; a relative folder resolves against the working directory."""
    assert parse_setting(" OFF ", {"HOME": "/h"}) is None
    assert parse_setting("cc", {"HOME": "/h"}) == Path.cwd() / "cc"


def test_settings_carry_it():
    """Settings.load reads SUPERVISOR_NODE_COMPILE_CACHE (and the flag) without needing a database."""
    s = Settings.load({"SUPERVISOR_NODE_COMPILE_CACHE": "/c"}, need_db=False)
    assert s.node_compile_cache == Path("/c")
    flagged = Settings.load({"HOME": "/h"}, {"SUPERVISOR_NODE_COMPILE_CACHE": "off"}, need_db=False)
    assert flagged.node_compile_cache is None


def test_the_users_own_variable_wins_and_off_leaves_it_unset(tmp_path: Path):
    """A NODE_COMPILE_CACHE already set is passed on unchanged; with the cache off nothing is added."""
    log = structlog.get_logger()
    assert (
        child_env(tmp_path / "c", log, {"NODE_COMPILE_CACHE": "/theirs"})["NODE_COMPILE_CACHE"] == "/theirs"
    )
    assert "NODE_COMPILE_CACHE" not in child_env(None, log, {})
    assert child_env(tmp_path / "c", log, {})["NODE_COMPILE_CACHE"] == str(tmp_path / "c")
    assert (tmp_path / "c").is_dir()


def test_a_folder_that_cannot_be_made_warns_once_and_is_left_out(tmp_path: Path):
    """Its parent is a file: one warning for the process, however many children start, and no variable."""
    (tmp_path / "f").write_text("")
    bad = tmp_path / "f" / "c"
    with capture_logs() as logs:
        envs = [child_env(bad, structlog.get_logger(), {}) for _ in range(3)]
    assert all("NODE_COMPILE_CACHE" not in e for e in envs)
    assert [e["event"] for e in logs] == ["node_compile_cache.unusable"]
