"""The figures in img/: each one is shown somewhere, and the script that draws them still runs."""

import importlib.util
import json
import os
import re

import pytest

from conftest import ROOT

IMG = ROOT / "img"
SCRIPT = ROOT / "scripts" / "make_figures.py"


@pytest.fixture(scope="module")
def figures():
    spec = importlib.util.spec_from_file_location("make_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shown_in() -> dict[str, str]:
    """The text of the README and of every notebook (solutions included), by path."""
    texts = {"README.md": (ROOT / "README.md").read_text(encoding="utf-8")}
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" not in path.parts:
            texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    return texts


def test_img_holds_every_figure_the_script_draws(figures):
    made = {f"{name}.png" for name in figures.FIGURES}
    present = {p.name for p in IMG.iterdir() if p.is_file()}
    assert made <= present, f"missing from img/ (run python scripts/make_figures.py): {sorted(made - present)}"
    # anything else in img/ is an SVG kept by hand; a PNG no script draws could not be regenerated
    strays = sorted(n for n in present - made if not n.endswith(".svg"))
    assert not strays, f"files in img/ that scripts/make_figures.py does not draw: {strays}"
    for name in made:
        size = (IMG / name).stat().st_size
        assert 1_000 < size < 200_000, f"img/{name} is {size:,} bytes (the course map, 17 notebooks, is the largest)"


def test_every_figure_is_shown_by_the_readme_or_a_notebook():
    texts = _shown_in()
    files = sorted(p.name for p in IMG.iterdir() if p.is_file())
    assert len(files) >= 6, files
    unshown = [name for name in files if not any(f"img/{name}" in text for text in texts.values())]
    assert not unshown, f"figures in img/ that neither README.md nor any notebook shows: {unshown}"


def test_shown_figures_exist():
    """A reference to img/ in the README or a notebook names a file that is there."""
    broken = sorted(
        {(where, name) for where, text in _shown_in().items() for name in re.findall(r"img/([\w.-]+\.(?:png|svg))", text)
         if not (IMG / name).is_file()}
    )
    assert not broken, f"references to figures that img/ does not hold: {broken}"


def test_course_map_reads_every_notebook_title(figures):
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    titles = figures.notebook_titles()
    assert [n for n, _, _ in titles] == [int(p.name[:2]) for p in notebooks]
    assert all(title and not title.startswith("#") for _, title, _ in titles), titles
    # a line in BUILDS for a notebook that no longer exists would never be drawn
    assert set(figures.BUILDS) <= {n for n, _, _ in titles}, sorted(set(figures.BUILDS) - {n for n, _, _ in titles})


def test_lora_counts(figures):
    n = figures.lora_numbers(4096, 16)
    assert n["frozen"] == 16_777_216 and n["trainable"] == 131_072
    assert n["share"] == pytest.approx(0.0078125)


def test_a_diagram_regenerates_byte_for_byte(figures, tmp_path):
    first = figures.lora(tmp_path / "a.png")
    second = figures.lora(tmp_path / "b.png")
    data = first.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 1_000 < len(data) < 160_000
    assert data == second.read_bytes(), "the same figure drawn twice differs: something in it is not deterministic"
    assert b"Software" not in data and b"Creation" not in data  # no version or date in the metadata


def test_leaderboard_placeholder_and_chart(figures, tmp_path, monkeypatch):
    empty = tmp_path / "no-results"
    placeholder = figures.leaderboard(tmp_path / "placeholder.png", results_dir=empty)
    assert placeholder.stat().st_size > 1_000
    assert not empty.exists(), "drawing the placeholder must not create the results folder"

    store = tmp_path / "results"
    store.mkdir()
    entries = [
        {"model": name, "profile": "ci", "data_version": "v1", "split": "eval", "recorded_at": f"2024-01-01T00:00:0{i}",
         "metrics": {"rmsle": rmsle, "mae": 10.0, "hit_rate": 0.5, "median_ae": 5.0, "n_items": 60},
         "timings": {}, "extra": {"llm": llm} if llm else {}}
        for i, (name, rmsle, llm) in enumerate([("ridge", 0.5, None), ("rag-frontier", 0.4, "smollm2-135m")])
    ]
    (store / "results.json").write_text(json.dumps({"entries": entries}))
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    chart = figures.leaderboard(tmp_path / "chart.png", results_dir=store)
    assert chart.read_bytes() != placeholder.read_bytes()
    profile, version, boards = figures._latest_board(store, None)
    assert (profile, version) == ("ci", "v1")
    assert list(figures._label_models(boards["eval"])["model"]) == ["rag-frontier [smollm2-135m]", "ridge"]
    assert "COURSE_RESULTS" not in os.environ, "the script must restore the environment it changed"
