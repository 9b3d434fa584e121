"""Hybrid retrieval: BM25 and dense results fused by weighted reciprocal rank fusion.

The retriever only talks to the :class:`rag.index.SearchIndex` protocol, so the
embedded index can be swapped for a distributed one.  It is also a LangChain
``BaseRetriever`` for users who compose their own chains.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag.config import RetrievalSettings
from rag.embeddings import IndexEmbedder
from rag.index import SearchIndex
from rag.query import PreparedQuery, prepare
from rag.schema import Hit


_CONTENTS_LEADER = re.compile(r"[・.…‥·･]{4,}\s*\d")
_CONTENTS_WEIGHT = 0.3


def is_contents(text: str) -> bool:
    """A table-of-contents chunk: entries joined to page numbers by dot leaders ("基本要件・・・・6")."""
    return len(_CONTENTS_LEADER.findall(text)) >= 3


class Reranker:
    """A sentence-transformers CrossEncoder (name or folder) that reorders the fused candidates."""

    def __init__(self, model: str):
        from sentence_transformers import CrossEncoder

        self.name = model
        self._model = CrossEncoder(model, device="cpu")

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        scores = self._model.predict([(query, h.chunk.text) for h in hits], show_progress_bar=False)
        order = sorted(range(len(hits)), key=lambda i: -float(scores[i]))
        return [
            Hit(hits[i].chunk, float(scores[i]), hits[i].sparse_rank, hits[i].dense_rank, hits[i].dense_score)
            for i in order
        ]


class HybridRetriever(BaseRetriever):
    """Ranked chunks for a question.  ``search`` returns :class:`Hit`; the LangChain API returns Documents."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any  # SearchIndex; Any because pydantic cannot validate a Protocol
    embedder: IndexEmbedder
    settings: RetrievalSettings = RetrievalSettings()
    reranker: Reranker | None = None
    sources: tuple[str, ...] | None = None  # restrict to these files

    def search(
        self,
        question: str | PreparedQuery,
        k: int | None = None,
        sources: Collection[str] | None = None,
        mode: str = "hybrid",
        query_vector=None,
    ) -> list[Hit]:
        """``mode`` is "hybrid", "sparse" or "dense" (the latter two are the eval's baselines).

        ``query_vector``: the question already embedded (the answerer reuses it).
        """
        index: SearchIndex = self.index
        s = self.settings
        k = k or s.k
        if not 1 <= k <= 100:
            raise ValueError(f"k must be between 1 and 100, not {k}")
        sources = sources if sources is not None else self.sources
        query = question if isinstance(question, PreparedQuery) else prepare(question, use_synonyms=s.use_synonyms)
        # A question that names one document searches it, unless the user chose others.
        scoped = bool(query.scope) and (sources is None or query.scope in sources)
        if scoped:
            sources = (query.scope,)
        n = max(s.candidates, k)
        sparse: list[tuple[str, float]] = []
        dense: list[tuple[str, float]] = []
        if mode in ("hybrid", "sparse"):
            sparse = index.sparse_search(query.sparse_text(scoped), n, sources)
        if mode in ("hybrid", "dense"):
            vector = query_vector if query_vector is not None else self.embedder.embed_query_array(query.text)
            dense = index.dense_search(vector, n, sources)
        fused: dict[str, list] = {}
        for rank, (cid, _) in enumerate(sparse, start=1):
            fused.setdefault(cid, [0.0, None, None, None])
            fused[cid][0] += s.sparse_weight / (s.rrf_k + rank)
            fused[cid][1] = rank
        for rank, (cid, score) in enumerate(dense, start=1):
            fused.setdefault(cid, [0.0, None, None, None])
            fused[cid][0] += s.dense_weight / (s.rrf_k + rank)
            fused[cid][2] = rank
            fused[cid][3] = score
        ranked = sorted(fused.items(), key=lambda kv: -kv[1][0])
        keep = ranked[: max(k, 20)]
        chunks = {c.id: c for c in index.get_chunks([cid for cid, _ in keep])}
        hits = [Hit(chunks[cid], v[0], v[1], v[2], v[3]) for cid, v in keep if cid in chunks]
        # A table of contents names every topic of the document and answers none of them.
        hits = [h if not is_contents(h.chunk.text) else dataclasses.replace(h, score=h.score * _CONTENTS_WEIGHT) for h in hits]
        hits.sort(key=lambda h: -h.score)
        if self.reranker is not None:
            return self.reranker.rerank(query.text, hits)[:k]
        return hits[:k]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [
            Document(
                page_content=h.chunk.text,
                id=h.chunk.id,
                metadata={
                    "source": h.chunk.source,
                    "page": h.chunk.page,
                    "heading": h.chunk.heading,
                    "chunk_id": h.chunk.id,
                    "start": h.chunk.start,
                    "end": h.chunk.end,
                    "score": h.score,
                },
            )
            for h in self.search(query)
        ]
