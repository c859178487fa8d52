"""Classic price baselines: the numbers an LLM pricer has to beat.

Every baseline has the same shape:

    model = TfidfRidge().fit(train_items)   # learns from Items
    model.predict(items)                    # vectorised: an array of prices
    model(item)                             # a Pricer (Item -> float), for evaluate()

The learned models fit log1p(price) and return expm1 of their output: RMSLE is the
error of log prices, so fitting the log is fitting the metric, and no model can
predict a negative price.

Featurising text is the slow part, so the text models share one `ListingFeatures`
(TF-IDF of title words, title characters and full text, one-hot brand / category /
condition / shipping) that is fitted once and caches what it has transformed.

The best baseline is a stack: the strongest members' log prices blended with
non-negative weights fitted on validation items the test never sees.

Notebook 08 writes `TfidfRidge` out as a scikit-learn pipeline in its cells; a test
(tests/test_lessons_pricing.py) checks that the two give the same prices.
"""

from __future__ import annotations

import hashlib
import re
import time
import zlib
from typing import Sequence

import numpy as np

from .items import Item

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


# --- text and engineered features -------------------------------------------------------
def listing_text(item: Item) -> str:
    """Title, brand, category path and description in one string."""
    return " ".join(p for p in (item.title, item.brand or "", " ".join(item.categories), item.description) if p)


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def log_prices(items: Sequence[Item]) -> np.ndarray:
    return np.log1p(np.array([it.price for it in items], dtype=float))


_CONDITION_RANK = {"New": 1, "Like new": 2, "Good": 3, "Fair": 4, "Poor": 5}
_SIGNAL_WORDS = ("new", "bundle", "lot", "set", "authentic", "gold", "leather", "vintage", "nwt", "used")
FEATURE_NAMES = (
    "log_title_chars",
    "log_description_chars",
    "description_words",
    "has_brand",
    "has_description",
    "condition_rank",
    "seller_pays_shipping",
    "digits_in_title",
) + tuple(f"says_{w}" for w in _SIGNAL_WORDS)


def engineered_features(items: Sequence[Item]) -> np.ndarray:
    """A small dense matrix of hand-made features, columns named by FEATURE_NAMES."""
    rows = []
    for it in items:
        words = set(tokenize(f"{it.title} {it.description}"))
        rows.append(
            [
                np.log1p(len(it.title)),
                np.log1p(len(it.description)),
                min(len(it.description.split()), 300) / 100,
                float(bool(it.brand)),
                float(bool(it.description)),
                float(_CONDITION_RANK.get(it.condition or "", 3)),
                float(bool(it.shipping_paid_by_seller)),
                float(sum(ch.isdigit() for ch in it.title)),
                *[float(w in words) for w in _SIGNAL_WORDS],
            ]
        )
    return np.asarray(rows, dtype=np.float32)


def _categoricals(items: Sequence[Item]) -> list[list[str]]:
    rows = []
    for it in items:
        cats = list(it.categories) + ["", "", ""]
        rows.append(
            [
                it.brand or "(none)",
                cats[0] or "(none)",
                "/".join(cats[:2]),
                "/".join(it.categories) or "(none)",
                it.condition or "(none)",
                str(it.shipping_paid_by_seller),
            ]
        )
    return rows


def _fingerprint(items: Sequence[Item]) -> str:
    digest = hashlib.sha1()
    for it in items:
        digest.update(it.id.encode())
        digest.update(b"\0")
    return f"{len(items)}:{digest.hexdigest()}"


class ListingFeatures:
    """Sparse features shared by the text baselines: TF-IDF (1-2 grams) of title and of the
    full listing text, TF-IDF of the title's character 2-4 grams (they catch sizes, model
    numbers and misspellings that whole words miss), plus one-hot brand, category levels,
    condition and shipping.

    `transform` caches its result per list of items, so five models on the same test
    split featurise it once.
    """

    def __init__(self, max_features: int = 200_000, min_df: int = 3):
        self.max_features = max_features
        self.min_df = min_df
        self._fitted_on: str | None = None
        self._cache: dict[str, object] = {}

    def fit(self, items: Sequence[Item]) -> "ListingFeatures":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import OneHotEncoder

        key = _fingerprint(items)
        if key == self._fitted_on:
            return self
        start = time.perf_counter()
        self.title_vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=self.max_features // 4, dtype=np.float32)
        self.text_vec = TfidfVectorizer(ngram_range=(1, 2), min_df=self.min_df, sublinear_tf=True, max_features=self.max_features, dtype=np.float32)
        self.chars_vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=self.min_df, sublinear_tf=True, max_features=self.max_features // 2, dtype=np.float32)
        self.onehot = OneHotEncoder(handle_unknown="ignore", min_frequency=2, dtype=np.float32)
        self.title_vec.fit([it.title for it in items])
        self.chars_vec.fit([it.title for it in items])
        self.text_vec.fit([listing_text(it) for it in items])
        self.onehot.fit(_categoricals(items))
        self._fitted_on = key
        self._cache = {}
        self.fit_seconds = time.perf_counter() - start
        return self

    def transform(self, items: Sequence[Item]):
        from scipy import sparse

        if self._fitted_on is None:
            raise RuntimeError("fit ListingFeatures on training items before transforming")
        key = _fingerprint(items)
        if key not in self._cache:
            blocks = [
                self.title_vec.transform([it.title for it in items]),
                self.text_vec.transform([listing_text(it) for it in items]),
                self.chars_vec.transform([it.title for it in items]),
                self.onehot.transform(_categoricals(items)),
                sparse.csr_matrix(engineered_features(items)[:, [3, 4, 6]]),  # binary flags only
            ]
            if len(self._cache) > 6:  # bound memory: keep the most recent few
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = sparse.hstack(blocks, format="csr", dtype=np.float32)
        return self._cache[key]

    def frequent_columns(self, items: Sequence[Item], k: int) -> np.ndarray:
        """Indices of the k columns non-zero in most of `items` (the training rows): a cheap
        way to shrink the matrix for models that pay per feature (trees, the neural net)."""
        counts = self.transform(items).getnnz(axis=0)
        k = min(k, len(counts))
        return np.sort(np.argsort(-counts, kind="stable")[:k])

    @property
    def n_features(self) -> int:
        vocabularies = (self.title_vec, self.text_vec, self.chars_vec)
        return sum(len(v.vocabulary_) for v in vocabularies) + len(self.onehot.get_feature_names_out()) + 3


# --- the baselines ----------------------------------------------------------------------
class Baseline:
    """fit(items) -> self, predict(items) -> prices, and callable as a Pricer."""

    name = "baseline"

    def fit(self, items: Sequence[Item]) -> "Baseline":
        if not items:
            raise ValueError(f"{self.name}: no training items")
        start = time.perf_counter()
        self._fit(list(items))
        self.train_seconds = time.perf_counter() - start
        self.fitted = True
        return self

    def _fit(self, items: list[Item]) -> None:
        raise NotImplementedError

    def predict(self, items: Sequence[Item]) -> np.ndarray:
        if not getattr(self, "fitted", False):
            raise RuntimeError(f"{self.name}: call fit(train_items) before predicting")
        return np.clip(self._predict(list(items)), 0, None)

    def _predict(self, items: list[Item]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, item: Item) -> float:
        return float(self.predict([item])[0])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class RandomPricer(Baseline):
    """A price drawn from the training prices; the same item always gets the same draw."""

    name = "random"

    def __init__(self, seed: int = 42):
        self.seed = seed

    def _fit(self, items):
        self.prices = np.sort([it.price for it in items])

    def _predict(self, items):
        idx = [zlib.crc32(f"{self.seed}:{it.id}".encode()) % len(self.prices) for it in items]
        return self.prices[idx]


class ConstantPricer(Baseline):
    """Always the training mean (or median)."""

    def __init__(self, statistic: str = "mean"):
        if statistic not in ("mean", "median"):
            raise ValueError("statistic must be 'mean' or 'median'")
        self.statistic = statistic
        self.name = f"constant {statistic}"

    def _fit(self, items):
        prices = np.array([it.price for it in items])
        self.value = float(prices.mean() if self.statistic == "mean" else np.median(prices))

    def _predict(self, items):
        return np.full(len(items), self.value)


class _LogTargetModel(Baseline):
    """Fits a regressor to log1p(price) on some matrix of features."""

    def _matrix(self, items, fitting: bool):
        raise NotImplementedError

    def _regressor(self):
        raise NotImplementedError

    def _fit(self, items):
        X = self._matrix(items, fitting=True)
        self.model = self._regressor()
        self.model.fit(X, log_prices(items))

    def _predict(self, items):
        return np.expm1(self.model.predict(self._matrix(items, fitting=False)))


class FeatureLinear(_LogTargetModel):
    """Linear regression on engineered features plus one-hot top-level category."""

    name = "features + linear regression"

    def _matrix(self, items, fitting):
        from sklearn.preprocessing import OneHotEncoder

        cats = [[it.category] for it in items]
        if fitting:
            self.cat_encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(cats)
        return np.hstack([engineered_features(items), self.cat_encoder.transform(cats)])

    def _regressor(self):
        from sklearn.linear_model import LinearRegression

        return LinearRegression()


class BagOfWordsLinear(_LogTargetModel):
    """Counts of the 2,000 most common words, and linear regression on them.

    Plain least squares has no regularisation, so the vocabulary is also kept below one
    word per ten training listings (it overfits small training sets otherwise).
    """

    name = "bag of words + linear regression"

    def __init__(self, vocabulary: int = 2000):
        self.vocabulary = vocabulary

    def _matrix(self, items, fitting):
        from sklearn.feature_extraction.text import CountVectorizer

        texts = [listing_text(it) for it in items]
        if fitting:
            size = max(50, min(self.vocabulary, len(items) // 10))
            self.vectorizer = CountVectorizer(max_features=size, stop_words="english", binary=True, dtype=np.float32)
            return self.vectorizer.fit_transform(texts)
        return self.vectorizer.transform(texts)

    def _regressor(self):
        from sklearn.linear_model import LinearRegression

        return LinearRegression()


class Word2VecLinear(_LogTargetModel):
    """Word vectors trained on the listings (gensim), averaged per listing, then linear regression."""

    name = "word2vec + linear regression"

    def __init__(self, vector_size: int = 100, epochs: int = 5, seed: int = 42, workers: int = 2):
        self.vector_size, self.epochs, self.seed, self.workers = vector_size, epochs, seed, workers

    def doc_vectors(self, items) -> np.ndarray:
        wv = self.w2v.wv
        out = np.zeros((len(items), self.vector_size), dtype=np.float32)
        for i, it in enumerate(items):
            words = [w for w in tokenize(listing_text(it)) if w in wv.key_to_index]
            if words:
                out[i] = wv[words].mean(axis=0)
        return out

    def _matrix(self, items, fitting):
        if fitting:
            from gensim.models import Word2Vec

            sentences = [tokenize(listing_text(it)) for it in items]
            self.w2v = Word2Vec(sentences, vector_size=self.vector_size, window=5, min_count=3, workers=self.workers, epochs=self.epochs, seed=self.seed)
        return np.hstack([self.doc_vectors(items), engineered_features(items)])

    def _regressor(self):
        from sklearn.linear_model import LinearRegression

        return LinearRegression()


class _SharedFeaturesModel(_LogTargetModel):
    def __init__(self, features: ListingFeatures | None = None):
        self.features = features or ListingFeatures()

    def _matrix(self, items, fitting):
        if fitting:
            self.features.fit(items)
        return self.features.transform(items)


class TfidfRidge(_SharedFeaturesModel):
    """TF-IDF (1-2 grams) + one-hot brand/category/condition/shipping, ridge on log1p(price)."""

    name = "tf-idf + ridge"

    def __init__(self, features: ListingFeatures | None = None, alpha: float = 2.0):
        super().__init__(features)
        self.alpha = alpha

    def _regressor(self):
        from sklearn.linear_model import Ridge

        return Ridge(alpha=self.alpha, solver="sag", max_iter=200, tol=1e-3, random_state=0)


class TfidfLinearSVR(_SharedFeaturesModel):
    """A linear support vector regressor on the same sparse features."""

    name = "tf-idf + linear SVR"

    def __init__(self, features: ListingFeatures | None = None, C: float = 0.1):
        super().__init__(features)
        self.C = C

    def _regressor(self):
        from sklearn.svm import LinearSVR

        return LinearSVR(C=self.C, epsilon=0.0, loss="squared_epsilon_insensitive", dual=False, max_iter=2000)


class TargetEncoder:
    """Smoothed mean log price per category value; out-of-fold on the training rows (no leak)."""

    def __init__(self, smoothing: float = 10.0, folds: int = 5, seed: int = 42):
        self.smoothing, self.folds, self.seed = smoothing, folds, seed

    def _table(self, keys, y):
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for k, v in zip(keys, y):
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        prior = float(np.mean(y))
        return {k: (sums[k] + self.smoothing * prior) / (counts[k] + self.smoothing) for k in sums}, prior

    def fit_transform(self, columns: list[list[str]], y: np.ndarray) -> np.ndarray:
        n = len(y)
        out = np.zeros((n, len(columns)), dtype=np.float32)
        fold = np.random.default_rng(self.seed).integers(0, self.folds, n)
        for j, keys in enumerate(columns):
            keys = np.asarray(keys, dtype=object)
            for f in range(self.folds):
                table, prior = self._table(keys[fold != f], y[fold != f])
                out[fold == f, j] = [table.get(k, prior) for k in keys[fold == f]]
        self.tables = [self._table(np.asarray(keys, dtype=object), y) for keys in columns]
        return out

    def transform(self, columns: list[list[str]]) -> np.ndarray:
        return np.column_stack([[table.get(k, prior) for k in keys] for keys, (table, prior) in zip(columns, self.tables)]).astype(np.float32)


def _category_columns(items) -> list[list[str]]:
    rows = _categoricals(items)
    return [[r[j] for r in rows] for j in range(4)]  # brand, cat1, cat1/cat2, full path


class RandomForest(_LogTargetModel):
    """A random forest on dense features: engineered ones and target-encoded brand and categories."""

    name = "random forest"

    def __init__(self, n_estimators: int = 100, max_samples: float | None = 0.3, seed: int = 42, n_jobs: int = 1):
        self.n_estimators, self.max_samples, self.seed, self.n_jobs = n_estimators, max_samples, seed, n_jobs

    def _matrix(self, items, fitting):
        cols = _category_columns(items)
        if fitting:
            self.encoder = TargetEncoder(seed=self.seed)
            encoded = self.encoder.fit_transform(cols, log_prices(items))
        else:
            encoded = self.encoder.transform(cols)
        return np.hstack([engineered_features(items), encoded])

    def _regressor(self):
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(
            n_estimators=self.n_estimators, min_samples_leaf=3, max_features=0.5, max_samples=self.max_samples, n_jobs=self.n_jobs, random_state=self.seed
        )


class LightGBMPricer(RandomForest):
    """Gradient-boosted trees (LightGBM) on the random forest's dense features.

    (Boosting on the full sparse TF-IDF matrix is far slower on two cores; the
    target-encoded brand and categories carry most of what trees can use.)
    """

    name = "lightgbm"

    def __init__(self, rounds: int = 400, learning_rate: float = 0.05, num_leaves: int = 63, seed: int = 42, n_jobs: int = 1):
        self.rounds, self.learning_rate, self.num_leaves, self.seed, self.n_jobs = rounds, learning_rate, num_leaves, seed, n_jobs

    def _regressor(self):
        import lightgbm as lgb

        return lgb.LGBMRegressor(
            n_estimators=self.rounds,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=20,
            subsample=0.8,
            subsample_freq=1,
            random_state=self.seed,
            n_jobs=self.n_jobs,
            verbose=-1,
        )


class SparseMLP(_SharedFeaturesModel):
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
