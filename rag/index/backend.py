"""Pick the index implementation from ``settings.index.backend``.

The ingester, the pipeline, the CLI and the app call these instead of naming an
implementation, so ``RAG_INDEX__BACKEND=milvus`` moves all of them at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.config import Settings
from rag.index.base import Manifest, SearchIndex
from rag.index.local import CURRENT, LocalIndex, read_manifest, write_lock


def _hnsw(settings: Settings) -> tuple[int, int, int]:
    s = settings.index
    return (s.exact_search_max_chunks, s.hnsw_m, s.hnsw_ef_search)


def _milvus(settings: Settings):
    from rag.index.milvus import collection_prefix, connect

    s = settings.index
    options = {"dense_index": s.milvus_dense_index, "ef_search": s.hnsw_ef_search}
    return connect(s.milvus_uri, s.milvus_token), collection_prefix(s.milvus_collection, Path(settings.index_dir)), options


def open_index(settings: Settings, embedder: str | None = None, dimension: int | None = None) -> SearchIndex:
    """The live index; refuses one built with another embedder when ``embedder`` is given."""
    if settings.index.backend == "milvus":
        from rag.index.milvus import MilvusIndex

        client, prefix, options = _milvus(settings)
        return MilvusIndex.open(client, prefix, embedder=embedder, dimension=dimension, **options)
    return LocalIndex.open(Path(settings.index_dir), embedder=embedder, dimension=dimension, hnsw=_hnsw(settings))


def empty_index(settings: Settings, manifest: Manifest) -> SearchIndex:
    """A new, empty index that replaces the live one when committed."""
    if settings.index.backend == "milvus":
        from rag.index.milvus import MilvusIndex

        client, prefix, options = _milvus(settings)
        return MilvusIndex.empty(client, prefix, manifest, **options)
    return LocalIndex.empty(Path(settings.index_dir), manifest, _hnsw(settings))


def read_live_manifest(settings: Settings) -> Manifest:
    """The live manifest without loading the index (raises IndexNotFound / IndexIncompatible)."""
    if settings.index.backend == "milvus":
        from rag.index.milvus import read_live

        client, prefix, _ = _milvus(settings)
        return read_live(client, prefix)[0]
    return read_manifest(Path(settings.index_dir))


def live_version(settings: Settings) -> str | None:
    """A name that changes on every commit (the app reloads on a change), or None when there is no index."""
    if settings.index.backend == "milvus":
        from rag.index.milvus import live_name

        client, prefix, _ = _milvus(settings)
        return live_name(client, prefix)
    try:
        return (Path(settings.index_dir) / CURRENT).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


@contextmanager
def index_write_lock(settings: Settings) -> Iterator[None]:
    """One writer at a time.  For Milvus the lock file sits in the index folder, so it serialises
    writers on one machine; with several machines, run ingestion from one (docs/deploy-milvus.md)."""
    with write_lock(Path(settings.index_dir)):
        yield
