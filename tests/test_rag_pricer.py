"""The RAG pricer (prompt, parsing, fallback, clipping) and the forest on embeddings."""


import numpy as np
import pytest

from course_utils.pricing.items import Item
from course_utils.pricing.rag_pricer import (
    FOREST_MODEL_NAME,
    EmbeddingForest,
    RAGPricer,
    build_messages,
    decide_price,
)
from course_utils.retrieval.vectorstore import Neighbour, ProductStore, neighbour_weighted_price
from needs import need_module


def nb(price, title="thing", sim=0.9):
    return Neighbour(id=f"n-{price}", title=title, category="Other", price=price, similarity=sim)


NEIGHBOURS = [nb(10.0, "Blue denim jacket"), nb(20.0, "Levi's jean jacket"), nb(40.0, "Leather jacket")]
ITEM = Item(id="q", title="Vintage denim jacket", categories=("Women", "Coats & Jackets"), brand="Levi's", condition="Good", price=25)


def test_prompt_shows_neighbours_with_prices_and_stays_short():
    messages = build_messages(ITEM, NEIGHBOURS)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    user = messages[-1]["content"]
    for line in ("Blue denim jacket: $10", "Levi's jean jacket: $20", "Leather jacket: $40"):
        assert line in user
    assert "Vintage denim jacket" in user and "Women > Coats & Jackets" in user
    assert "$25" not in user  # the true price is never shown
    assert len(user) < 400


@pytest.mark.parametrize(
    "answer, price, fallback, clipped",
    [
        ("$18", 18.0, False, False),
        ("Price is $25.50", 25.5, False, False),
        ("$500", 40.0, False, True),  # above every neighbour: clipped to the highest
        ("1", 10.0, False, True),  # below every neighbour: clipped to the lowest
        ("I don't know", 20.0, True, False),  # no number: the neighbours' weighted (geometric) mean
        ("", 20.0, True, False),
    ],
)
def test_decide_price(answer, price, fallback, clipped):
    result = decide_price(answer, NEIGHBOURS)
    assert result.price == pytest.approx(price)
    assert result.fallback is fallback
    assert result.clipped is clipped
    assert result.raw == answer


def test_prompt_without_the_typical_price_hint():
    with_hint, without = build_messages(ITEM, NEIGHBOURS)[-1]["content"], build_messages(ITEM, NEIGHBOURS, hint=False)[-1]["content"]
    assert "Typical price: $" in with_hint and "Typical price" not in without
    assert without == with_hint.replace(with_hint[with_hint.index("\nTypical price") : with_hint.index("\n\nItem:")], "")
    examples = build_messages(ITEM, NEIGHBOURS)[1]["content"], build_messages(ITEM, NEIGHBOURS, hint=False)[1]["content"]
    assert "Typical price: $11" in examples[0] and "Typical price" not in examples[1]  # the worked example matches


def test_decide_price_without_clipping_keeps_the_answer():
    assert decide_price("$500", NEIGHBOURS, clip=False).price == 500.0
    with pytest.raises(ValueError, match="neighbour"):
        decide_price("$5", [])


class CannedBackend:
    """Stands in for the chat model in the counting test: replies from a list, records prompts."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.prompts = []

    def chat(self, messages, **kwargs):
        self.prompts.append((messages, kwargs))
        return self.replies.pop(0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from course_utils.foundations.models import load_embedding_model

    s = ProductStore(path=tmp_path_factory.mktemp("store"), embedder=load_embedding_model())
    listings = [
        Item(id="1", title="Denim jacket Levi's trucker", categories=("Women",), price=30),
        Item(id="2", title="Jean jacket light wash", categories=("Women",), price=20),
        Item(id="3", title="PlayStation 4 controller", categories=("Electronics",), price=35),
        Item(id="4", title="Xbox One wireless controller", categories=("Electronics",), price=30),
        Item(id="5", title="Scented candle set of 3", categories=("Home",), price=12),
    ]
    s.add_items(listings, progress=False)
    return s


def test_rag_pricer_counts_fallbacks_and_clips(store):
    backend = CannedBackend(["$25", "no idea", "$1000"])
    pricer = RAGPricer(store, backend=backend, k=2, use_cache=False)
    prices = pricer.price_many(
        [ITEM, Item(id="a", title="PS4 controller black", price=30), Item(id="b", title="Levi denim jacket", price=28)],
        progress=False,
    )
    assert prices[0] == 25.0
    assert 30.0 < prices[1] < 35.0  # no number: the similarity-weighted price of the two controllers
    assert prices[1] == pytest.approx(neighbour_weighted_price(pricer.answers[1].neighbours))
    assert prices[2] == 30.0  # clipped to the top of its neighbours (20, 30)
    stats = pricer.stats()
    assert stats == {"answers": 3, "fallbacks": 1, "clipped": 1, "model_decided": 1, "fallback_rate": 1 / 3, "clip_rate": 1 / 3}
    # the neighbours shown for the controller were the two controllers, with their prices
    shown = backend.prompts[1][0][-1]["content"]
    assert "PlayStation 4 controller: $35" in shown and "Xbox One wireless controller: $30" in shown
    assert backend.prompts[0][1]["temperature"] == 0.0
    no_hint = RAGPricer(store, backend=CannedBackend(["$25"]), k=2, use_cache=False, hint=False)
    no_hint(ITEM)
    assert "Typical price" not in no_hint.backend.prompts[0][0][-1]["content"]
    pricer.reset_stats()
    assert pricer.stats()["answers"] == 0


def test_rag_pricer_answers_come_from_the_response_cache_the_second_time(store, tmp_path):
    from course_utils.chat.cache import ResponseCache

    backend = CannedBackend(["$25", "$31"])
    backend.model = "canned"
    cache = ResponseCache(tmp_path / "responses.sqlite")
    first = RAGPricer(store, backend=backend, k=2, cache=cache)
    assert first(ITEM) == 25.0 and len(backend.prompts) == 1
    again = RAGPricer(store, backend=backend, k=2, cache=ResponseCache(tmp_path / "responses.sqlite"))
    assert again(ITEM) == 25.0 and len(backend.prompts) == 1  # a new pricer, a new connection: still no call
    assert again(Item(id="d", title="Xbox controller", price=30)) == 31.0 and len(backend.prompts) == 2


def test_rag_pricer_with_the_local_chat_model(store, clean_env, tmp_path):
    need_module("llama_cpp", "llama-cpp-python is not installed")
    from course_utils.chat.cache import ResponseCache
    from course_utils.chat.llm import get_backend

    cache = ResponseCache(tmp_path / "responses.sqlite")  # empty: the answer must come from the server
    pricer = RAGPricer(store, backend=get_backend("local"), k=3, cache=cache)
    price = pricer(Item(id="c", title="Xbox controller", categories=("Electronics",), price=30))
    answer = pricer.answers[0]
    assert cache.misses == 1 and cache.hits == 0
    assert answer.raw.strip(), "the local server sent an empty answer"
    assert [n.price for n in answer.neighbours] and len(answer.neighbours) == 3
    # what the pricer made of the answer follows from the raw text, not from a fixed value
    assert answer.fallback == (answer.parsed is None)
    if not answer.fallback and not answer.clipped:
        assert price == answer.parsed
    assert 12.0 <= price <= 35.0  # within the neighbours' range
    assert pricer.stats()["answers"] == 1


def test_embedding_forest_learns_price_from_vectors(store):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    prices = np.exp(2 + X[:, 0])  # price grows with the first coordinate
    forest = EmbeddingForest(store, n_estimators=30, max_features=1.0, seed=0).fit(X, prices)
    low, high = forest.predict_vectors(np.array([[-1.5] + [0] * 7, [1.5] + [0] * 7]))
    assert high > 3 * low
    with pytest.raises(ValueError, match="positive"):
        EmbeddingForest(store).fit(X[:3], [1.0, -2.0, 3.0])


def test_embedding_forest_on_the_store(store):
    forest = EmbeddingForest(store, n_estimators=20, min_samples_leaf=1, seed=0).fit()
    assert forest.n_train == store.count()
    pad, candle = forest.predict_many(
        [Item(id="x", title="Wireless game controller", price=1), Item(id="y", title="Candles", price=1)]
    )
    assert pad > candle
    with pytest.raises(RuntimeError, match="not fitted"):
        EmbeddingForest(store).predict_vectors(np.zeros((1, 384)))


def test_score_splits_counts_each_split_apart_and_stores_both(store, tmp_path, monkeypatch):
    from course_utils.core import config
    from course_utils.pricing import data, evaluation, results
    from course_utils.pricing.rag_pricer import RAG_MODEL_NAME

    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(results, "_current_data_version", lambda profile: "test-data")
    monkeypatch.setattr(data, "data_version", lambda profile=None, *a, **k: "test-data")
    monkeypatch.setattr(evaluation, "_check_split", lambda *a, **k: None)
    backend = CannedBackend(["$25", "no idea", "$31"])
    backend.describe = lambda: "canned"
    pricer = RAGPricer(store, backend=backend, k=2, use_cache=False)
    profile = config.get_profile("ci")
    splits = {"eval": [ITEM, Item(id="a", title="PS4 controller black", price=30)], "ensemble_val": [Item(id="b", title="Xbox pad", price=28)]}
    scored, stats = pricer.score_splits(splits, profile)
    assert stats["eval"]["answers"] == 2 and stats["eval"]["fallbacks"] == 1  # not 3: each split counts its own
    assert stats["ensemble_val"] == {**stats["ensemble_val"], "answers": 1, "fallbacks": 0, "model_decided": 1}
    assert set(results.load_predictions(RAG_MODEL_NAME, "ensemble_val", profile)) == {"b"}
    assert results.leaderboard(profile).loc[1, "model"] == RAG_MODEL_NAME
    # each split's answers are kept apart, for the notebook's "how was the price decided" table
    assert [len(pricer.split_answers[split]) for split in ("eval", "ensemble_val")] == [2, 1]
    assert [a.raw for a in pricer.split_answers["eval"]] == ["$25", "no idea"]


def test_forest_score_splits_stores_each_split_with_its_training_time(store, tmp_path, monkeypatch):
    from course_utils.core import config
    from course_utils.pricing import data, evaluation, results

    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(results, "_current_data_version", lambda profile: "test-data")
    monkeypatch.setattr(data, "data_version", lambda profile=None, *a, **k: "test-data")
    monkeypatch.setattr(evaluation, "_check_split", lambda *a, **k: None)
    profile = config.get_profile("ci")
    forest = EmbeddingForest(store, n_estimators=10, seed=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        forest.score_splits({"eval": [ITEM]}, profile)
    forest.fit()
    assert forest.train_seconds > 0
    splits = {"eval": [ITEM, Item(id="a", title="PS4 controller black", price=30)], "ensemble_val": [Item(id="b", title="Xbox pad", price=28)]}
    scored = forest.score_splits(splits, profile)
    assert set(scored) == {"eval", "ensemble_val"} and scored["eval"].metrics["n_items"] == 2
    stored = results.load_predictions(FOREST_MODEL_NAME, "eval", profile)
    assert stored == pytest.approx(dict(zip([ITEM.id, "a"], forest.predict_many(splits["eval"]))))
    assert set(results.load_predictions(FOREST_MODEL_NAME, "ensemble_val", profile)) == {"b"}
