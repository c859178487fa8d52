"""Retrieval-augmented generation over the course's knowledge base: measuring retrieval, and the chain.

The store comes from `knowledge_base` (documents, chunks, Chroma). Here:
`evaluate_retrieval()` (hit rate at k, mean reciprocal rank) on the question set in
course_data/rag_questions.jsonl, `project_2d()` / `plot_vector_map()` for a 2-D map of the
vectors, `RagChain` (LangChain: retrieve, prompt, chat model, parse -> answer + sources),
and `fact_found()` (does an answer hold the question's reference fact?). A question too
long to embed or to fit the context window raises `QuestionTooLongError`.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .embeddings import get_embeddings
from .knowledge_base import questions_path, search

DONT_KNOW = "I don't know: the knowledge base does not contain the answer to that question."


class QuestionTooLongError(ValueError):
    """A question longer than the retriever or the chat model's context window can take."""


# --- evaluation -------------------------------------------------------------------------
def load_questions(path: str | Path | None = None) -> list[dict]:
    """The question set: one JSON object per line with `question` and `source`."""
    path = Path(path) if path is not None else questions_path()
    if not path.is_file():
        raise FileNotFoundError(f"question set {path} does not exist")
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path.name} line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not row.get("question") or not row.get("source"):
            raise ValueError(f"{path.name} line {number}: needs an object with 'question' and 'source'")
        questions.append(row)
    return questions


def first_hit_rank(retrieved_sources: Sequence[str], expected: str) -> int | None:
    """1-based rank of the first chunk from the expected document, or None."""
    for rank, source in enumerate(retrieved_sources, 1):
        if source == expected:
            return rank
    return None


def retrieval_metrics(ranks: Sequence[int | None], ks: Iterable[int] = (1, 3, 5)) -> dict[str, float]:
    """Hit rate at each k and mean reciprocal rank, from first-hit ranks (None = missed)."""
    if not ranks:
        raise ValueError("no questions to score")
    metrics = {f"hit@{k}": sum(1 for r in ranks if r is not None and r <= k) / len(ranks) for k in ks}
    metrics["mrr"] = sum(1 / r for r in ranks if r is not None) / len(ranks)
    return metrics


def evaluate_retrieval(store, questions: Sequence[dict], ks: Iterable[int] = (1, 3, 5), depth: int = 10):
    """Score a store on the question set; returns (metrics dict, per-question rows)."""
    ks = tuple(ks)
    depth = max(depth, *ks)
    rows, ranks, latencies = [], [], []
    for q in questions:
        start = time.perf_counter()
        hits = search(store, q["question"], k=depth)
        latencies.append((time.perf_counter() - start) * 1000)
        sources = [doc.metadata["source"] for doc, _ in hits]
        rank = first_hit_rank(sources, q["source"])
        ranks.append(rank)
        rows.append({"question": q["question"], "expected": q["source"], "top": sources[0] if sources else None, "rank": rank})
    metrics = retrieval_metrics(ranks, ks)
    metrics["p50_ms"] = statistics.median(latencies)
    return metrics, rows


def evaluate_grid(questions: Sequence[dict], stores_by_kind: dict[str, dict], ks: Iterable[int] = (1, 3, 5), progress: bool = True):
    """Every chunking in every kind of store ({"chroma": {Chunking: store}, "faiss": {...}}) on the question set.

    Returns (a metrics table, one row per chunking and store, and {(Chunking, kind): the
    questions whose first retrieved chunk was not from the expected document}).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    chunkings = list(next(iter(stores_by_kind.values()))) if stores_by_kind else []
    rows, misses = [], {}
    for chunking in tqdm(chunkings, desc="evaluating", disable=not progress):
        for kind, stores in stores_by_kind.items():
            metrics, per_question = evaluate_retrieval(stores[chunking], questions, ks=ks)
            rows.append({"chunking": chunking.label, "store": kind, **metrics})
            misses[(chunking, kind)] = [r for r in per_question if r["rank"] != 1]
    return pd.DataFrame(rows), misses


# --- 2-D map ----------------------------------------------------------------------------
def project_2d(vectors, method: str = "pca", seed: int = 42):
    """Vectors -> 2-D points with PCA or t-SNE."""
    import numpy as np

    vectors = np.asarray(vectors)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(vectors)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(2.0, (len(vectors) - 1) / 3))
        return TSNE(n_components=2, random_state=seed, perplexity=perplexity, init="pca").fit_transform(vectors)
    raise ValueError(f"unknown projection {method!r}; use 'pca' or 'tsne'")


def plot_vector_map(points, labels: Sequence[str], title: str = "", ax=None):
    """A scatter plot of 2-D points, one colour per label (document type)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5))
    for label in sorted(set(labels)):
        mask = [lab == label for lab in labels]
        ax.scatter(points[mask, 0], points[mask, 1], s=14, alpha=0.75, label=label)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(title="document type", fontsize=8)
    return ax


# --- answering --------------------------------------------------------------------------
SYSTEM_PROMPT = (
    "You are the help assistant of Relay Market, an online resale marketplace. "
    "Answer the question using only the context below, in one or two sentences. "
    "If the context does not contain the answer, reply exactly: I don't know."
)


def format_context(documents: Sequence) -> str:
    return "\n\n".join(f"[{doc.metadata['source']}]\n{doc.page_content}" for doc in documents)


def unique_sources(documents: Sequence) -> list[str]:
    return list(dict.fromkeys(doc.metadata["source"] for doc in documents))


def chat_model_from_backend(backend=None, max_tokens: int = 160, temperature: float = 0.0):
    """A LangChain ChatOpenAI talking to the course backend (local llama.cpp by default)."""
    from langchain_openai import ChatOpenAI

    from ..chat.llm import get_backend

    backend = backend or get_backend()
    client = backend.client
    return ChatOpenAI(
        model=backend.model,
        base_url=str(client.base_url),
        api_key=client.api_key,
        temperature=temperature,
        max_tokens=max_tokens,
        max_retries=2,
        timeout=120,
    )


# Context windows of hosted models that announce none through the API (prefix match, longest first).
KNOWN_CONTEXT_WINDOWS = {"gpt-4.1": 1_047_576, "gpt-4o": 128_000, "gpt-5": 400_000, "o3": 200_000, "o4-mini": 200_000}
FALLBACK_CONTEXT_WINDOW = 8_192  # what nearly every chat model of the last years can read


def context_window(backend=None) -> int:
    """Tokens the chat model behind `backend` can read, asked of the server where it says.

    The embedded server: its n_ctx. Another OpenAI-compatible server: what its model listing
    announces (vLLM's `max_model_len`, llama.cpp's `n_ctx_train`, `context_length` elsewhere).
    OpenAI's own models: the known table. Anything else: a cautious 8k, with a warning.
    """
    if backend is None:
        return FALLBACK_CONTEXT_WINDOW
    if backend.kind == "local":
        from ..chat.llm import local_server

        return local_server().n_ctx
    try:
        listed = backend.client.models.retrieve(backend.model).model_dump()
    except Exception:  # not every server lists models; the table and the fallback remain
        listed = {}
    for key in ("max_model_len", "context_length", "context_window"):
        if isinstance(listed.get(key), int):
            return listed[key]
    if isinstance((listed.get("meta") or {}).get("n_ctx_train"), int):
        return listed["meta"]["n_ctx_train"]
    for prefix in sorted(KNOWN_CONTEXT_WINDOWS, key=len, reverse=True):
        if backend.model.startswith(prefix):
            return KNOWN_CONTEXT_WINDOWS[prefix]
    import warnings

    warnings.warn(f"{backend.model} announces no context window; assuming {FALLBACK_CONTEXT_WINDOW} tokens "
                  "(pass context_tokens= to RagChain to use more)", stacklevel=2)
    return FALLBACK_CONTEXT_WINDOW


@dataclass
class RagAnswer:
    question: str
    answer: str
    sources: list[str]
    chunks: list
    scores: list[float]


class RagChain:
    """retrieve -> prompt -> chat model -> text, as a LangChain runnable pipeline.

    `min_relevance` is a guard in front of the model: when no chunk is at least that
    similar to the question, the chain answers "I don't know" without asking the
    model, because a small model given unrelated context tends to invent an answer.
    """

    def __init__(
        self,
        store,
        llm=None,
        k: int = 4,
        min_relevance: float = 0.3,
        context_tokens: int = 4096,
        embeddings=None,
    ):
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate

        self.store = store
        self.k = k
        self.min_relevance = min_relevance
        self.context_tokens = context_tokens
        self.embeddings = embeddings or get_embeddings()
        self.prompt = ChatPromptTemplate.from_messages(
            [("system", SYSTEM_PROMPT), ("human", "Context:\n{context}\n\nQuestion: {question}")]
        )
        self._llm = llm
        self._parser = StrOutputParser()

    @property
    def generate(self):
        """prompt | chat model | text; the chat model is connected on first use."""
        if self._llm is None:
            self._llm = chat_model_from_backend()
        return self.prompt | self._llm | self._parser

    def check_question(self, question: str) -> str:
        question = (question or "").strip()
        if not question:
            raise ValueError("the question is empty")
        tokens = self.embeddings.count_tokens(question)
        # Room the question may take: what the retriever embeds, and what is left of the
        # model's window after the retrieved chunks (~1 token per 3 characters) and the answer.
        room_in_window = self.context_tokens - 160 - 256 - self.k * 600
        limit = min(self.embeddings.max_tokens, room_in_window)
        if tokens > limit:
            raise QuestionTooLongError(
                f"the question is {tokens} tokens long; at most {limit} fit (the retriever embeds "
                f"{self.embeddings.max_tokens} tokens, the chat model's context window is {self.context_tokens} "
                f"tokens and {self.k} retrieved chunks must fit in it): shorten the question"
            )
        return question

    def retrieve(self, question: str) -> tuple[list, list[float]]:
        hits = search(self.store, question, k=self.k)
        kept = [(doc, score) for doc, score in hits if score >= self.min_relevance]
        return [doc for doc, _ in kept], [score for _, score in kept]

    def invoke(self, question: str) -> RagAnswer:
        question = self.check_question(question)
        chunks, scores = self.retrieve(question)
        if not chunks:
            return RagAnswer(question, DONT_KNOW, [], [], [])
        answer = self.generate.invoke({"context": format_context(chunks), "question": question}).strip()
        return RagAnswer(question, answer or DONT_KNOW, unique_sources(chunks), chunks, scores)

    def stream(self, question: str) -> Iterator[str]:
        """Yield the growing answer, ending with the sources line."""
        question = self.check_question(question)
        chunks, _ = self.retrieve(question)
        if not chunks:
            yield DONT_KNOW
            return
        text = ""
        for piece in self.generate.stream({"context": format_context(chunks), "question": question}):
            text += piece
            yield text
        yield f"{text.strip() or DONT_KNOW}\n\nSources: {', '.join(unique_sources(chunks))}"


# Words too common to say whether an answer holds the reference fact.
FACT_STOPWORDS = frozenset({"the", "and", "for", "per", "with", "from", "that", "this", "are", "was", "dollars", "dollar"})


def fact_found(reference: str, answer: str) -> bool:
    """The reference check of notebook 05: does `answer` hold the fact `reference` states?

    True when every number of the reference appears in the answer (thousands separators
    ignored: "41,000" matches "41000") and at least half of the reference's content words
    (three letters or more, not in `FACT_STOPWORDS`) do. Strict about numbers, lenient about
    wording: "14 March 2017, by Ines Okafor and Tomas Brandt" is found in "It was founded on
    14 March 2017 by Okafor and Brandt". Notebook 05 writes the same function out in a cell;
    tests/test_lessons_chat_rag.py checks that the two agree.
    """
    import re

    def norm(text: str) -> str:
        return re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())

    ref, ans = norm(reference), norm(answer)
    numbers = re.findall(r"\d+(?:\.\d+)?", ref)
    found = set(re.findall(r"\d+(?:\.\d+)?", ans))
    words = [w for w in re.findall(r"[a-z]{3,}", ref) if w not in FACT_STOPWORDS]
    return all(n in found for n in numbers) and (not words or sum(w in ans for w in words) >= len(words) / 2)


def spread(questions: Sequence[dict], n: int) -> list[dict]:
    """n questions taken evenly across the set (its documents are in order, so this covers them)."""
    if n < 1:
        raise ValueError(f"need at least one question, got n={n}")
    return list(questions[:: max(1, len(questions) // n)][:n])


def time_retrieval(store, questions: Sequence[str], k: int = 5) -> list[float]:
    """Milliseconds per retrieval, one per question (embedding the query included)."""
    timings = []
    for question in questions:
        start = time.perf_counter()
        search(store, question, k=k)
        timings.append((time.perf_counter() - start) * 1000)
    return timings


