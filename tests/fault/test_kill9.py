"""kill -9 at seeded random points of every phase, then a clean re-run: every file applied exactly once, nothing
half-applied, no lock left, no Directus process left, no Directus step ever without its lock.

Each trial aims at one point of the boot (trial i at TARGETS[i % len(TARGETS)], so any 8 trials cover them all) and
kills a random delay after it, drawn from the seeded generator. `--trials N` (FAULT_TRIALS) sets how many trials,
`--seed S` (FAULT_SEED) replays a failure: every failure message names the seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fault.conftest import (
    DEFAULT_TRIALS,
    Knobs,
    Launched,
    Project,
    assert_clean_end_state,
    assert_nothing_half_applied,
    launch,
    rerun_until_clean,
    wait_locks_free,
)

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Target:
    """A point of the boot a trial aims at, and the window of the random delay after it."""

    name: str
    window_s: float
    verb: str | None = None  # None: `migrate` or `run`, drawn at random


TARGETS = (
    Target("process start", 3.0),  # anywhere: interpreter start, connect, ledger creation, the first files
    Target("pre-schema", 0.5),  # connected: the first batch of transactional files
    Target("no-transaction file", 0.6),  # 003_notx.sql: CREATE INDEX CONCURRENTLY, then a pause
    Target("directus bootstrap", 0.5),  # the stand-in's bootstrap step (inside schema-apply)
    Target("directus schema apply", 0.5),  # the stand-in's apply step
    Target("post-schema", 0.5),  # schema-apply recorded; post-schema's files
    Target("post no-transaction file", 0.4),  # 103_notx.sql
    Target("directus start", 0.3, verb="run"),  # Directus (the stand-in) running after the phases
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test item per trial, so each has its own timeout and report line."""
    if "trial" in metafunc.fixturenames:
        n = metafunc.config.getoption("--trials")
        if n is None:
            n = int(os.environ.get("FAULT_TRIALS", DEFAULT_TRIALS))
        metafunc.parametrize("trial", range(n), ids=[f"trial{i:02d}" for i in range(n)])


def _reached(target: Target, launched: Launched, project: Project) -> bool:
    name = target.name
    if name == "process start":
        return True
    if name.startswith("directus "):
        step = name.removeprefix("directus ")
        return any(args.startswith(step) and "--dry-run" not in args for _, args in project.started())
    logs = launched.logs()
    if name == "pre-schema":
        return any(e.get("event") == "db.connected" for e in logs)
    if name == "post-schema":
        return any(e.get("event") == "phase.finished" and e.get("phase") == "schema-apply" for e in logs)
    after = {"no-transaction file": "002_slow.sql", "post no-transaction file": "102_slow.sql"}[name]
    return any(e.get("event") == "step.applied" and e.get("file") == after for e in logs)


async def _kill_at(
    target: Target, delay: float, launched: Launched, project: Project, whole_group: bool
) -> str:
    """Wait for the target, then the delay, then SIGKILL; returns what the run was doing (for the report)."""
    deadline = time.monotonic() + 30
    while not _reached(target, launched, project):
        if launched.proc.returncode is not None:
            break
        assert time.monotonic() < deadline, f"the run never reached {target.name}:\n{launched.output()}"
        await asyncio.sleep(0.01)
    await asyncio.sleep(delay)
    if launched.proc.returncode is not None:
        return "finished"
    logs = launched.logs()
    launched.kill(whole_group=whole_group)
    phases = [str(e["phase"]) for e in logs if "phase" in e]
    if any(e.get("event") == "directus.exec" for e in logs):
        return "start (Directus running)"
    if phases:
        return phases[-1]
    return "connected, first phase" if any(e.get("event") == "db.connected" for e in logs) else "connecting"


async def _wait_standins_gone(project: Project, within_s: float) -> list[tuple[int, str]]:
    deadline = time.monotonic() + within_s
    while True:
        left = project.standins_left()
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.05)


def _kill_standins(project: Project) -> None:
    for pid, _ in project.standins_left():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def _trial(
    knobs: Knobs,
    make_db: Any,
    root: Path,
    *,
    label: str,
    target: Target,
    verb: str,
    delay: float,
    whole_group: bool,
    standin_sleep: float = 0.3,
) -> None:
    context = f"{label}: `{verb}`, kill -9 {delay:.3f}s after {target.name}; {knobs.replay()}"
    print(context)  # shown with any failure, whatever raised it
    db = await make_db()
    project = Project(root)
    env = project.env(db, FAULT_STANDIN_SLEEP=str(standin_sleep))
    conn = await db.connect()
    try:
        launched = await launch([verb], env, project.root, "killed")
        during = await _kill_at(target, delay, launched, project, whole_group)
        code = await launched.wait(30)
        context += f" (killed during: {during})"
        print(f"killed during: {during}")
        if during == "finished":
            assert code == 0, f"the run ended on its own with {code} ({context}):\n{launched.output()}"
        left = await _wait_standins_gone(project, 3.0)
        assert left == [], f"Directus stand-in(s) {left} outlived the killed supervisor by 3s ({context})"
        await wait_locks_free(conn)  # the killed session's backend goes (keepalives, client_connection_check)
        await assert_nothing_half_applied(conn, context)
        await rerun_until_clean([verb], env, project, conn, context)
        await assert_clean_end_state(conn, project, context)
    finally:
        _kill_standins(project)
        await conn.close()


async def test_kill_9_at_a_random_point_then_a_clean_rerun(
    trial: int, knobs: Knobs, make_db: Any, tmp_path: Path
):
    """The container dies (SIGKILL to the supervisor's whole process group) at a seeded random point; after the
    documented re-run (a HALF_APPLIED no-transaction file resolved as its message says) every file is applied exactly
    once, the schema once, nothing is half-applied, no lock or Directus process is left, and no Directus step ran
    without its lock."""
    rng = knobs.rng("kill9", trial)
    target = TARGETS[trial % len(TARGETS)]
    verb = target.verb or rng.choice(["migrate", "run"])
    delay = rng.uniform(0, target.window_s)
    await _trial(knobs, make_db, tmp_path, label=f"trial {trial}", target=target, verb=verb, delay=delay,
                 whole_group=True)  # fmt: skip


@pytest.mark.parametrize("step", ["directus bootstrap", "directus schema apply"])
async def test_kill_9_of_the_supervisor_alone_takes_its_directus_step_with_it(
    step: str, knobs: Knobs, make_db: Any, tmp_path: Path
):
    """Only the supervisor process is killed (its CLI child, a step that takes 5 s, is not signalled by anyone): the
    child must die with it within 3 s, then the re-run is clean."""
    target = next(t for t in TARGETS if t.name == step)
    delay = knobs.rng("alone", step).uniform(0, target.window_s)
    await _trial(knobs, make_db, tmp_path, label=f"supervisor alone, {step}", target=target, verb="migrate",
                 delay=delay, whole_group=False, standin_sleep=5.0)  # fmt: skip
