"""Makes snapshots/schema.yaml for the fleet app with the pinned Directus itself: creates the collections through
its REST API, then `directus schema snapshot`, then checks the round trip (apply to a fresh database, no diff).

    .venv/bin/python scripts/make_snapshot.py                 # 12.4.0 (directus/) -> snapshots/schema.yaml
    .venv/bin/python scripts/make_snapshot.py --directus 11   # 11.17.4 (directus-11/) -> tests/fixtures/snapshots/
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.directus_env import ADMIN_EMAIL, ADMIN_PASSWORD, directus_env, install_directus, snapshot_for
from tests.pg import LocalCluster, free_port

PK = {"field": "id", "type": "integer", "meta": {"hidden": True, "interface": "input", "readonly": True},
      "schema": {"is_primary_key": True, "has_auto_increment": True}}  # fmt: skip


def string(name: str, required: bool = False) -> dict[str, Any]:
    return {"field": name, "type": "string", "meta": {"interface": "input", "required": required},
            "schema": {"is_nullable": not required}}  # fmt: skip


def collection(name: str, icon: str, *fields: dict[str, Any], hidden: bool = False) -> dict[str, Any]:
    return {
        "collection": name,
        "meta": {"icon": icon, "hidden": hidden},
        "schema": {},
        "fields": [PK, *fields],
    }


def junction(name: str, left: str, right: str, right_type: str = "integer") -> dict[str, Any]:
    return collection(
        name, "import_export",
        {"field": f"{left}_id", "type": "integer", "meta": {"hidden": True}, "schema": {}},
        {"field": f"{right}_id", "type": right_type, "meta": {"hidden": True}, "schema": {}},
        hidden=True,
    )  # fmt: skip


def m2m(parent: str, alias: str, junction_name: str, other: str) -> list[tuple[str, dict[str, Any]]]:
    """The alias field on the parent and the two relations of an M2M through `junction_name`."""
    return [
        ("fields/" + parent, {"field": alias, "type": "alias",
                              "meta": {"interface": "list-m2m", "special": ["m2m"]}}),
        ("relations", {"collection": junction_name, "field": f"{parent}_id", "related_collection": parent,
                       "meta": {"one_field": alias, "junction_field": f"{other}_id", "sort_field": None},
                       "schema": {"on_delete": "CASCADE"}}),
        ("relations", {"collection": junction_name, "field": f"{other}_id", "related_collection": other,
                       "meta": {"one_field": None, "junction_field": f"{parent}_id"},
                       "schema": {"on_delete": "CASCADE"}}),
    ]  # fmt: skip


def api(base: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    url = f"{base}/{path}"
    req = urllib.request.Request(url, method="POST" if data else "GET", data=data, headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (an http:// URL on 127.0.0.1)
        return json.loads(resp.read() or b"null")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--directus", type=int, choices=(12, 11), default=12, help="the Directus major (default 12)"
    )
    major = parser.parse_args().directus
    install = install_directus(major)
    cluster = LocalCluster().init().start()
    port = free_port()
    try:
        subprocess.run(["psql", "-qX", cluster.dsn(), "-c", "CREATE DATABASE fleet", "-c", "CREATE DATABASE fresh"],
                       check=True)  # fmt: skip
        db = {"DB_CLIENT": "pg", "DB_HOST": "127.0.0.1", "DB_PORT": str(cluster.port), "DB_USER": cluster.user,
              "DB_PASSWORD": cluster.password}  # fmt: skip
        env = {**os.environ, **directus_env(install, port, {**db, "DB_DATABASE": "fleet"})}
        cli = env["SUPERVISOR_DIRECTUS_CMD"].split()
        subprocess.run([*cli, "bootstrap"], env=env, check=True, stdout=subprocess.DEVNULL)
        server = subprocess.Popen([*cli, "start"], env=env, stdin=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(120):
                try:
                    urllib.request.urlopen(f"{base}/server/ping", timeout=1)  # noqa: S310
                    break
                except OSError:
                    time.sleep(0.25)
            token = api(base, "auth/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})["data"][
                "access_token"
            ]
            for c in (
                collection("organizations", "corporate_fare", string("name", required=True)),
                collection("vehicles", "local_shipping", string("plate", required=True), string("name")),
                collection("devices", "sensors", string("serial", required=True), string("model")),
                collection(
                    "events",
                    "event",
                    string("title", required=True),
                    {
                        "field": "starts_at",
                        "type": "timestamp",
                        "meta": {"interface": "datetime"},
                        "schema": {},
                    },
                ),
                junction("organization_users", "organizations", "directus_users", "uuid"),
                junction("organization_vehicles", "organizations", "vehicles"),
                junction("organization_devices", "organizations", "devices"),
                junction("event_participation", "events", "vehicles"),
            ):
                api(base, "collections", c, token)
            for path, body in (
                m2m("organizations", "users", "organization_users", "directus_users")
                + m2m("organizations", "vehicles", "organization_vehicles", "vehicles")
                + m2m("organizations", "devices", "organization_devices", "devices")
                + m2m("events", "vehicles", "event_participation", "vehicles")
            ):
                api(base, path, body, token)
        finally:
            server.terminate()
            server.wait(30)
        target = snapshot_for(major)
        target.parent.mkdir(exist_ok=True)
        subprocess.run([*cli, "schema", "snapshot", "--yes", str(target)], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        # Round trip: a fresh database, bootstrap, apply, then the dry-run must find nothing to do.
        fresh = {**env, "DB_DATABASE": "fresh"}
        subprocess.run([*cli, "bootstrap"], env=fresh, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [*cli, "schema", "apply", "--yes", str(target)], env=fresh, check=True, stdout=subprocess.DEVNULL
        )
        dry = [*cli, "schema", "apply", "--dry-run", "--yes", str(target)]
        again = subprocess.run(
            dry, env={**fresh, "LOG_LEVEL": "info"}, check=True, capture_output=True, text=True
        )
        if "No changes to apply" not in again.stdout:
            print(again.stdout, file=sys.stderr)
            print("round trip FAILED: the fresh database still differs from the snapshot", file=sys.stderr)
            return 1
        print(
            f"wrote {target.relative_to(ROOT)}; round trip clean (fresh database, apply, dry-run: no changes)"
        )
        return 0
    finally:
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
