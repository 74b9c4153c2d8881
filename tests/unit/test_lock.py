"""The hash-locked requirements: what pyproject.toml asks for, pinned, and installable on the image's Python (musl).

test_the_lock_installs_on_the_image asks PyPI: without the registry it fails (CI has it), it never skips.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent.parent
_spec = importlib.util.spec_from_file_location("check_musl_wheels", ROOT / "scripts" / "check_musl_wheels.py")
assert _spec and _spec.loader
musl = importlib.util.module_from_spec(_spec)
sys.modules["check_musl_wheels"] = musl
_spec.loader.exec_module(musl)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(name: str) -> dict[str, str]:
    return {canonicalize_name(n): v for (n, v) in musl.locked(ROOT / name)}


def test_the_lock_installs_on_the_image():
    """Every package of requirements.lock has, on PyPI, a file the image's CPython on musl (amd64 and arm64) can
    install, and that file's sha256 is in the lock."""
    assert musl.check(ROOT / "requirements.lock") == []


def test_the_locks_pin_what_pyproject_asks_for():
    """requirements.lock pins every runtime dependency and the build backend within pyproject's ranges;
    requirements-test.lock pins every test extra, with the runtime packages at the same versions."""
    runtime, test = _pins("requirements.lock"), _pins("requirements-test.lock")
    wanted = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]
    for raw in wanted:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        assert name in runtime, f"{req.name} is not in requirements.lock: run scripts/lock"
        assert req.specifier.contains(runtime[name]), f"{name}=={runtime[name]} does not satisfy {raw}"
    for raw in PYPROJECT["project"]["optional-dependencies"]["test"]:
        req = Requirement(raw)
        assert canonicalize_name(req.name) in test, (
            f"{req.name} is not in requirements-test.lock: run scripts/lock"
        )
    shared = set(runtime) & set(test)
    assert shared >= {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    assert {n: runtime[n] for n in shared} == {n: test[n] for n in shared}


def test_every_pin_is_hashed():
    """pip --require-hashes refuses a pin without a hash: each one has at least one."""
    for lock in ("requirements.lock", "requirements-test.lock"):
        empty = [f"{n}=={v}" for (n, v), hashes in musl.locked(ROOT / lock).items() if not hashes]
        assert empty == [], lock


def _wheel(filename: str, sha: str) -> dict[str, Any]:
    return {"filename": filename, "digests": {"sha256": sha}}


def test_the_check_refuses_what_the_image_cannot_install(tmp_path: Path):
    """The check itself: a compiled package with glibc wheels only, or with its musl wheel not locked, or only a
    free-threaded (cp314t) musl wheel, is a problem; a pure wheel or an abi3 musl wheel that is locked is fine."""
    a, b, c, d = "a" * 64, "b" * 64, "c" * 64, "d" * 64
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        f"pure==1.0 \\\n    --hash=sha256:{a}\n"
        f"glibc-only==1.0 \\\n    --hash=sha256:{b}\n"
        f"unlocked==1.0 \\\n    --hash=sha256:{b}\n"
        f"threaded==1.0 \\\n    --hash=sha256:{c}\n"
        f"stable-abi==1.0 \\\n    --hash=sha256:{c}\n    --hash=sha256:{d}\n"
    )
    releases = {
        "pure": [_wheel("pure-1.0-py3-none-any.whl", a)],
        "glibc-only": [
            _wheel("glibc_only-1.0-cp314-cp314-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", b)
        ],
        "unlocked": [
            _wheel("unlocked-1.0-cp314-cp314-musllinux_1_2_x86_64.whl", c),
            _wheel("unlocked-1.0-cp314-cp314-musllinux_1_2_aarch64.whl", d),
        ],
        "threaded": [
            _wheel("threaded-1.0-cp314-cp314t-musllinux_1_2_x86_64.whl", c),
            _wheel("threaded-1.0-cp314-cp314t-musllinux_1_2_aarch64.whl", c),
        ],
        "stable-abi": [
            _wheel("stable_abi-1.0-cp39-abi3-musllinux_1_1_x86_64.whl", c),
            _wheel("stable_abi-1.0-cp39-abi3-musllinux_1_1_aarch64.musllinux_1_2_aarch64.whl", d),
        ],
    }
    problems = musl.check(lock, lambda name, version: releases[name])
    assert sorted(p.split(":")[0] for p in problems) == [
        "glibc-only==1.0", "glibc-only==1.0", "threaded==1.0", "threaded==1.0", "unlocked==1.0", "unlocked==1.0",
    ]  # fmt: skip
    assert any("no wheel for CPython 3.14 on musllinux x86_64" in p for p in problems)
    assert any("not locked by hash" in p for p in problems)
