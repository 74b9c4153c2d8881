"""The default Directus CLI command: the CLI entry without the npm update check, found from the install (DESIGN §3).

Layouts are built in a temporary folder the way npm, pnpm and the official image lay them out; the last test checks
the real pinned install.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import directus_entry
from supervisor.directus_entry import default_command
from supervisor.errors import ConfigError
from supervisor.settings import Settings
from tests.directus_env import install_directus
from tests.image_layout import path_without_directus

BASE = {"DB_CLIENT": "pg", "DB_HOST": "db", "DB_PORT": "5432", "DB_DATABASE": "d", "DB_USER": "u"}
RUN_JS = ("dist", "cli", "run.js")


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    directus_entry._resolve.cache_clear()
    yield
    directus_entry._resolve.cache_clear()


def _directus_package(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(
        json.dumps({"name": "directus", "version": "12.4.0", "bin": "cli.js"})
    )
    (folder / "cli.js").write_text("import('@directus/api/cli/run.js');\n")
    return folder


def _api(node_modules: Path, *, export: str | None = "./dist/cli/run.js", script: bool = True) -> Path:
    api = node_modules / "@directus" / "api"
    (api / "dist" / "cli").mkdir(parents=True)
    exports = {".": "./dist/index.js", "./*": "./dist/*.js"}
    if export is not None:
        exports["./cli/run.js"] = export
    (api / "package.json").write_text(json.dumps({"name": "@directus/api", "exports": exports}))
    if script:
        (api.joinpath(*RUN_JS)).write_text("// the CLI\n")
    return api


def test_image_layout_runs_the_entry_beside_cli_js(tmp_path: Path):
    """The official image's /directus is the `directus` package: with no `directus` on PATH, ./cli.js there gives
    `node /directus/node_modules/@directus/api/dist/cli/run.js`, never `node ./cli.js`."""
    root = _directus_package(tmp_path / "directus")
    api = _api(root / "node_modules")
    assert default_command(root, path="") == ("node", str(api.joinpath(*RUN_JS)))


def test_npm_layout_follows_the_bin_link_to_the_package_and_its_hoisted_api(tmp_path: Path):
    """`directus` on PATH is npm's link node_modules/.bin/directus -> ../directus/cli.js; @directus/api is hoisted
    beside the package, where Node finds it from cli.js (the package's own node_modules first, then the parent's)."""
    nm = tmp_path / "install" / "node_modules"
    _directus_package(nm / "directus")
    api = _api(nm)
    (nm / ".bin").mkdir()
    (nm / ".bin" / "directus").symlink_to("../directus/cli.js")
    os.chmod(nm / "directus" / "cli.js", 0o700)
    assert default_command(tmp_path, path=str(nm / ".bin")) == ("node", str(api.joinpath(*RUN_JS)))


def test_the_packages_own_node_modules_wins_over_a_parents(tmp_path: Path):
    """A nested @directus/api (the package's own node_modules) is the one Node loads, so it is the one used."""
    nm = tmp_path / "node_modules"
    pkg = _directus_package(nm / "directus")
    _api(nm)
    own = _api(pkg / "node_modules")
    assert default_command(pkg, path="") == ("node", str(own.joinpath(*RUN_JS)))


def test_pnpm_layout_with_a_linked_api_package(tmp_path: Path):
    """pnpm links node_modules/@directus/api into node_modules/.pnpm; the path through the link is used."""
    root = _directus_package(tmp_path / "directus")
    store = _api(root / "node_modules" / ".pnpm" / "@directus+api@39.2.0" / "node_modules")
    (root / "node_modules" / "@directus").mkdir()
    (root / "node_modules" / "@directus" / "api").symlink_to(store)
    script = root / "node_modules" / "@directus" / "api" / "dist" / "cli" / "run.js"
    assert default_command(root, path="") == ("node", str(script))


@pytest.mark.parametrize(
    ("export", "script", "names"),
    [
        (None, True, "exports './cli/run.js' as None"),
        ("./dist/cli/run.js", False, "dist/cli/run.js does not exist"),
    ],
)
def test_a_directus_without_the_entry_fails_closed(
    tmp_path: Path, export: str | None, script: bool, names: str
):
    """Directus found but no run.js: exit 2 DIRECTUS_CMD_INVALID naming what was looked for and how to set
    SUPERVISOR_DIRECTUS_CMD, never a silent fall-back to the cli.js that calls the registry."""
    root = _directus_package(tmp_path / "directus")
    _api(root / "node_modules", export=export, script=script)
    with pytest.raises(ConfigError) as e:
        default_command(root, path="")
    assert e.value.error_code == "DIRECTUS_CMD_INVALID" and e.value.code == 2
    assert names in e.value.message and "SUPERVISOR_DIRECTUS_CMD" in e.value.message


def test_a_directus_without_its_api_package_names_every_folder_looked_in(tmp_path: Path):
    """No @directus/api anywhere Node would look: the message lists the folders, nearest first."""
    root = _directus_package(tmp_path / "app" / "directus")
    with pytest.raises(ConfigError) as e:
        default_command(root, path="")
    assert e.value.error_code == "DIRECTUS_CMD_INVALID"
    message = e.value.message
    own, parent = str(root / "node_modules" / "@directus" / "api"), str(tmp_path / "app" / "node_modules")
    assert own in message and parent in message and message.index(own) < message.index(parent)


def test_no_directus_at_all_is_a_configuration_error(tmp_path: Path):
    """Neither `directus` on PATH nor ./cli.js: exit 2 naming both places and the variable."""
    with pytest.raises(ConfigError) as e:
        default_command(tmp_path, path="")
    assert e.value.error_code == "DIRECTUS_CMD_INVALID"
    assert "no `directus` on PATH" in e.value.message and str(tmp_path) in e.value.message


def test_a_cli_js_outside_a_directus_package_is_refused(tmp_path: Path):
    """A ./cli.js whose package.json is not the `directus` package is not taken for Directus."""
    (tmp_path / "cli.js").write_text("")
    (tmp_path / "package.json").write_text(json.dumps({"name": "fleet"}))
    with pytest.raises(ConfigError, match="does not name the `directus` package"):
        default_command(tmp_path, path="")


def test_a_directus_on_path_that_is_not_the_package_bin_is_refused(tmp_path: Path):
    """A `directus` wrapper script on PATH that leads to no `directus` package: exit 2, not a guess."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "directus").write_text('#!/bin/sh\nexec node /somewhere/cli.js "$@"\n')
    os.chmod(bin_dir / "directus", 0o700)
    with pytest.raises(ConfigError, match=r"not the cli\.js of a `directus` package") as e:
        default_command(tmp_path, path=str(bin_dir))
    assert e.value.error_code == "DIRECTUS_CMD_INVALID"


def test_an_explicit_command_is_used_exactly_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """SUPERVISOR_DIRECTUS_CMD is never rewritten, even `node ./cli.js` with a Directus right there."""
    root = _directus_package(tmp_path / "directus")
    _api(root / "node_modules")
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", path_without_directus(os.environ.get("PATH", "")))
    settings = Settings.load({**BASE, "SUPERVISOR_DIRECTUS_CMD": "node ./cli.js"})
    assert settings.directus_argv() == ("node", "./cli.js")
    assert Settings.load(BASE).directus_argv() == (
        "node",
        str(root / "node_modules/@directus/api/dist/cli/run.js"),
    )


def test_the_pinned_install_has_the_entry():
    """The real pinned Directus, found through its `directus` bin, gives a run.js that exists."""
    install = install_directus()
    argv = default_command(install, path=str(install / "node_modules" / ".bin"))
    assert argv[0] == "node" and argv[1].endswith("node_modules/@directus/api/dist/cli/run.js")
    assert Path(argv[1]).is_file()
