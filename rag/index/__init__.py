"""The search index: one small interface (:class:`SearchIndex`), two implementations.

- :mod:`rag.index.local`: FAISS + BM25 segments + SQLite in one folder (the default; offline).
- :mod:`rag.index.milvus`: Milvus through pymilvus' ``MilvusClient`` — Milvus Lite (a
  local file) or a Milvus server/cluster by URI; all state lives in Milvus.

:mod:`rag.index.backend` picks one from ``settings.index.backend``.  The names other
modules imported from the former ``rag/index.py`` are re-exported here unchanged.
"""

from rag.index.base import (
    FORMAT_VERSION,
    IncompatibleEmbedder,
    IndexError_,
    IndexIncompatible,
    IndexNotFound,
    Manifest,
    SearchIndex,
)
from rag.index.local import (
    CURRENT,
    LocalIndex,
    read_manifest,
    write_lock,
)

__all__ = [
    "CURRENT",
    "FORMAT_VERSION",
    "IncompatibleEmbedder",
    "IndexError_",
    "IndexIncompatible",
    "IndexNotFound",
    "LocalIndex",
    "Manifest",
    "SearchIndex",
    "read_manifest",
    "write_lock",
]
