"""The embedded index: FAISS + BM25 segments + SQLite in one folder.

The embedded :class:`LocalIndex` keeps chunks and pages in SQLite, vectors in
FAISS's own file format and BM25's term counts as numpy arrays saved without pickle
(rag.index.bm25_segments), so loading an index never executes code.

On disk an index folder holds ``CURRENT`` (the name of the live version) and
version folders.  A commit builds a new version in a temporary folder, renames
it into place and then replaces ``CURRENT`` atomically, so a crash leaves the
previous index intact and a reader never sees a half-written one.

A commit costs what changed, not the corpus: it copies the live version's SQLite
file and deletes and inserts only the removed and added sources' rows; each chunk's
BM25 term counts were stored when it was added (:mod:`rag.index.chunk_terms`), and
BM25 is scored at query time from segments of those counts, so a commit writes the
added files' segment and hard-links the others; and when nothing was removed, the live
FAISS index is extended rather than rebuilt.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rag.chunking import indexable_text
from rag.index import bm25_segments, chunk_terms
from rag.index.base import (
    FORMAT_VERSION,
    IncompatibleEmbedder,
    IndexError_,
    IndexIncompatible,
    IndexNotFound,
    Manifest,
)
from rag.schema import Chunk, Page, SourceInfo
from rag.tokenize import get_splitter

CURRENT = "CURRENT"
_MANIFEST = "manifest.json"
_CHUNKS = "chunks.sqlite"
_DENSE = "dense.faiss"
_BM25 = "bm25"


# ---------------------------------------------------------------- reading


def read_manifest(index_dir: Path) -> Manifest:
    version_dir = _current_version(index_dir)
    return _load_manifest(version_dir)


def _current_version(index_dir: Path) -> Path:
    pointer = index_dir / CURRENT
    if not pointer.is_file():
        raise IndexNotFound(f"索引がありません（{index_dir}）。`rag ingest` で作成してください")
    version_dir = index_dir / pointer.read_text(encoding="utf-8").strip()
    if not version_dir.is_dir():
        raise IndexNotFound(f"索引が壊れています（{version_dir} がありません）。`rag ingest --rebuild` で作り直してください")
    return version_dir


def _load_manifest(version_dir: Path) -> Manifest:
    try:
        data = json.loads((version_dir / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexIncompatible(f"索引の manifest を読めません（{exc}）。`rag ingest --rebuild` で作り直してください") from None
    if data.get("format_version") != FORMAT_VERSION:
        raise IndexIncompatible(
            f"索引の形式が古いか新しすぎます（形式 {data.get('format_version')}、このバージョンは {FORMAT_VERSION}）。"
            "`rag ingest --rebuild` で作り直してください"
        )
    known = {f for f in Manifest.__dataclass_fields__}
    return Manifest(**{k: v for k, v in data.items() if k in known})


class LocalIndex:
    """FAISS + BM25 segments + SQLite in one folder.  Reads are thread-safe; writes are staged until :meth:`commit`."""

    def __init__(self, index_dir: Path, manifest: Manifest, version_dir: Path | None, settings_hnsw: tuple[int, int, int]):
        self.index_dir = Path(index_dir)
        self.manifest = manifest
        self.version_dir = version_dir
        self._exact_max, self._hnsw_m, self._ef_search = settings_hnsw
        self._lock = threading.Lock()
        self._splitter = get_splitter(manifest.tokenizer)
        self._db: sqlite3.Connection | None = None
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._row_source: np.ndarray = np.zeros(0, dtype=np.int32)
        self._source_names: list[str] = []
        self._bm25: bm25_segments.SegmentedBM25 | None = None
        self._vocab: dict[str, int] = {}
        self._faiss = None
        self._staged: _Staging | None = None
        if version_dir is not None:
            self._load(version_dir)

    # -- construction

    @classmethod
    def open(
        cls,
        index_dir: Path,
        embedder: str | None = None,
        dimension: int | None = None,
        hnsw: tuple[int, int, int] = (50_000, 32, 128),
    ) -> LocalIndex:
        """Open the live version.  Refuses an index built with another embedder when ``embedder`` is given."""
        for attempt in range(2):
            version_dir = _current_version(Path(index_dir))
            manifest = _load_manifest(version_dir)
            if embedder is not None and (manifest.embedder != embedder or (dimension and manifest.dimension != dimension)):
                raise IncompatibleEmbedder(manifest.embedder, manifest.dimension, embedder)
            try:
                return cls(index_dir, manifest, version_dir, hnsw)
            except (OSError, sqlite3.Error, RuntimeError) as exc:
                # A writer may have swapped versions between reading CURRENT and opening the files.
                if attempt == 1:
                    raise IndexIncompatible(
                        f"索引を読み込めません（{type(exc).__name__}: {exc}）。`rag ingest --rebuild` で作り直してください"
                    ) from None
        raise AssertionError("unreachable")

    @classmethod
    def empty(cls, index_dir: Path, manifest: Manifest, hnsw: tuple[int, int, int] = (50_000, 32, 128)) -> LocalIndex:
        """A new, empty index; committing it replaces whatever is live, even with nothing added."""
        index = cls(index_dir, manifest, None, hnsw)
        index._staged = _Staging(base=None, vocab=chunk_terms.Vocabulary({}), sources={})
        return index

    def _load(self, version_dir: Path) -> None:
        import faiss

        db = sqlite3.connect(f"file:{version_dir / _CHUNKS}?mode=ro", uri=True, check_same_thread=False)
        rows = db.execute("SELECT id, source FROM chunks ORDER BY row").fetchall()
        self._db = db
        self._ids = [r[0] for r in rows]
        self._row_of = {cid: i for i, cid in enumerate(self._ids)}
        self._source_names = sorted(self.manifest.sources)
        source_no = {name: i for i, name in enumerate(self._source_names)}
        self._row_source = np.array([source_no.get(r[1], -1) for r in rows], dtype=np.int32)
        if rows:
            self._vocab = dict(db.execute("SELECT term, id FROM terms").fetchall())
            self._bm25 = bm25_segments.SegmentedBM25(version_dir / _BM25)
            if self._bm25.rows != len(rows):
                raise IndexIncompatible("索引の BM25 とチャンク数が一致しません。`rag ingest --rebuild` で作り直してください")
            self._faiss = faiss.read_index(str(version_dir / _DENSE))
            if self._faiss.ntotal != len(rows):
                raise IndexIncompatible("索引のベクトル数とチャンク数が一致しません。`rag ingest --rebuild` で作り直してください")
            if hasattr(self._faiss, "hnsw"):
                self._faiss.hnsw.efSearch = self._ef_search

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def version(self) -> str:
        """The live version's name ("" before the first commit); changes on every commit."""
        return self.version_dir.name if self.version_dir is not None else ""

    # -- reading

    def __len__(self) -> int:
        return len(self._ids)

    def _source_mask(self, sources: Collection[str] | None) -> np.ndarray | None:
        if not sources:
            return None
        wanted = [i for i, name in enumerate(self._source_names) if name in set(sources)]
        return np.isin(self._row_source, wanted)

    def sparse_search(self, query: str, k: int, sources: Collection[str] | None = None) -> list[tuple[str, float]]:
        if self._bm25 is None:
            return []
        terms = [self._vocab[t] for t in self._splitter(query) if t in self._vocab]
        if not terms:
            return []
        scores = self._bm25.scores(terms)
        mask = self._source_mask(sources)
        if mask is not None:
            scores *= mask
        return self._top(scores, k)

    def _top(self, scores: np.ndarray, k: int) -> list[tuple[str, float]]:
        k = min(k, len(scores))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self._ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def dense_search(self, vector: np.ndarray, k: int, sources: Collection[str] | None = None) -> list[tuple[str, float]]:
        import faiss

        if self._faiss is None or self._faiss.ntotal == 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        mask = self._source_mask(sources)
        params = None
        if mask is not None:
            allowed = np.flatnonzero(mask).astype(np.int64)
            if allowed.size == 0:
                return []
            selector = faiss.IDSelectorBatch(allowed)
            params = (
                faiss.SearchParametersHNSW(sel=selector, efSearch=self._ef_search)
                if hasattr(self._faiss, "hnsw")
                else faiss.SearchParameters(sel=selector)
            )
        k = min(k, self._faiss.ntotal)
        with self._lock:
            scores, rows = self._faiss.search(query, k, params=params) if params else self._faiss.search(query, k)
        return [(self._ids[r], float(s)) for s, r in zip(scores[0], rows[0]) if r >= 0]

    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]:
        if not ids or self._db is None:
            return []
        placeholders = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id IN ({placeholders})", list(ids)
            ).fetchall()
        by_id = {r[0]: _chunk(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def get_page(self, source: str, page: int) -> Page | None:
        if self._db is None:
            return None
        with self._lock:
            row = self._db.execute(
                f"SELECT {_PAGE_COLUMNS} FROM pages WHERE source=? AND page=?", (source, page)
            ).fetchone()
        return _page(row) if row else None

    def iter_chunks(self, sources: Collection[str] | None = None) -> Iterator[Chunk]:
        """Every chunk in index order (scheme extraction, baselines)."""
        if self._db is None:
            return
        with self._lock:
            rows = self._db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks ORDER BY row").fetchall()
        for r in rows:
            if not sources or r[1] in sources:
                yield _chunk(r)

    def iter_pages(self, sources: Collection[str] | None = None) -> Iterator[Page]:
        if self._db is None:
            return
        with self._lock:
            rows = self._db.execute(f"SELECT {_PAGE_COLUMNS} FROM pages ORDER BY source, page").fetchall()
        for r in rows:
            if not sources or r[0] in sources:
                yield _page(r)

    # -- writing (staged, then committed atomically)

    def _stage(self) -> _Staging:
        if self._staged is None:
            self._staged = _Staging.from_index(self)
        return self._staged

    def add_source(self, info: SourceInfo, pages: Sequence[Page], chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        stage = self._stage()
        stage.drop(info.source)
        # Tokenised here, once: commits reuse the stored counts (rag.index.chunk_terms).
        terms = stage.vocab.encode(self._splitter(indexable_text(c)) for c in chunks)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(chunks), self.manifest.dimension)
        stage.added[info.source] = _Added(list(pages), list(chunks), vectors, terms)
        stage.sources[info.source] = {
            "sha256": info.sha256,
            "title": info.title,
            "pages": info.pages,
            "chunks": len(chunks),
            "problems": list(info.problems),
        }

    def delete_source(self, source: str) -> None:
        self._stage().drop(source)

    def commit(self) -> None:
        """Write the staged state as a new version and make it live atomically."""
        if self._staged is None:
            return
        stage, self._staged = self._staged, None
        self.index_dir.mkdir(parents=True, exist_ok=True)
        # Names sort by creation time, so "newest" is well defined even within one second.
        name = f"v-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        previous = self.version_dir.name if self.version_dir is not None else None
        tmp = self.index_dir / f".tmp-{name}"
        tmp.mkdir()
        try:
            manifest = Manifest(
                embedder=self.manifest.embedder,
                dimension=self.manifest.dimension,
                tokenizer=self.manifest.tokenizer,
                chunking=self.manifest.chunking,
                built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                sources=dict(sorted(stage.sources.items())),
            )
            manifest.dense_index = self._write_dense(tmp / _DENSE, stage, manifest.chunk_count)
            db = _write_sqlite(tmp / _CHUNKS, stage)
            try:
                self._write_bm25(tmp / _BM25, db, stage)
                db.commit()
            finally:
                db.close()
            (tmp / _MANIFEST).write_text(json.dumps(asdict(manifest), ensure_ascii=False, indent=1), encoding="utf-8")
            _fsync_tree(tmp)
            os.rename(tmp, self.index_dir / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        pointer_tmp = self.index_dir / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
        pointer_tmp.write_text(name, encoding="utf-8")
        with open(pointer_tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(pointer_tmp, self.index_dir / CURRENT)
        _fsync_dir(self.index_dir)
        self.close()
        self.manifest = manifest
        self.version_dir = self.index_dir / name
        self._load(self.version_dir)
        _remove_old_versions(self.index_dir, keep={name, previous} - {None})

    def _write_dense(self, path: Path, stage: _Staging, total: int) -> str:
        import faiss

        dim = self.manifest.dimension
        kind = "hnsw" if total > self._exact_max else "flat"
        base = stage.base
        if base is not None and base._faiss is not None and not stage.dropped and base.manifest.dense_index == kind:
            # Only additions: the live rows keep their places, so the live index (HNSW graph
            # included) is extended instead of rebuilt from every vector.
            index = faiss.clone_index(base._faiss)
        else:
            if kind == "hnsw":
                index = faiss.IndexHNSWFlat(dim, self._hnsw_m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = 80
            else:
                index = faiss.IndexFlatIP(dim)
            if base is not None and len(base):
                index.add(np.ascontiguousarray(base.vectors()[stage.kept_rows()]))
        for added in stage.added.values():
            if len(added.vectors):
                index.add(np.ascontiguousarray(added.vectors))
        faiss.write_index(index, str(path))
        return kind

    def _write_bm25(self, path: Path, db: sqlite3.Connection, stage: _Staging) -> None:
        removed = {}
        base = stage.base
        if base is not None and stage.dropped:
            with base._lock:
                removed = {source: next(chunk_terms.read_sources(base._db, [source])) for source in sorted(stage.dropped)}
        change, df = bm25_segments.write(
            path,
            base._bm25 if base is not None else None,
            removed,
            [(source, added.terms) for source, added in stage.added.items()],
            stage.vocab.size(),
            lambda sources: chunk_terms.read_sources(db, sources),
        )
        chunk_terms.prune(db, stage.vocab, change, df)

    def vectors(self) -> np.ndarray:
        """All stored vectors, row-aligned with the chunks (used to carry unchanged sources into a new version)."""
        if self._faiss is None or self._faiss.ntotal == 0:
            return np.zeros((0, self.manifest.dimension), dtype=np.float32)
        return self._faiss.reconstruct_n(0, self._faiss.ntotal)


@dataclass
class _Added:
    pages: list[Page]
    chunks: list[Chunk]
    vectors: np.ndarray
    terms: chunk_terms.SourceTerms


@dataclass
class _Staging:
    """What the next commit writes: the ``base`` version without ``dropped``, then ``added`` in order."""

    base: LocalIndex | None
    vocab: chunk_terms.Vocabulary
    sources: dict[str, dict]
    dropped: set[str] = field(default_factory=set)
    added: dict[str, _Added] = field(default_factory=dict)

    @classmethod
    def from_index(cls, index: LocalIndex) -> _Staging:
        vocab = chunk_terms.Vocabulary(dict(index._vocab))
        return cls(base=index if index.version_dir is not None else None, vocab=vocab, sources=dict(index.manifest.sources))

    def drop(self, source: str) -> None:
        if source not in self.sources:
            return
        del self.sources[source]
        self.added.pop(source, None)
        if self.base is not None and source in self.base.manifest.sources:
            self.dropped.add(source)

    def kept_rows(self) -> np.ndarray:
        """Which of the base's rows survive, as a mask in row order."""
        gone = [i for i, name in enumerate(self.base._source_names) if name in self.dropped]
        return ~np.isin(self.base._row_source, gone)


_CHUNK_COLUMNS = "id, source, page, heading, text, start, end_, section"
_PAGE_COLUMNS = "source, page, heading, raw_text, text, label, section"


def _dump_section(section: tuple[str, ...]) -> str:
    # A JSON list keeps headings that contain any character, in order.
    return json.dumps(list(section), ensure_ascii=False)


def _chunk(row: Sequence) -> Chunk:
    return Chunk(*row[:7], section=tuple(json.loads(row[7])))


def _page(row: Sequence) -> Page:
    return Page(*row[:6], section=tuple(json.loads(row[6])))


_SCHEMA = """
CREATE TABLE chunks (row INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, source TEXT NOT NULL,
    page INTEGER NOT NULL, heading TEXT NOT NULL, text TEXT NOT NULL, start INTEGER NOT NULL,
    end_ INTEGER NOT NULL, section TEXT NOT NULL);
CREATE TABLE pages (source TEXT NOT NULL, page INTEGER NOT NULL, heading TEXT NOT NULL,
    raw_text TEXT NOT NULL, text TEXT NOT NULL, label TEXT, section TEXT NOT NULL,
    PRIMARY KEY (source, page));
"""


def _write_sqlite(path: Path, stage: _Staging) -> sqlite3.Connection:
    """The new version's SQLite file, left open for the BM25 build (which prunes the vocabulary).

    It starts as a copy of the live file: deleting the removed sources' rows and inserting the
    added ones costs what changed, where rewriting every row cost the corpus.  Rows keep their
    numbers (new ones go after the last); gaps are harmless, as every reader goes by ``ORDER BY
    row`` and the FAISS and BM25 rows are written in that same order.
    """
    if stage.base is not None:
        shutil.copyfile(stage.base.version_dir / _CHUNKS, path)
    db = sqlite3.connect(path)
    try:
        # The file is not live until the folder is renamed into place: no journal needed.
        db.execute("PRAGMA journal_mode=OFF")
        if stage.base is None:
            db.executescript(_SCHEMA + chunk_terms.SCHEMA + "PRAGMA user_version=2;")
        for source in sorted(stage.dropped):
            db.execute("DELETE FROM source_terms WHERE source=?", (source,))
            db.execute("DELETE FROM chunks WHERE source=?", (source,))
            db.execute("DELETE FROM pages WHERE source=?", (source,))
        row = db.execute("SELECT COALESCE(MAX(row), -1) + 1 FROM chunks").fetchone()[0]
        for source, added in stage.added.items():
            rows = range(row, row + len(added.chunks))
            db.executemany(
                "INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    (r, c.id, c.source, c.page, c.heading, c.text, c.start, c.end, _dump_section(c.section))
                    for r, c in zip(rows, added.chunks)
                ),
            )
            db.execute("INSERT INTO source_terms VALUES (?,?,?,?,?)", added.terms.row(source, row))
            db.executemany(
                "INSERT INTO pages VALUES (?,?,?,?,?,?,?)",
                ((p.source, p.page, p.heading, p.raw_text, p.text, p.label, _dump_section(p.section)) for p in added.pages),
            )
            row += len(added.chunks)
        stage.vocab.write_new(db)
        return db
    except BaseException:
        db.close()
        raise


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_old_versions(index_dir: Path, keep: set[str]) -> None:
    # ``keep`` holds the new version and the one it replaced: a reader that read
    # CURRENT a moment ago may still be opening the replaced one.
    for version in index_dir.glob("v-*"):
        if version.is_dir() and version.name not in keep:
            shutil.rmtree(version, ignore_errors=True)
    for leftover in index_dir.glob(".tmp-*"):
        # A build that crashed: never live, safe to remove (writers hold the lock).
        shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def write_lock(index_dir: Path) -> Iterator[None]:
    """One writer at a time per index folder (the app's re-index button and a CLI ingest, say)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexError_(f"別の処理がこの索引を更新中です（{index_dir}）。終わってからもう一度実行してください") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
