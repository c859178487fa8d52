"""Metrics, the hit rule, EvalResult and storing results from score()/evaluate()."""

import math

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, root_mean_squared_log_error

from course_utils.core import config
from course_utils.pricing import curation, data, evaluation, results
from course_utils.pricing.items import Item


def items_and_prices(n=200, seed=0):
    rng = np.random.default_rng(seed)
    prices = np.round(np.exp(rng.normal(3, 0.8, n)), 2) + 1
    cats = ["Women", "Men", "Beauty", "Kids"]
    items = [Item(id=f"t{i}", title=f"thing {i}", categories=(cats[i % 4],), price=float(p)) for i, p in enumerate(prices)]
    preds = prices * np.exp(rng.normal(0, 0.5, n))
    return items, prices, preds


def test_rmsle_and_mae_equal_scikit_learn():
    items, prices, preds = items_and_prices()
    m = evaluation.compute_metrics(prices, preds)
    assert m["rmsle"] == pytest.approx(root_mean_squared_log_error(prices, preds), rel=1e-12)
    assert m["mae"] == pytest.approx(mean_absolute_error(prices, preds), rel=1e-12)
    assert evaluation.rmsle(prices, prices) == 0


def test_negative_predictions_are_clipped_to_zero():
    assert evaluation.rmsle([10.0], [-5.0]) == pytest.approx(math.log1p(10.0))


def test_hit_rule_uses_dollars_for_cheap_and_percent_for_dear_items():
    truths = np.array([10, 10, 100, 100])
    preds = np.array([14.9, 15.1, 119, 121])
    assert evaluation.hits(truths, preds).tolist() == [True, False, True, False]


def test_a_constant_guess_does_not_score_a_high_hit_rate_on_mercari():
    items, _ = curation.load_mercari()
    prices = np.array([it.price for it in items])
    for constant in (np.median(prices), prices.mean()):
        assert evaluation.hits(prices, np.full_like(prices, constant)).mean() < 0.5


def test_per_category_table():
    items, prices, preds = items_and_prices()
    table = evaluation.per_category(items, preds)
    assert set(table.category) == {"Women", "Men", "Beauty", "Kids"}
    assert table.n_items.sum() == len(items)
    women = [i for i, it in enumerate(items) if it.category == "Women"]
    assert table.set_index("category").loc["Women", "rmsle"] == pytest.approx(root_mean_squared_log_error(prices[women], preds[women]))


def test_score_rejects_bad_predictions():
    items, prices, preds = items_and_prices(5)
    with pytest.raises(ValueError, match="not finite"):
        evaluation.score("m", items, [1, 2, float("nan"), 4, 5], store=False)
    with pytest.raises(ValueError, match="5 items"):
        evaluation.score("m", items, [1, 2], store=False)
    with pytest.raises(ValueError, match="no prediction"):
        evaluation.score("m", items, {"t0": 1.0}, store=False)
    with pytest.raises(ValueError):
        evaluation.score("m", [], [], store=False)


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    monkeypatch.setattr(results, "_current_data_version", lambda profile: "test-data")
    monkeypatch.setattr(data, "data_version", lambda profile=None, *a, **k: "test-data")
    monkeypatch.setattr(evaluation, "_check_split", lambda *a, **k: None)
    return tmp_path


def test_score_stores_metrics_and_predictions(store):
    items, prices, preds = items_and_prices(50)
    profile = config.get_profile("ci")
    result = evaluation.score("noisy", items, preds, profile=profile, extra={"kind": "test"})
    assert result.rmsle == pytest.approx(root_mean_squared_log_error(prices, preds))
    assert result.predictions["t3"] == pytest.approx(preds[3])
    board = results.leaderboard(profile)
    assert board.loc[1, "model"] == "noisy" and board.loc[1, "rmsle"] == pytest.approx(result.rmsle)
    assert results.load_predictions("noisy", "eval", profile) == pytest.approx(result.predictions)
    assert str(result).startswith("noisy on eval (50 items)")


def test_score_refuses_an_unknown_split_before_storing_anything(store):
    items, _, preds = items_and_prices(5)
    with pytest.raises(ValueError, match="unknown split 'evl'"):
        evaluation.score("typo", items, preds, profile=config.get_profile("ci"), split="evl")
    assert not (store / "predictions").exists() and results.leaderboard(config.get_profile("ci"), split="evl").empty


def test_score_saves_predictions_before_it_records_the_metrics(store, monkeypatch):
    """Stopped in between, the store never pairs new metrics with the previous run's predictions."""
    items, _, preds = items_and_prices(5)
    profile = config.get_profile("ci")
    evaluation.score("m", items, [1.0] * 5, profile=profile)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(results, "record", stopped)
    with pytest.raises(KeyboardInterrupt):
        evaluation.score("m", items, preds, profile=profile)
    assert results.load_predictions("m", "eval", profile)["t0"] == pytest.approx(preds[0])


def test_answers_looked_up_in_the_response_cache_are_counted_beside_the_timing(store, tmp_path):
    from course_utils.chat.cache import ResponseCache, cached_chat

    class Backend:
        model = "canned"

        def chat(self, messages, **params):
            return "$12"

    responses = ResponseCache(tmp_path / "responses.sqlite")
    items, _, _ = items_and_prices(4)

    def pricer(item):
        return float(cached_chat(Backend(), [{"role": "user", "content": item.title}], cache=responses).strip("$"))

    profile = config.get_profile("ci")
    first = evaluation.evaluate(pricer, items, "chatty", profile=profile)
    assert "cached_answers" not in first.timings  # every answer was generated
    again = evaluation.evaluate(pricer, items, "chatty", profile=profile)
    assert again.timings["cached_answers"] == 4  # only looked up: the timing is the cache's, and says so
    assert results.leaderboard(profile).loc[1, "cached_answers"] == 4


def test_evaluate_calls_the_pricer_for_every_item(store):
    items, prices, _ = items_and_prices(30)
    seen = []

    def pricer(item):
        seen.append(item.id)
        return item.price * 1.1

    result = evaluation.evaluate(pricer, items, "ten percent high", profile=config.get_profile("ci"))
    assert seen == [it.id for it in items]
    assert result.metrics["log_bias"] > 0 and result.hit_rate == 1.0
    assert result.timings["predict_s"] >= 0 and "ms_per_item" in result.timings
    assert result.per_category().n_items.sum() == 30


def test_score_timed_predicts_once_times_it_and_reads_extra_afterwards(store):
    items, prices, _ = items_and_prices(20)
    calls = []

    def predict(batch):
        calls.append(len(batch))
        return [it.price for it in batch]

    profile = config.get_profile("ci")
    result = evaluation.score_timed("exact", items, predict, profile, extra=lambda: {"calls": len(calls)}, timings={"train_s": 1.5})
    assert calls == [20] and result.rmsle == 0.0
    assert result.extra == {"calls": 1}  # read after predicting
    assert result.timings["train_s"] == 1.5 and result.timings["predict_s"] >= 0 and "ms_per_item" in result.timings
    assert results.load_predictions("exact", "eval", profile) == pytest.approx(result.predictions)


def test_plot_scatter_draws_every_point(store):
    import matplotlib

    matplotlib.use("Agg")
    items, prices, preds = items_and_prices(40)
    result = evaluation.score("m", items, preds, store=False)
    ax = evaluation.plot_scatter(result)
    assert ax.get_xscale() == "log" and len(ax.collections[0].get_offsets()) == 40


def test_paired_bootstrap_separates_a_real_gap_from_noise():
    from course_utils.pricing.evaluation import paired_bootstrap

    rng = np.random.default_rng(0)
    truths = np.exp(rng.normal(3, 0.8, 400))
    good = truths * np.exp(rng.normal(0, 0.40, 400))
    worse = truths * np.exp(rng.normal(0, 0.50, 400))
    twin = truths * np.exp(rng.normal(0, 0.40, 400))  # another model exactly as good as `good`
    clear = paired_bootstrap(truths, good, worse, rounds=500)
    assert clear["change"] < 0 and clear["high (95%)"] < 0 and clear["better in"] > 0.97
    assert clear["change"] == pytest.approx(evaluation.rmsle(truths, good) / evaluation.rmsle(truths, worse) - 1)
    unsure = paired_bootstrap(truths, twin, good, rounds=500)
    assert unsure["low (95%)"] < 0 < unsure["high (95%)"]
    with pytest.raises(ValueError, match="must match"):
        paired_bootstrap(truths, good[:10], worse)
