"""Writes docs/bad-inputs.md: every bad input the tests try, with its exit code, `error_code` and first line.

Runs the tests that feed the supervisor bad input (the integration tests and the fault suite's missing-CLI test; not
the slow end-to-end ones) with the recorder of tests/failure_record.py on, then turns the recording into a Markdown
table sorted by exit code and `error_code`, one row per distinct (exit code, `error_code`, first line).

    .venv/bin/python scripts/bad_inputs_table.py                     # run the tests (minutes), write the doc
    .venv/bin/python scripts/bad_inputs_table.py --record run.jsonl  # the same, keeping the recording
    .venv/bin/python scripts/bad_inputs_table.py --from run.jsonl    # only rebuild the doc from a recording

The doc is written only when every selected test passed: a partial run would silently drop rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.failure_record import ENV, normalize

DOC = ROOT / "docs" / "bad-inputs.md"
TESTS = [
    "tests/integration",
    "tests/fault/test_cli_missing.py",
    "--deselect",
    "tests/integration/test_bench.py",
]
COMMAND = ".venv/bin/python scripts/bad_inputs_table.py"
FIRST_LINE_MAX = 200
TEST_MAX = 110

Row = tuple[int, str, str, list[str]]  # exit code, error_code ("" for argparse's own), first line, tests


def shorten(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, marked with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def escape(text: str) -> str:
    """Plain text safe in a Markdown table cell: no cell break (`|`), no HTML tag (`<tmp>`), no emphasis."""
    for ch in "\\|<>*[]":
        text = text.replace(ch, "\\" + ch)
    return text


def load(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The recorded refusals; a line that is not a complete record is an error, not skipped."""
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        entry = json.loads(line)
        if (
            not isinstance(entry, dict)
            or not {"test", "exit_code", "error_code", "first_line"} <= entry.keys()
        ):
            raise ValueError(f"recording line {number} is not a refusal record: {line.strip()[:120]}")
        entries.append(entry)
    return entries


def rows(entries: Iterable[dict[str, Any]]) -> list[Row]:
    """One row per distinct (exit code, error_code, normalized first line), sorted; its tests sorted."""
    groups: dict[tuple[int, str, str], set[str]] = {}
    for e in entries:
        key = (int(e["exit_code"]), str(e["error_code"] or ""), normalize(str(e["first_line"])))
        groups.setdefault(key, set()).add(str(e["test"]))
    return [
        (code, error_code, line, sorted(tests)) for (code, error_code, line), tests in sorted(groups.items())
    ]


def _test_cell(tests: Sequence[str]) -> str:
    first = shorten(tests[0].removeprefix("tests/"), TEST_MAX)
    more = f" (+{len(tests) - 1} more)" if len(tests) > 1 else ""
    return escape(first) + more


def render(table: Sequence[Row], *, refusals: int, note: str = "") -> str:
    """The whole Markdown document."""
    out = [
        "# Bad inputs: exit code, error_code and first line",
        "",
        "Generated from the tests by `scripts/bad_inputs_table.py`; do not edit by hand. Each row is a mistake a test",
        "makes on purpose (integration tests and `tests/fault/test_cli_missing.py`, each running the supervisor as a",
        "process) and the supervisor's refusal: its exit code, the `error_code` of the final `supervisor.failed` log",
        "line, and the message's first line (shortened; temp folders, database names, ports, pids and passwords",
        "replaced by placeholders such as `<tmp>`). An empty `error_code` is argparse's own usage error. The exit",
        "codes are explained in the [operator's guide](operations.md#exit-codes).",
        "",
        f"Regenerate (runs the tests, a few minutes): `{COMMAND}`; from a kept recording: `{COMMAND} --from FILE`.",
        "",
    ]
    if note:
        out += [f"Note: {note}", ""]
    out += [
        f"{len(table)} distinct refusals from {refusals} recorded supervisor runs.",
        "",
        "| exit | error_code | first line | test |",
        "|---|---|---|---|",
    ]
    for code, error_code, line, tests in table:
        ec = f"`{error_code}`" if error_code else ""
        out.append(f"| {code} | {ec} | {escape(shorten(line, FIRST_LINE_MAX))} | {_test_cell(tests)} |")
    return "\n".join(out) + "\n"


def record(path: Path, pytest_args: Sequence[str]) -> int:
    """Run the selected tests with the recorder writing to `path`; pytest's exit code."""
    path.write_text("")
    env = {**os.environ, ENV: str(path)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS, *pytest_args]
    print("+", " ".join(argv[1:]), file=sys.stderr)
    return subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--from", dest="source", type=Path, help="build the doc from this recording (JSONL)")
    parser.add_argument("--record", type=Path, help="keep the recording of the test run in this file")
    parser.add_argument(
        "--out", type=Path, default=DOC, help="where to write the doc (default: docs/bad-inputs.md)"
    )
    parser.add_argument(
        "--note", default="", help="a line for the doc's header (say so when a run was partial)"
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.source is not None:
        source = args.source
    else:
        source = args.record or Path(tempfile.mkdtemp(prefix="bad-inputs-")) / "recording.jsonl"
        code = record(source, args.pytest_args)
        if code != 0:
            print(f"pytest exited {code}: the doc is left as it was (recording: {source})", file=sys.stderr)
            return 1
    entries = load(source.read_text(encoding="utf-8").splitlines())
    if not entries:
        print(f"no refusal was recorded in {source}: the doc is left as it was", file=sys.stderr)
        return 1
    table = rows(entries)
    args.out.write_text(render(table, refusals=len(entries), note=args.note), encoding="utf-8")
    print(f"wrote {args.out} ({len(table)} rows from {len(entries)} refusals)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
