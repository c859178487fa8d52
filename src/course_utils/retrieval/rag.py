"""Retrieval-augmented generation over the course's knowledge base.

The knowledge base is a folder of markdown files about Relay Market, the fictional
resale marketplace whose listings the pricing notebooks use. Each file starts with
YAML front matter naming at least its `type` (company, policy, category, staff,
partner) and `title`.

The pipeline, one function per step:

    load_documents()  ->  split_documents()  ->  SentenceEmbeddings  ->  build_chroma() / FaissIndex
          -> RagChain (LangChain: retrieve, prompt, chat model, parse)  ->  answer + sources

plus `evaluate_retrieval()` (hit rate at k, mean reciprocal rank) on the question set
in course_data/rag_questions.jsonl, `fact_found()` (does an answer hold the question's
reference fact?), and `project_2d()` / `plot_vector_map()` for a 2-D map.

Bad input fails early with a message that names the problem: a missing or empty
folder (`KnowledgeBaseError`), a file that cannot be parsed (`DocumentParseError`), a
question too long to embed or to fit the context window (`QuestionTooLongError`).
Everything is parsed and checked before the store is touched, so a failed rebuild
leaves the previous store intact.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import yaml

from ..core import config
from .embeddings import chroma_client, get_embeddings

DOC_TYPES = ("company", "policy", "category", "staff", "partner")
DONT_KNOW = "I don't know: the knowledge base does not contain the answer to that question."


class KnowledgeBaseError(ValueError):
    """The knowledge-base folder is missing, empty, or holds no usable document."""


class DocumentParseError(KnowledgeBaseError):
    """One document could not be parsed; the message names the file and the reason."""


class QuestionTooLongError(ValueError):
    """A question longer than the retriever or the chat model's context window can take."""


@dataclass(frozen=True)
class Chunking:
    """How documents are cut into chunks: sizes in characters."""

    name: str
    chunk_size: int
    chunk_overlap: int

    def __post_init__(self):
        if self.chunk_size <= 0 or not 0 <= self.chunk_overlap < self.chunk_size:
            raise ValueError(f"need chunk_size > 0 and 0 <= overlap < size, got {self.chunk_size}/{self.chunk_overlap}")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.chunk_size}/{self.chunk_overlap})"


# The choices notebook 05 compares: small chunks are precise, large ones keep context.
CHUNKINGS: tuple[Chunking, ...] = (
    Chunking("small", 300, 50),
    Chunking("medium", 700, 100),
    Chunking("large", 1500, 200),
)


# --- loading ----------------------------------------------------------------------------
def knowledge_base_dir() -> Path:
    return config.data_dir() / "knowledge_base"


def questions_path() -> Path:
    return config.data_dir() / "rag_questions.jsonl"


def parse_document(path: Path):
    """One markdown file with YAML front matter -> a LangChain Document."""
    from langchain_core.documents import Document

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentParseError(f"{path.name}: not valid UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.startswith("---"):
        raise DocumentParseError(f"{path.name}: no front matter; the file must start with a '---' line")
    parts = text.split("\n---", 1)
    if len(parts) != 2:
        raise DocumentParseError(f"{path.name}: front matter is not closed by a '---' line")
    header, body = parts[0][3:], parts[1].lstrip("-").strip()
    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError as exc:
        raise DocumentParseError(f"{path.name}: front matter is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(meta, dict):
        raise DocumentParseError(f"{path.name}: front matter must be a mapping of keys to values")
    missing = [key for key in ("title", "type") if not meta.get(key)]
    if missing:
        raise DocumentParseError(f"{path.name}: front matter lacks {', '.join(missing)}")
    if meta["type"] not in DOC_TYPES:
        raise DocumentParseError(f"{path.name}: type {meta['type']!r} is not one of {', '.join(DOC_TYPES)}")
    if not body:
        raise DocumentParseError(f"{path.name}: the document has front matter but no text")
    metadata = {key: str(value) for key, value in meta.items()}  # Chroma stores scalars only
    metadata["source"] = path.name
    return Document(page_content=body, metadata=metadata)


def load_documents(folder: str | Path | None = None) -> list:
    """Every *.md file of the knowledge base, parsed; fails on the first bad file."""
    folder = Path(folder) if folder is not None else knowledge_base_dir()
    if not folder.exists():
        raise KnowledgeBaseError(f"knowledge-base folder {folder} does not exist")
    if not folder.is_dir():
        raise KnowledgeBaseError(f"knowledge-base path {folder} is not a folder")
    paths = sorted(folder.glob("*.md"))
    if not paths:
        raise KnowledgeBaseError(f"knowledge-base folder {folder} has no .md documents")
    return [parse_document(path) for path in paths]


# --- splitting --------------------------------------------------------------------------
def split_documents(documents: Sequence, chunking: Chunking) -> list:
    """Chunks that keep their document's metadata, each headed by the document title.

    The title header ("contextual chunk header") lets a chunk such as "| Up to 3 lb |
    10.99 dollars |" still say what it is about once it is cut out of its document.
    Ids are deterministic (source, chunking, position, content hash), so re-indexing
    the same text gives the same ids and never duplicates a chunk.
    """
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunking.chunk_size,
        chunk_overlap=chunking.chunk_overlap,
        separators=["\n## ", "\n# ", "\n\n", "\n", ". ", " ", ""],
    )
    chunks = []
    for doc in documents:
        for index, piece in enumerate(splitter.split_text(doc.page_content)):
            text = f"{doc.metadata['title']}\n{piece}"
            digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
            chunk_id = f"{doc.metadata['source']}:{chunking.chunk_size}-{chunking.chunk_overlap}:{index}:{digest}"
            chunks.append(Document(page_content=text, metadata={**doc.metadata, "chunk": index}, id=chunk_id))
    return chunks


# --- stores -----------------------------------------------------------------------------
def store_dir(profile: config.Profile | None = None) -> Path:
    """Where the persistent Chroma store lives: results/<profile>/rag/chroma."""
    profile = profile or config.get_profile()
    return profile.work_dir / "rag" / "chroma"


def collection_name(chunking: Chunking) -> str:
    return f"relay_kb_{chunking.name}_{chunking.chunk_size}_{chunking.chunk_overlap}"


def open_chroma(chunking: Chunking, embeddings=None, persist_dir: str | Path | None = None):
    """The Chroma collection for a chunking choice (cosine distance), created if absent."""
    from langchain_chroma import Chroma

    persist_dir = Path(persist_dir) if persist_dir is not None else store_dir()
    return Chroma(
        collection_name=collection_name(chunking),
        embedding_function=embeddings or get_embeddings(),
        client=chroma_client(persist_dir),
        collection_configuration={"hnsw": {"space": "cosine"}},
    )


@dataclass
class BuildReport:
    chunking: Chunking
    chunks: int
    added: int
    removed: int
    seconds: float


def build_chroma(
    chunks: Sequence,
    chunking: Chunking,
    embeddings=None,
    persist_dir: str | Path | None = None,
    batch_size: int = 256,
):
    """Make the Chroma collection hold exactly `chunks`; returns (store, BuildReport).

    Idempotent: chunks whose id is already stored are skipped, stored ids that are no
    longer produced (an edited or deleted document) are removed. A re-run therefore
    embeds nothing new and never duplicates, and an interrupted build is finished by
    the next one.
    """
    if not chunks:
        raise KnowledgeBaseError("no chunks to index: the knowledge base produced no text")
    ids = [chunk.id for chunk in chunks]
    if len(set(ids)) != len(ids):
        raise KnowledgeBaseError("duplicate chunk ids: two documents share a file name")
    start = time.perf_counter()
    store = open_chroma(chunking, embeddings, persist_dir)
    stored = set(store.get(include=[])["ids"])
    wanted = set(ids)
    stale = sorted(stored - wanted)
    if stale:
        store.delete(ids=stale)
    new = [chunk for chunk in chunks if chunk.id not in stored]
    for offset in range(0, len(new), batch_size):
        batch = new[offset : offset + batch_size]
        store.add_documents(batch, ids=[chunk.id for chunk in batch])
    report = BuildReport(chunking, len(chunks), len(new), len(stale), time.perf_counter() - start)
    return store, report


def build_knowledge_base(
    chunking: Chunking,
    folder: str | Path | None = None,
    persist_dir: str | Path | None = None,
    embeddings=None,
):
    """Load, split and index the knowledge base in one call; returns (store, BuildReport)."""
    documents = load_documents(folder)  # raises before the store is opened
    chunks = split_documents(documents, chunking)
    return build_chroma(chunks, chunking, embeddings, persist_dir)


def build_stores(chunk_sets: dict, embeddings=None, persist_dir: str | Path | None = None, progress: bool = True):
    """One Chroma collection per chunking ({Chunking: chunks}), built or brought up to date.

    Returns ({Chunking: store}, a table of what each build added, removed and took). A re-run
    adds nothing: `build_chroma` keys every chunk by its content.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    stores, rows = {}, []
    for chunking, chunks in tqdm(chunk_sets.items(), desc="indexing", disable=not progress):
        stores[chunking], report = build_chroma(chunks, chunking, embeddings, persist_dir)
        rows.append({"chunking": chunking.label, "chunks": report.chunks, "added": report.added,
                     "removed": report.removed, "seconds": round(report.seconds, 2)})  # fmt: skip
    return stores, pd.DataFrame(rows)


class FaissIndex:
    """The same chunks in an exact FAISS inner-product index (cosine on unit vectors)."""

    def __init__(self, chunks: Sequence, embeddings=None):
        import faiss
        import numpy as np

        self.embeddings = embeddings or get_embeddings()
        self.chunks = list(chunks)
        vectors = np.asarray(self.embeddings.embed_documents([c.page_content for c in self.chunks]), dtype="float32")
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)

    def __len__(self) -> int:
        return self.index.ntotal

    def similarity_search_with_relevance_scores(self, query: str, k: int = 4) -> list[tuple[Any, float]]:
        import numpy as np

        vector = np.asarray([self.embeddings.embed_query(query)], dtype="float32")
        scores, positions = self.index.search(vector, min(k, len(self)))
        return [(self.chunks[p], float(s)) for s, p in zip(scores[0], positions[0]) if p >= 0]


def search(store, query: str, k: int = 4) -> list[tuple[Any, float]]:
    """(chunk, cosine similarity) pairs, best first, from a Chroma store or a FaissIndex."""
    return store.similarity_search_with_relevance_scores(query, k=k)


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


