"""The ensemble: non-negative blend of log prices, fitted from predictions in a real results store."""

import numpy as np
import pytest

from course_utils.core import config
from course_utils.pricing import results
from course_utils.pricing.ensemble import (
    Ensemble,
    EnsembleInput,
    EnsemblePricer,
    MissingInputError,
    feature_names,
    features,
    fit_ensemble,
    input_matrix,
    predict_split,
    resolve_inputs,
)
from course_utils.pricing.evaluation import rmsle
from course_utils.pricing.items import Item

INPUTS = [
    EnsembleInput("specialist", "qlora-specialist", "10_x.ipynb"),
    EnsembleInput("rag", "rag-frontier", "13_rag_pricer.ipynb", exact=True),
    EnsembleInput("forest", "embedding-forest", "13_rag_pricer.ipynb", exact=True),
    EnsembleInput("baseline", "tfidf-ridge", "08_baselines.ipynb", exact=True),
]


def make_items(prefix, n, seed):
    rng = np.random.default_rng(seed)
    prices = np.exp(rng.normal(3.0, 0.8, n)).round(2) + 1
    return [Item(id=f"{prefix}-{i}", title=f"thing {i}", price=float(p)) for i, p in enumerate(prices)]


def noisy(items, sigma, seed, bias=0.0):
    """Predictions whose log error is normal(bias, sigma): a model of known quality."""
    rng = np.random.default_rng(seed)
    return {it.id: float(np.exp(np.log(it.price) + bias + rng.normal(0, sigma))) for it in items}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A results store in a temporary folder holding four models' predictions on two splits."""
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    profile = config.get_profile("ci")
    fit_items, eval_items = make_items("val", 200, 1), make_items("ev", 150, 2)
    quality = {"qlora-specialist-greedy": (0.9, 0.3), "qlora-specialist-weighted": (0.6, 0.0), "rag-frontier": (0.7, 0.0),
               "embedding-forest": (0.5, -0.1), "tfidf-ridge": (0.45, 0.05)}
    for k, (model, (sigma, bias)) in enumerate(quality.items()):
        for split, items in (("ensemble_val", fit_items), ("eval", eval_items)):
            results.save_predictions(model, split, noisy(items, sigma, 10 * k + len(split), bias), profile)
    return profile, fit_items, eval_items


def test_features_are_logs_plus_min_and_max():
    f = features([[9.0, 99.0], [0.0, 1.0]])
    assert f.shape == (2, 4)
    assert f[0, :2] == pytest.approx(np.log1p([9, 99]))
    assert f[0, 2] == pytest.approx(np.log(10)) and f[0, 3] == pytest.approx(np.log(100))
    assert feature_names(["a", "b"]) == ["a", "b", "min", "max"]


def test_blend_recovers_a_known_mix_with_non_negative_weights():
    rng = np.random.default_rng(0)
    truth = np.exp(rng.normal(3, 1, 400))
    good = np.exp(np.log1p(truth) + rng.normal(0, 0.2, 400)) - 1
    noise = np.exp(rng.normal(3, 1, 400))  # unrelated to the truth
    ens = Ensemble({"good": "m1", "noise": "m2"}).fit(np.column_stack([good, noise]), truth)
    assert all(w >= 0 for w in ens.weights.values())
    assert ens.weights["good"] + ens.weights["min"] + ens.weights["max"] > 0.8
    assert ens.weights["noise"] < 0.1
    assert rmsle(truth, ens.predict(np.column_stack([good, noise]))) < 0.25
    assert list(ens.weights) == ["good", "noise", "min", "max"] and ens.n_fit == 400


def test_fit_checks_its_input():
    with pytest.raises(ValueError, match="input columns"):
        Ensemble({"a": "m"}).fit(np.ones((20, 2)), np.ones(20))
    with pytest.raises(ValueError, match="too few"):
        Ensemble({"a": "m"}).fit(np.ones((3, 1)), np.ones(3))
    with pytest.raises(RuntimeError, match="not fitted"):
        Ensemble({"a": "m"}).predict([[1.0]])


def test_resolve_picks_the_best_matching_model_on_the_fitting_split(store):
    profile, fit_items, _ = store
    chosen = resolve_inputs(profile, INPUTS, fit_items=fit_items)
    # two specialists are stored; the one with the lower RMSLE on ensemble_val wins
    assert chosen == {
        "specialist": "qlora-specialist-weighted",
        "rag": "rag-frontier",
        "forest": "embedding-forest",
        "baseline": "tfidf-ridge",
    }


def test_missing_input_names_the_notebook(store):
    profile, fit_items, _ = store
    inputs = INPUTS + [EnsembleInput("extra", "not-there", "99_missing.ipynb", exact=True)]
    with pytest.raises(MissingInputError, match="99_missing.ipynb") as info:
        resolve_inputs(profile, inputs, fit_items=fit_items)
    assert "'not-there'" in str(info.value)


def test_predictions_for_other_items_are_refused(store):
    profile, fit_items, _ = store
    models = resolve_inputs(profile, INPUTS, fit_items=fit_items)
    strangers = make_items("other", 5, 3)
    with pytest.raises(MissingInputError, match="no stored prediction"):
        input_matrix(models, "ensemble_val", strangers, profile)


def test_ensemble_beats_each_input_on_held_out_items(store):
    profile, fit_items, eval_items = store
    ens = fit_ensemble(profile, INPUTS, items=fit_items)
    assert ens.n_fit == len(fit_items)
    preds = predict_split(ens, "eval", profile, items=eval_items)
    truth = [it.price for it in eval_items]
    ens_rmsle = rmsle(truth, [preds[it.id] for it in eval_items])
    frame = input_matrix(ens.models, "eval", eval_items, profile)
    best_single = min(rmsle(truth, frame[role]) for role in ens.roles)
    assert ens_rmsle < best_single
    # the pricer form gives the same numbers, item by item
    pricer = EnsemblePricer(ens, "eval", profile)
    assert pricer(eval_items[0]) == pytest.approx(preds[eval_items[0].id])


def test_write_leaderboard_writes_markdown_and_png(tmp_path, monkeypatch):
    from course_utils.pricing.leaderboard import CHART_FILE, MARKDOWN_FILE, write_leaderboard

    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    profile = config.get_profile("ci")
    with pytest.raises(ValueError, match="no model has been scored"):
        write_leaderboard(profile)
    for model, value in (("worse | model", 0.8), ("ensemble", 0.41), ("middle", 0.5)):
        results.record(model, {"rmsle": value, "mae": 10 * value, "hit_rate": 1 - value, "median_ae": 5.0, "n_items": 60}, profile)
    text = write_leaderboard(profile)
    md = (tmp_path / MARKDOWN_FILE).read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| rank")]
    assert [r.split(" | ")[1] for r in rows] == ["ensemble", "middle", "worse \\| model"]  # best first, pipes escaped
    assert "| 1 | ensemble | 0.410 | 4.10 | 59.0% | 60 |" in md
    assert rows[0] in text
    png = (tmp_path / CHART_FILE).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".leaderboard")]  # no temp files left


def test_default_inputs_name_the_models_and_notebooks_the_course_has(repo_root):
    """The four inputs notebook 14 stacks: names the notebooks really store, notebooks that exist."""
    from course_utils.pricing import baseline_stack, rag_pricer
    from course_utils.pricing.ensemble import default_inputs

    inputs = {spec.role: spec for spec in default_inputs()}
    assert list(inputs) == ["specialist", "rag", "forest", "baseline"]
    assert inputs["baseline"].matches(baseline_stack.BEST_BASELINE) and not inputs["baseline"].matches(baseline_stack.BEST_BASELINE + " v2")
    assert inputs["rag"].matches(rag_pricer.RAG_MODEL_NAME) and inputs["forest"].matches(rag_pricer.FOREST_MODEL_NAME)
    assert inputs["specialist"].matches("qlora-specialist-weighted") and inputs["specialist"].matches("qlora-specialist-greedy")
    for spec in inputs.values():
        assert (repo_root / "notebooks" / spec.notebook).is_file(), spec.notebook
