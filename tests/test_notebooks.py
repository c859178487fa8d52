"""Checks on the notebooks as committed (nbmake executes them separately)."""

import json
import re

import pytest

from course_utils.core.start import FIRST_CELL

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_are_numbered_in_order():
    assert NOTEBOOKS, "no notebooks found"
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert all(re.match(r"^\d\d_[a-z0-9_]+\.ipynb$", p.name) for p in NOTEBOOKS)
    assert numbers == list(range(len(numbers))), numbers


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    missing = [i for i, cell in enumerate(nb["cells"]) if not cell.get("id")]
    assert not missing, f"{path.name}: cells {missing} have no id (nbformat 4.5 needs one per cell)"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{path.name}: strip outputs (make strip)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_structure(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and "you will be able to" in "".join(cells[0]["source"]).lower()
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "".join(code[0]["source"]).strip() == FIRST_CELL, f"{path.name}: the first code cell must be course_utils.core.start.FIRST_CELL"
    measured = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "measured" in "".join(c["source"]).lower()]
    assert measured and measured[-1] >= len(cells) - 8, f"{path.name}: close with a 'What we measured' section"
    after = cells[measured[-1] + 1 :]
    assert any(c["cell_type"] == "code" for c in after), f"{path.name}: show the measured figures from the run, not typed in"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_secret_or_hard_coded_model_id(path):
    text = path.read_text()
    assert not re.search(r"sk-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{20,}", text), f"{path.name} contains something like a key"
    assert "from_pretrained(\"" not in text and "from_pretrained('" not in text, f"{path.name}: take model ids from the profile"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_links_to_the_docs_and_papers_behind_it(path):
    nb = json.loads(path.read_text())
    prose = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    links = set(re.findall(r"\]\((https://[^)\s]+)\)", prose)) - {u for u in re.findall(r"https://colab[^)\s]+", prose)}
    assert len(links) >= 3, f"{path.name}: link the official docs of what it teaches and the papers behind it ({sorted(links)})"


SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ends_with_exercises_and_has_worked_solutions(path):
    nb = json.loads(path.read_text())
    headings = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown" and "".join(c["source"]).lstrip().startswith("## Exercises")]
    assert headings, f"{path.name}: end with a '## Exercises' section"
    text = "".join("".join(c["source"]) for c in nb["cells"][headings[-1]:] if c["cell_type"] == "markdown")
    count = len(re.findall(r"^\s*\d+\.\s", text, flags=re.M))
    assert 2 <= count <= 4, f"{path.name}: two to four numbered exercises, found {count}"
    solution = ROOT / "notebooks" / "solutions" / f"{path.stem}_solutions.ipynb"
    assert solution.exists(), f"{path.name}: worked solutions go to notebooks/solutions/{solution.name}"
    assert f"solutions/{solution.name}" in text, f"{path.name}: link the solutions notebook from the exercises"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solutions_are_runnable_notebooks(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and "".join(code[0]["source"]).strip() == FIRST_CELL, f"{path.name}: first code cell must be FIRST_CELL"
    assert all(c.get("id") for c in nb["cells"]), f"{path.name}: every cell needs an id"
    assert all(c.get("outputs") == [] and c.get("execution_count") is None for c in code), f"{path.name}: strip outputs"
    headings = [c for c in nb["cells"] if c["cell_type"] == "markdown" and re.match(r"\s*##+ Exercise \d", "".join(c["source"]))]
    assert len(headings) >= 2, f"{path.name}: one '## Exercise N' heading per worked solution"
