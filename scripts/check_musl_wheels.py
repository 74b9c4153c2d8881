"""Check that requirements.lock installs on the image: a musl wheel, locked by hash, for every compiled package.

    python scripts/check_musl_wheels.py [requirements.lock]

The image is `directus/directus:12.4.0`, built `FROM node:22-alpine` (Directus's Dockerfile; research/directus.md §5).
Directus 12.4.0 was published on 2026-09-22; since 2026-06-10 (nodejs/docker-node "Add Alpine 3.24 drop 3.22") the
`node:22-alpine` tag has been Alpine 3.24. Alpine 3.24's `python3` package is 3.14 (3.14.4 to 3.14.7-r1 in
Dockerfiles that pin `alpine_3_24/python3`; Alpine 3.23's was 3.12.13). So `apk add python3` there gives CPython 3.14
on musl 1.2: pip takes `cp314` (or `abi3`) wheels tagged `musllinux_1_1` or `musllinux_1_2`. The Dockerfile stops the
build if the base image gives another Python (its RUN after `apk add python3`), so this stays true or fails loudly.
Directus publishes the image for amd64 and arm64: both are checked.

For each locked `name==version`, PyPI's JSON API (https://pypi.org/pypi/<name>/json, `releases[version]`) lists the
release's files. A release with only `-none-any` wheels is pure Python: one of its files must be locked. Any other has
a compiled part: for each architecture a wheel this Python can install must exist and its sha256 must be among the
lock's hashes (pip --require-hashes would refuse it otherwise). PyPI unreachable is a failure, never a pass.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ARCHES", "IMAGE_PYTHON", "check", "locked", "pypi_files"]

IMAGE_PYTHON = (3, 14)
ARCHES = ("x86_64", "aarch64")
_MUSL = re.compile(r"^musllinux_1_[12]_(\w+)$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")

Fetch = Callable[[str, str], list[dict[str, Any]]]


def locked(lock: Path) -> dict[tuple[str, str], set[str]]:
    """`(name, version) -> {sha256, ...}` from a pip-compile --generate-hashes file."""
    out: dict[tuple[str, str], set[str]] = {}
    current: tuple[str, str] | None = None
    for line in lock.read_text().splitlines():
        if m := _PIN.match(line):
            current = (m.group(1).lower(), m.group(2))
            out[current] = set()
        if current is not None:
            out[current].update(_HASH.findall(line))
    return out


def pypi_files(name: str, version: str) -> list[dict[str, Any]]:
    """The files of one release, from PyPI's JSON API (raises on any network or HTTP error)."""
    url = f"https://pypi.org/pypi/{name}/json"
    with urllib.request.urlopen(url, timeout=30) as r:
        data = json.load(r)
    files = data.get("releases", {}).get(version)
    if not files:
        raise LookupError(f"PyPI lists no files for {name} {version} ({url})")
    return list(files)


def _installable(filename: str, arch: str) -> bool:
    """Whether CPython IMAGE_PYTHON on musl `arch` can install this wheel."""
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) < 5:
        return False
    py, abi, plats = parts[-3], parts[-2], parts[-1]
    major, minor = IMAGE_PYTHON
    ours = f"cp{major}{minor}"
    if abi == "abi3":
        ok = any(t.startswith(f"cp{major}") and int(t[3:] or 0) <= minor for t in py.split("."))
    else:
        ok = ours in py.split(".") and abi == ours  # cp314t (free-threaded) is another interpreter
    return ok and any((m := _MUSL.match(p)) and m.group(1) == arch for p in plats.split("."))


def check(lock: Path, fetch: Fetch = pypi_files) -> list[str]:
    """Problems, one line each; empty when every locked package installs on the image from a locked file."""
    problems: list[str] = []
    for (name, version), hashes in sorted(locked(lock).items()):
        files = fetch(name, version)
        wheels = [f for f in files if f["filename"].endswith(".whl")]
        pure = bool(wheels) and all(f["filename"].endswith("-none-any.whl") for f in wheels)
        if pure:
            if not any(f["digests"]["sha256"] in hashes for f in wheels):
                problems.append(f"{name}=={version}: its pure-Python wheel is not among the locked hashes")
            continue
        for arch in ARCHES:
            fit = [f for f in wheels if _installable(f["filename"], arch)]
            if not fit:
                problems.append(
                    f"{name}=={version}: no wheel for CPython {'.'.join(map(str, IMAGE_PYTHON))} on musllinux "
                    f"{arch} on PyPI: the image would compile it (or fail); pin a version that has one"
                )
            elif not any(f["digests"]["sha256"] in hashes for f in fit):
                names = ", ".join(f["filename"] for f in fit)
                problems.append(f"{name}=={version}: {names} not locked by hash; rerun scripts/lock")
    return problems


def main(argv: list[str]) -> int:
    lock = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "requirements.lock"
    problems = check(lock)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{lock.name}: {len(locked(lock))} packages checked for CPython {IMAGE_PYTHON} musllinux {ARCHES}: "
          f"{len(problems)} problem(s)")  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
