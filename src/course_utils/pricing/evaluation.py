"""Score any pricer the same way: MAE, RMSLE, a hit rate, per-category error, a scatter.

    result = evaluate(pricer, eval_set(), "my model")   # progress bar, metrics, stored
    result = score("my model", items, predictions)      # when predictions already exist

Both return an `EvalResult` and (by default) record it in the results store and save
its per-item predictions, so the leaderboard and the ensemble can read them.

The hit rule, the same for every profile: a prediction is a hit when it is within $5 or 20%
of the true price, whichever is larger. $5 is the step a seller moves an asking price by on a
cheap item, and 20% the same tolerance on expensive ones, so the rule means the same on cheap
and dear data. The figures that chose it are the offline and CI profiles' Mercari data: prices
there are small (median $17, a quarter at $10 or less), a looser rule such as "within $40 or
20%" is met by 94% of constant guesses, and a constant guess of the median hits about a third
of the items under this one. On the GPU profiles' Amazon data, where most prices are above $25,
the 20% part decides nearly every item.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from ..core import config
from .items import Item, Pricer

HIT_ABS_DOLLARS = 5.0
HIT_REL = 0.20


def hits(truths, predictions) -> np.ndarray:
    """True where a prediction is within $5 or 20% of the truth (whichever is larger)."""
    truths = np.asarray(truths, dtype=float)
    predictions = np.asarray(predictions, dtype=float)
    return np.abs(predictions - truths) <= np.maximum(HIT_ABS_DOLLARS, HIT_REL * truths)


def rmsle(truths, predictions) -> float:
    """Root mean squared log error, sqrt(mean((log1p(pred) - log1p(truth))**2)); predictions clipped at 0."""
    truths = np.asarray(truths, dtype=float)
    predictions = np.clip(np.asarray(predictions, dtype=float), 0, None)
    return float(np.sqrt(np.mean((np.log1p(predictions) - np.log1p(truths)) ** 2)))


def paired_bootstrap(truths, predictions, reference, rounds: int = 2000, seed: int = 42, level: float = 0.95) -> dict:
    """How sure a gap in RMSLE between two models is, on the items both were scored on.

    Resamples the items with replacement `rounds` times and recomputes both RMSLEs on each
    resample (the same items for both models: a paired test). Returns the relative change
    rmsle(predictions) / rmsle(reference) - 1 on all items, its `level` interval, and the
    share of resamples in which `predictions` did better. An interval that straddles zero
    means the eval set is too small to tell the two apart.
    """
    truths, predictions, reference = (np.asarray(x, dtype=float) for x in (truths, predictions, reference))
    if not len(truths) == len(predictions) == len(reference):
        raise ValueError(
            f"{len(truths)} truths, {len(predictions)} predictions and {len(reference)} reference predictions: they must match"
        )
    if len(truths) < 2:
        raise ValueError("a bootstrap needs at least 2 items")
    truths = np.log1p(truths)
    a = np.log1p(np.clip(predictions, 0, None)) - truths
    b = np.log1p(np.clip(reference, 0, None)) - truths
    picks = np.random.default_rng(seed).integers(0, len(truths), size=(rounds, len(truths)))
    ratios = np.sqrt((a[picks] ** 2).mean(axis=1) / (b[picks] ** 2).mean(axis=1)) - 1
    tail = (1 - level) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return {
        "change": float(np.sqrt((a**2).mean() / (b**2).mean()) - 1),
        f"low ({level:.0%})": float(low),
        f"high ({level:.0%})": float(high),
        "better in": float((ratios < 0).mean()),
        "n_items": int(len(truths)),
    }


def compute_metrics(truths, predictions) -> dict:
    truths = np.asarray(truths, dtype=float)
    predictions = np.clip(np.asarray(predictions, dtype=float), 0, None)
    errors = np.abs(predictions - truths)
    return {
        "n_items": int(len(truths)),
        "rmsle": rmsle(truths, predictions),
        "mae": float(errors.mean()),
        "median_ae": float(np.median(errors)),
        "hit_rate": float(hits(truths, predictions).mean()),
        # > 0: the model over-prices on average (geometric mean ratio of prediction to truth)
        "log_bias": float(np.mean(np.log1p(predictions) - np.log1p(truths))),
    }


def per_category(items: Sequence[Item], predictions: Sequence[float]):
    """Error by top-level category, most common first."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "category": [it.category for it in items],
            "truth": [it.price for it in items],
            "prediction": np.clip(np.asarray(predictions, dtype=float), 0, None),
        }
    )
    rows = []
    for cat, group in frame.groupby("category", sort=False):
        m = compute_metrics(group["truth"], group["prediction"])
        rows.append({"category": cat, "n_items": m["n_items"], "rmsle": m["rmsle"], "mae": m["mae"], "hit_rate": m["hit_rate"]})
    return pd.DataFrame(rows).sort_values(["n_items", "category"], ascending=[False, True]).reset_index(drop=True)


@dataclass
class EvalResult:
    """Metrics, per-item predictions (keyed by item id) and timings of one model on one split."""

    name: str
    profile: str
    split: str
    data_version: str
    metrics: dict
    predictions: dict[str, float]
    truths: dict[str, float]
    categories: dict[str, str]
    timings: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def rmsle(self) -> float:
        return self.metrics["rmsle"]

    @property
    def mae(self) -> float:
        return self.metrics["mae"]

    @property
    def hit_rate(self) -> float:
        return self.metrics["hit_rate"]

    def per_category(self):
        ids = list(self.predictions)
        items = [_Shim(self.categories[i], self.truths[i]) for i in ids]
        return per_category(items, [self.predictions[i] for i in ids])

    def row(self) -> dict:
        return {"model": self.name, "split": self.split, **self.metrics, **self.timings}

    def table(self):
        import pandas as pd

        return pd.DataFrame([self.row()])

    def __str__(self) -> str:
        m = self.metrics
        return (
            f"{self.name} on {self.split} ({m['n_items']} items): RMSLE {m['rmsle']:.3f}, "
            f"MAE ${m['mae']:.2f}, hits {m['hit_rate']:.1%}"
        )


@dataclass
class _Shim:  # just what per_category() reads from an Item
    category: str
    price: float


def _align(items: Sequence[Item], predictions) -> list[float]:
    if isinstance(predictions, Mapping):
        missing = [it.id for it in items if it.id not in predictions]
        if missing:
            raise ValueError(f"{len(missing)} items have no prediction, e.g. {missing[:3]}")
        values = [predictions[it.id] for it in items]
    else:
        values = list(predictions)
        if len(values) != len(items):
            raise ValueError(f"{len(values)} predictions for {len(items)} items")
    bad = []
    out = []
    for it, v in zip(items, values):
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        if not math.isfinite(f):
            bad.append(it.id)
        out.append(f)
    if bad:
        raise ValueError(f"{len(bad)} predictions are missing or not finite numbers, e.g. items {bad[:3]}")
    return out


def _check_split(items: Sequence[Item], split: str, profile: config.Profile) -> None:
    from .data import split_items

    expected = {it.id for it in split_items(split, profile)}
    given = {it.id for it in items}
    if given != expected:
        warnings.warn(
            f"the {len(given)} items scored as split {split!r} are not exactly that split's {len(expected)} items "
            f"(profile {profile.name}); the stored result will not be comparable with the leaderboard",
            stacklevel=3,
        )


def score(
    name: str,
    items: Sequence[Item],
    predictions,
    profile: config.Profile | None = None,
    split: str = "eval",
    extra: dict | None = None,
    store: bool = True,
    timings: dict | None = None,
) -> EvalResult:
    """Metrics of `predictions` (a list aligned with items, or {item_id: price}) against the items' prices.

    With `store`, the result goes into the results store and the predictions are saved,
    both keyed by (model, profile, data version, split).
    """
    from .data import check_split_name

    if not items:
        raise ValueError("no items to score")
    check_split_name(split)
    profile = profile or config.get_profile()
    values = _align(items, predictions)
    truths = [it.price for it in items]
    metrics = compute_metrics(truths, values)
    from .data import data_version

    version = data_version(profile)
    result = EvalResult(
        name=name,
        profile=profile.name,
        split=split,
        data_version=version,
        metrics=metrics,
        predictions={it.id: max(0.0, v) for it, v in zip(items, values)},
        truths={it.id: it.price for it in items},
        categories={it.id: it.category for it in items},
        timings=dict(timings or {}),
        extra=dict(extra or {}),
    )
    if store:
        from . import results

        _check_split(items, split, profile)
        # Predictions first: a kernel stopped in between leaves new predictions under the old
        # metrics, never new metrics beside the previous run's predictions, which notebook 14 would stack.
        results.save_predictions(name, split, result.predictions, profile=profile, data_version=version)
        results.record(name, metrics, profile=profile, split=split, data_version=version, timings=result.timings, extra=result.extra)
    return result


def score_timed(
    name: str,
    items: Sequence[Item],
    predict: Callable[[Sequence[Item]], Sequence[float]],
    profile: config.Profile | None = None,
    split: str = "eval",
    extra: dict | Callable[[], dict] | None = None,
    timings: dict | None = None,
    store: bool = True,
) -> EvalResult:
    """Time `predict(items)` (one call for all of them), then `score` and store the predictions.

    predict_s and ms_per_item join `timings`, and `cached_answers` when some chat answers came from
    the response cache: those were looked up, not generated, so the timing is not the model's speed.
    `extra` may be a function, called after predicting, for what the prediction itself counted (a
    RAG pricer's fallbacks, say).
    """
    from ..chat.cache import ResponseCache

    hits_before = ResponseCache.total_hits
    started = time.perf_counter()
    predictions = predict(items)
    seconds = time.perf_counter() - started
    timings = {**(timings or {}), "predict_s": round(seconds, 3), "ms_per_item": round(1000 * seconds / max(1, len(items)), 3)}
    if ResponseCache.total_hits > hits_before:
        timings["cached_answers"] = ResponseCache.total_hits - hits_before
    extra = extra() if callable(extra) else extra
    return score(name, items, predictions, profile, split=split, extra=extra, store=store, timings=timings)


def evaluate(
    pricer: Pricer,
    items: Sequence[Item],
    name: str,
    profile: config.Profile | None = None,
    split: str = "eval",
    store: bool = True,
    extra: dict | None = None,
) -> EvalResult:
    """Call `pricer` on every item (with a progress bar), then `score` the predictions."""
    from tqdm.auto import tqdm

    def price_each(batch):
        return [pricer(item) for item in tqdm(batch, desc=f"pricing with {name}", leave=False)]

    return score_timed(name, items, price_each, profile, split=split, extra=extra, store=store)


def plot_scatter(result: EvalResult, ax=None, max_points: int = 5000):
    """Truth vs prediction on log-log axes, each point coloured by its absolute log error."""
    import matplotlib.pyplot as plt

    ids = list(result.predictions)[:max_points]
    truth = np.array([result.truths[i] for i in ids])
    pred = np.clip(np.array([result.predictions[i] for i in ids]), 0.5, None)  # log axes need > 0
    err = np.abs(np.log1p(pred) - np.log1p(truth))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5.5))
    points = ax.scatter(truth, pred, c=err, cmap="RdYlGn_r", vmin=0, vmax=1.5, s=8, alpha=0.7)
    low = min(truth.min(), pred.min()) * 0.8
    high = max(truth.max(), pred.max()) * 1.2
    ax.plot([low, high], [low, high], color="black", lw=1, ls="--", label="perfect")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("true price ($)")
    ax.set_ylabel("predicted price ($)")
    ax.set_title(f"{result.name}: RMSLE {result.rmsle:.3f}, MAE ${result.mae:.2f}, hits {result.hit_rate:.0%}")
    plt.colorbar(points, ax=ax, label="|log error|")
    ax.legend(loc="upper left")
    return ax
