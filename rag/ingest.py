"""Incremental ingestion: corpus folder → pages → chunks → vectors → committed index.

Only added, changed (by sha256) and removed files are processed.  A file that
fails to load is reported and skipped; if an older version of it was already
indexed, that version stays searchable.  Nothing is written until every file
has been looked at, and the write itself is atomic (see :mod:`rag.index`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rag.chunking import chunk_pages, indexable_text
from rag.config import Settings
from rag.embeddings import IndexEmbedder, load_embedder
from rag.index import IndexIncompatible, IndexNotFound, LocalIndex, Manifest, read_manifest, write_lock
from rag.loaders import DocumentError, iter_corpus, load_document
from rag.schema import SourceInfo


@dataclass
class FileResult:
    source: str
    status: str  # "added" | "updated" | "removed" | "unchanged" | "failed"
    pages: int = 0
    chunks: int = 0
    problems: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    rebuilt: bool = False
    reason: str | None = None  # why a full rebuild happened

    @property
    def changed(self) -> bool:
        return any(f.status in ("added", "updated", "removed") for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]


@dataclass(frozen=True)
class Progress:
    """One progress event: ``done`` of ``total`` files, and the file being worked on."""

    done: int
    total: int
    source: str
    stage: str  # "load" | "embed" | "write"


ProgressFn = Callable[[Progress], None]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Bump when loaders, normalisation or chunking change what they produce, so that
# existing indexes are rebuilt instead of mixing old and new text.
EXTRACTION_VERSION = 2


def _chunking_params(settings: Settings) -> dict:
    return {**settings.chunking.model_dump(), "extraction_version": EXTRACTION_VERSION}


def _wanted_manifest(settings: Settings, embedder_name: str, dimension: int) -> Manifest:
    return Manifest(
        embedder=embedder_name,
        dimension=dimension,
        tokenizer=settings.index.tokenizer,
        chunking=_chunking_params(settings),
    )


def _compatible(existing: Manifest, settings: Settings) -> str | None:
    """Why the existing index cannot be updated in place, or None."""
    if existing.embedder != _configured_embedder_name(settings):
        return f"埋め込みモデルが変わりました（{existing.embedder} → {settings.embedder.model}）"
    if existing.tokenizer != settings.index.tokenizer:
        return f"トークナイザが変わりました（{existing.tokenizer} → {settings.index.tokenizer}）"
    if existing.chunking != _chunking_params(settings):
        return "文書の読み取り・チャンク分割の設定が変わりました"
    return None


def _configured_embedder_name(settings: Settings) -> str:
    model = settings.embedder.model
    return f"local:{Path(model).resolve().name}" if Path(model).exists() else model


def ingest(
    settings: Settings,
    *,
    rebuild: bool = False,
    embedder: IndexEmbedder | None = None,
    progress: ProgressFn | None = None,
) -> IngestReport:
    corpus_dir, index_dir = Path(settings.corpus_dir), Path(settings.index_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"文書フォルダがありません: {corpus_dir}")
    report = IngestReport()
    files = {source: path for path, source in iter_corpus(corpus_dir, settings.ignore_names)}
    hashes = {source: sha256_file(path) for source, path in files.items()}

    existing: Manifest | None = None
    try:
        existing = read_manifest(index_dir)
    except IndexNotFound:
        pass
    except IndexIncompatible as exc:
        report.reason = str(exc)
    if existing is not None and not rebuild:
        report.reason = _compatible(existing, settings)
    full = rebuild or existing is None or report.reason is not None
    report.rebuilt = full and existing is not None
    old_sources = {} if full else existing.sources

    to_load = [s for s in files if full or old_sources.get(s, {}).get("sha256") != hashes[s]]
    removed = [s for s in old_sources if s not in files]
    for source in sorted(files):
        if source not in to_load:
            info = old_sources[source]
            report.files.append(FileResult(source, "unchanged", info["pages"], info["chunks"], info.get("problems", [])))
    if not to_load and not removed and not full:
        return report  # nothing to do, and no model was loaded to find that out

    with write_lock(index_dir):
        embedder = embedder or load_embedder(settings.embedder)
        hnsw = (settings.index.exact_search_max_chunks, settings.index.hnsw_m, settings.index.hnsw_ef_search)
        wanted = _wanted_manifest(settings, embedder.name, embedder.dimension)
        index = LocalIndex.empty(index_dir, wanted, hnsw) if full else LocalIndex.open(index_dir, hnsw=hnsw)
        for source in removed:
            index.delete_source(source)
            report.files.append(FileResult(source, "removed"))
        for n, source in enumerate(sorted(to_load)):
            if progress:
                progress(Progress(n, len(to_load), source, "load"))
            status = "updated" if source in old_sources else "added"
            try:
                doc = load_document(files[source], source)
            except DocumentError as exc:
                report.files.append(FileResult(source, "failed", error=str(exc)))
                if full and existing is not None and source in existing.sources:
                    # A full rebuild must not silently drop a file that was searchable before.
                    report.files[-1].error += "（以前の索引では検索できましたが、作り直した索引には含まれません）"
                continue
            chunks = chunk_pages(doc.pages, settings.chunking)
            if progress:
                progress(Progress(n, len(to_load), source, "embed"))
            vectors = embedder.embed_array([indexable_text(c) for c in chunks])
            info = SourceInfo(source, hashes[source], doc.title, doc.page_count, len(chunks), tuple(doc.problems))
            index.add_source(info, doc.pages, chunks, vectors)
            report.files.append(FileResult(source, status, doc.page_count, len(chunks), list(doc.problems)))
        if progress:
            progress(Progress(len(to_load), len(to_load), "", "write"))
        if full or report.changed:
            index.commit()
        index.close()
    report.files.sort(key=lambda f: f.source)
    return report
