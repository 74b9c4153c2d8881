"""The deployment artifacts, checked offline: the Dockerfile with hadolint, the manifests against the Kubernetes
schemas, and the facts that tie them to the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} is a test dependency (pyproject test extra)"
    return path


def test_dockerfile_passes_hadolint():
    """hadolint (its PyPI wheel) finds nothing, not even info-level notes."""
    out = subprocess.run([_tool("hadolint"), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_copies_paths_that_exist_and_pins_the_tested_directus():
    """Every COPY source exists, and the base image's tag is the Directus the end-to-end tests run."""
    text = (ROOT / "Dockerfile").read_text()
    sources = [
        s for line in re.findall(r"^COPY (?:--\S+ )*(.+)$", text, re.MULTILINE) for s in line.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
    tag = re.search(r"^FROM directus/directus:(\S+)", text, re.MULTILINE)
    pinned = json.loads((ROOT / "directus" / "package.json").read_text())["dependencies"]["directus"]
    assert tag and tag.group(1) == pinned
    assert 'ENTRYPOINT ["/opt/supervisor/venv/bin/python", "-m", "supervisor"]' in text
    assert 'CMD ["run"]' in text and "STOPSIGNAL SIGTERM" in text and "/server/ping" in text


def test_manifests_validate_against_the_kubernetes_schemas():
    """deploy/kubernetes/*.yaml (except the Helm values) are valid, strictly, for Kubernetes 1.31."""
    files = sorted(str(p) for p in KUBE.glob("*.yaml") if p.name != "helm-values.yaml")
    out = subprocess.run([_tool("kubernetes-validate"), "--strict", "--quiet", "-k", "1.31.0", *files],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KUBE / name).read_text()) if d]


def test_manifests_follow_the_contract():
    """Init container `migrate`, main `run --only start`, probes on /server/ping (12.x answers 403 on
    /server/health), grace above SUPERVISOR_STOP_TIMEOUT, failure messages, and a Job that fails fast on 2, 4, 5, 7
    and counts the codes a retry can heal (3, 6, 8) and 1."""
    deployment, config, _service = _docs("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["args"] == ["migrate"]
    main = pod["containers"][0]
    assert main["args"] == ["run", "--only", "start"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"]["path"] == "/server/ping"
    assert pod["terminationGracePeriodSeconds"] > int(config["data"]["SUPERVISOR_STOP_TIMEOUT"].rstrip("s"))
    assert main["terminationMessagePolicy"] == pod["initContainers"][0]["terminationMessagePolicy"]
    job = _docs("job.yaml")[0]
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [2, 4, 5, 7]
    # An SQL error (4) is rolled back and fails the same way on every retry: retrying only delays the alert.
    counted = next(r for r in rules if r["action"] == "Count")["onExitCodes"]["values"]
    assert counted == [1, 3, 6, 8] and not set(counted) & set(rules[0]["onExitCodes"]["values"])
    values = yaml.safe_load((KUBE / "helm-values.yaml").read_text())
    assert values["initContainers"][0]["args"] == ["migrate"] and values["startupProbe"]["enabled"] is True


def test_compose_file_follows_the_contract():
    """TimescaleDB pg16 with a pg_isready healthcheck, the password through secrets and DB_PASSWORD_FILE, a
    healthcheck on /server/ping, a stop grace above SUPERVISOR_STOP_TIMEOUT, and no `init: true`."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    db, app = compose["services"]["db"], compose["services"]["directus"]
    assert re.match(r"timescale/timescaledb:[\d.]+-pg16$", db["image"])
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert (
        app["environment"]["DB_PASSWORD_FILE"] == "/run/secrets/db_password"
        and "DB_PASSWORD" not in app["environment"]
    )
    assert "/server/ping" in " ".join(app["healthcheck"]["test"])
    assert int(app["stop_grace_period"].rstrip("s")) > int(
        app["environment"]["SUPERVISOR_STOP_TIMEOUT"].rstrip("s")
    )
    assert "init" not in app
    assert "replicas: 3" in (ROOT / "docker-compose.yml").read_text()


def test_ci_workflow_lints_then_migrates_until_post_schema():
    """The example workflow runs lint, then `migrate --until post-schema` against a service Postgres."""
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "migrate-dry-run.yml").read_text())
    steps = " ".join(str(s.get("run", "")) for s in flow["jobs"]["dry-run"]["steps"])
    assert steps.index(" lint") < steps.index("migrate --until post-schema")
    assert "postgres" in flow["jobs"]["dry-run"]["services"]


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\") and pending:
            keyword, _, rest = pending.partition(" ")
            out.append((keyword.upper(), rest.strip()))
            pending = ""
    return out


class _Image:
    """What the Dockerfile puts where: each COPY destination (absolute) with its source in the repository, the
    final WORKDIR, ENV and ENTRYPOINT, and the RUN commands (after the base image's /directus)."""

    def __init__(self) -> None:
        self.copies: dict[str, Path] = {}
        self.env: dict[str, str] = {}
        self.runs: list[str] = []
        self.workdir = "/"
        self.entrypoint: list[str] = []
        for keyword, args in _instructions():
            if keyword == "WORKDIR":
                self.workdir = args
            elif keyword == "COPY":
                parts = [p for p in args.split() if not p.startswith("--")]
                *sources, dest = parts
                for source in sources:
                    target = dest if dest.startswith("/") else f"{self.workdir}/{dest.removeprefix('./')}"
                    target = target.rstrip("/")
                    if len(sources) > 1 or target == self.workdir:
                        target = f"{target}/{Path(source).name}"
                    self.copies[target] = ROOT / source
            elif keyword == "ENV":
                for key, value in re.findall(r"(\w+)=(\S+)", args):
                    self.env[key] = value.strip('"')
            elif keyword == "RUN":
                self.runs.append(args)
            elif keyword == "ENTRYPOINT":
                self.entrypoint = json.loads(args)

    def copied(self, path: str) -> Path | None:
        """The repository file or folder that ends up at `path` in the image, if a COPY puts it there."""
        for dest, source in self.copies.items():
            if path == dest or path.startswith(dest + "/"):
                return source / path[len(dest) :].lstrip("/")
        return None

    def made_by_run(self, path: str) -> bool:
        """Whether a RUN creates `path` (python -m venv FOLDER, or a NODE_COMPILE_CACHE=FOLDER run chowned to 1000)."""
        for run in self.runs:
            if m := re.search(r"-m venv (\S+)", run):
                venv = m.group(1)
                if path in (venv, f"{venv}/bin/python"):
                    return True
            if f"NODE_COMPILE_CACHE={path} " in run and f"chown -R 1000:1000 {path}" in run:
                return True
        return False


def _base_directus(tmp: Path) -> Path:
    """The base image's /directus, in the parts that matter here: the `directus` package (package.json, cli.js) and
    its node_modules/@directus/api with the file its `exports` name for ./cli/run.js, from the pinned install."""
    from tests.directus_env import install_directus

    modules = install_directus() / "node_modules"
    image = tmp / "directus"
    api = image / "node_modules" / "@directus" / "api"
    api.mkdir(parents=True)
    for name in ("package.json", "cli.js"):
        shutil.copy(modules / "directus" / name, image / name)
    shutil.copy(modules / "@directus" / "api" / "package.json", api / "package.json")
    target = json.loads((api / "package.json").read_text())["exports"]["./cli/run.js"]
    (api / target).parent.mkdir(parents=True)
    (api / target).touch()
    return image


def test_every_default_path_the_supervisor_uses_exists_in_the_image(tmp_path: Path, monkeypatch):
    """With the image's WORKDIR, ENV and ENTRYPOINT, each path the supervisor uses by default is put there by the
    Dockerfile or the base image: the SQL folders, the snapshot, the CLI entry without the npm update check (the one
    the compile cache is pre-warmed with), the compile cache folder and the venv's python."""
    from supervisor import directus_entry
    from supervisor.settings import Settings

    image = _Image()
    assert image.workdir == "/directus"  # the base image's, where its `directus` package is
    settings = Settings.load({"DB_CLIENT": "pg", "DB_HOST": "h", "DB_PORT": "5432", "DB_DATABASE": "d",
                              "DB_USER": "u", **image.env})  # fmt: skip
    for default in (settings.db_init_dir, settings.db_init_post_dir, settings.snapshot):
        source = image.copied(f"{image.workdir}/{default}")
        assert source is not None and source.exists(), (
            f"{default}: nothing in the Dockerfile puts it in /directus"
        )
    assert settings.snapshot.name == "schema.yaml" and image.copied("/directus/snapshots/schema.yaml")

    base = _base_directus(tmp_path)
    monkeypatch.chdir(base)
    directus_entry._resolve.cache_clear()
    node, entry = directus_entry.default_command(base, path="")
    in_image = "/directus/" + str(Path(entry).relative_to(base))
    assert (node, in_image) == ("node", "/directus/node_modules/@directus/api/dist/cli/run.js")
    prewarm = [r for r in image.runs if "NODE_COMPILE_CACHE=" in r]
    assert len(prewarm) == 1 and f"node {in_image} --version" in prewarm[0]

    cache = image.env["SUPERVISOR_NODE_COMPILE_CACHE"]
    assert cache.startswith("/directus/") and image.made_by_run(cache)
    assert "env -u DB_CLIENT" in prewarm[0]  # the base image's sqlite3 default would create a database file
    python = image.entrypoint[0]
    assert image.entrypoint[1:] == ["-m", "supervisor"] and image.made_by_run(python)


def test_the_image_installs_the_hash_lock_for_the_python_it_was_checked_for():
    """The Dockerfile installs requirements.lock (the lock scripts/setup installs) with --require-hashes and
    --no-deps, then the project with --no-deps; and it refuses a base image whose python3 is not the one the musl
    wheel check covers."""
    import importlib.util

    image = _Image()
    runs = " ".join(image.runs)
    assert image.copied("/opt/supervisor/requirements.lock") == ROOT / "requirements.lock"
    assert "pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock" in runs
    assert "pip install --no-cache-dir --no-deps --no-build-isolation /opt/supervisor" in runs
    setup = (ROOT / "scripts" / "setup").read_text()
    assert "--require-hashes --no-deps -r requirements.lock -r requirements-test.lock" in setup
    spec = importlib.util.spec_from_file_location(
        "check_musl_wheels", ROOT / "scripts" / "check_musl_wheels.py"
    )
    assert spec and spec.loader
    musl = importlib.util.module_from_spec(spec)
    sys.modules["check_musl_wheels"] = musl
    spec.loader.exec_module(musl)
    assert f"v == {musl.IMAGE_PYTHON}" in runs and "apk add --no-cache python3" in runs
