"""Two pricers built on the product store: a retrieval-augmented chat model and a forest on vectors.

`RAGPricer` looks up a listing's most similar training items in Chroma and shows them,
with their prices, to the chat model (whatever `llm.get_backend()` returns: the local
SmolLM2 server offline, a frontier model when a key is set). A small model sometimes
answers with no number, or with one far from anything it was shown, so the pricer:

  * falls back to the neighbours' similarity-weighted price when the answer holds no price, and
  * clips an answer to the range of the neighbours' prices (the evidence it was given),

and counts both, so a notebook can say how often the model itself decided the price.

`EmbeddingForest` is the classic-ML counterpart: a random forest regressor trained on
the stored embeddings (read back from Chroma, so no second embedding pass) to predict
log prices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core import config
from .items import Item
from .prices import parse_price  # the course's one answer parser (notebook 09)
from ..retrieval.vectorstore import Neighbour, ProductStore, neighbour_weighted_price

RAG_MODEL_NAME = "rag-frontier"
FOREST_MODEL_NAME = "embedding-forest"

SYSTEM_PROMPT = "You estimate prices of second-hand items from similar items. Reply with the price only."
# One worked exchange before the real question: a tiny model copies the answer format
# ("$11") far more reliably from an example than from an instruction alone. The example's
# answer equals its "typical price" line, so what the model copies is the pattern, not the number.
EXAMPLE_QUESTION = (
    "Similar items:\n- Red cotton t-shirt: $8\n- Blue polo shirt: $14\nTypical price: $11\n\n"
    "Item: Green t-shirt, Men > Tops\nPrice?"
)
EXAMPLE_ANSWER = "$11"

def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def item_summary(item: Item, limit: int = 80) -> str:
    """One line about an item: title, category, brand and condition, kept short for a tiny model."""
    parts = [_short(item.title, limit)]
    if item.categories:
        parts.append(" > ".join(item.categories[:2]))
    if item.brand:
        parts.append(item.brand)
    if item.condition:
        parts.append(item.condition)
    return ", ".join(parts)


def build_messages(item: Item, neighbours: Sequence[Neighbour], title_chars: int = 60, hint: bool = True) -> list[dict]:
    """The chat messages: one worked example, then similar items with prices and the item to price.

    The prompt stays short on purpose: SmolLM2-135M loses the thread in long contexts. Notebook 13
    writes the same builder out in a cell (`rag_messages`); a test checks the two agree.
    """
    context = "\n".join(f"- {_short(n.title, title_chars)}: ${n.price:.0f}" for n in neighbours)
    # The similarity-weighted price of the neighbours, spelled out (unless hint=False): a 135M model
    # cannot average five numbers in its head; a frontier model is free to move away from it.
    typical = neighbour_weighted_price(neighbours) if neighbours and hint else None
    line = f"\nTypical price: ${typical:.0f}" if typical else ""
    question = f"Similar items:\n{context}{line}\n\nItem: {item_summary(item)}\nPrice?"
    example = EXAMPLE_QUESTION if hint else EXAMPLE_QUESTION.replace("Typical price: $11\n", "")
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": example},
        {"role": "assistant", "content": EXAMPLE_ANSWER},
        {"role": "user", "content": question},
    ]


@dataclass
class RAGAnswer:
    """One RAG pricing: what the model said, what we made of it, and why."""

    price: float
    raw: str
    parsed: float | None
    fallback: bool  # no price in the answer: the neighbours' similarity-weighted price was used
    clipped: bool  # the answer lay outside the neighbours' price range and was clipped into it
    neighbours: list[Neighbour] = field(default_factory=list)


def decide_price(raw: str, neighbours: Sequence[Neighbour], clip: bool = True) -> RAGAnswer:
    """Turn the model's text into a price, falling back or clipping as described in the module doc."""
    if not neighbours:
        raise ValueError("decide_price needs at least one neighbour (the fallback comes from them)")
    parsed = parse_price(raw)
    if parsed is None:
        return RAGAnswer(neighbour_weighted_price(neighbours), raw, None, True, False, list(neighbours))
    low = min(n.price for n in neighbours)
    high = max(n.price for n in neighbours)
    price, clipped = parsed, False
    if clip and not low <= parsed <= high:
        price, clipped = min(max(parsed, low), high), True
    return RAGAnswer(float(price), raw, parsed, False, clipped, list(neighbours))


class RAGPricer:
    """A pricer (`Item -> float`) that asks the chat model with similar items as context."""

    name = RAG_MODEL_NAME

    def __init__(
        self,
        store: ProductStore,
        backend=None,
        k: int = 5,
        max_tokens: int = 8,
        clip: bool = True,
        use_cache: bool = True,
        cache=None,
        hint: bool = True,
    ):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.store = store
        self._backend = backend
        self.k = k
        self.max_tokens = max_tokens
        self.clip = clip
        self.hint = hint  # spell out the neighbours' typical price in the prompt
        self.use_cache = use_cache
        self.cache = cache  # a cache.ResponseCache; None means the course's default one
        self.answers: list[RAGAnswer] = []
        self.split_answers: dict[str, list[RAGAnswer]] = {}  # score_splits keeps each split's answers here

    @property
    def backend(self):
        if self._backend is None:
            from ..chat.llm import get_backend

            self._backend = get_backend()
        return self._backend

    def ask(self, item: Item, neighbours: Sequence[Neighbour]) -> str:
        """The model's raw answer for an item, greedy and short; through the response cache
        (as every chat pricer of the course), so a re-run of notebook 13 asks nothing twice."""
        from ..chat.cache import ask_chat

        messages = build_messages(item, neighbours, hint=self.hint)
        return ask_chat(self.backend, messages, self.use_cache, self.cache, max_tokens=self.max_tokens, temperature=0.0)

    def answer(self, item: Item, neighbours: Sequence[Neighbour] | None = None) -> RAGAnswer:
        neighbours = list(neighbours) if neighbours is not None else self.store.similar(item, self.k)
        result = decide_price(self.ask(item, neighbours), neighbours, clip=self.clip)
        self.answers.append(result)
        return result

    def __call__(self, item: Item) -> float:
        return self.answer(item).price

    def price_many(self, items: Sequence[Item], progress: bool = True, desc: str = "RAG pricing") -> list[float]:
        """Price many items: one batched neighbour lookup, then one chat call each (progress bar)."""
        from tqdm.auto import tqdm

        all_neighbours = self.store.similar_many(items, self.k)
        return [
            self.answer(item, neighbours).price
            for item, neighbours in tqdm(list(zip(items, all_neighbours)), desc=desc, disable=not progress)
        ]

    def stats(self) -> dict:
        """How the answers so far were decided: by the model, clipped, or by the fallback."""
        n = len(self.answers)
        fallbacks = sum(a.fallback for a in self.answers)
        clipped = sum(a.clipped for a in self.answers)
        return {
            "answers": n,
            "fallbacks": fallbacks,
            "clipped": clipped,
            "model_decided": n - fallbacks - clipped,
            "fallback_rate": fallbacks / n if n else 0.0,
            "clip_rate": clipped / n if n else 0.0,
        }

    def reset_stats(self) -> None:
        self.answers.clear()

    def score_splits(self, splits: dict[str, Sequence[Item]], profile: config.Profile | None = None) -> tuple[dict, dict]:
        """Price and score each named split ({"eval": items, ...}) into the results store.

        Returns ({split: EvalResult}, {split: stats}); the stats (how many answers the model
        decided, clipped or left to the fallback) are counted per split and stored with it, and
        each split's answers stay in `split_answers[split]`.
        """
        from .evaluation import score_timed

        scored, stats = {}, {}
        for split, items in splits.items():
            self.reset_stats()
            scored[split] = score_timed(
                self.name, items, lambda batch: self.price_many(batch, desc=f"RAG pricing {split}"), profile, split,
                extra=lambda: {"kind": "rag", "llm": getattr(self.backend, "model", None), "backend": self.backend.describe(), **self.stats()},
            )  # fmt: skip
            stats[split] = self.stats()
            self.split_answers[split] = list(self.answers)
        return scored, stats


class EmbeddingForest:
    """A random forest on listing embeddings that predicts log(1 + price)."""

    name = FOREST_MODEL_NAME

    def __init__(
        self,
        store: ProductStore,
        n_estimators: int = 100,
        min_samples_leaf: int = 3,
        max_features: float | str = "sqrt",  # ~20 of 384 dimensions per split: fast, and decorrelated trees
        seed: int | None = None,
        n_jobs: int = -1,
    ):
        from sklearn.ensemble import RandomForestRegressor

        self.store = store
        seed = config.get_profile().seed if seed is None else seed
        self.model = RandomForestRegressor(
            n_estimators=n_estimators,
            min_samples_leaf=min_samples_leaf,
            max_features=max_features,
            random_state=seed,
            n_jobs=n_jobs,
        )
        self.fitted = False
        self.n_train = 0
        self.train_seconds = 0.0

    def fit(self, X: np.ndarray | None = None, prices: np.ndarray | None = None) -> "EmbeddingForest":
        """Fit on the given vectors and prices, by default on everything in the store."""
        import time

        started = time.perf_counter()
        if X is None or prices is None:
            X, prices, _ = self.store.training_matrix()
        prices = np.asarray(prices, dtype=float)
        if len(X) != len(prices):
            raise ValueError(f"{len(X)} vectors but {len(prices)} prices")
        if len(prices) < 2:
            raise ValueError("the forest needs at least 2 training listings")
        if np.any(prices <= 0):
            raise ValueError("every training price must be positive")
        self.model.fit(np.asarray(X), np.log1p(prices))
        self.fitted = True
        self.n_train = len(prices)
        self.train_seconds = time.perf_counter() - started
        return self

    def predict_vectors(self, X: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("the embedding forest is not fitted yet: call fit() first")
        return np.maximum(np.expm1(self.model.predict(np.asarray(X))), 0.01)

    def predict_many(self, items: Sequence[Item]) -> list[float]:
        return [float(p) for p in self.predict_vectors(self.store.embed_items(items))]

    def __call__(self, item: Item) -> float:
        return self.predict_many([item])[0]

    def score_splits(self, splits: dict[str, Sequence[Item]], profile: config.Profile | None = None) -> dict:
        """Price and score each named split ({"eval": items, ...}) into the results store, with the
        training time among the timings. Returns {split: EvalResult}."""
        from .evaluation import score_timed

        if not self.fitted:
            raise RuntimeError("the embedding forest is not fitted yet: call fit() first")
        return {
            split: score_timed(self.name, items, self.predict_many, profile, split,
                               extra={"kind": "embedding"}, timings={"train_s": round(self.train_seconds, 1)})
            for split, items in splits.items()
        }  # fmt: skip

