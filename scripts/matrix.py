"""The supported matrix (DESIGN section 12), cell by cell: the full suite on the default cell, then on every other
cell the integration suite where PostgreSQL changes, the smoke boot (fresh boot, warm skip, TERM) everywhere, and
the Directus 11 set (destructive refusal, upgrade 11 -> 12) on Directus 11. Prints the matrix table at the end and
exits 1 when any cell failed; a failing cell never stops the others.

    scripts/matrix                       every cell (scripts/test runs this when given no arguments)
    scripts/matrix --cell pg16 --cell node22
    scripts/matrix --skip-default        every cell but the full suite
    scripts/matrix --doc docs/matrix.md  also write the table into that file (between its matrix markers)

Each cell first installs what it needs (scripts/install-postgres, scripts/install-directus; cached, instant once
done), so a first install never counts against a test's timeout; a failed install fails the cell.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"


@dataclass(frozen=True)
class Cell:
    name: str
    pg: str
    node: str
    directus: str
    what: str
    env: dict[str, str]
    pytest_args: tuple[str, ...]
    installs: tuple[tuple[str, ...], ...]

    def command(self) -> str:
        """The command that reproduces the cell from the repository's root, after scripts/setup."""
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return f"{env + ' ' if env else ''}.venv/bin/python -m pytest {shlex.join(self.pytest_args)}".strip()


_D12 = "12.4.0"
CELLS = (
    Cell(name="default", pg="15", node="20", directus=_D12, what="full suite (lint and types first)",
         env={}, pytest_args=("-q",), installs=(("install-directus", "directus-11"),)),
    *(
        Cell(name=f"pg{v}", pg=v, node="20", directus=_D12, what="integration suite + smoke boot",
             env={"SUPERVISOR_TEST_PG_VERSION": v}, pytest_args=("-q", "-m", "postgres or smoke"),
             installs=(("install-postgres", v),))
        for v in ("16", "17", "18")
    ),
    Cell(name="node22", pg="15", node="22", directus=_D12, what="smoke boot",
         env={"SUPERVISOR_TEST_NODE": "22"}, pytest_args=("-q", "-m", "smoke"),
         installs=(("install-directus", "--node", "22"),)),
    Cell(name="directus11", pg="15", node="20", directus="11.17.4",
         what="smoke boot + Directus 11 set (destructive refusal, upgrade 11.17.4 -> 12.4.0)",
         env={"SUPERVISOR_TEST_DIRECTUS": "11"}, pytest_args=("-q", "-m", "smoke or directus_versions"),
         installs=(("install-directus", "directus-11"),)),
)  # fmt: skip


@dataclass
class Outcome:
    cell: Cell
    ok: bool
    seconds: float
    summary: str


def _install(cell: Cell) -> str | None:
    """Run the cell's installs; the error to report, or None."""
    for argv in cell.installs:
        r = subprocess.run(
            [str(ROOT / "scripts" / argv[0]), *argv[1:]], capture_output=True, text=True, check=False
        )
        if r.returncode != 0:
            return f"scripts/{shlex.join(argv)} failed (exit {r.returncode}): {r.stderr.strip()[-500:]}"
    return None


def _lint() -> str | None:
    """ruff, ruff format --check and mypy, as scripts/test runs them; the failure to report, or None."""
    for argv in (["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]):
        print(f"== {' '.join(argv)}", flush=True)
        if subprocess.run(argv, cwd=ROOT, check=False).returncode != 0:
            return f"{' '.join(argv)} failed"
    return None


def run_cell(cell: Cell) -> Outcome:
    """Install, then pytest with the cell's environment; output streams through, the summary line is kept."""
    print(f"\n== matrix cell {cell.name}: {cell.what} ({cell.command()})", flush=True)
    t0 = time.monotonic()
    error = _install(cell) or (_lint() if cell.name == "default" else None)
    if error:
        print(f"matrix: cell {cell.name}: {error}", file=sys.stderr, flush=True)
        return Outcome(cell, False, time.monotonic() - t0, error)
    env = {**os.environ, **cell.env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *cell.pytest_args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout
    summary = ""
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if re.search(r"\b(passed|failed|errors?|no tests ran)\b.* in [\d.]+s", line):
            summary = line.strip().strip("=").strip()
    code = proc.wait()
    seconds = time.monotonic() - t0
    return Outcome(cell, passed(code, summary), seconds, summary or f"pytest exited {code} without a summary")


def passed(code: int, summary: str) -> bool:
    """Fail closed: a cell that selected nothing (pytest exit 5) or skipped anything did not test its software."""
    return code == 0 and re.search(r"\b\d+ passed\b", summary) is not None and "skipped" not in summary


def table(outcomes: list[Outcome]) -> str:
    """The matrix as a Markdown table."""
    rows = [
        "| cell | PostgreSQL | Node | Directus | what ran | result | seconds | reproduce |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        c = o.cell
        result = ("pass" if o.ok else "**FAIL**") + f": {o.summary}"
        rows.append(
            f"| {c.name} | {c.pg} | {c.node} | {c.directus} | {c.what} | {result} | {o.seconds:.0f} "
            f"| `{c.command()}` |"
        )
    return "\n".join(rows)


def write_doc(path: Path, text: str) -> None:
    """Replace what stands between the matrix markers in `path`."""
    doc = path.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"matrix: {path} has no {BEGIN} ... {END} block to replace")
    head, rest = doc.split(BEGIN, 1)
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = [c.name for c in CELLS]
    parser.add_argument("--cell", action="append", choices=names, help="run only this cell (repeatable)")
    parser.add_argument("--skip-default", action="store_true", help="leave out the default cell's full suite")
    parser.add_argument("--doc", type=Path, help="write the table into this file between the matrix markers")
    args = parser.parse_args()
    chosen = [
        c
        for c in CELLS
        if (not args.cell or c.name in args.cell) and not (args.skip_default and c.name == "default")
    ]
    t0 = time.monotonic()
    outcomes = [run_cell(c) for c in chosen]
    total = time.monotonic() - t0
    text = table(outcomes)
    failed = [o.cell.name for o in outcomes if not o.ok]
    print(f"\n== matrix ({len(outcomes)} cells, {total:.0f} s)\n{text}")
    print(f"matrix: FAILED cells: {', '.join(failed)}" if failed else "matrix: every cell passed", flush=True)
    if args.doc:
        write_doc(args.doc, f"{text}\n\nTotal: {total:.0f} s for {len(outcomes)} cells.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
