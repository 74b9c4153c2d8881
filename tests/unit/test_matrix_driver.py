"""scripts/matrix.py: the cells cover the supported matrix, a cell passes only when it really tested something, and
docs/matrix.md shows every cell passing with the command that reproduces it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def _driver() -> ModuleType:
    spec = importlib.util.spec_from_file_location("matrix_driver", ROOT / "scripts" / "matrix.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["matrix_driver"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


matrix = _driver()


def test_the_cells_cover_the_supported_matrix():
    """Every PostgreSQL (15-18), Node (20, 22) and Directus (12.4.0, 11.17.4) of DESIGN section 12 is some cell's,
    and the default cell runs the full suite."""
    cells = matrix.CELLS
    assert {c.pg for c in cells} == {"15", "16", "17", "18"}
    assert {c.node for c in cells} == {"20", "22"}
    assert {c.directus for c in cells} == {"12.4.0", "11.17.4"}
    default = cells[0]
    assert (default.name, default.env, default.pytest_args) == ("default", {}, ("-q",))


@pytest.mark.parametrize(
    ("code", "summary", "ok"),
    [
        (0, "228 passed, 315 deselected in 389.71s (0:06:29)", True),
        (0, "2 passed, 1 skipped in 3.00s", False),  # a skip is not a pass of that software
        (5, "543 deselected in 1.00s", False),  # nothing selected
        (1, "1 failed, 2 passed in 9.00s", False),
        (0, "", False),
    ],
)
def test_a_cell_passes_only_when_it_ran_and_skipped_nothing(code: int, summary: str, ok: bool):
    """pytest's exit 0 alone is not enough: the summary must show passed tests and no skip."""
    assert matrix.passed(code, summary) is ok


def test_the_table_says_fail_and_the_doc_block_is_replaced(tmp_path: Path):
    """A failed cell reads **FAIL** with its command; --doc rewrites only the block between the markers, and a file
    without them is refused."""
    cell = matrix.CELLS[1]
    text = matrix.table([matrix.Outcome(cell, False, 12.0, "1 failed in 3.00s")])
    assert f"| {cell.name} | 16 | 20 | 12.4.0 |" in text
    assert "**FAIL**: 1 failed in 3.00s | 12 |" in text
    assert "`SUPERVISOR_TEST_PG_VERSION=16 .venv/bin/python -m pytest -q -m 'postgres or smoke'`" in text
    doc = tmp_path / "m.md"
    doc.write_text(f"head\n{matrix.BEGIN}\nold\n{matrix.END}\ntail\n")
    matrix.write_doc(doc, "new")
    assert doc.read_text() == f"head\n{matrix.BEGIN}\nnew\n{matrix.END}\ntail\n"
    (tmp_path / "bare.md").write_text("no markers")
    with pytest.raises(SystemExit, match="has no"):
        matrix.write_doc(tmp_path / "bare.md", "new")


def test_docs_matrix_shows_every_cell_passing_with_its_command():
    """The committed table in docs/matrix.md has one passing row per cell, each with the reproducing command."""
    doc = (ROOT / "docs" / "matrix.md").read_text()
    block = doc.split(matrix.BEGIN, 1)[1].split(matrix.END, 1)[0]
    rows = [r for r in block.splitlines() if r.startswith("| ") and not r.startswith("| cell ")]
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows] == [c.name for c in matrix.CELLS]
    for row, cell in zip(rows, matrix.CELLS, strict=True):
        assert "| pass: " in row and "FAIL" not in row, row
        assert f"`{cell.command()}`" in row, row
