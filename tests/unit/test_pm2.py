"""PM2_INSTANCES: which values are taken, how the supervisor's Directus command becomes pm2's cluster app, what
is refused before any phase (supervisor.pm2), and the shipped ecosystem file (supervisor/pm2.config.cjs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from supervisor import pm2
from supervisor.errors import ConfigError
from supervisor.settings import Settings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 1),
        ("", 1),
        ("  ", 1),
        ("1", 1),
        ("2", 2),
        (" 4 ", 4),
        ("16", 16),
        ("max", "max"),
        ("MAX", "max"),
    ],
)
def test_accepted_values(raw: str | None, expected: int | str):
    """Unset or empty is 1 (no pm2); whole numbers from 1 up and `max` (any case) are taken as they are."""
    assert pm2.parse_instances(raw) == expected


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("0", "write max if that is meant"),
        ("-1", "give the count itself"),
        ("-4", "give the count itself"),
        ("two", "whole number"),
        ("1.5", "whole number"),
        ("3x", "whole number"),
        ("+2", "whole number"),
        ("٣", "whole number"),  # an Arabic-Indic three: int() reads it, pm2 does not
    ],
)
def test_refused_values_say_what_pm2_would_have_made_of_them(raw: str, hint: str):
    """0, negatives (pm2: relative to the CPU count) and anything but digits are refused with exit 2 and a hint."""
    with pytest.raises(ConfigError) as e:
        pm2.parse_instances(raw)
    assert e.value.code == 2
    assert e.value.error_code == "CONFIG_INVALID"
    assert e.value.message.startswith(f"PM2_INSTANCES={raw!r} is not a number of workers")
    assert hint in e.value.message


def test_settings_read_pm2_instances_plainly():
    """Settings carry the parsed value; PM2_INSTANCES_FILE is not read (pm2 reads no _FILE variables)."""
    assert Settings.load({"PM2_INSTANCES": "3"}, need_db=False).pm2_instances == 3
    assert Settings.load({}, need_db=False).pm2_instances == 1
    assert Settings.load({"PM2_INSTANCES_FILE": "/nonexistent"}, need_db=False).pm2_instances == 1
    with pytest.raises(ConfigError, match="PM2_INSTANCES='zero'"):
        Settings.load({"PM2_INSTANCES": "zero"}, need_db=False)


def _bin(tmp_path: Path) -> Path:
    """A PATH folder with a pm2-runtime (a Node script, as npm installs it) and a link to Node."""
    folder = tmp_path / "bin"
    folder.mkdir()
    pkg = tmp_path / "pm2pkg"
    pkg.mkdir()
    runtime = pkg / "pm2-runtime"
    runtime.write_text("#!/usr/bin/env node\nrequire('../lib/binaries/Runtime4Docker.js');\n")
    runtime.chmod(0o755)
    (folder / "pm2-runtime").symlink_to(runtime)
    node = shutil.which("node") or "/usr/bin/node"
    (folder / "node").symlink_to(node)
    return folder


def test_a_node_command_becomes_script_node_args_and_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`node [FLAGS] SCRIPT ARGS`: FLAGS go to pm2's node_args (a flag's separate value stays with it), SCRIPT
    (made absolute) is the app, ARGS + `start` its arguments; pm2-runtime is run by that same Node, so the
    workers it forks run on it too."""
    monkeypatch.chdir(tmp_path)
    bin_dir = _bin(tmp_path)
    (tmp_path / "run.js").write_text("")
    cmd = ("node", "--max-old-space-size=300", "--import", "x/y.js", "run.js", "--flag")
    launch = pm2.plan(cmd, 2, {"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert launch.script == str(tmp_path / "run.js")
    assert launch.node_args == ("--max-old-space-size=300", "--import", "x/y.js")
    assert launch.args == ("--flag", "start")
    assert launch.argv == (
        str(bin_dir / "node"), str(tmp_path / "pm2pkg" / "pm2-runtime"), "start", str(pm2.CONFIG),
    )  # fmt: skip
    assert json.loads(launch.app_json()) == {
        "script": str(tmp_path / "run.js"), "args": ["--flag", "start"],
        "node_args": ["--max-old-space-size=300", "--import", "x/y.js"], "instances": 2,
    }  # fmt: skip


def test_a_node_script_on_path_is_the_app_itself(tmp_path: Path):
    """`directus` on PATH (npm links it to cli.js, a `#!/usr/bin/env node` script): its real path is the app and
    pm2-runtime runs as installed."""
    bin_dir = _bin(tmp_path)
    cli = tmp_path / "cli.js"
    cli.write_text("#!/usr/bin/env node\n")
    cli.chmod(0o755)
    (bin_dir / "directus").symlink_to(cli)
    launch = pm2.plan(("directus",), "max", {"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert launch.script == str(cli)
    assert launch.args == ("start",)
    assert launch.argv == (str(bin_dir / "pm2-runtime"), "start", str(pm2.CONFIG))
    assert launch.instances == "max"


@pytest.mark.parametrize(
    ("cmd", "why"),
    [
        (("python3", "tests/standin.py"), "not a Node script"),
        (("node", "-e", "1"), "names no script"),
        (("node", "--max-old-space-size=300"), "names no script"),
        (("node", "missing.js"), "not a file"),
        (("no-such-directus",), "not found"),
    ],
)
def test_commands_cluster_mode_cannot_run_are_refused(cmd: tuple[str, ...], why: str, tmp_path: Path):
    """Cluster mode forks Node workers from a script: anything else is exit 2 with the fix in the message."""
    bin_dir = _bin(tmp_path)
    (bin_dir / "python3").symlink_to(shutil.which("python3") or "/usr/bin/python3")
    with pytest.raises(ConfigError) as e:
        pm2.plan(cmd, 2, {"PATH": str(bin_dir)})
    assert why in e.value.message
    assert "SUPERVISOR_DIRECTUS_CMD" in e.value.message
    assert e.value.code == 2


def test_other_exec_modes_are_refused(tmp_path: Path):
    """PM2_EXEC_MODE=fork (the official file honours it) would start workers that each bind the same port: only
    cluster mode is supported (and `cluster` itself is accepted)."""
    bin_dir = _bin(tmp_path)
    (tmp_path / "run.js").write_text("")
    script = str(tmp_path / "run.js")
    with pytest.raises(ConfigError, match="PM2_EXEC_MODE='fork' is not supported"):
        pm2.plan(("node", script), 2, {"PATH": str(bin_dir), "PM2_EXEC_MODE": "fork"})
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "PM2_EXEC_MODE": "cluster"}
    assert pm2.plan(("node", script), 2, env).script == script


def test_a_missing_pm2_names_it_and_points_at_the_copy_directus_ships(tmp_path: Path):
    """No pm2-runtime on PATH: PM2_MISSING (exit 2) with the install command; when the Directus entry lives in a
    node_modules that has pm2-runtime in .bin (@directus/api depends on pm2), the message names that folder."""
    entry = tmp_path / "node_modules" / "@directus" / "api" / "dist" / "cli" / "run.js"
    entry.parent.mkdir(parents=True)
    entry.write_text("")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "node").symlink_to(shutil.which("node") or "/usr/bin/node")
    with pytest.raises(ConfigError) as e:
        pm2.plan(("node", str(entry)), 2, {"PATH": str(empty)})
    assert e.value.error_code == "PM2_MISSING"
    assert "PM2_INSTANCES=2 needs pm2-runtime on PATH" in e.value.message
    assert "npm install --global pm2@7" in e.value.message
    assert "ships one" not in e.value.message
    bundled = tmp_path / "node_modules" / ".bin"
    bundled.mkdir()
    (bundled / "pm2-runtime").write_text("")
    with pytest.raises(ConfigError) as e:
        pm2.plan(("node", str(entry)), 2, {"PATH": str(empty)})
    assert f"ships one (@directus/api depends on pm2): {bundled}" in e.value.message


def test_a_pm2_home_pm2_cannot_write_is_refused(tmp_path: Path):
    """pm2-runtime hangs when it cannot create PM2_HOME (default $HOME/.pm2): refused up front, exit 2; a folder
    that does not exist yet under a writable one is fine (pm2 creates it)."""
    bin_dir = _bin(tmp_path)
    (tmp_path / "run.js").write_text("")
    cmd = ("node", str(tmp_path / "run.js"))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    base = {"PATH": str(bin_dir)}
    with pytest.raises(ConfigError, match=r"PM2_HOME=.*a-file/pm2 cannot be written") as e:
        pm2.plan(cmd, 2, {**base, "PM2_HOME": str(a_file / "pm2")})
    assert e.value.code == 2
    with pytest.raises(ConfigError, match=r"\$HOME/.pm2 \(PM2_HOME unset\)"):
        pm2.plan(cmd, 2, {**base, "HOME": str(a_file)})
    with pytest.raises(ConfigError, match="neither PM2_HOME nor HOME"):
        pm2.plan(cmd, 2, base)
    assert pm2.plan(cmd, 2, {**base, "PM2_HOME": str(tmp_path / "new" / "pm2")}).script == str(
        tmp_path / "run.js"
    )
    assert pm2.plan(cmd, 2, {**base, "HOME": str(tmp_path)}).script == str(tmp_path / "run.js")


def test_a_pm2_kill_timeout_at_or_above_the_stop_timeout_is_warned_about():
    """pm2 waits PM2_KILL_TIMEOUT before its own SIGKILL; the supervisor kills the group at its stop timeout."""
    assert pm2.warnings({}, 25.0) == []
    assert pm2.warnings({"PM2_KILL_TIMEOUT": "10000"}, 25.0) == []
    [(event, fields)] = pm2.warnings({"PM2_KILL_TIMEOUT": "30000"}, 25.0)
    assert event == "pm2.kill_timeout_too_long"
    assert fields["pm2_kill_timeout_ms"] == 30000


@pytest.mark.skipif(shutil.which("node") is None, reason="Node is part of this machine kind")
def test_the_ecosystem_file_is_the_official_one_with_the_supervisors_entry():
    """Loaded as pm2 loads it: one `directus` app in cluster mode that waits for Directus's ready message, the
    PM2_* variables read as the official image's file reads them, the handed-over entry, and SUPERVISOR_PM2_APP
    deleted from the environment the workers inherit. Without it, the file refuses to load."""
    app = {"script": "/d/run.js", "args": ["start"], "node_args": [], "instances": 3}
    env = {
        "PATH": os.environ.get("PATH", ""),
        pm2.APP_VARIABLE: json.dumps(app),
        "PM2_KILL_TIMEOUT": "5000", "PM2_AUTO_RESTART": "true", "PM2_MAX_RESTARTS": "7",
        "PM2_LOG_OUT_FILE": "/dev/null", "PM2_LOG_ERROR_FILE": "/dev/null",
    }  # fmt: skip
    code = (
        f"const apps = require({json.dumps(str(pm2.CONFIG))});"
        f"console.log(JSON.stringify({{apps, left: process.env.{pm2.APP_VARIABLE} ?? null}}))"
    )
    out = subprocess.run(["node", "-e", code], env=env, capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert loaded["left"] is None
    [config] = loaded["apps"]
    assert config == {
        "name": "directus", "script": "/d/run.js", "args": ["start"], "instances": 3, "exec_mode": "cluster",
        "kill_timeout": "5000", "wait_ready": True, "max_restarts": "7", "restart_delay": 0, "autorestart": True,
        "error_file": "/dev/null", "out_file": "/dev/null",
    }  # fmt: skip
    with_flags = subprocess.run(
        ["node", "-e", code],
        env={**env, pm2.APP_VARIABLE: json.dumps({**app, "node_args": ["--import", "x"]})},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert json.loads(with_flags)["apps"][0]["node_args"] == ["--import", "x"]
    bare = subprocess.run(
        ["node", "-e", code], env={"PATH": env["PATH"]}, capture_output=True, text=True, check=False
    )
    assert bare.returncode != 0
    assert "python -m supervisor run" in bare.stderr
