"""The local index's BM25: term counts kept in segments, scores computed at query time.

Why not a matrix of precomputed scores (bm25s's eager index, which the local index used
before): every score depends on the corpus' size, mean length and document frequencies, so
each added file changed all of them, and a commit recomputed the whole matrix (about 46 M
entries, ~20 s at 10^5 chunks on the README's 2-core machine).  Here, as in Lucene, the index
keeps only what never changes once a chunk is added, its term counts and its length, and a
query scores its own few terms from the live statistics.  Adding a file then writes that
file's counts and a few small arrays.

A version's ``bm25/`` folder holds:

- ``stats.json``: the segments in row order, each with its files (source, chunk count) in
  row order and which of them are deleted; the live chunk count and summed length.
- ``df.npy``: the live document frequency by term id (rag.index.chunk_terms' ids).
- one folder per segment: ``indptr.npy`` (postings by term id), ``rows.npy`` (each
  posting's row within the segment), ``tf.npy`` and ``lengths.npy`` (by row within the
  segment).  A segment never changes once written, so the next version hard-links it.

A commit writes one segment for the files it adds and marks the files it removes as deleted
in theirs; document frequencies and totals move by those files' stored counts.  When more
than :data:`MAX_SEGMENTS` pile up, the adjacent pair with the fewest live chunks is rebuilt
as one from its live files' stored counts, which also drops deleted rows; a segment holding
more deleted rows than live ones is rebuilt alone.  So a query visits a few segments, and the
rare large merge is paid once, not on every add.

Scores are bm25s's (Lucene idf, k1 = 1.5, b = 0.75, via :mod:`rag.index.bm25_weights`) in
the same order and precision as its eager index: one float32 rounding per term and chunk,
summed in float32 in query order.  So a query scores bitwise as bm25s does on the same chunks;
``tests/test_index.py`` compares the two.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rag.index.bm25_weights import B, K1, idf
from rag.index.chunk_terms import SourceTerms

MAX_SEGMENTS = 8
_STATS = "stats.json"
_DF = "df.npy"
_ARRAYS = ("indptr", "rows", "tf", "lengths")


@dataclass
class SegmentInfo:
    name: str
    files: list[tuple[str, int]]  # (source, chunks), in row order
    deleted: list[str] = field(default_factory=list)

    def live_files(self) -> list[str]:
        return [source for source, _ in self.files if source not in self.deleted]

    def rows(self) -> int:
        return sum(n for _, n in self.files)

    def live_rows(self) -> int:
        return sum(n for source, n in self.files if source not in self.deleted)


@dataclass
class Stats:
    segments: list[SegmentInfo]
    docs: int = 0
    total_length: int = 0

    @classmethod
    def read(cls, folder: Path) -> Stats:
        raw = json.loads((folder / _STATS).read_text(encoding="utf-8"))
        segments = [SegmentInfo(s["name"], [tuple(f) for f in s["files"]], s["deleted"]) for s in raw["segments"]]
        return cls(segments, raw["docs"], raw["total_length"])


class _Segment:
    def __init__(self, folder: Path, info: SegmentInfo, first_row: int):
        # Memory-mapped: a query reads only its terms' postings, and every process that has
        # this version open shares the pages.
        arrays = {name: np.load(folder / info.name / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in _ARRAYS}
        self.indptr, self.rows, self.tf, self.lengths = (arrays[n] for n in _ARRAYS)
        # Row within the segment → row in the version (-1: the file is deleted).
        self.position = np.full(len(self.lengths), -1, dtype=np.int64)
        local = 0
        for source, n in info.files:
            if source not in info.deleted:
                self.position[local : local + n] = np.arange(first_row, first_row + n)
                first_row += n
            local += n
        # Without deletions the rows are one run: a posting's row is its local row plus this.
        self.offset = None if info.deleted else int(self.position[0]) if len(self.position) else 0
        self.live = first_row


class SegmentedBM25:
    """Reads one version's ``bm25/`` folder and scores queries."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.stats = Stats.read(self.folder)
        self.df = np.load(self.folder / _DF, allow_pickle=False)
        self.segments: list[_Segment] = []
        rows = 0
        for info in self.stats.segments:
            segment = _Segment(self.folder, info, rows)
            rows = segment.live
            self.segments.append(segment)
        self.rows = rows
        avgdl = self.stats.total_length / self.stats.docs if self.stats.docs else 1.0
        # The length part of every chunk's score, as bm25s computes it (float64, same order).
        self._norms = [K1 * ((1 - B) + B * np.asarray(s.lengths, dtype=np.int64) / avgdl) for s in self.segments]

    def scores(self, term_ids: Sequence[int]) -> np.ndarray:
        """Every live chunk's BM25 score for the query's term ids (a repeated term counts again)."""
        out = np.zeros(self.rows, dtype=np.float32)
        for term in term_ids:
            if term >= len(self.df) or self.df[term] == 0:
                continue
            weight = np.float32(idf(int(self.df[term]), self.stats.docs))
            for segment, norm in zip(self.segments, self._norms):
                if term + 1 >= len(segment.indptr):
                    continue
                start, end = segment.indptr[term], segment.indptr[term + 1]
                if start == end:
                    continue
                local = segment.rows[start:end]
                tf = segment.tf[start:end].astype(np.float64)
                values = (weight * (tf / (norm[local] + tf))).astype(np.float32)
                if segment.offset is not None:
                    rows = local + segment.offset if segment.offset else local
                else:
                    rows = segment.position[local]
                    keep = rows >= 0
                    rows, values = rows[keep], values[keep]
                np.add.at(out, rows, values)  # unbuffered, and faster than out[rows] += in NumPy 2
        return out


# ---------------------------------------------------------------- writing


def _concat(files: Iterable[SourceTerms]) -> SourceTerms:
    files = list(files)
    if not files:
        empty = np.zeros(0, dtype=np.int32)
        return SourceTerms(empty, empty, empty)
    return SourceTerms(*(np.concatenate([getattr(f, a) for f in files]) for a in ("pairs", "ids", "counts")))


def _write_segment(folder: Path, files: Iterable[SourceTerms]) -> str:
    """One segment from files' stored counts, in row order; returns its name."""
    terms = _concat(files)
    rows = np.repeat(np.arange(len(terms.pairs), dtype=np.int32), terms.pairs)
    # Stable by term: within a term the postings stay in row order, as bm25s keeps them.
    order = np.argsort(terms.ids, kind="stable")
    postings = np.bincount(terms.ids) if len(terms.ids) else np.zeros(0, dtype=np.int64)
    indptr = np.zeros(len(postings) + 1, dtype=np.int64)
    np.cumsum(postings, out=indptr[1:])
    name = f"s-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}"
    (folder / name).mkdir()
    arrays = {"indptr": indptr, "rows": rows[order], "tf": terms.counts[order].astype(np.int32),
              "lengths": terms.lengths().astype(np.int32)}
    for key, array in arrays.items():
        np.save(folder / name / f"{key}.npy", array, allow_pickle=False)
    return name


def _link_segment(source: Path, target: Path) -> None:
    target.mkdir()
    for path in source.iterdir():
        try:
            os.link(path, target / path.name)
        except OSError:  # a file system without hard links
            shutil.copyfile(path, target / path.name)


def _document_frequencies(files: Iterable[SourceTerms], size: int) -> tuple[np.ndarray, int, int]:
    """How many chunks of ``files`` hold each term id, with their chunk count and summed length."""
    df = np.zeros(size, dtype=np.int64)
    docs = length = 0
    for terms in files:
        # A chunk holds each of its terms once, so pairs per id = chunks with that term.
        found = np.bincount(terms.ids, minlength=size)
        df[: len(found)] += found[:size]
        docs += len(terms.pairs)
        length += int(terms.counts.sum())
    return df, docs, length


def write(
    folder: Path,
    base: SegmentedBM25 | None,
    removed: dict[str, SourceTerms],
    added: Sequence[tuple[str, SourceTerms]],
    vocabulary_size: int,
    read_live: Callable[[Sequence[str]], Iterator[SourceTerms]],
) -> tuple[np.ndarray, np.ndarray]:
    """Write the next version's ``bm25/`` into ``folder``; returns how df changed, and df.

    ``removed``: the base's files that leave (each one's stored counts), ``added``: the new
    files in row order, ``vocabulary_size``: one more than the largest term id given out,
    ``read_live``: stored counts of the given sources in the new version, in row order (for
    merges).  The change (negative where a term lost chunks) lets the caller prune terms.
    """
    folder.mkdir()
    if base is not None:
        # Pruned terms at the end of the base's range leave their (zero) df behind; the
        # vocabulary may then give those ids to new terms, so df covers both ranges.
        vocabulary_size = max(vocabulary_size, len(base.df))
    infos = [SegmentInfo(s.name, list(s.files), list(s.deleted)) for s in base.stats.segments] if base else []
    for info in infos:
        info.deleted += [source for source in info.live_files() if source in removed]
    df = np.zeros(vocabulary_size, dtype=np.int64)
    docs = length = 0
    if base is not None:
        df[: len(base.df)] = base.df
        docs, length = base.stats.docs, base.stats.total_length
    gone, gone_docs, gone_length = _document_frequencies(removed.values(), vocabulary_size)
    new, new_docs, new_length = _document_frequencies((t for _, t in added), vocabulary_size)
    change = new - gone
    df += change
    docs += new_docs - gone_docs
    length += new_length - gone_length

    kept = {info.name for info in infos}
    infos = [i for i in infos if i.live_rows()]
    if added:
        infos.append(SegmentInfo(_write_segment(folder, (t for _, t in added)), [(s, len(t.pairs)) for s, t in added]))
    infos = _compact(folder, infos, read_live)
    live = {info.name for info in infos}
    for written in folder.iterdir():  # this commit's own segments that a merge then replaced
        if written.name not in live:
            shutil.rmtree(written)
    for info in infos:
        if info.name in kept:
            _link_segment(base.folder / info.name, folder / info.name)
    np.save(folder / _DF, df, allow_pickle=False)
    stats = Stats(infos, docs, length)
    (folder / _STATS).write_text(json.dumps(asdict(stats), ensure_ascii=False), encoding="utf-8")
    return change, df


def _compact(folder: Path, infos: list[SegmentInfo], read_live) -> list[SegmentInfo]:
    def rebuilt(parts: list[SegmentInfo]) -> SegmentInfo:
        sources = [s for p in parts for s in p.live_files()]
        sizes = dict(f for p in parts for f in p.files if f[0] in sources)
        return SegmentInfo(_write_segment(folder, read_live(sources)), [(s, sizes[s]) for s in sources])

    infos = [rebuilt([i]) if i.rows() - i.live_rows() > i.live_rows() else i for i in infos]
    while len(infos) > MAX_SEGMENTS:
        pair = min(range(len(infos) - 1), key=lambda i: infos[i].live_rows() + infos[i + 1].live_rows())
        infos[pair : pair + 2] = [rebuilt(infos[pair : pair + 2])]
    return infos
