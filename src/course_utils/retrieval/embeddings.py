"""Sentence embeddings and the Chroma client: the course's one embedding wrapper and one store client.

Notebook 05's knowledge base (through LangChain's Chroma integration) and notebook 13's
product store (Chroma directly) both embed with the profile's SentenceTransformer (MiniLM
offline) through `SentenceEmbeddings`, and both open their stores with `chroma_client`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..core import config

try:
    from langchain_core.embeddings import Embeddings as _EmbeddingsBase
except ImportError:  # pragma: no cover - langchain-core is a dependency
    _EmbeddingsBase = object


class SentenceEmbeddings(_EmbeddingsBase):
    """LangChain `Embeddings` over the profile's SentenceTransformer (MiniLM offline), loaded on first use.

    Vectors are L2-normalised, so a dot product is the cosine similarity. This does what
    langchain-huggingface's `HuggingFaceEmbeddings` does, but reuses
    `models.load_embedding_model()` and exposes the tokenizer to count tokens.
    """

    def __init__(self, model=None, batch_size: int = 64, profile: config.Profile | None = None):
        self._model = model
        self.batch_size = batch_size
        self.profile = profile

    @property
    def model(self):
        if self._model is None:
            from ..foundations.models import load_embedding_model

            self._model = load_embedding_model(self.profile)
        return self._model

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def dimension(self) -> int:
        from ..foundations.models import embedding_dimension

        return embedding_dimension(self.model)

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text, add_special_tokens=True)["input_ids"])

    def encode(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Unit-length embeddings, one float32 row per text."""
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=batch_size or self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()


_EMBEDDINGS: SentenceEmbeddings | None = None


def get_embeddings() -> SentenceEmbeddings:
    """One embedding model per process (loading it takes a few seconds)."""
    global _EMBEDDINGS
    if _EMBEDDINGS is None:
        _EMBEDDINGS = SentenceEmbeddings()
    return _EMBEDDINGS


def chroma_client(persist_dir: str | Path):
    """A persistent Chroma client on `persist_dir` (created if missing), telemetry off: nothing leaves the machine."""
    import chromadb
    from chromadb.config import Settings

    persist_dir = Path(persist_dir)
    persist_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(persist_dir), settings=Settings(anonymized_telemetry=False))
