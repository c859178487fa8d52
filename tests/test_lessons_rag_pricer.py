"""Notebook 13 writes its Chroma query, RAG prompt and price decision out in cells; the package keeps the
same code for the pricer that scores every item (`RAGPricer`, whose stored predictions notebook 14 reads).
These tests run the cells and check that the two agree."""

import pytest

from course_utils.pricing.items import Item
from course_utils.pricing.rag_pricer import RAGAnswer, build_messages, decide_price
from course_utils.retrieval.vectorstore import Neighbour, ProductStore, neighbour_weighted_price
from notebook_cells import cell_namespace

NOTEBOOK = "13_rag_pricer.ipynb"


def nb(price, title, sim):
    return Neighbour(id=f"n-{title}", title=title, category="Women", price=price, similarity=sim)


NEIGHBOURS = [
    nb(18.0, "Blue denim jacket, light wash, size M, barely worn, from a smoke-free home", 0.83),
    nb(35.0, "Levi's trucker jacket", 0.78),
    nb(9.5, "Jean vest", 0.61),
]
ITEMS = [
    Item(id="q", title="Vintage denim jacket", categories=("Women", "Coats & Jackets", "Jean Jackets"), brand="Levi's", condition="Good", price=25),
    Item(id="r", title="  A   very long title " + "with many words " * 8, price=12),  # no category, brand or condition
]


@pytest.fixture(scope="module")
def prompt_cell():
    return cell_namespace(NOTEBOOK, "def rag_messages(", item=ITEMS[0], neighbours=NEIGHBOURS)


@pytest.mark.parametrize("hint", [True, False])
@pytest.mark.parametrize("item", ITEMS, ids=["full", "bare"])
def test_the_cells_prompt_is_the_packages(prompt_cell, item, hint):
    for neighbours in (NEIGHBOURS, NEIGHBOURS[:1]):
        assert prompt_cell["rag_messages"](item, neighbours, hint=hint) == build_messages(item, neighbours, hint=hint)


def test_the_cells_typical_price_is_the_packages(prompt_cell):
    for neighbours in (NEIGHBOURS, NEIGHBOURS[1:], [nb(5.0, "x", 0.0), nb(50.0, "y", 0.0)]):
        assert prompt_cell["typical_price"](neighbours) == pytest.approx(neighbour_weighted_price(neighbours))


@pytest.mark.parametrize("raw", ["$18", "It costs 22.50 dollars", "$500", "1", "I don't know", ""])
def test_the_cells_decision_is_the_packages(prompt_cell, raw):
    decide = cell_namespace(NOTEBOOK, "def decide(", typical_price=prompt_cell["typical_price"])["decide"]
    price, how = decide(raw, NEIGHBOURS)
    expected = decide_price(raw, NEIGHBOURS)
    assert price == pytest.approx(expected.price)
    assert how == ("fallback" if expected.fallback else "clipped" if expected.clipped else "model")


def test_the_cells_chroma_query_finds_what_the_store_returns(tmp_path):
    from course_utils.foundations.models import load_embedding_model

    store = ProductStore(path=tmp_path / "store", embedder=load_embedding_model())
    store.add_items(
        [
            Item(id="1", title="Denim jacket Levi's trucker", categories=("Women",), price=30),
            Item(id="2", title="Jean jacket light wash", categories=("Women",), price=20),
            Item(id="3", title="PlayStation 4 controller", categories=("Electronics",), price=35),
            Item(id="4", title="Xbox One wireless controller", categories=("Electronics",), price=30),
            Item(id="5", title="Scented candle set of 3", categories=("Home",), price=12),
            Item(id="6", title="Denim skirt", categories=("Women",), price=15),
        ],
        progress=False,
    )
    query = Item(id="q", title="Levi's denim jacket", categories=("Women",), price=25)
    cell = cell_namespace(NOTEBOOK, "store.collection.query(", store=store, eval_items=[query])
    from_store = store.similar(query, k=5)
    assert [n.id for n in cell["neighbours"]] == [n.id for n in from_store]
    for mine, theirs in zip(cell["neighbours"], from_store):
        assert (mine.title, mine.category, mine.price) == (theirs.title, theirs.category, theirs.price)
        assert mine.similarity == pytest.approx(theirs.similarity, abs=1e-5)


def test_how_decided_counts_the_typical_price_as_retrieval(prompt_cell):
    import pandas as pd

    shown = float(f"{neighbour_weighted_price(NEIGHBOURS):.0f}")
    answers = [decide_price(raw, NEIGHBOURS) for raw in ("no idea", f"${shown:.0f}", "$500", "$19.99")]

    class Run:  # what the scoring cell leaves behind
        split_answers = {"eval": answers, "ensemble_val": answers[:2]}

    cell = cell_namespace(NOTEBOOK, "def how_decided(", typical_price=prompt_cell["typical_price"], rag_pricer=Run(), pd=pd)
    assert [cell["how_decided"](a) for a in answers] == [
        "no number: typical price used",
        "repeated the typical price",
        "clipped into the neighbours' range",
        "the model's own number",
    ]
    assert cell["retrieval_share"].to_dict() == {"eval": 0.5, "ensemble_val": 1.0}
    assert isinstance(answers[0], RAGAnswer)
