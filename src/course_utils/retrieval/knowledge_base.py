"""The knowledge base: Relay Market's markdown documents, loaded, split into chunks and stored in Chroma.

The knowledge base is a folder of markdown files about Relay Market, the fictional
resale marketplace whose listings the pricing notebooks use. Each file starts with YAML
front matter naming at least its `type` (company, policy, category, staff, partner) and
`title`.

    load_documents()  ->  split_documents()  ->  build_chroma() / FaissIndex  ->  search()

Bad input fails early with a message that names the problem: a missing or empty folder
(`KnowledgeBaseError`), a file that cannot be parsed (`DocumentParseError`). Everything is
parsed and checked before the store is touched, so a failed rebuild leaves the previous
store intact, and a rebuild embeds only what changed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..core import config
from .embeddings import chroma_client, get_embeddings


DOC_TYPES = ("company", "policy", "category", "staff", "partner")


class KnowledgeBaseError(ValueError):
    """The knowledge-base folder is missing, empty, or holds no usable document."""


class DocumentParseError(KnowledgeBaseError):
    """One document could not be parsed; the message names the file and the reason."""


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
