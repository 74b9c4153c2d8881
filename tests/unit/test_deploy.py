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
