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
from rag.embeddings import IndexEmbedder, embedder_id, load_embedder
from rag.index import IndexIncompatible, IndexNotFound, Manifest
from rag.index.backend import empty_index, index_write_lock, open_index, read_live_manifest
from rag.loaders import DocumentError, iter_corpus, load_document
from rag.ocr import PageOcr
from rag.schema import SourceInfo


@dataclass
class FileResult:
    source: str
    status: str  # "added" | "updated" | "removed" | "unchanged" | "failed"
    pages: int = 0
    chunks: int = 0
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    ocr_pages: dict[int, float | None] = field(default_factory=dict)  # pages read by OCR in this run → confidence


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    rebuilt: bool = False
    reason: str | None = None  # why a full rebuild happened

    @property
    def changed(self) -> bool:
        return any(f.status in ("added", "updated", "removed") for f in self.files)

    @property
    def rebuilt_because(self) -> str | None:
        """Why the index was rebuilt; None when it was not (also when a rebuild was abandoned)."""
        return self.reason if self.rebuilt else None

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]


@dataclass(frozen=True)
class Progress:
    """One progress event: ``done`` of ``total`` files, and the file being worked on."""

    done: int
    total: int
    source: str
    stage: str  # "load" | "ocr" | "embed" | "write"


ProgressFn = Callable[[Progress], None]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Bump when loaders, normalisation, chunking or tokenisation change what they produce, so that
# existing indexes are rebuilt instead of mixing old and new text.
EXTRACTION_VERSION = 7


def _chunking_params(settings: Settings) -> dict:
    return {**settings.chunking.model_dump(), "extraction_version": EXTRACTION_VERSION}


def _wanted_manifest(settings: Settings, embedder_name: str, dimension: int) -> Manifest:
    return Manifest(
        embedder=embedder_name,
        dimension=dimension,
        tokenizer=settings.index.tokenizer,
        chunking=_chunking_params(settings),
    )


def _compatible(existing: Manifest, settings: Settings, embedder_name: str) -> str | None:
    """Why the existing index cannot be updated in place, or None."""
    if existing.embedder != embedder_name:
        return f"埋め込みモデルが変わりました（{existing.embedder} → {embedder_name}）"
    if existing.tokenizer != settings.index.tokenizer:
        return f"トークナイザが変わりました（{existing.tokenizer} → {settings.index.tokenizer}）"
    if existing.chunking != _chunking_params(settings):
        return "文書の読み取り・チャンク分割の設定が変わりました"
    return None


@dataclass
class _Plan:
    existing: Manifest | None
    full: bool
    reason: str | None
    to_load: list[str]
    removed: list[str]

    @property
    def old_sources(self) -> dict[str, dict]:
        return {} if self.full or self.existing is None else self.existing.sources

    @property
    def idle(self) -> bool:
        return not self.full and not self.to_load and not self.removed


def _plan(settings: Settings, embedder_name: str, hashes: dict[str, str], rebuild: bool) -> _Plan:
    existing: Manifest | None = None
    reason = None
    try:
        existing = read_live_manifest(settings)
    except IndexNotFound:
        pass
    except IndexIncompatible as exc:
        reason = str(exc)
    if existing is not None and not rebuild:
        reason = _compatible(existing, settings, embedder_name)
    full = rebuild or existing is None or reason is not None
    old = {} if full else existing.sources
    to_load = sorted(s for s in hashes if full or old.get(s, {}).get("sha256") != hashes[s])
    removed = sorted(s for s in old if s not in hashes)
    return _Plan(existing, full, reason, to_load, removed)


def ingest(
    settings: Settings,
    *,
    rebuild: bool = False,
    embedder: IndexEmbedder | None = None,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Bring the index at ``settings.index_dir`` up to date with ``settings.corpus_dir``.

    ``embedder`` overrides the configured model (tests, benchmarks); its name is what
    the index records and is checked against.
    """
    corpus_dir = Path(settings.corpus_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"文書フォルダがありません: {corpus_dir}")
    files = {source: path for path, source in iter_corpus(corpus_dir, settings.ignore_names)}
    hashes = {source: sha256_file(path) for source, path in files.items()}
    embedder_name = embedder.name if embedder is not None else embedder_id(settings.embedder.model)

    # A first look without the lock and without loading a model: an unchanged corpus returns at once.
    plan = _plan(settings, embedder_name, hashes, rebuild)
    if not plan.idle:
        with index_write_lock(settings):
            # Look again under the lock: another writer may have finished in between.
            plan = _plan(settings, embedder_name, hashes, rebuild)
            if not plan.idle:
                report = _apply(plan, settings, files, hashes, embedder, progress)
                report.files.sort(key=lambda f: f.source)
                return report
    return IngestReport(files=_unchanged(plan, files))


def _page_ocr(settings: Settings, progress: ProgressFn | None, n: int, total: int, source: str) -> PageOcr | None:
    """OCR for the file's pages without a text layer, reporting pages done as "ocr" progress."""
    if not settings.ocr.enabled:
        return None

    def on_page(done: int, pages: int) -> None:
        if progress:
            progress(Progress(n, total, f"{source}（OCR {done}/{pages}ページ）", "ocr"))

    return PageOcr(settings.ocr, settings.ocr_cache_file, on_page)


def _unchanged(plan: _Plan, files: dict[str, Path]) -> list[FileResult]:
    """The files the plan leaves as they are, as the index describes them."""
    return [
        FileResult(source, "unchanged", info["pages"], info["chunks"], info.get("problems", []))
        for source in sorted(files)
        if source not in plan.to_load
        for info in [plan.old_sources[source]]
    ]


def _apply(
    plan: _Plan,
    settings: Settings,
    files: dict[str, Path],
    hashes: dict[str, str],
    embedder: IndexEmbedder | None,
    progress: ProgressFn | None,
) -> IngestReport:
    report = IngestReport(files=_unchanged(plan, files), rebuilt=plan.full and plan.existing is not None, reason=plan.reason)
    old_sources = plan.old_sources
    embedder = embedder or load_embedder(settings.embedder)
    if plan.full:
        index = empty_index(settings, _wanted_manifest(settings, embedder.name, embedder.dimension))
    else:
        index = open_index(settings, embedder=embedder.name, dimension=embedder.dimension)
    for source in plan.removed:
        index.delete_source(source)
        report.files.append(FileResult(source, "removed"))
    for n, source in enumerate(plan.to_load):
        if progress:
            progress(Progress(n, len(plan.to_load), source, "load"))
        status = "updated" if source in old_sources else "added"
        try:
            doc = load_document(files[source], source, _page_ocr(settings, progress, n, len(plan.to_load), source), hashes[source])
        except DocumentError as exc:
            report.files.append(FileResult(source, "failed", error=str(exc)))
            continue
        chunks = chunk_pages(doc.pages, settings.chunking)
        if progress:
            progress(Progress(n, len(plan.to_load), source, "embed"))
        vectors = embedder.embed_array([indexable_text(c) for c in chunks])
        info = SourceInfo(source, hashes[source], doc.title, doc.page_count, len(chunks), tuple(doc.problems))
        index.add_source(info, doc.pages, chunks, vectors)
        report.files.append(FileResult(source, status, doc.page_count, len(chunks), list(doc.problems), ocr_pages={p: doc.ocr_confidence.get(p) for p in doc.ocr_pages}))
    if progress:
        progress(Progress(len(plan.to_load), len(plan.to_load), "", "write"))
    previously = set(plan.existing.sources) if plan.existing is not None else set()
    lost = [f for f in report.failed if f.source in previously]
    if plan.full and lost:
        # A rebuild would drop files that are searchable now: keep the live index instead.
        for f in lost:
            f.error += "（作り直しを中止しました。以前の索引のまま検索できます。ファイルを直してから再実行してください）"
        report.rebuilt = False
        index.close()
        return report
    if plan.full or report.changed:
        index.commit()
    index.close()
    return report
