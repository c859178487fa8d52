"""The best classic baseline: a stack of the strongest models, with a small neural net among them.

`SparseMLP` is a two-layer network on the shared sparse features. The stack blends the
members' log prices with non-negative weights (`fit_log_blend`) fitted on validation
items the test never sees; notebook 14 blends the course's LLM pricers the same way.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .baselines import (
    BagOfWordsLinear,
    Baseline,
    ConstantPricer,
    FeatureLinear,
    LightGBMPricer,
    RandomForest,
    RandomPricer,
    TfidfLinearSVR,
    TfidfRidge,
    Word2VecLinear,
    SharedFeaturesModel,
)
from .features import ListingFeatures, log_prices
from .items import Item


class SparseMLP(SharedFeaturesModel):
    """A small neural network (torch): the 40,000 most frequent sparse features -> 64 -> 64 -> 1.

    Each batch is a sparse matrix multiplied into the first layer, so the cost grows
    with the words present, not with the vocabulary; a few epochs of Adam, with the
    batch size doubling each epoch (fast first steps, smoother final ones).

    `seeds` nets are trained from different random starts and their log prices
    averaged (a bag of nets: cheaper than one bigger net, and steadier). With
    `binary=True` every non-zero feature becomes 1: the net sees which words are
    present, not their TF-IDF weight, and makes different mistakes, which is what
    a blend needs.
    """

    def __init__(
        self,
        features: ListingFeatures | None = None,
        hidden: int = 64,
        columns: int = 40_000,
        epochs: int = 3,
        batch_size: int = 256,
        lr: float = 3e-3,
        seed: int = 42,
        seeds: int = 1,
        binary: bool = False,
    ):
        super().__init__(features)
        if seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {seeds}")
        self.hidden, self.columns, self.epochs, self.batch_size, self.lr, self.seed = hidden, columns, epochs, batch_size, lr, seed
        self.seeds, self.binary = seeds, binary
        self.name = "neural net (sparse MLP" + (", binary inputs" if binary else "") + (f", {seeds} seeds" if seeds > 1 else "") + ")"

    def _inputs(self, items, fitting):
        X = self._matrix(items, fitting)
        if fitting:
            self.keep = self.features.frequent_columns(items, self.columns)
        X = X[:, self.keep].tocsr()
        if self.binary:
            X.data[:] = 1.0  # the slice is a copy: the shared cache is untouched
        return X

    @staticmethod
    def _tensor(X):
        import warnings

        import torch

        X = X.tocsr()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                torch.from_numpy(X.indptr.astype(np.int64)),
                torch.from_numpy(X.indices.astype(np.int64)),
                torch.from_numpy(X.data.astype(np.float32)),
                size=X.shape,
                check_invariants=False,  # scipy built a valid CSR matrix
            )

    def _fit(self, items):
        X = self._inputs(items, fitting=True)
        y = log_prices(items).astype(np.float32)
        self.mean = float(y.mean())
        self.nets = [self._train_one(X, y - self.mean, self.seed + k) for k in range(self.seeds)]

    def _train_one(self, X, y, seed):
        import torch
        from torch import nn

        torch.manual_seed(seed)
        net = nn.ModuleDict(
            {"first": nn.Linear(X.shape[1], self.hidden), "rest": nn.Sequential(nn.ReLU(), nn.Linear(self.hidden, 64), nn.ReLU(), nn.Linear(64, 1))}
        )
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr)
        rng = np.random.default_rng(seed)
        target = torch.from_numpy(y)
        net.train()
        for epoch in range(self.epochs):
            order = rng.permutation(X.shape[0])
            size = self.batch_size * (2**epoch)
            for start in range(0, len(order), size):
                rows = order[start : start + size]
                loss = torch.mean((self._forward(net, X[rows]) - target[rows]) ** 2)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        net.eval()
        return net

    def _forward(self, net, X):
        import torch

        first = net["first"]
        h = torch.sparse.mm(self._tensor(X), first.weight.T) + first.bias
        return net["rest"](h).squeeze(-1)

    def _predict(self, items):
        import torch

        X = self._inputs(items, fitting=False)
        with torch.no_grad():
            logs = [
                np.concatenate([self._forward(net, X[start : start + 4096]).numpy() for start in range(0, X.shape[0], 4096)])
                for net in self.nets
            ]
        return np.expm1(np.mean(logs, axis=0) + self.mean)


def fit_log_blend(columns, prices, items_per_weight: int = 2) -> tuple[np.ndarray, float]:
    """Non-negative weights and an intercept mapping `columns` (log prices) to log(1 + price).

    The one blending rule of the course: the baseline stack of notebook 08 and the ensemble of
    notebook 14 both use it. `items_per_weight` sets how many items each weight needs at least.
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


class LogAverageEnsemble(Baseline):
    """A weighted mean of several baselines' log prices (equal weights: a geometric mean).

    With `holdout` items, `fit` trains the members on the training items and then fits
    the weights (non-negative, plus an intercept) on the holdout: items no member trained
    on, so a member that merely memorised its training set gets no extra say.
    """

    def __init__(
        self,
        members: Sequence[Baseline],
        weights: Sequence[float] | None = None,
        name: str | None = None,
        holdout: Sequence[Item] | None = None,
    ):
        if not members:
            raise ValueError("an ensemble needs members")
        self.members = list(members)
        self.weights = np.asarray(weights if weights is not None else [1.0] * len(members), dtype=float)
        if len(self.weights) != len(self.members) or (self.weights < 0).any() or self.weights.sum() <= 0:
            raise ValueError(f"need {len(self.members)} non-negative weights, not all zero; got {list(self.weights)}")
        self.weights = self.weights / self.weights.sum()
        self.intercept = 0.0
        self.holdout = list(holdout) if holdout is not None else None
        self.name = name or "ensemble of " + " + ".join(m.name for m in self.members)

    def _member_logs(self, items) -> np.ndarray:
        return np.column_stack([np.log1p(m.predict(items)) for m in self.members])

    def _fit(self, items):
        for m in self.members:
            if not getattr(m, "fitted", False):
                m.fit(items)
        if self.holdout is not None:
            self.fit_weights(self.holdout, train_items=items)

    def fit_weights(self, holdout: Sequence[Item], train_items: Sequence[Item] = ()) -> "LogAverageEnsemble":
        """Non-negative weights and an intercept for the members' log prices, fitted on `holdout`."""

        holdout = list(holdout)
        leaked = {it.id for it in holdout} & {it.id for it in train_items}
        if leaked:
            raise ValueError(f"{len(leaked)} holdout items are also training items (e.g. {sorted(leaked)[:3]}): fit the weights on items the members never saw")
        weights, intercept = fit_log_blend(self._member_logs(holdout) if holdout else np.empty((0, len(self.members))), [it.price for it in holdout], items_per_weight=10)
        if weights.sum() <= 0:
            raise ValueError("no member helps on the holdout items (all weights are zero)")
        self.weights, self.intercept = weights, intercept
        return self

    def _predict(self, items):
        return np.expm1(self._member_logs(items) @ self.weights + self.intercept)


BEST_BASELINE = "baseline stack (ridge, SVR, LightGBM, neural nets)"


def all_baselines(seed: int = 42, holdout: Sequence[Item] | None = None) -> list[Baseline]:
    """Every baseline of notebook 08, in teaching order; text models share one ListingFeatures.

    The last one, the best baseline, stacks the strongest members; pass `holdout`
    (validation items) to fit its weights there, else it is a plain geometric mean.
    """
    features = ListingFeatures()
    ridge = TfidfRidge(features)
    svr = TfidfLinearSVR(features)
    boosted = LightGBMPricer(seed=seed)
    mlp = SparseMLP(features, seed=seed, seeds=2)
    mlp_binary = SparseMLP(features, seed=seed, seeds=2, binary=True)
    return [
        RandomPricer(seed),
        ConstantPricer("mean"),
        ConstantPricer("median"),
        FeatureLinear(),
        BagOfWordsLinear(),
        Word2VecLinear(seed=seed),
        ridge,
        svr,
        RandomForest(seed=seed),
        boosted,
        mlp,
        mlp_binary,
        LogAverageEnsemble([ridge, svr, boosted, mlp, mlp_binary], name=BEST_BASELINE, holdout=holdout),
    ]
