"""Product vectors in Chroma: the memory a retrieval-augmented pricer looks things up in.

Each training listing becomes one record in a persistent Chroma collection under the
profile's work folder: its id (derived from the item id, so a re-run adds nothing twice),
its embedding from the profile's sentence-embedding model, its text, and metadata a
pricer needs (title, top-level category, price). A listing's nearest neighbours by
cosine similarity are the "similar items" shown to the chat model in notebook 13.

    store = ProductStore(profile)
    store.add_items(train_items)            # batched, with a progress bar; skips stored ids
    store.similar(item, k=5)                # -> [Neighbour(title, category, price, similarity), ...]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..core import config
from ..pricing.items import Item
from .embeddings import SentenceEmbeddings, chroma_client

COLLECTION = "products"
STORE_FOLDER = "products_vectorstore"


class EmptyStoreError(RuntimeError):
    """The collection holds no listings yet: add some before asking for neighbours."""


@dataclass(frozen=True)
class Neighbour:
    """One similar training listing, as retrieved from the store."""

    id: str
    title: str
    category: str
    price: float
    similarity: float  # cosine similarity, 1.0 = same direction
    text: str = ""


def store_path(profile: config.Profile | None = None) -> Path:
    """Where the profile's product store lives on disk (results/<profile>/products_vectorstore)."""
    profile = profile or config.get_profile()
    return profile.work_dir / STORE_FOLDER


def collection_name(profile: config.Profile | None = None) -> str:
    """One collection per data version: if the splits change, listings that moved out of the
    training split cannot leak their prices into a later run's neighbours."""
    from ..pricing.data import data_version

    return f"{COLLECTION}-{data_version(profile)}"


def record_id(item: Item) -> str:
    """The Chroma id of a listing: stable across runs, so adding it again is a no-op."""
    return f"item-{item.id}"


def embedding_text(item: Item) -> str:
    """What is embedded for a listing: the curated prompt text (title, category, brand, description)."""
    return item.text


def _metadata(item: Item) -> dict:
    # Chroma metadata values must be str, int, float or bool: no None.
    return {"title": item.title[:200], "category": item.category, "price": float(item.price)}


def _batches(seq: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


class ProductStore:
    """A persistent Chroma collection of listings with their embeddings and prices."""

    def __init__(
        self,
        profile: config.Profile | None = None,
        path: str | Path | None = None,
        embedder=None,
        name: str | None = None,
    ):
        self.profile = profile or config.get_profile()
        self.path = Path(path) if path is not None else store_path(self.profile)
        self.path.mkdir(parents=True, exist_ok=True)
        self.embeddings = SentenceEmbeddings(embedder, profile=self.profile)
        self.client = chroma_client(self.path)
        self.name = name or collection_name(self.profile)
        # We pass our own embeddings, so no embedding function: Chroma's default one would
        # try to download a model. Cosine space matches how sentence embeddings are compared.
        self.collection = self.client.get_or_create_collection(
            self.name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )

    # --- embeddings ---------------------------------------------------------------------
    @property
    def embedder(self):
        """The SentenceTransformer itself (notebook 13 calls its `encode` in the cells)."""
        return self.embeddings.model

    def embed(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Unit-length embeddings of `texts`, one row each (float32)."""
        return self.embeddings.encode(texts, batch_size=batch_size, progress=progress)

    def embed_items(self, items: Sequence[Item], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self.embed([embedding_text(item) for item in items], batch_size=batch_size, progress=progress)

    @property
    def dimension(self) -> int:
        return self.embeddings.dimension

    # --- writing ------------------------------------------------------------------------
    def count(self) -> int:
        return self.collection.count()

    def missing(self, items: Sequence[Item]) -> list[Item]:
        """The items whose ids are not stored yet (checked in chunks Chroma accepts)."""
        present: set[str] = set()
        ids = [record_id(item) for item in items]
        for chunk in _batches(list(dict.fromkeys(ids)), 5_000):  # unique: Chroma refuses repeated ids
            present.update(self.collection.get(ids=list(chunk), include=[])["ids"])
        seen: set[str] = set()
        out = []
        for item, rid in zip(items, ids):
            if rid not in present and rid not in seen:
                seen.add(rid)
                out.append(item)
        return out

    def add_items(self, items: Sequence[Item], batch_size: int = 256, progress: bool = True) -> int:
        """Embed and store the items not stored yet; returns how many were added.

        Stored ids are skipped before embedding, so a re-run costs one lookup, not a
        re-embedding, and never duplicates a listing.
        """
        from tqdm.auto import tqdm

        todo = self.missing(items)
        if not todo:
            return 0
        batch_size = max(1, min(batch_size, self.client.get_max_batch_size()))
        bar = tqdm(total=len(todo), desc="adding listings to Chroma", unit="item", disable=not progress)
        for batch in _batches(todo, batch_size):
            vectors = self.embed_items(batch)
            self.collection.upsert(
                ids=[record_id(item) for item in batch],
                embeddings=vectors,
                documents=[embedding_text(item) for item in batch],
                metadatas=[_metadata(item) for item in batch],
            )
            bar.update(len(batch))
        bar.close()
        return len(todo)

    def reset(self) -> None:
        """Delete every stored listing (the collection is recreated empty)."""
        name = self.collection.name
        self.client.delete_collection(name)
        self.collection = self.client.get_or_create_collection(
            name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )

    # --- reading ------------------------------------------------------------------------
    def _check_not_empty(self) -> None:
        if self.count() == 0:
            raise EmptyStoreError(
                f"the product store at {self.path} is empty: call add_items(train_items) first (notebook 13 does)"
            )

    def similar_to_vectors(self, vectors: np.ndarray, k: int = 5, where: dict | None = None) -> list[list[Neighbour]]:
        """The k nearest stored listings of each query vector, most similar first.

        `where` filters on the stored metadata with Chroma's syntax, e.g. {"category": "Electronics"}
        or {"price": {"$lt": 50}}; a filter that leaves fewer than k listings returns fewer.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self._check_not_empty()
        k = min(k, self.count())
        out: list[list[Neighbour]] = []
        for chunk in _batches(np.asarray(vectors, dtype=np.float32), 256):
            result = self.collection.query(
                query_embeddings=chunk, n_results=k, where=where, include=["metadatas", "distances", "documents"]
            )
            for ids, metas, dists, docs in zip(
                result["ids"], result["metadatas"], result["distances"], result["documents"]
            ):
                out.append(
                    [
                        Neighbour(
                            id=rid,
                            title=str(meta.get("title", "")),
                            category=str(meta.get("category", "Unknown")),
                            price=float(meta["price"]),
                            similarity=1.0 - float(dist),
                            text=doc or "",
                        )
                        for rid, meta, dist, doc in zip(ids, metas, dists, docs)
                    ]
                )
        return out

    def similar(self, item: Item, k: int = 5, where: dict | None = None) -> list[Neighbour]:
        """The k stored listings most similar to `item`, most similar first (`where`: a metadata filter)."""
        return self.similar_to_vectors(self.embed_items([item]), k, where)[0]

    def similar_many(
        self, items: Sequence[Item], k: int = 5, progress: bool = False, where: dict | None = None
    ) -> list[list[Neighbour]]:
        """Neighbours for many items at once: one embedding pass, batched queries."""
        return self.similar_to_vectors(self.embed_items(items, progress=progress), k, where)

    def training_matrix(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every stored embedding, its price and category: training data for a model on vectors.

        Reading the vectors back from Chroma means a model trained on them costs no
        second embedding pass.
        """
        self._check_not_empty()
        ids, vectors, prices, categories = [], [], [], []
        total = self.count()
        for offset in range(0, total, 5_000):
            got = self.collection.get(include=["embeddings", "metadatas"], limit=5_000, offset=offset)
            ids.extend(got["ids"])
            vectors.append(np.asarray(got["embeddings"], dtype=np.float32))
            prices.extend(float(m["price"]) for m in got["metadatas"])
            categories.extend(str(m.get("category", "Unknown")) for m in got["metadatas"])
        order = np.argsort(ids)  # a fixed row order, whatever order Chroma returns them in
        X = np.concatenate(vectors)[order]
        y = np.asarray(prices)[order]
        return X, y, [categories[i] for i in order]


def neighbour_weighted_price(neighbours: Sequence[Neighbour], power: float = 4.0) -> float:
    """A similarity-weighted geometric mean of the neighbours' prices (closer ones count more).

    The "typical price" the RAG pricer's prompt spells out and falls back to; notebook 13 writes it
    out in a cell (`typical_price`) and a test checks the two agree."""
    if not neighbours:
        raise ValueError("no neighbours to average")
    weights = np.array([max(n.similarity, 1e-6) ** power for n in neighbours])
    logs = np.array([math.log(n.price) for n in neighbours])
    return float(math.exp(float(np.dot(weights, logs) / weights.sum())))
