"""The default Directus command through the real entry points: `run --only start` (the resident PID-1 loop) and
`run --only start --exec` both start the CLI entry found from ./cli.js, never cli.js itself; a Directus without
that entry is exit 2. The `directus` package here is a small stand-in whose run.js notes its arguments."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import supervise
from tests.image_layout import path_without_directus

_NOTE = "require('fs').appendFileSync(process.env.NOTE_LOG, process.argv.slice(2).join(' ') + '\\n');\n"


def _package(root: Path, *, entry: bool = True) -> Path:
    """A `directus` package laid out as the image's /directus: cli.js (which must never run) and
    node_modules/@directus/api exporting ./cli/run.js (which notes its arguments and exits 7)."""
    root.mkdir()
    (root / "package.json").write_text(json.dumps({"name": "directus", "version": "12.4.0"}))
    (root / "cli.js").write_text(
        _NOTE.replace("process.argv.slice(2)", "['cli.js', ...process.argv.slice(2)]")
    )
    api = root / "node_modules" / "@directus" / "api"
    (api / "dist" / "cli").mkdir(parents=True)
    (api / "package.json").write_text(
        json.dumps({"name": "@directus/api", "exports": {"./cli/run.js": "./dist/cli/run.js"}})
    )
    if entry:
        (api / "dist" / "cli" / "run.js").write_text(_NOTE + "process.exit(7);\n")
    return root


def _env(log: Path) -> dict[str, str]:
    return {
        "SUPERVISOR_LOG_FORMAT": "json",
        "NOTE_LOG": str(log),
        "PATH": path_without_directus(os.environ["PATH"]),
    }


@pytest.mark.parametrize("mode", [(), ("--exec",)], ids=["supervised", "exec"])
async def test_start_runs_the_entry_without_the_update_check(tmp_path: Path, mode: tuple[str, ...]):
    """No SUPERVISOR_DIRECTUS_CMD and no `directus` on PATH: `start` runs node …/@directus/api/dist/cli/run.js
    start, in the resident loop and with --exec alike; Directus's exit status comes back."""
    root, log = _package(tmp_path / "directus"), tmp_path / "notes"
    r = await supervise("run", "--only", "start", *mode, env=_env(log), cwd=root)
    assert r.code == 7, r.stderr
    assert log.read_text() == "start\n"  # run.js ran; cli.js (which would note `cli.js start`) did not
    entry = root / "node_modules" / "@directus" / "api" / "dist" / "cli" / "run.js"
    assert r.events("directus.cli_chosen")[0]["argv"] == f"node {entry}"
    assert r.events("directus.exec")[0]["argv"] == f"node {entry} start"


async def test_a_directus_without_the_entry_is_exit_2_and_cli_js_never_runs(tmp_path: Path):
    """./cli.js is the `directus` package but @directus/api has no dist/cli/run.js: exit 2 DIRECTUS_CMD_INVALID
    naming the file and SUPERVISOR_DIRECTUS_CMD; nothing was started."""
    root, log = _package(tmp_path / "directus", entry=False), tmp_path / "notes"
    r = await supervise("run", "--only", "start", env=_env(log), cwd=root)
    assert r.code == 2, r.stderr
    assert r.failure["error_code"] == "DIRECTUS_CMD_INVALID"
    assert (
        "dist/cli/run.js does not exist" in r.failure["error"]
        and "SUPERVISOR_DIRECTUS_CMD" in r.failure["error"]
    )
    assert not log.exists()
