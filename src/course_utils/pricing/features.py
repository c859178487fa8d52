"""Listing features for the classic baselines: text, tokens, engineered numbers, and the shared TF-IDF
and one-hot featuriser that the text models fit once.

Featurising text is the slow part, so the text models share one `ListingFeatures` (TF-IDF
of title words, title characters and full text, one-hot brand / category / condition /
shipping) that is fitted once and caches what it has transformed.
"""

from __future__ import annotations

import hashlib
import re
import time
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


def categoricals(items: Sequence[Item]) -> list[list[str]]:
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
        self.onehot.fit(categoricals(items))
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
                self.onehot.transform(categoricals(items)),
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
