"""Stack the course's best pricers into one: a non-negative linear blend of log prices.

Inputs (their per-item predictions are read from the results store):

    specialist   the fine-tuned model                      notebook 11
    rag          the RAG pricer (chat model + Chroma)      notebook 13
    forest       the random forest on embeddings            notebook 13
    baseline     the strongest classic baseline             notebook 08

Features are log(1 + price) of each input plus, per item, the minimum and the maximum of
those four: the min and max let the blend lean towards the low or high opinion when the
models disagree. The blend is `LinearRegression(positive=True)` on log(1 + true price): no weight can be
negative, so it cannot bet against an input; with its intercept, and weights that need not
sum to 1, it is a weighted vote rather than a strict average.

Notebook 14 writes this fit out in its cells (and the tables around it); a test
(tests/test_lessons_pricing.py) checks that the cell and `fit_ensemble` agree. The package
keeps the fit because later work prices items with the fitted blend (`EnsemblePricer`).

It is fitted on the "ensemble_val" split only (items no input model trained on), then
scored on the "eval" split like every other model, so its score is a fair comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..core import config
from .baseline_stack import BEST_BASELINE, fit_log_blend
from .items import Item

ENSEMBLE_NAME = "ensemble"
FIT_SPLIT = "ensemble_val"
SCORE_SPLIT = "eval"


class MissingInputError(RuntimeError):
    """An input model of the ensemble has no stored predictions; the message names the notebook to run."""


@dataclass(frozen=True)
class EnsembleInput:
    """One input model: its role, how its stored name starts, and the notebook that produces it."""

    role: str
    prefix: str
    notebook: str
    exact: bool = False  # the stored name must equal `prefix`

    def matches(self, model: str) -> bool:
        return model == self.prefix if self.exact else model.startswith(self.prefix)


def default_inputs() -> list[EnsembleInput]:
    """The four inputs the course stacks, with the notebooks that store their predictions."""
    from .rag_pricer import FOREST_MODEL_NAME, RAG_MODEL_NAME

    return [
        EnsembleInput("specialist", "qlora-specialist", "11_evaluating_the_finetune.ipynb"),
        EnsembleInput("rag", RAG_MODEL_NAME, "13_rag_pricer.ipynb", exact=True),
        EnsembleInput("forest", FOREST_MODEL_NAME, "13_rag_pricer.ipynb", exact=True),
        EnsembleInput("baseline", BEST_BASELINE, "08_baselines.ipynb", exact=True),
    ]


def _stored_rmsle(model: str, split: str, items: Sequence[Item], profile: config.Profile) -> float:
    from . import results
    from .evaluation import rmsle

    preds = results.load_predictions(model, split, profile)
    have = [it for it in items if it.id in preds]
    if not have:
        return math.inf
    return rmsle([it.price for it in have], [preds[it.id] for it in have])


def resolve_inputs(
    profile: config.Profile | None = None,
    inputs: Sequence[EnsembleInput] | None = None,
    fit_items: Sequence[Item] | None = None,
) -> dict[str, str]:
    """{role: stored model name} for each input, checked to exist on both splits.

    When several stored models match a role (the specialist's greedy and weighted readings,
    say), the one with the lowest RMSLE on the fitting split wins:
    the choice never looks at the evaluation split.
    """
    from . import results
    from .data import ensemble_val_set

    profile = profile or config.get_profile()
    inputs = list(inputs or default_inputs())
    on_fit = set(results.list_predictions(FIT_SPLIT, profile))
    on_score = set(results.list_predictions(SCORE_SPLIT, profile))
    chosen: dict[str, str] = {}
    problems = []
    for spec in inputs:
        candidates = sorted(m for m in on_fit & on_score if spec.matches(m))
        if not candidates:
            where = [s for s, have in ((FIT_SPLIT, on_fit), (SCORE_SPLIT, on_score)) if not any(spec.matches(m) for m in have)]
            problems.append(
                f"- {spec.role}: no predictions of {spec.prefix!r}{'' if spec.exact else '*'} on split(s) "
                f"{', '.join(where)}; run notebooks/{spec.notebook} (profile {profile.name}) first"
            )
            continue
        if len(candidates) > 1:
            fit_items = fit_items if fit_items is not None else ensemble_val_set(profile)
            candidates.sort(key=lambda m: _stored_rmsle(m, FIT_SPLIT, fit_items, profile))
        chosen[spec.role] = candidates[0]
    if problems:
        raise MissingInputError("the ensemble is missing input predictions:\n" + "\n".join(problems))
    return chosen


def input_matrix(
    models: Mapping[str, str], split: str, items: Sequence[Item], profile: config.Profile | None = None
):
    """A DataFrame (one row per item, one column per role) of the stored predictions in dollars."""
    import pandas as pd

    from . import results

    profile = profile or config.get_profile()
    columns = {}
    for role, model in models.items():
        preds = results.load_predictions(model, split, profile)
        missing = [it.id for it in items if it.id not in preds]
        if missing:
            raise MissingInputError(
                f"{model!r} has no stored prediction on split {split!r} for {len(missing)} of {len(items)} items "
                f"(e.g. {missing[:3]}): it was scored on other items; evaluate it again on data.split_items({split!r})"
            )
        columns[role] = [float(preds[it.id]) for it in items]
    return pd.DataFrame(columns, index=[it.id for it in items])


def features(inputs) -> np.ndarray:
    """log(1 + price) of each input, then the row-wise minimum and maximum of those logs."""
    logs = np.log1p(np.clip(np.asarray(inputs, dtype=float), 0, None))
    return np.column_stack([logs, logs.min(axis=1), logs.max(axis=1)])


def feature_names(roles: Sequence[str]) -> list[str]:
    return [*roles, "min", "max"]


@dataclass
class Ensemble:
    """A fitted blend: roles, the stored models behind them, weights and intercept (log space)."""

    models: dict[str, str]
    weights: dict[str, float] = field(default_factory=dict)
    intercept: float = 0.0
    n_fit: int = 0

    @property
    def roles(self) -> list[str]:
        return list(self.models)

    def fit(self, inputs, prices) -> "Ensemble":
        inputs = np.asarray(inputs, dtype=float)
        if inputs.ndim != 2 or inputs.shape[1] != len(self.models):
            raise ValueError(f"expected {len(self.models)} input columns ({', '.join(self.roles)}), got shape {inputs.shape}")
        weights, self.intercept = fit_log_blend(features(inputs), prices)
        self.weights = dict(zip(feature_names(self.roles), (float(w) for w in weights)))
        self.n_fit = len(inputs)
        return self

    def predict(self, inputs) -> np.ndarray:
        if not self.weights:
            raise RuntimeError("the ensemble is not fitted yet")
        w = np.array([self.weights[name] for name in feature_names(self.roles)])
        return np.clip(np.expm1(features(inputs) @ w + self.intercept), 0.01, None)

def fit_ensemble(
    profile: config.Profile | None = None,
    inputs: Sequence[EnsembleInput] | None = None,
    items: Sequence[Item] | None = None,
) -> Ensemble:
    """Resolve the inputs in the results store and fit the blend on the ensemble_val split."""
    from .data import ensemble_val_set

    profile = profile or config.get_profile()
    items = items if items is not None else ensemble_val_set(profile)
    models = resolve_inputs(profile, inputs, fit_items=items)
    frame = input_matrix(models, FIT_SPLIT, items, profile)
    return Ensemble(models).fit(frame.values, [it.price for it in items])


def predict_split(
    ensemble: Ensemble, split: str = SCORE_SPLIT, profile: config.Profile | None = None, items: Sequence[Item] | None = None
) -> dict[str, float]:
    """{item_id: ensemble price} for every item of a split, from the inputs' stored predictions."""
    from .data import split_items

    profile = profile or config.get_profile()
    items = items if items is not None else split_items(split, profile)
    frame = input_matrix(ensemble.models, split, items, profile)
    return dict(zip(frame.index, (float(p) for p in ensemble.predict(frame.values))))


class EnsemblePricer:
    """The fitted ensemble as a pricer (`Item -> float`) over items whose inputs are stored."""

    def __init__(self, ensemble: Ensemble, split: str = SCORE_SPLIT, profile: config.Profile | None = None):
        self.ensemble = ensemble
        self.split = split
        self.profile = profile or config.get_profile()
        self._inputs: dict[str, dict[str, float]] | None = None

    def __call__(self, item: Item) -> float:
        from . import results

        if self._inputs is None:
            self._inputs = {
                role: results.load_predictions(model, self.split, self.profile) for role, model in self.ensemble.models.items()
            }
        try:
            row = [[self._inputs[role][item.id] for role in self.ensemble.roles]]
        except KeyError as exc:
            raise MissingInputError(f"item {item.id!r} has no stored prediction on split {self.split!r} from every input") from exc
        return float(self.ensemble.predict(row)[0])
