"""The classic baselines on a real slice of the Mercari listings."""

import numpy as np
import pytest

from course_utils.pricing import baselines as B
from course_utils.pricing import baseline_stack, curation, data, evaluation
from course_utils.pricing.items import Item


@pytest.fixture(scope="module")
def splits():
    items, _ = curation.load_mercari()
    return data.make_splits(items, 400, 200, seed=0, items_total=2600)


@pytest.fixture(scope="module")
def split(splits):
    train, _, test = splits
    return train, test


@pytest.fixture(scope="module")
def holdout(splits):
    return splits[1]


def rmsle_of(model, train, test):
    model.fit(train)
    preds = model.predict(test)
    assert preds.shape == (len(test),) and np.isfinite(preds).all() and (preds >= 0).all()
    return evaluation.compute_metrics([it.price for it in test], preds)["rmsle"]


@pytest.fixture(scope="module")
def median_rmsle(split):
    return rmsle_of(B.ConstantPricer("median"), *split)


def test_constant_pricers(split):
    train, test = split
    mean = B.ConstantPricer("mean").fit(train)
    assert mean(test[0]) == pytest.approx(np.mean([it.price for it in train]))
    with pytest.raises(ValueError):
        B.ConstantPricer("mode")


def test_random_pricer_is_deterministic_and_draws_training_prices(split):
    train, test = split
    model = B.RandomPricer(seed=1).fit(train)
    preds = model.predict(test)
    assert np.array_equal(preds, model.predict(test))
    assert model(test[3]) == preds[3]
    assert set(preds) <= {it.price for it in train}


@pytest.mark.parametrize(
    "make",
    [
        B.FeatureLinear,
        B.BagOfWordsLinear,
        lambda: B.Word2VecLinear(epochs=3),
        B.TfidfRidge,
        B.TfidfLinearSVR,
        lambda: B.RandomForest(n_estimators=20),
        lambda: B.LightGBMPricer(rounds=60),
        lambda: baseline_stack.SparseMLP(epochs=1),
        lambda: baseline_stack.SparseMLP(epochs=1, seeds=2, binary=True),
    ],
    ids=["features", "bow", "word2vec", "ridge", "svr", "forest", "lightgbm", "mlp", "mlp-binary"],
)
def test_learned_baselines_beat_the_median(make, split, median_rmsle):
    model = make()
    score = rmsle_of(model, *split)
    assert score < median_rmsle, f"{model.name}: {score:.3f} vs median {median_rmsle:.3f}"
    assert model.train_seconds > 0
    assert model(split[1][0]) == pytest.approx(model.predict(split[1][:1])[0], rel=1e-5)


def test_ridge_learns_text_well_enough(split, median_rmsle):
    assert rmsle_of(B.TfidfRidge(), *split) < median_rmsle - 0.1


def test_shared_features_are_fitted_once_and_cached(split):
    train, test = split
    feats = B.ListingFeatures()
    ridge = B.TfidfRidge(feats).fit(train)
    first = feats.fit_seconds
    B.TfidfLinearSVR(feats).fit(train)
    assert feats.fit_seconds == first  # same training items: not refitted
    assert feats.transform(test) is feats.transform(test)
    assert feats.transform(test).shape[1] == feats.n_features
    assert ridge.features is feats


def test_log_average_ensemble_is_the_geometric_mean(split):
    train, test = split
    a = B.ConstantPricer("mean").fit(train)
    b = B.ConstantPricer("median").fit(train)
    ens = baseline_stack.LogAverageEnsemble([a, b]).fit(train)
    expected = np.expm1((np.log1p(a.value) + np.log1p(b.value)) / 2)
    assert ens(test[0]) == pytest.approx(expected)


def test_binary_mlp_leaves_the_shared_features_untouched(split):
    train, test = split
    feats = B.ListingFeatures()
    before = feats.fit(train).transform(test).data.copy()
    net = baseline_stack.SparseMLP(feats, epochs=1, seeds=2, binary=True).fit(train)
    assert len(net.nets) == 2 and "binary inputs" in net.name and "2 seeds" in net.name
    assert np.array_equal(feats.transform(test).data, before)  # still TF-IDF weights, not ones
    with pytest.raises(ValueError, match="seeds"):
        baseline_stack.SparseMLP(seeds=0)


def test_stack_weights_are_fitted_on_the_holdout(split, holdout):
    train, test = split
    good, bad = B.TfidfRidge(), B.ConstantPricer("mean")
    stack = baseline_stack.LogAverageEnsemble([good, bad], holdout=holdout).fit(train)
    assert (stack.weights >= 0).all() and stack.weights[0] > stack.weights[1]
    assert rmsle_of(stack, train, test) <= rmsle_of(baseline_stack.LogAverageEnsemble([good, bad]), train, test)
    with pytest.raises(ValueError, match="training items"):
        baseline_stack.LogAverageEnsemble([good, bad]).fit_weights(train[:100], train_items=train)
    with pytest.raises(ValueError, match="too few"):
        baseline_stack.LogAverageEnsemble([good, bad]).fit_weights(holdout[:5])
    with pytest.raises(ValueError, match="non-negative"):
        baseline_stack.LogAverageEnsemble([good, bad], weights=[1, -1])


def test_unfitted_and_empty_inputs_fail_clearly():
    with pytest.raises(RuntimeError, match="fit"):
        B.TfidfRidge().predict([Item(id="a", title="x", price=1)])
    with pytest.raises(ValueError, match="no training items"):
        B.ConstantPricer().fit([])


def test_target_encoder_is_out_of_fold_on_training_rows():
    keys = [["a"] * 50 + ["b"] * 50]
    y = np.r_[np.zeros(50), np.ones(50)]
    enc = B.TargetEncoder(smoothing=0, folds=5)
    train = enc.fit_transform(keys, y)
    assert np.allclose(train[:50, 0], 0) and np.allclose(train[50:, 0], 1)
    assert enc.transform([["a", "b", "zzz"]])[:, 0].tolist() == pytest.approx([0, 1, 0.5])


def test_all_baselines_lists_every_kind_once():
    names = [m.name for m in baseline_stack.all_baselines()]
    assert len(names) == len(set(names)) == 13
    assert names[-1] == baseline_stack.BEST_BASELINE


def test_notebook_08_marks_the_stack_as_the_best_baseline_and_a_blend():
    """Notebook 14 reads these flags from the results store to pick its rivals."""
    from notebook_cells import cell_namespace

    stored_extra = cell_namespace("08_baselines.ipynb", "def stored_extra(model):", baselines=B, baseline_stack=baseline_stack)["stored_extra"]
    *singles, stack = baseline_stack.all_baselines()
    assert stored_extra(stack) == {"kind": "baseline", "best_baseline": True, "blend": True}
    assert all(stored_extra(m) == {"kind": "baseline", "best_baseline": False, "blend": False} for m in singles)
