"""The ensemble: non-negative blend of log prices, fitted from predictions in a real results store."""

import numpy as np
import pytest

from course_utils import config, results
from course_utils.ensemble import (
    Ensemble,
    EnsembleInput,
    EnsemblePricer,
    MissingInputError,
    ablation_table,
    ceiling_table,
    comparison_table,
    error_correlation,
    feature_names,
    features,
    fit_ensemble,
    input_matrix,
    predict_split,
    resolve_inputs,
)
from course_utils.evaluation import rmsle
from course_utils.items import Item

INPUTS = [
    EnsembleInput("specialist", "qlora-specialist", "10_x.ipynb"),
    EnsembleInput("rag", "rag-frontier", "11_rag_pricer.ipynb", exact=True),
    EnsembleInput("forest", "embedding-forest", "11_rag_pricer.ipynb", exact=True),
    EnsembleInput("baseline", "tfidf-ridge", "07_baselines.ipynb", exact=True),
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
    table = ens.weights_table()
    assert list(table["feature"])[-1] == "intercept"
    assert "Fitted on 400 items" in ens.explain()


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
    table = comparison_table(ens, "eval", profile, items=eval_items)
    assert table.iloc[0]["model"] == "ensemble"
    assert table.loc[table.model == "ensemble", "rmsle"].item() == pytest.approx(ens_rmsle)
    best_single = table.loc[table.model != "ensemble", "rmsle"].min()
    assert ens_rmsle < best_single
    # the pricer form gives the same numbers, item by item
    pricer = EnsemblePricer(ens, "eval", profile)
    assert pricer(eval_items[0]) == pytest.approx(preds[eval_items[0].id])


def test_ablation_reports_every_input(store):
    profile, fit_items, _ = store
    ens = fit_ensemble(profile, INPUTS, items=fit_items)
    table = ablation_table(profile, folds=4, ensemble=ens, items=fit_items)
    assert list(table["inputs"]) == ["all"] + [f"without {r}" for r in ens.roles]
    assert table.loc[0, "change"] == 0
    assert (table["cv_rmsle"] > 0).all()


def test_write_leaderboard_writes_markdown_and_png(tmp_path, monkeypatch):
    from course_utils.leaderboard import CHART_FILE, MARKDOWN_FILE, write_leaderboard

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


def test_ceiling_is_a_bound_and_stores_nothing(store):
    profile, fit_items, eval_items = store
    ens = fit_ensemble(profile, INPUTS, items=fit_items)
    before = results.list_predictions("eval", profile)
    table = ceiling_table(ens, "eval", profile, items=eval_items)
    fair, bound = table.loc[1, "rmsle"], table.loc[2, "rmsle"]
    # least squares on the scored items cannot do worse (in log space) than the blend fitted elsewhere
    assert bound <= fair + 1e-9
    assert table.loc[0, "blend"].startswith("best input alone (")
    assert results.list_predictions("eval", profile) == before


def test_error_correlation_separates_shared_from_independent_mistakes():
    items = make_items("c", 400, 3)
    prices = [it.price for it in items]
    rng = np.random.default_rng(4)
    shared = rng.normal(0, 0.4, len(items))
    log_true = np.log1p(prices)
    frame = {
        "a": np.expm1(log_true + shared),
        "b": np.expm1(log_true + shared + rng.normal(0, 0.1, len(items))),  # a's mistakes, slightly blurred
        "c": np.expm1(log_true + rng.normal(0, 0.4, len(items))),  # mistakes of its own
    }
    corr = error_correlation(frame, prices)
    assert list(corr.columns) == ["a", "b", "c"]
    assert corr.loc["a", "b"] > 0.9
    assert abs(corr.loc["a", "c"]) < 0.2
    assert np.allclose(np.diag(corr), 1.0)
    with pytest.raises(ValueError, match="3 rows of predictions but 2 prices"):
        error_correlation({"a": [1.0, 2.0, 3.0]}, [1.0, 2.0])


def test_the_ensemble_is_judged_against_the_best_model_and_the_best_single_model():
    import pandas as pd

    from course_utils.baselines import BEST_BASELINE
    from course_utils.ensemble import ENSEMBLE_NAME, rivals, versus_table

    board = pd.DataFrame({
        "model": [ENSEMBLE_NAME, BEST_BASELINE, "tf-idf + linear SVR", "tf-idf + ridge"],
        "rmsle": [0.40, 0.41, 0.44, 0.45], "mae": [9.0, 9.5, 10.0, 10.5], "hit_rate": [0.6, 0.58, 0.55, 0.5],
        "blend": [True, True, False, False],
    })  # fmt: skip
    found = rivals(board)
    assert found == {"best other model": BEST_BASELINE, "best single model (not a blend)": "tf-idf + linear SVR"}
    table = versus_table(board, found)
    assert list(table.index) == ["ensemble", "best other model", "best single model (not a blend)"]
    assert table.loc["best single model (not a blend)", "ensemble's RMSLE change"] == pytest.approx(0.40 / 0.44 - 1)
    assert table.loc["best other model", "model"] == BEST_BASELINE
    with pytest.raises(ValueError, match="no 'ensemble' row"):
        versus_table(board[board["model"] != ENSEMBLE_NAME], found)
    with pytest.raises(ValueError, match="no model but the ensemble"):
        rivals(board[board["model"] == ENSEMBLE_NAME])
    # a board without the flag (results recorded before it existed): every model counts as single
    assert rivals(board.drop(columns="blend"))["best single model (not a blend)"] == BEST_BASELINE


def test_bootstrap_table_compares_the_ensemble_with_each_rival(store):
    from course_utils.ensemble import bootstrap_table

    profile, fit_items, eval_items = store
    blend = fit_ensemble(profile, INPUTS, items=fit_items)
    predictions = predict_split(blend, "eval", profile, items=eval_items)
    table = bootstrap_table(predictions, {"best other model": "tfidf-ridge", "weak": "rag-frontier"}, eval_items, profile)
    assert list(table["ensemble vs"]) == ["tfidf-ridge (best other model)", "rag-frontier (weak)"]
    assert (table["n_items"] == len(eval_items)).all()
    weak = table.iloc[1]
    assert weak["change"] < 0 and weak["low (95%)"] <= weak["change"] <= weak["high (95%)"] and weak["better in"] > 0.95
    extra = fit_items[0]
    with pytest.raises(MissingInputError, match="the ensemble has no prediction for 1 of"):
        bootstrap_table(predictions, {"x": "tfidf-ridge"}, eval_items + [extra], profile)
    with pytest.raises(MissingInputError, match="no stored prediction on split 'eval'"):
        bootstrap_table({**predictions, extra.id: 10.0}, {"x": "tfidf-ridge"}, eval_items + [extra], profile)


def test_default_inputs_name_the_models_and_notebooks_the_course_has(repo_root):
    """The four inputs notebook 12 stacks: names the notebooks really store, notebooks that exist."""
    from course_utils import baselines, rag_pricer
    from course_utils.ensemble import default_inputs

    inputs = {spec.role: spec for spec in default_inputs()}
    assert list(inputs) == ["specialist", "rag", "forest", "baseline"]
    assert inputs["baseline"].matches(baselines.BEST_BASELINE) and not inputs["baseline"].matches(baselines.BEST_BASELINE + " v2")
    assert inputs["rag"].matches(rag_pricer.RAG_MODEL_NAME) and inputs["forest"].matches(rag_pricer.FOREST_MODEL_NAME)
    assert inputs["specialist"].matches("qlora-specialist-weighted") and inputs["specialist"].matches("qlora-specialist-greedy")
    for spec in inputs.values():
        assert (repo_root / "notebooks" / spec.notebook).is_file(), spec.notebook
