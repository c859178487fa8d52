"""Classic price baselines: the numbers an LLM pricer has to beat.

Every baseline has the same shape:

    model = TfidfRidge().fit(train_items)   # learns from Items
    model.predict(items)                    # vectorised: an array of prices
    model(item)                             # a Pricer (Item -> float), for evaluate()

The learned models fit log1p(price) and return expm1 of their output: RMSLE is the
error of log prices, so fitting the log is fitting the metric, and no model can
predict a negative price. The text models share one `features.ListingFeatures`; the best
baseline, a stack of them, is in `baseline_stack`.

Notebook 08 writes `TfidfRidge` out as a scikit-learn pipeline in its cells; a test
(tests/test_lessons_pricing.py) checks that the two give the same prices.
"""

from __future__ import annotations

import time
import zlib
from typing import Sequence

import numpy as np

from .features import ListingFeatures, categoricals, engineered_features, listing_text, log_prices, tokenize
from .items import Item

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


class SharedFeaturesModel(_LogTargetModel):
    def __init__(self, features: ListingFeatures | None = None):
        self.features = features or ListingFeatures()

    def _matrix(self, items, fitting):
        if fitting:
            self.features.fit(items)
        return self.features.transform(items)


class TfidfRidge(SharedFeaturesModel):
    """TF-IDF (1-2 grams) + one-hot brand/category/condition/shipping, ridge on log1p(price)."""

    name = "tf-idf + ridge"

    def __init__(self, features: ListingFeatures | None = None, alpha: float = 2.0):
        super().__init__(features)
        self.alpha = alpha

    def _regressor(self):
        from sklearn.linear_model import Ridge

        return Ridge(alpha=self.alpha, solver="sag", max_iter=200, tol=1e-3, random_state=0)


class TfidfLinearSVR(SharedFeaturesModel):
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
    rows = categoricals(items)
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


