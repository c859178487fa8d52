"""The pricing notebooks (06, 07, 12) write their lesson code in cells; the package keeps the same code for later
notebooks. These tests run the cells (tests/notebook_cells.py) and check that the two agree."""

import numpy as np
import pandas as pd
import pytest

from course_utils.core import config
from course_utils.pricing import baseline_stack, baselines, curation, data, ensemble, evaluation, results
from course_utils.pricing.items import Item

from notebook_cells import cell_namespace, cell_source

NB06 = "07_product_data.ipynb"
NB07 = "08_baselines.ipynb"
NB12 = "14_ensemble.ipynb"


# --- 06: the Item and the token cap --------------------------------------------------------
def test_06_item_built_in_the_cell_is_the_one_the_loader_builds():
    ns = cell_namespace(NB06, 'raw = {"train_id"')
    assert isinstance(ns["item"], Item) and ns["item"].price == 45.0
    assert ns["item"] == curation.parse_mercari_row(ns["raw"])


@pytest.fixture(scope="module")
def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate("title category brand condition description : > a b c".split())}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


LISTINGS = [
    Item(id="1", title="Nintendo Switch", description="Barely used, with dock and two controllers. " * 8, categories=("Electronics", "Video Games"), brand="Nintendo", condition="Like new", price=210),
    Item(id="2", title="ok", price=3),
    Item(id="3", title="Lot of 12 vintage tees, sizes S-XL (see photos)", description="Smoke-free home; ships in 1-2 days. 100% cotton.", categories=("Women", "Tops & Blouses", "T-Shirts"), price=40),
]


@pytest.mark.parametrize("max_tokens", [1, 5, 12, 64])
def test_06_cap_text_cuts_where_the_package_cuts(word_tokenizer, max_tokens):
    cap_text = cell_namespace(NB06, "def cap_text(")["cap_text"]
    texts = [it.details() for it in LISTINGS]
    assert [cap_text(t, word_tokenizer, max_tokens) for t in texts] == data.cap_texts(texts, word_tokenizer, max_tokens)
    with pytest.raises(ValueError, match="positive"):
        cap_text(texts[0], word_tokenizer, 0)


# --- 07: the TF-IDF + ridge pipeline -------------------------------------------------------
@pytest.fixture(scope="module")
def small_splits():
    items, _ = curation.load_mercari()
    return data.make_splits(items, 400, 200, seed=0, items_total=2600)


def test_07_pipeline_in_the_cell_prices_like_the_package_ridge(small_splits):
    train, _, test = small_splits
    ns = cell_namespace(NB07, "def tfidf_ridge(")
    pipeline = ns["tfidf_ridge"](alpha=2.0).fit(ns["listings_frame"](train), np.log1p([it.price for it in train]))
    cell_prices = np.clip(np.expm1(pipeline.predict(ns["listings_frame"](test))), 0, None)
    package = baselines.TfidfRidge().fit(train)
    assert package.features.transform(test).shape == pipeline[0].transform(ns["listings_frame"](test)).shape
    assert np.allclose(np.log1p(cell_prices), np.log1p(package.predict(test)), atol=1e-4)


def test_07_solutions_use_the_notebooks_pipeline():
    assert cell_source("solutions/08_baselines_solutions.ipynb", "def tfidf_ridge(") == cell_source(NB07, "def tfidf_ridge(")


# --- 12: the blend -------------------------------------------------------------------------
INPUTS = [
    ensemble.EnsembleInput("specialist", "qlora-specialist", "10_x.ipynb"),
    ensemble.EnsembleInput("rag", "rag-frontier", "13_rag_pricer.ipynb", exact=True),
    ensemble.EnsembleInput("forest", "embedding-forest", "13_rag_pricer.ipynb", exact=True),
    ensemble.EnsembleInput("baseline", "tfidf-ridge", "08_baselines.ipynb", exact=True),
]


def _items(prefix, n, seed):
    rng = np.random.default_rng(seed)
    prices = np.exp(rng.normal(3.0, 0.8, n)).round(2) + 1
    return [Item(id=f"{prefix}-{i}", title=f"thing {i}", price=float(p)) for i, p in enumerate(prices)]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A results store holding four inputs' predictions (of known quality) on ensemble_val and eval."""
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    profile = config.get_profile("ci")
    fit_items, eval_items = _items("val", 120, 1), _items("ev", 80, 2)
    quality = {"qlora-specialist-weighted": (0.6, 0.0), "rag-frontier": (0.7, 0.1), "embedding-forest": (0.5, -0.1), "tfidf-ridge": (0.45, 0.05)}
    for k, (model, (sigma, bias)) in enumerate(quality.items()):
        for split, items in (("ensemble_val", fit_items), ("eval", eval_items)):
            rng = np.random.default_rng(10 * k + len(split))
            results.save_predictions(model, split, {it.id: float(np.exp(np.log(it.price) + bias + rng.normal(0, sigma))) for it in items}, profile)
    return profile, fit_items, eval_items


def test_12_blend_in_the_cell_agrees_with_fit_ensemble(store):
    profile, fit_items, eval_items = store
    fitted = ensemble.fit_ensemble(profile, INPUTS, items=fit_items)
    ns = cell_namespace(NB12, "def fit_blend(")
    frame = ensemble.input_matrix(fitted.models, "ensemble_val", fit_items, profile)
    weights, intercept = ns["fit_blend"](frame, np.array([it.price for it in fit_items]))
    assert list(weights) == list(fitted.weights)
    assert np.allclose(list(weights.values()), list(fitted.weights.values()), atol=1e-10)
    assert intercept == pytest.approx(fitted.intercept, abs=1e-10)
    assert all(w >= 0 for w in weights.values())
    eval_frame = ensemble.input_matrix(fitted.models, "eval", eval_items, profile)
    package = ensemble.predict_split(fitted, "eval", profile, items=eval_items)
    assert np.allclose(ns["predict_blend"](weights, intercept, eval_frame), [package[it.id] for it in eval_items])


def test_12_ablation_cell_cross_validates_on_the_fitting_items(store):
    profile, fit_items, _ = store
    blend = cell_namespace(NB12, "def fit_blend(")
    models = ensemble.resolve_inputs(profile, INPUTS, fit_items=fit_items)
    frame = ensemble.input_matrix(models, "ensemble_val", fit_items, profile)
    ns = cell_namespace(NB12, "def cv_rmsle(", frame=frame, prices=np.array([it.price for it in fit_items]), models=models,
                        profile=profile, np=np, pd=pd, fit_blend=blend["fit_blend"], predict_blend=blend["predict_blend"])
    table = ns["ablation"]
    assert list(table["inputs"]) == ["all"] + [f"without {role}" for role in models]
    assert table.loc[0, "change"] == 0 and (table["cv_rmsle"] > 0).all()
    # held-out error: above what the same blend scores on the items it was fitted on
    w, b = blend["fit_blend"](frame, np.array([it.price for it in fit_items]))
    in_sample = evaluation.rmsle([it.price for it in fit_items], blend["predict_blend"](w, b, frame))
    assert table.loc[0, "cv_rmsle"] >= in_sample


def test_12_rivals_cell_tells_the_best_model_from_the_best_single_model():
    board = pd.DataFrame({
        "model": [ensemble.ENSEMBLE_NAME, baseline_stack.BEST_BASELINE, "tf-idf + linear SVR", "tf-idf + ridge"],
        "rmsle": [0.40, 0.41, 0.44, 0.45], "mae": [9.0, 9.5, 10.0, 10.5], "hit_rate": [0.6, 0.58, 0.55, 0.5],
        "blend": [True, True, None, False],
    })  # fmt: skip
    ns = cell_namespace(NB12, "rivals = {", board=board, ensemble=ensemble, pd=pd)
    assert ns["rivals"] == {"best other model": baseline_stack.BEST_BASELINE, "best single model (not a blend)": "tf-idf + linear SVR"}
    versus = pd.DataFrame(ns["versus"]).set_index("")
    assert versus.loc["best single model (not a blend)", "ensemble's RMSLE change"] == pytest.approx(0.40 / 0.44 - 1)
    # a board recorded before the blend flag existed: every model counts as single
    ns = cell_namespace(NB12, "rivals = {", board=board.drop(columns="blend"), ensemble=ensemble, pd=pd)
    assert ns["rivals"]["best single model (not a blend)"] == baseline_stack.BEST_BASELINE


def test_12_solutions_use_the_notebooks_blend():
    assert cell_source("solutions/14_ensemble_solutions.ipynb", "def fit_blend(") == cell_source(NB12, "def fit_blend(")


def test_06_solutions_use_the_notebooks_cap():
    assert cell_source("solutions/07_product_data_solutions.ipynb", "def cap_text(") == cell_source(NB06, "def cap_text(")
