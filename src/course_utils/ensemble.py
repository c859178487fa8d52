"""Stack the course's best pricers into one: a non-negative linear blend of log prices.

Inputs (their per-item predictions are read from the results store):

    specialist   the fine-tuned model                      notebook 10
    rag          the RAG pricer (chat model + Chroma)      notebook 11
    forest       the random forest on embeddings            notebook 11
    baseline     the strongest classic baseline             notebook 07

Features are log(1 + price) of each input plus, per item, the minimum and the maximum of
those four: the min and max let the blend lean towards the low or high opinion when the
models disagree. The blend is `LinearRegression(positive=True)` on log(1 + true price):
no weight can be negative, so it can only average opinions, never bet against one.

It is fitted on the "ensemble_val" split only (items no input model trained on), then
scored on the "eval" split like every other model, so its score is a fair comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from . import config
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
    from .baselines import BEST_BASELINE
    from .rag_pricer import FOREST_MODEL_NAME, RAG_MODEL_NAME

    return [
        EnsembleInput("specialist", "qlora-specialist", "10_evaluating_the_finetune.ipynb"),
        EnsembleInput("rag", RAG_MODEL_NAME, "11_rag_pricer.ipynb", exact=True),
        EnsembleInput("forest", FOREST_MODEL_NAME, "11_rag_pricer.ipynb", exact=True),
        EnsembleInput("baseline", BEST_BASELINE, "07_baselines.ipynb", exact=True),
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


def error_correlation(frame, prices):
    """Correlation between the inputs' errors in log space (log(1 + prediction) - log(1 + price)).

    A blend gains where one input's mistakes are cancelled by another's. Two inputs whose
    errors move together (a correlation near 1) make the same mistakes, so averaging them
    cancels little, however good each one is alone.
    """
    import pandas as pd

    frame = pd.DataFrame(frame)
    prices = np.asarray(prices, dtype=float)
    if len(prices) != len(frame):
        raise ValueError(f"{len(frame)} rows of predictions but {len(prices)} prices")
    if len(prices) < 3:
        raise ValueError(f"a correlation needs at least 3 items, got {len(prices)}")
    errors = np.log1p(frame.clip(lower=0)).sub(np.log1p(prices), axis=0)
    return errors.corr()


def features(inputs) -> np.ndarray:
    """log(1 + price) of each input, then the row-wise minimum and maximum of those logs."""
    logs = np.log1p(np.clip(np.asarray(inputs, dtype=float), 0, None))
    return np.column_stack([logs, logs.min(axis=1), logs.max(axis=1)])


def fit_log_blend(columns, prices, items_per_weight: int = 2) -> tuple[np.ndarray, float]:
    """Non-negative weights and an intercept mapping `columns` (log prices) to log(1 + price).

    The one blending rule of the course: this ensemble and the baseline stack of notebook 07
    both use it. `items_per_weight` sets how many items each weight needs at least.
    """
    from sklearn.linear_model import LinearRegression

    columns = np.asarray(columns, dtype=float)
    prices = np.asarray(prices, dtype=float)
    if len(prices) != len(columns):
        raise ValueError(f"{len(columns)} rows of inputs but {len(prices)} prices")
    needed = items_per_weight * columns.shape[1]
    if len(prices) < needed:
        raise ValueError(f"{len(prices)} items are too few to fit {columns.shape[1]} weights (need {needed})")
    reg = LinearRegression(positive=True).fit(columns, np.log1p(prices))
    return reg.coef_.astype(float), float(reg.intercept_)


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

    def weights_table(self):
        """Each feature's weight and share of the total weight, largest first, plus the intercept."""
        import pandas as pd

        total = sum(self.weights.values()) or 1.0
        rows = [
            {
                "feature": name,
                "model": self.models.get(name, f"{name} of the {len(self.models)} inputs"),
                "weight": round(w, 4),
                "share": round(w / total, 3),
            }
            for name, w in self.weights.items()
        ]
        table = pd.DataFrame(rows).sort_values("weight", ascending=False).reset_index(drop=True)
        intercept = pd.DataFrame([{"feature": "intercept", "model": "(constant, log space)", "weight": round(self.intercept, 4), "share": float("nan")}])
        return pd.concat([table, intercept], ignore_index=True)

    def explain(self) -> str:
        """The weights in words: what the blend trusts, and what a zero weight means."""
        total = sum(self.weights.values())
        ranked = sorted(self.weights.items(), key=lambda kv: -kv[1])
        used = [f"{name} {w / total:.0%}" for name, w in ranked if w > 1e-6] if total > 0 else []
        unused = [name for name, w in ranked if w <= 1e-6]
        text = (
            f"Fitted on {self.n_fit} items of {FIT_SPLIT!r}. In log space the prediction is "
            f"{self.intercept:+.3f} + a weighted sum whose weights add up to {total:.3f}"
        )
        text += " (close to 1: a weighted average of opinions)." if 0.8 <= total <= 1.2 else "."
        if used:
            text += " Share of the total weight: " + ", ".join(used) + "."
        if unused:
            text += (
                " Weight zero (the fit found nothing they add once the others are known, "
                "and negative weights are not allowed): " + ", ".join(unused) + "."
            )
        return text


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


def comparison_table(
    ensemble: Ensemble, split: str = SCORE_SPLIT, profile: config.Profile | None = None, items: Sequence[Item] | None = None
):
    """RMSLE, MAE and hit rate of each input and of the ensemble on one split, best first."""
    import pandas as pd

    from .data import split_items
    from .evaluation import compute_metrics

    profile = profile or config.get_profile()
    items = items if items is not None else split_items(split, profile)
    frame = input_matrix(ensemble.models, split, items, profile)
    truths = [it.price for it in items]
    rows = []
    for role in ensemble.roles:
        m = compute_metrics(truths, frame[role].values)
        rows.append({"model": ensemble.models[role], "role": role, **m})
    m = compute_metrics(truths, ensemble.predict(frame.values))
    rows.append({"model": ENSEMBLE_NAME, "role": "ensemble", **m})
    keep = ["model", "role", "rmsle", "mae", "hit_rate", "n_items"]
    return pd.DataFrame(rows)[keep].sort_values("rmsle").reset_index(drop=True)


def ablation_table(
    profile: config.Profile | None = None,
    folds: int = 5,
    ensemble: Ensemble | None = None,
    items: Sequence[Item] | None = None,
):
    """Cross-validated RMSLE on ensemble_val of the blend with all inputs and with each one left out.

    A large rise when an input is dropped means the blend relies on it; none means the
    others already carry what it knows.
    """
    import pandas as pd
    from sklearn.model_selection import KFold

    from .data import ensemble_val_set
    from .evaluation import rmsle

    profile = profile or config.get_profile()
    items = items if items is not None else ensemble_val_set(profile)
    models = ensemble.models if ensemble else resolve_inputs(profile, fit_items=items)
    frame = input_matrix(models, FIT_SPLIT, items, profile)
    prices = np.array([it.price for it in items])

    def cv_rmsle(roles: list[str]) -> float:
        preds = np.zeros(len(items))
        for train, test in KFold(folds, shuffle=True, random_state=profile.seed).split(frame):
            part = Ensemble({r: models[r] for r in roles}).fit(frame[roles].values[train], prices[train])
            preds[test] = part.predict(frame[roles].values[test])
        return rmsle(prices, preds)

    roles = list(models)
    rows = [{"inputs": "all", "cv_rmsle": cv_rmsle(roles)}]
    for role in roles:
        rows.append({"inputs": f"without {role}", "cv_rmsle": cv_rmsle([r for r in roles if r != role])})
    table = pd.DataFrame(rows)
    table["change"] = table["cv_rmsle"] - table.loc[0, "cv_rmsle"]
    return table


def ceiling_table(
    ensemble: Ensemble, split: str = SCORE_SPLIT, profile: config.Profile | None = None, items: Sequence[Item] | None = None
):
    """How much room the inputs leave: the blend refitted on the scored split itself, beside the fair blend.

    Fitting on the very items it is scored on is cheating, so the refit is never stored or
    ranked; it is a bound. When even the refit barely beats the best input, better inputs,
    not a cleverer blend, are what would lower the error.
    """
    import pandas as pd

    from .data import split_items
    from .evaluation import rmsle

    profile = profile or config.get_profile()
    items = items if items is not None else split_items(split, profile)
    frame = input_matrix(ensemble.models, split, items, profile)
    truths = [it.price for it in items]
    refit = Ensemble(dict(ensemble.models)).fit(frame.values, truths)
    alone = {role: rmsle(truths, frame[role].values) for role in ensemble.roles}
    best_role = min(alone, key=alone.get)
    rows = [
        {"blend": f"best input alone ({best_role})", "fitted on": "-", "rmsle": alone[best_role]},
        {"blend": "ensemble (fair)", "fitted on": FIT_SPLIT, "rmsle": rmsle(truths, ensemble.predict(frame.values))},
        {"blend": "ensemble refitted on the scored items (a bound, not a score)", "fitted on": split,
         "rmsle": rmsle(truths, refit.predict(frame.values))},
    ]
    table = pd.DataFrame(rows)
    table["vs best input"] = [f"{1 - r / table.loc[0, 'rmsle']:+.1%}" for r in table["rmsle"]]
    return table


def rivals(board) -> dict[str, str]:
    """The models the ensemble is judged against: the best other model on the board, and the
    best single model, one not recorded with extra={"blend": True} (notebook 07's baseline stack is)."""
    others = board[board["model"] != ENSEMBLE_NAME]
    if others.empty:
        raise ValueError("the leaderboard holds no model but the ensemble: score the inputs first")
    found = {"best other model": others.iloc[0]["model"]}
    singles = others[~others["blend"].fillna(False).astype(bool)] if "blend" in others.columns else others
    if not singles.empty:
        found["best single model (not a blend)"] = singles.iloc[0]["model"]
    return found


def versus_table(board, rivals_by_label: Mapping[str, str] | None = None):
    """The ensemble's row of the leaderboard beside each rival's, with the ensemble's relative change in RMSLE."""
    import pandas as pd

    rivals_by_label = rivals_by_label if rivals_by_label is not None else rivals(board)
    by_model = board.set_index("model")
    if ENSEMBLE_NAME not in by_model.index:
        raise ValueError(f"the leaderboard has no {ENSEMBLE_NAME!r} row: score the ensemble first")
    ours = by_model.loc[ENSEMBLE_NAME]
    rows = [{"": "ensemble", "model": ENSEMBLE_NAME, "rmsle": ours["rmsle"], "mae": ours["mae"], "hit_rate": ours["hit_rate"]}]
    for label, model in rivals_by_label.items():
        theirs = by_model.loc[model]
        rows.append({
            "": label, "model": model, "rmsle": theirs["rmsle"], "mae": theirs["mae"], "hit_rate": theirs["hit_rate"],
            "ensemble's RMSLE change": ours["rmsle"] / theirs["rmsle"] - 1,
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("")


def bootstrap_table(
    predictions: Mapping[str, float],
    rivals_by_label: Mapping[str, str],
    items: Sequence[Item],
    profile: config.Profile | None = None,
    split: str = SCORE_SPLIT,
    seed: int = 42,
):
    """A paired bootstrap (`evaluation.paired_bootstrap`) of the ensemble against each rival's stored predictions."""
    import pandas as pd

    from .evaluation import paired_bootstrap

    unpriced = [it.id for it in items if it.id not in predictions]
    if unpriced:
        raise MissingInputError(f"the ensemble has no prediction for {len(unpriced)} of {len(items)} items (e.g. {unpriced[:3]})")
    truths = [it.price for it in items]
    ours = [predictions[it.id] for it in items]
    theirs = input_matrix(rivals_by_label, split, items, profile)  # raises MissingInputError for a gap
    rows = [
        {"ensemble vs": f"{model} ({label})", **paired_bootstrap(truths, ours, theirs[label].values, seed=seed)}
        for label, model in rivals_by_label.items()
    ]
    return pd.DataFrame(rows)


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
