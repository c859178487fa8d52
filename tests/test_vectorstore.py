"""The product store: real MiniLM embeddings in a real on-disk Chroma collection."""

import numpy as np
import pytest

from course_utils.pricing.items import Item
from course_utils.retrieval.vectorstore import (
    EmptyStoreError,
    ProductStore,
    neighbour_weighted_price,
    record_id,
)


def make_item(i, title, category, price, description=""):
    return Item(id=f"t-{i}", title=title, description=description, categories=(category, "Sub"), price=price)


LISTINGS = [
    make_item(1, "Nike Air Max running shoes size 10", "Men", 80, "barely worn sneakers"),
    make_item(2, "Adidas Ultraboost running sneakers", "Men", 95, "great running shoes"),
    make_item(3, "iPhone 8 64GB unlocked smartphone", "Electronics", 150, "works great, small scratch"),
    make_item(4, "Samsung Galaxy S9 phone unlocked", "Electronics", 170, "cell phone with charger"),
    make_item(5, "Harry Potter hardcover book set", "Other", 40, "all seven books"),
    make_item(6, "MAC matte lipstick Ruby Woo", "Beauty", 12, "brand new lipstick"),
]


@pytest.fixture(scope="module")
def embedder():
    from course_utils.foundations.models import load_embedding_model

    return load_embedding_model()


@pytest.fixture
def store(tmp_path, embedder):
    s = ProductStore(path=tmp_path / "store", embedder=embedder)
    s.add_items(LISTINGS, batch_size=4, progress=False)
    return s


def test_add_is_idempotent_and_persistent(tmp_path, embedder, store):
    assert store.count() == len(LISTINGS)
    assert store.add_items(LISTINGS, progress=False) == 0  # same ids: nothing added twice
    assert store.add_items(LISTINGS + LISTINGS[:2], progress=False) == 0
    assert store.count() == len(LISTINGS)
    reopened = ProductStore(path=tmp_path / "store", embedder=embedder)
    assert reopened.count() == len(LISTINGS)
    extra = make_item(7, "Lego Star Wars Millennium Falcon", "Kids", 120)
    assert reopened.add_items([extra, extra], progress=False) == 1
    assert reopened.count() == len(LISTINGS) + 1


def test_similar_finds_the_same_kind_of_product(store):
    query = Item(id="q", title="Apple iPhone 7 unlocked cell phone", categories=("Electronics",), price=120)
    neighbours = store.similar(query, k=3)
    assert len(neighbours) == 3
    assert {n.id for n in neighbours[:2]} == {record_id(LISTINGS[2]), record_id(LISTINGS[3])}
    assert neighbours[0].category == "Electronics"
    assert neighbours[0].price in (150.0, 170.0)
    sims = [n.similarity for n in neighbours]
    assert sims == sorted(sims, reverse=True) and -1.0 <= sims[-1] <= 1.0


def test_similar_many_matches_similar(store):
    queries = [
        Item(id="a", title="running shoes by Nike", price=50),
        Item(id="b", title="red lipstick", price=10),
    ]
    many = store.similar_many(queries, k=2)
    assert [n.id for n in many[0]] == [n.id for n in store.similar(queries[0], k=2)]
    assert many[1][0].id == record_id(LISTINGS[5])


def test_a_metadata_filter_narrows_the_neighbours(store):
    query = Item(id="q", title="Apple iPhone 7 unlocked cell phone", categories=("Electronics",), price=120)
    others = store.similar(query, k=3, where={"category": {"$ne": "Electronics"}})
    assert others and all(n.category != "Electronics" for n in others)
    cheap = store.similar_many([query], k=3, where={"price": {"$lt": 150}})[0]
    assert cheap and all(n.price < 150 for n in cheap)


def test_k_larger_than_store_is_capped(store):
    assert len(store.similar(LISTINGS[0], k=50)) == len(LISTINGS)
    with pytest.raises(ValueError, match="k must be at least 1"):
        store.similar(LISTINGS[0], k=0)


def test_empty_store_raises_a_clear_error(tmp_path, embedder):
    empty = ProductStore(path=tmp_path / "empty", embedder=embedder)
    with pytest.raises(EmptyStoreError, match="add_items"):
        empty.similar(LISTINGS[0])


def test_training_matrix_reads_vectors_back(store):
    X, y, categories = store.training_matrix()
    assert X.shape == (len(LISTINGS), 384)
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-3)
    assert sorted(y) == sorted(it.price for it in LISTINGS)
    assert set(categories) == {it.category for it in LISTINGS}
    # the stored vector is the embedding of the listing's text
    row = int(np.argmin(np.abs(y - 12)))
    again = store.embed_items([LISTINGS[5]])[0]
    assert float(X[row] @ again) > 0.999


def test_neighbour_weighted_price_lies_within_the_neighbours_prices(store):
    neighbours = store.similar(LISTINGS[0], k=4)
    prices = sorted(n.price for n in neighbours)
    assert prices[0] <= neighbour_weighted_price(neighbours) <= prices[-1]
    with pytest.raises(ValueError):
        neighbour_weighted_price([])
