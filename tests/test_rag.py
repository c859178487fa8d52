"""The knowledge base, its loader and splitter, the Chroma and FAISS indexes, and the metrics.

Uses the real offline embedding model (MiniLM) and a real Chroma store in a temp dir.
"""

from __future__ import annotations

import collections
import shutil

import pytest

from course_utils.retrieval import knowledge_base, rag

SMALL = knowledge_base.CHUNKINGS[0]


@pytest.fixture(scope="module")
def documents():
    return knowledge_base.load_documents()


@pytest.fixture(scope="module")
def embeddings():
    return rag.get_embeddings()


@pytest.fixture(scope="module")
def questions():
    return rag.load_questions()


# --- the knowledge base itself ----------------------------------------------------------
def test_knowledge_base_has_forty_typed_documents(documents):
    assert len(documents) >= 40
    types = collections.Counter(doc.metadata["type"] for doc in documents)
    assert set(types) == set(knowledge_base.DOC_TYPES)
    assert all(count >= 5 for count in types.values()), types


def test_categories_match_mercari_top_level(documents):
    titles = {doc.metadata["title"].removesuffix(" category") for doc in documents if doc.metadata["type"] == "category"}
    mercari = {"Women", "Men", "Electronics", "Kids", "Home", "Beauty", "Vintage & Collectibles", "Sports & Outdoors", "Handmade", "Other"}
    assert titles == mercari


def test_question_set_names_existing_documents(documents, questions):
    sources = {doc.metadata["source"] for doc in documents}
    assert len(questions) >= 30
    assert {q["source"] for q in questions} <= sources
    assert len({q["question"] for q in questions}) == len(questions)


# --- bad input --------------------------------------------------------------------------
def test_missing_and_empty_folders_are_reported(tmp_path):
    with pytest.raises(knowledge_base.KnowledgeBaseError, match="does not exist"):
        knowledge_base.load_documents(tmp_path / "nope")
    with pytest.raises(knowledge_base.KnowledgeBaseError, match="no .md documents"):
        knowledge_base.load_documents(tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("# no front matter\nbody", "no front matter"),
        ("---\ntitle: [unclosed\ntype: policy\n---\nbody", "not valid YAML"),
        ("---\ntitle: A\n---\nbody", "lacks type"),
        ("---\ntitle: A\ntype: recipe\n---\nbody", "'recipe' is not one of"),
        ("---\ntitle: A\ntype: policy\n---\n", "no text"),
    ],
)
def test_unparsable_documents_name_the_file_and_the_reason(tmp_path, text, message):
    (tmp_path / "broken.md").write_text(text)
    with pytest.raises(knowledge_base.DocumentParseError, match=message) as info:
        knowledge_base.load_documents(tmp_path)
    assert "broken.md" in str(info.value)


def test_binary_file_is_a_parse_error(tmp_path):
    (tmp_path / "image.md").write_bytes(b"\xff\xd8\xff\xe0 not text")
    with pytest.raises(knowledge_base.DocumentParseError, match="image.md: not valid UTF-8"):
        knowledge_base.load_documents(tmp_path)


# --- splitting --------------------------------------------------------------------------
def test_chunkings_differ_and_keep_metadata(documents):
    sizes = {}
    for chunking in knowledge_base.CHUNKINGS:
        chunks = knowledge_base.split_documents(documents, chunking)
        sizes[chunking.name] = len(chunks)
        assert all(len(c.page_content) <= chunking.chunk_size + 80 for c in chunks)  # + the title header
        assert all(c.metadata["type"] in knowledge_base.DOC_TYPES and c.metadata["source"].endswith(".md") for c in chunks)
        assert len({c.id for c in chunks}) == len(chunks)
    assert sizes["small"] > sizes["medium"] > sizes["large"] >= len(documents)


def test_chunk_ids_are_deterministic(documents):
    first = [c.id for c in knowledge_base.split_documents(documents, SMALL)]
    second = [c.id for c in knowledge_base.split_documents(documents, SMALL)]
    assert first == second


def test_invalid_chunking_is_rejected():
    with pytest.raises(ValueError, match="overlap"):
        knowledge_base.Chunking("bad", 100, 100)


# --- metrics ----------------------------------------------------------------------------
def test_metrics_by_hand():
    assert rag.first_hit_rank(["a", "b", "c"], "b") == 2
    assert rag.first_hit_rank(["a"], "z") is None
    metrics = rag.retrieval_metrics([1, 2, None, 5], ks=(1, 3))
    assert metrics == {"hit@1": 0.25, "hit@3": 0.5, "mrr": pytest.approx((1 + 0.5 + 0.2) / 4)}


# --- stores -----------------------------------------------------------------------------
@pytest.mark.slow
def test_chroma_store_rebuilds_without_duplicates_and_survives_bad_input(tmp_path, documents, embeddings):
    persist = tmp_path / "chroma"
    chunks = knowledge_base.split_documents(documents, SMALL)
    store, report = knowledge_base.build_chroma(chunks, SMALL, embeddings, persist)
    assert report.added == len(chunks) and len(store.get(include=[])["ids"]) == len(chunks)

    # A second run, as when a learner re-runs the notebook: nothing added, no duplicates.
    store, again = knowledge_base.build_chroma(chunks, SMALL, embeddings, persist)
    assert (again.added, again.removed) == (0, 0)
    assert len(store.get(include=[])["ids"]) == len(chunks)

    # An edited knowledge base: one document removed -> its chunks go, the rest stay.
    kb = tmp_path / "kb"
    shutil.copytree(knowledge_base.knowledge_base_dir(), kb)
    (kb / "partner-stratus-cloud.md").unlink()
    store, edited = knowledge_base.build_knowledge_base(SMALL, kb, persist, embeddings)
    gone = sum(1 for c in chunks if c.metadata["source"] == "partner-stratus-cloud.md")
    assert edited.removed == gone and edited.added == 0
    count = len(store.get(include=[])["ids"])

    # A broken document: a clear error, and the store is left as it was.
    (kb / "zz-broken.md").write_text("no front matter here")
    with pytest.raises(knowledge_base.DocumentParseError, match="zz-broken.md"):
        knowledge_base.build_knowledge_base(SMALL, kb, persist, embeddings)
    assert len(knowledge_base.open_chroma(SMALL, embeddings, persist).get(include=[])["ids"]) == count


@pytest.mark.slow
def test_retrieval_hit_rate_and_faiss_agrees_with_chroma(tmp_path, documents, embeddings, questions):
    chunks = knowledge_base.split_documents(documents, SMALL)
    store, _ = knowledge_base.build_chroma(chunks, SMALL, embeddings, tmp_path / "chroma")
    chroma_metrics, rows = rag.evaluate_retrieval(store, questions, ks=(1, 5))
    assert chroma_metrics["hit@5"] >= 0.9, [r for r in rows if r["rank"] != 1]
    faiss_metrics, _ = rag.evaluate_retrieval(knowledge_base.FaissIndex(chunks, embeddings), questions, ks=(1, 5))
    # Both are exact cosine search over the same vectors; HNSW may differ in a rare tie.
    assert faiss_metrics["hit@5"] == pytest.approx(chroma_metrics["hit@5"], abs=0.05)
    assert faiss_metrics["mrr"] == pytest.approx(chroma_metrics["mrr"], abs=0.05)


@pytest.mark.slow
def test_off_topic_questions_score_below_the_relevance_guard(tmp_path, documents, embeddings, questions):
    chunks = knowledge_base.split_documents(documents, SMALL)
    index = knowledge_base.FaissIndex(chunks, embeddings)
    off_topic = ["What is the boiling point of mercury on Mars?", "Who won the football world cup in 1998?"]
    for question in off_topic:
        assert knowledge_base.search(index, question, 1)[0][1] < 0.3
    on_topic = [knowledge_base.search(index, q["question"], 1)[0][1] for q in questions]
    assert sum(score >= 0.3 for score in on_topic) / len(on_topic) >= 0.9


@pytest.mark.slow
def test_question_too_long_is_refused_before_any_model_call(embeddings):
    chain = rag.RagChain(store=None, llm=None, embeddings=embeddings)  # no model is contacted
    with pytest.raises(rag.QuestionTooLongError, match="tokens long"):
        chain.check_question("What is the selling fee? " * 200)
    with pytest.raises(ValueError, match="empty"):
        chain.check_question("   ")
    assert chain.check_question("  What is the selling fee?  ") == "What is the selling fee?"


@pytest.mark.slow
def test_vector_map_projects_to_two_dimensions(documents, embeddings):
    chunks = knowledge_base.split_documents(documents, knowledge_base.CHUNKINGS[-1])
    vectors = embeddings.encode([c.page_content for c in chunks])
    for method in ("pca", "tsne"):
        points = rag.project_2d(vectors, method)
        assert points.shape == (len(chunks), 2)
    with pytest.raises(ValueError, match="unknown projection"):
        rag.project_2d(vectors, "umap")


def test_vector_map_draws_one_series_per_document_type():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    points = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5], [3.0, 3.0], [4.0, 1.0]])
    labels = ["faq", "policy", "faq", "guide", "policy"]
    fig, ax = plt.subplots()
    assert rag.plot_vector_map(points, labels, "map", ax) is ax
    assert ax.get_title() == "map"
    series = {c.get_label(): c.get_offsets() for c in ax.collections}
    assert set(series) == {"faq", "guide", "policy"}
    assert np.array_equal(series["policy"], points[[1, 4]]) and len(series["guide"]) == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["faq", "guide", "policy"]
    plt.close(fig)


def test_context_window_is_asked_of_the_server_then_the_table_then_a_cautious_default():
    """A real HTTP server answering /v1/models/<id> the ways vLLM, llama.cpp and OpenAI do, read by the real client."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from openai import OpenAI

    from course_utils.chat.llm import ChatBackend

    listings = {
        "served-by-vllm": {"id": "served-by-vllm", "object": "model", "max_model_len": 32_768},
        "served-by-llama-cpp": {"id": "served-by-llama-cpp", "object": "model", "meta": {"n_ctx_train": 131_072}},
        "gpt-4o-mini": {"id": "gpt-4o-mini", "object": "model", "owned_by": "openai"},
        "mystery-model": {"id": "mystery-model", "object": "model"},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(listings[self.path.rsplit("/", 1)[-1]]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="sk-test-not-used", max_retries=0)

        def window(model):
            return rag.context_window(ChatBackend(client, model, "openai", str(client.base_url)))

        assert window("served-by-vllm") == 32_768
        assert window("served-by-llama-cpp") == 131_072
        assert window("gpt-4o-mini") == rag.KNOWN_CONTEXT_WINDOWS["gpt-4o"] == 128_000
        with pytest.warns(UserWarning, match="announces no context window"):
            assert window("mystery-model") == rag.FALLBACK_CONTEXT_WINDOW
    finally:
        server.shutdown()
    assert rag.context_window(None) == rag.FALLBACK_CONTEXT_WINDOW


def test_a_question_line_that_is_not_an_object_is_named(tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text('{"question": "How long is shipping?", "source": "policy-shipping.md"}\n["q", "policy-shipping.md"]\n')
    with pytest.raises(ValueError, match="questions.jsonl line 2: needs an object with 'question' and 'source'"):
        rag.load_questions(path)


@pytest.mark.slow
def test_build_stores_and_evaluate_grid_cover_every_chunking_and_store(tmp_path, documents, embeddings, questions):
    """Notebook 05's indexing and evaluation grid: a real Chroma store per chunking, rebuilt without duplicates."""
    chunk_sets = {c: knowledge_base.split_documents(documents, c) for c in knowledge_base.CHUNKINGS[:2]}
    stores, builds = knowledge_base.build_stores(chunk_sets, embeddings, tmp_path / "chroma", progress=False)
    assert list(builds["chunking"]) == [c.label for c in chunk_sets]
    assert list(builds["added"]) == [len(chunks) for chunks in chunk_sets.values()] == list(builds["chunks"])
    _, again = knowledge_base.build_stores(chunk_sets, embeddings, tmp_path / "chroma", progress=False)
    assert list(again["added"]) == [0, 0] and list(again["removed"]) == [0, 0]
    faiss = {c: knowledge_base.FaissIndex(chunks, embeddings) for c, chunks in chunk_sets.items()}
    table, misses = rag.evaluate_grid(questions, {"chroma": stores, "faiss": faiss}, ks=(1, 5), progress=False)
    assert [(r.chunking, r.store) for r in table.itertuples()] == [(c.label, k) for c in chunk_sets for k in ("chroma", "faiss")]
    for chunking in chunk_sets:
        metrics, rows = rag.evaluate_retrieval(stores[chunking], questions, ks=(1, 5))
        row = table[(table.chunking == chunking.label) & (table.store == "chroma")].iloc[0]
        assert row["hit@1"] == metrics["hit@1"] and row["mrr"] == metrics["mrr"]
        assert len(misses[(chunking, "chroma")]) == sum(r["rank"] != 1 for r in rows)
        assert round(1 - row["hit@1"], 6) == round(len(misses[(chunking, "chroma")]) / len(questions), 6)


def test_spread_picks_evenly_across_documents(questions):
    picked = rag.spread(questions, 4)
    assert len(picked) == 4 and picked[0] == questions[0] and len({q["source"] for q in picked}) == 4
    with pytest.raises(ValueError, match="at least one question"):
        rag.spread(questions, 0)
