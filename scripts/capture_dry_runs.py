"""Captures `directus schema apply --dry-run` output from a real Directus, for the dry-run parser's fixtures.

For one installed Directus version: a throw-away Postgres cluster, a database bootstrapped and given a small seed
schema with `schema apply`, then the version's own `schema snapshot` of it (the base). Each case edits a copy of
that base snapshot, runs the dry-run against a fresh copy of the base database, and writes the raw stdout to
OUT/<version>/<case>.txt. The base snapshot is written next to them as base.json.

    .venv/bin/python scripts/capture_dry_runs.py                       # the pinned Directus (folder directus/)
    .venv/bin/python scripts/capture_dry_runs.py --folder directus-11  # the 11.x pinned in directus-11/
    .venv/bin/python scripts/capture_dry_runs.py --list                # the cases, no Directus needed

The CLI runs as the supervisor runs it (colour off, LOG_LEVEL=info, pino-pretty logs on the same stdout).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg import LocalCluster, bindir, free_port

Snapshot = dict[str, Any]

# --- the seed: what the base database holds before the version's own snapshot is taken ---------------------------


def _pk(collection: str) -> Snapshot:
    return {"collection": collection, "field": "id", "type": "integer",
            "meta": {"hidden": True, "interface": "input", "readonly": True},
            "schema": {"is_primary_key": True, "has_auto_increment": True}}  # fmt: skip


def _field(collection: str, name: str, type_: str = "string", meta: Any = None, **schema: Any) -> Snapshot:
    return {"collection": collection, "field": name, "type": type_,
            "meta": {"interface": "input", **(meta or {})}, "schema": {"is_nullable": True, **schema}}  # fmt: skip


def _collection(name: str, **meta: Any) -> Snapshot:
    return {"collection": name, "meta": {"icon": "box", "note": None, **meta}, "schema": {"name": name}}


def _relation(collection: str, field: str, related: str, on_delete: str = "SET NULL") -> Snapshot:
    return {"collection": collection, "field": field, "related_collection": related,
            "meta": {"one_field": None, "sort_field": None, "one_deselect_action": "nullify"},
            "schema": {"on_delete": on_delete}}  # fmt: skip


def seed(empty: Snapshot) -> Snapshot:
    """authors, articles (indexed, unique, m2o fields), legacy, and tags with a non-serial primary key, added to
    the version's own snapshot of a just-bootstrapped database (which keeps its `systemFields`: without them the
    apply would drop the system tables' indexes)."""
    if empty["collections"] or empty["fields"] or empty["relations"]:
        raise SystemExit("capture: the just-bootstrapped database already has user collections")
    return {
        **empty,
        "collections": [
            _collection("articles", note="Posts"),
            _collection("authors"),
            _collection("legacy"),
            _collection("tags"),
        ],
        "fields": [
            _pk("articles"),
            _field(
                "articles", "title", meta={"options": {"placeholder": "Title", "trim": True}}, max_length=255
            ),
            _field("articles", "body", "text"),
            _field("articles", "code", is_unique=True),
            _field("articles", "slug", is_indexed=True),
            _field("articles", "status", default_value="draft"),
            _field(
                "articles", "author", "integer", meta={"interface": "select-dropdown-m2o", "special": ["m2o"]}
            ),
            _field("articles", "editor", "integer"),
            _pk("authors"),
            _field("authors", "name"),
            _field("authors", "email"),
            _pk("legacy"),
            _field("legacy", "note"),
            {
                "collection": "tags",
                "field": "code",
                "type": "string",
                "meta": {"interface": "input"},
                "schema": {
                    "is_primary_key": True,
                    "has_auto_increment": False,
                    "is_nullable": False,
                    "max_length": 64,
                },
            },
            _field("tags", "label", is_nullable=False),
        ],
        "relations": [_relation("articles", "author", "authors")],
    }  # the bootstrapped database has no user collections, fields or relations to keep


# --- the cases: each edits a deep copy of the version's own base snapshot -----------------------------------------


def _find(items: list[Snapshot], **match: Any) -> Snapshot:
    hits = [i for i in items if all(i.get(k) == v for k, v in match.items())]
    if len(hits) != 1:
        raise SystemExit(f"capture: the base snapshot has {len(hits)} item(s) matching {match}, expected 1")
    return hits[0]


def _drop(items: list[Snapshot], **match: Any) -> list[Snapshot]:
    _find(items, **match)
    return [i for i in items if not all(i.get(k) == v for k, v in match.items())]


def _schema(s: Snapshot, collection: str, field: str) -> dict[str, Any]:
    schema: dict[str, Any] = _find(s["fields"], collection=collection, field=field)["schema"]
    return schema


def no_changes(s: Snapshot) -> None:
    """The base itself: `No changes to apply.`"""


def create_collection(s: Snapshot) -> None:
    """A new collection `vehicles` with a serial key and a `plate` field."""
    s["collections"].append(_collection("vehicles"))
    s["fields"] += [_pk("vehicles"), _field("vehicles", "plate", max_length=32)]


def delete_collection(s: Snapshot) -> None:
    """`legacy` and its fields removed: the table is dropped."""
    s["collections"] = _drop(s["collections"], collection="legacy")
    s["fields"] = [f for f in s["fields"] if f["collection"] != "legacy"]


def create_field(s: Snapshot) -> None:
    """A new text field `authors.bio`."""
    s["fields"].append(_field("authors", "bio", "text"))


def delete_field(s: Snapshot) -> None:
    """`articles.body` removed: the column is dropped."""
    s["fields"] = _drop(s["fields"], collection="articles", field="body")


def field_type_change(s: Snapshot) -> None:
    """`articles.title` shortened to 100, `articles.status` from string (varchar) to text."""
    _schema(s, "articles", "title")["max_length"] = 100
    status = _find(s["fields"], collection="articles", field="status")
    status["type"] = "text"
    status["schema"]["data_type"] = "text"
    status["schema"]["max_length"] = None


def field_to_alias(s: Snapshot) -> None:
    """`authors.email` turned into an alias field: Directus drops the column and creates the alias."""
    email = _find(s["fields"], collection="authors", field="email")
    email["type"] = "alias"
    email["schema"] = None
    email["meta"]["special"] = ["no-data"]


def index_dropped(s: Snapshot) -> None:
    """`articles.slug` no longer indexed."""
    _schema(s, "articles", "slug")["is_indexed"] = False


def unique_dropped(s: Snapshot) -> None:
    """`articles.code` no longer unique."""
    _schema(s, "articles", "code")["is_unique"] = False


def unique_added(s: Snapshot) -> None:
    """`authors.email` made unique (not destructive)."""
    _schema(s, "authors", "email")["is_unique"] = True


def primary_key_moved(s: Snapshot) -> None:
    """The primary key of `tags` moved from `code` to `label`."""
    _schema(s, "tags", "code")["is_primary_key"] = False
    _schema(s, "tags", "label")["is_primary_key"] = True


def auto_increment_added(s: Snapshot) -> None:
    """`tags.code` (a non-serial key) given has_auto_increment."""
    _schema(s, "tags", "code")["has_auto_increment"] = True


def relation_create(s: Snapshot) -> None:
    """A new relation articles.editor → authors."""
    s["relations"].append(_relation("articles", "editor", "authors"))


def relation_update(s: Snapshot) -> None:
    """articles.author → authors now cascades on delete."""
    rel = _find(s["relations"], collection="articles", field="author")
    rel["schema"]["on_delete"] = "CASCADE"


def relation_delete(s: Snapshot) -> None:
    """The relation articles.author → authors removed (the column stays)."""
    s["relations"] = _drop(s["relations"], collection="articles", field="author")


def system_fields_missing(s: Snapshot) -> None:
    """A snapshot without `systemFields` (as made before 11.13): every indexed system field loses its index."""
    s.pop("systemFields", None)


def system_field_unindexed(s: Snapshot) -> None:
    """One system field's index turned off."""
    if not s.get("systemFields"):
        raise SystemExit("capture: this version's snapshot has no systemFields")
    s["systemFields"][0]["schema"]["is_indexed"] = False


def field_nested_meta(s: Snapshot) -> None:
    """`articles.title`: an options key added, one removed, one changed (nested meta N/D/E)."""
    options = _find(s["fields"], collection="articles", field="title")["meta"]["options"]
    del options["placeholder"]
    options["trim"] = False
    options["font"] = "monospace"


def collection_meta_update(s: Snapshot) -> None:
    """`articles` collection meta: the note and the colour changed (meta edits)."""
    meta = _find(s["collections"], collection="articles")["meta"]
    meta["note"] = "All posts"
    meta["color"] = "#FF0000"


def collection_meta_key_removed(s: Snapshot) -> None:
    """`articles` collection meta without its `color` key: a nested meta delete first in the diff, which
    Directus before 12.4 prints (and applies) as a Delete of the whole collection (directus#27877)."""
    del _find(s["collections"], collection="articles")["meta"]["color"]


def field_meta_multiline(s: Snapshot) -> None:
    """A field note with a line break (the printer interpolates values as they are)."""
    _find(s["fields"], collection="authors", field="name")["meta"]["note"] = "First line\nsecond line"


def many_sections(s: Snapshot) -> None:
    """One change in each section at once: the sections' order and separation."""
    create_collection(s)
    delete_field(s)
    system_field_unindexed(s)
    relation_update(s)


CASES: dict[str, Callable[[Snapshot], None]] = {
    f.__name__: f
    for f in (
        no_changes, create_collection, delete_collection, create_field, delete_field, field_type_change,
        field_to_alias, index_dropped, unique_dropped, unique_added, primary_key_moved, auto_increment_added,
        relation_create, relation_update, relation_delete, system_fields_missing, system_field_unindexed,
        field_nested_meta, collection_meta_update, collection_meta_key_removed, field_meta_multiline, many_sections,
    )
}  # fmt: skip
SPACE_CASES = ("space_names_create", "space_names_delete")
RAW_LOGS = ("no_changes", "delete_field")  # also captured with LOG_STYLE=raw, as <case>_raw_logs


# --- running Directus ----------------------------------------------------------------------------------------------


class Capture:
    """One Directus install against one throw-away cluster."""

    def __init__(self, install: Path, cluster: LocalCluster, work: Path) -> None:
        self.install = install
        self.cluster = cluster
        self.work = work
        pkg = json.loads((install / "node_modules" / "directus" / "package.json").read_text())
        self.version: str = pkg["version"]
        self.cli = ["node", str(install / "node_modules" / "@directus" / "api" / "dist" / "cli" / "run.js")]
        (work / "extensions").mkdir()
        (work / "uploads").mkdir()
        (work / "package.json").write_text(json.dumps({"name": "capture", "private": True}))

    def env(self, database: str) -> dict[str, str]:
        """The environment the supervisor gives CLI steps (colour off, info logs) plus the database."""
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "LOG_"))},
            "DB_CLIENT": "pg", "DB_HOST": "127.0.0.1", "DB_PORT": str(self.cluster.port),
            "DB_USER": self.cluster.user, "DB_PASSWORD": self.cluster.password, "DB_DATABASE": database,
            "SECRET": "capture-secret-not-used-for-anything-0123456789", "TELEMETRY": "false",
            "PORT": str(free_port()), "HOST": "127.0.0.1", "EXTENSIONS_PATH": str(self.work / "extensions"),
            "STORAGE_LOCAL_ROOT": str(self.work / "uploads"), "CACHE_ENABLED": "false",
            "FORCE_COLOR": "0", "NO_COLOR": "1", "LOG_LEVEL": "info",
        }  # fmt: skip

    def directus(
        self, database: str, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`directus ARGS` with stdin closed; raises with its output when it fails and `check` is set."""
        done = subprocess.run(
            [*self.cli, *args], env={**self.env(database), **(env or {})}, cwd=self.work, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise SystemExit(
                f"capture: `directus {' '.join(args)}` on {database} failed (exit {done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def sql(self, statement: str) -> None:
        """One statement on the maintenance database."""
        subprocess.run(
            [str(bindir() / "psql"), "-qX", "-v", "ON_ERROR_STOP=1", self.cluster.dsn(), "-c", statement],
            check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
        )  # fmt: skip

    def write(self, name: str, snapshot: Snapshot) -> Path:
        """A snapshot file in the work folder (JSON: `schema apply` reads any non-YAML file as JSON)."""
        path = self.work / f"{name}.json"
        path.write_text(json.dumps(snapshot, indent=2))
        return path

    def snapshot(self, database: str, name: str) -> Snapshot:
        """The version's own `schema snapshot` of `database`."""
        path = self.work / f"{name}.json"
        self.directus(database, "schema", "snapshot", "--yes", "--format", "json", str(path))
        data: Snapshot = json.loads(path.read_text())
        return data

    def dry_run(self, database: str, target: Path, env: dict[str, str] | None = None) -> str:
        """The dry-run's stdout (it must exit 0)."""
        return self.directus(database, "schema", "apply", "--dry-run", "--yes", str(target), env=env).stdout

    def copy_db(self, source: str, target: str) -> None:
        """A fresh copy of `source` (nothing may be connected to it)."""
        self.sql(f'DROP DATABASE IF EXISTS "{target}"')
        self.sql(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')


def capture(install: Path, out: Path, only: list[str] | None, workers: int = 2) -> int:
    """All cases (or `only`) for one install; returns the number of fixtures written."""
    cluster = LocalCluster().init().start()
    written = 0
    try:
        with tempfile.TemporaryDirectory(prefix="capture-dry-run-") as tmp:
            cap = Capture(install, cluster, Path(tmp))
            dest = out / cap.version
            dest.mkdir(parents=True, exist_ok=True)
            print(f"capture: Directus {cap.version} -> {dest}", file=sys.stderr)
            cap.sql("CREATE DATABASE base")
            cap.directus("base", "bootstrap", "--skipAdminInit")
            empty = cap.snapshot("base", "empty")
            cap.directus("base", "schema", "apply", "--yes", str(cap.write("seed", seed(empty))))
            base = cap.snapshot("base", "base")
            if "systemFields" in empty and base.get("systemFields") != empty["systemFields"]:
                raise SystemExit("capture: applying the seed changed the indexed system fields")
            (dest / "base.json").write_text(json.dumps(base, indent=2) + "\n")
            jobs: list[
                tuple[str, str, Path, dict[str, str]]
            ] = []  # (fixture, database, target snapshot, extra env)
            if not only or "not_installed" in only:
                # The message Directus logs (and exits 0 with) on a database without its tables.
                cap.sql("CREATE DATABASE empty")
                jobs.append(("not_installed", "empty", cap.write("base-copy", base), {}))
            for i, (name, edit) in enumerate(CASES.items()):
                if only and name not in only:
                    continue
                target = copy.deepcopy(base)
                edit(target)
                cap.copy_db("base", f"case{i}")  # all copies first: a template must have no connections
                jobs.append((name, f"case{i}", cap.write(name, target), {}))
                if name in RAW_LOGS:  # LOG_STYLE=raw (JSON log lines), as operators often set in clusters
                    cap.copy_db("base", f"raw{i}")
                    jobs.append(
                        (f"{name}_raw_logs", f"raw{i}", cap.write(name, target), {"LOG_STYLE": "raw"})
                    )
            with ThreadPoolExecutor(max_workers=workers) as pool:
                outputs = pool.map(lambda job: cap.dry_run(job[1], job[2], job[3]), jobs)
                for (name, *_), stdout in zip(jobs, outputs, strict=True):
                    (dest / f"{name}.txt").write_text(stdout)
                    print(f"capture: {name}", file=sys.stderr)
            written += len(jobs)
            if not only or any(c in only for c in SPACE_CASES):
                written += _space_names(cap, base, dest)
    finally:
        cluster.destroy()
    return written


def _space_names(cap: Capture, base: Snapshot, dest: Path) -> int:
    """Names with spaces: a collection `my table` with a field `my field`, and a field `articles.my field`.
    Applied for real first (so the delete case has them in the database); if Directus refuses such names, the
    refusal is reported and only the create case is kept."""
    spaced = copy.deepcopy(base)
    spaced["collections"].append(_collection("my table"))
    spaced["fields"] += [_pk("my table"), _field("my table", "my field"), _field("articles", "my field")]
    target = cap.write("spaced", spaced)
    cap.copy_db("base", "spaces_create")
    (dest / "space_names_create.txt").write_text(cap.dry_run("spaces_create", target))
    cap.copy_db("base", "spaces")
    applied = cap.directus("spaces", "schema", "apply", "--yes", str(target), check=False)
    if applied.returncode != 0:
        print(f"capture: Directus {cap.version} refused names with spaces:\n{applied.stdout[-2000:]}",
              file=sys.stderr)  # fmt: skip
        return 1
    (dest / "space_names_delete.txt").write_text(cap.dry_run("spaces", cap.write("base-again", base)))
    return 2


def _install(folder: str) -> Path:
    out = subprocess.run(
        [str(ROOT / "scripts" / "install-directus"), folder], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Parse the options and capture."""
    parser = argparse.ArgumentParser(
        prog="capture_dry_runs.py",
        description="Capture `directus schema apply --dry-run` output from a real Directus into "
        "tests/fixtures/dry_run/<version>/<case>.txt (needs Node and the PostgreSQL server binaries).",
    )
    parser.add_argument("--folder", default="directus",
                        help="the package folder to install with scripts/install-directus (default: directus)")  # fmt: skip
    parser.add_argument("--install", type=Path,
                        help="an installed Directus (a folder holding node_modules/directus): skips the install")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "dry_run",
                        help="where the <version>/ folders go (default: tests/fixtures/dry_run)")  # fmt: skip
    parser.add_argument("--only", action="append", metavar="CASE", help="capture only this case (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="dry-runs at once (default: 2)")
    parser.add_argument("--list", action="store_true", help="print the cases and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, edit in CASES.items():
            print(f"{name}: {(edit.__doc__ or '').strip()}")
        print("not_installed: the dry-run on a database without Directus's tables")
        print("space_names_create, space_names_delete: a collection and fields whose names hold spaces")
        print(
            f"{', '.join(c + '_raw_logs' for c in RAW_LOGS)}: the same cases with LOG_STYLE=raw (JSON logs)"
        )
        return 0
    unknown = set(args.only or ()) - {*CASES, *SPACE_CASES, "not_installed"}
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}; see --list")
    install = args.install or _install(args.folder)
    written = capture(install, args.out, args.only, max(1, args.jobs))
    print(f"capture: {written} fixture(s) written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
