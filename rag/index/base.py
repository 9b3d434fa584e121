"""What every index backend shares: the :class:`SearchIndex` protocol, the manifest, the errors.

The retriever, the answerer and the ingester only use :class:`SearchIndex`, so the
embedded index (:mod:`rag.index.local`) and Milvus (:mod:`rag.index.milvus`) are
interchangeable.  Error messages are one line a user can act on, in Japanese.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rag.schema import Chunk, Page, SourceInfo

# 2: chunks and pages carry their section path (rag.sections).
# 3: commits cost what changed: the local index stores each chunk's BM25 term counts
#    (rag.index.chunk_terms); Milvus keeps document frequencies in layers and each
#    generation's contribution as JSON (rag.index.milvus).
# 4: the local index scores BM25 at query time from segments of term counts
#    (rag.index.bm25_segments) instead of bm25s's precomputed score matrix.
FORMAT_VERSION = 4


class IndexError_(Exception):  # trailing underscore: IndexError is a builtin
    """Base for index problems; the message is one line a user can act on."""


class IndexNotFound(IndexError_):
    pass


class IndexIncompatible(IndexError_):
    pass


@dataclass
class Manifest:
    embedder: str
    dimension: int
    tokenizer: str
    chunking: dict
    format_version: int = FORMAT_VERSION
    dense_index: str = "flat"
    built_at: str = ""
    sources: dict[str, dict] = field(default_factory=dict)

    @property
    def chunk_count(self) -> int:
        return sum(s["chunks"] for s in self.sources.values())

    @property
    def page_count(self) -> int:
        return sum(s["pages"] for s in self.sources.values())

    def source_infos(self) -> list[SourceInfo]:
        return [
            SourceInfo(
                source=name,
                sha256=s["sha256"],
                title=s.get("title", name),
                pages=s["pages"],
                chunks=s["chunks"],
                problems=tuple(s.get("problems", ())),
            )
            for name, s in sorted(self.sources.items())
        ]


class SearchIndex(Protocol):
    """What retrieval and ingestion need from an index.  Scores: higher is better."""

    manifest: Manifest

    def sparse_search(self, query: str, k: int, sources: Collection[str] | None = None) -> list[tuple[str, float]]: ...

    def dense_search(
        self, vector: np.ndarray, k: int, sources: Collection[str] | None = None
    ) -> list[tuple[str, float]]: ...

    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]: ...

    def get_page(self, source: str, page: int) -> Page | None: ...

    def add_source(self, info: SourceInfo, pages: Sequence[Page], chunks: Sequence[Chunk], vectors: np.ndarray) -> None: ...

    def delete_source(self, source: str) -> None: ...

    def commit(self) -> None: ...


class IncompatibleEmbedder(IndexIncompatible):
    def __init__(self, built_with: str, dimension: int, configured: str):
        super().__init__(
            f"索引は埋め込みモデル「{built_with}」（{dimension}次元）で作られていますが、"
            f"設定は「{configured}」です。`rag ingest` で索引を作り直してください"
        )
        self.built_with = built_with
        self.configured = configured
