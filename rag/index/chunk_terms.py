"""Each chunk's BM25 terms, counted once when its file is added and kept in the index's SQLite file.

BM25's statistics (document count, mean length, document frequencies) change with every
added or removed file; both backends keep them up to date from the counts stored here, and
the local index also builds its segments from them (rag.index.bm25_segments).  Tokenising
costs about 2–3 ms a chunk (minutes at 100,000 chunks), so a chunk is tokenised exactly
once, when :meth:`LocalIndex.add_source` receives it.

Two tables in the version's ``chunks.sqlite``:

- ``terms(id, term)``: the vocabulary.  An id keeps its term for as long as a chunk uses
  it, so the rows a commit copies from the live version stay valid; terms no chunk uses
  any more are deleted at commit (:func:`prune`), which leaves gaps in the ids.
- ``source_terms``: one row per file, since files are added and removed whole: for each of
  its chunks in row order, how many distinct terms it has (``pairs``), then all the chunks'
  term ids and counts back to back (``ids``, ``counts``).  Little-endian int32 arrays:
  plain integers, so loading never executes code (no pickle).  One row per file, not per
  chunk, so reading 10^5 chunks' counts is a few dozen blob reads.  A chunk without any
  token holds the empty token once, as bm25s counts it.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

SCHEMA = """
CREATE TABLE terms (id INTEGER PRIMARY KEY, term TEXT NOT NULL);
CREATE TABLE source_terms (source TEXT PRIMARY KEY, first_row INTEGER NOT NULL,
    pairs BLOB NOT NULL, ids BLOB NOT NULL, counts BLOB NOT NULL);
"""
_INT32 = np.dtype("<i4")


@dataclass
class SourceTerms:
    """One file's chunks' term counts, as stored in ``source_terms``."""

    pairs: np.ndarray  # per chunk: how many (term id, count) pairs
    ids: np.ndarray
    counts: np.ndarray

    def lengths(self) -> np.ndarray:
        """Each chunk's token count (bm25s's document length)."""
        if not len(self.pairs):
            return np.zeros(0, dtype=np.int64)
        starts = np.zeros(len(self.pairs), dtype=np.int64)
        np.cumsum(self.pairs[:-1], out=starts[1:])
        return np.add.reduceat(self.counts, starts).astype(np.int64)

    def row(self, source: str, first_row: int) -> tuple:
        return (source, first_row, self.pairs.astype(_INT32).tobytes(), self.ids.astype(_INT32).tobytes(),
                self.counts.astype(_INT32).tobytes())


class Vocabulary:
    """Term → id for one commit: the live version's terms, then new ones numbered after them."""

    def __init__(self, ids: dict[str, int]):
        self.ids = ids
        self._next = max(ids.values(), default=-1) + 1
        self.first_new = self._next

    def encode(self, chunk_tokens: Iterable[Sequence[str]]) -> SourceTerms:
        """The term counts of a file's chunks, given each chunk's tokens in row order."""
        pairs: list[int] = []
        ids: list[int] = []
        counts: list[int] = []
        for tokens in chunk_tokens:
            counted = Counter(tokens or [""])
            pairs.append(len(counted))
            ids.extend(self._id(t) for t in counted)
            counts.extend(counted.values())
        return SourceTerms(np.array(pairs, dtype=np.int32), np.array(ids, dtype=np.int32), np.array(counts, dtype=np.int32))

    def _id(self, term: str) -> int:
        found = self.ids.get(term)
        if found is None:
            found = self.ids[term] = self._next
            self._next += 1
        return found

    def size(self) -> int:
        """One more than the largest id given out."""
        return self._next

    def write_new(self, db: sqlite3.Connection) -> None:
        """Insert the terms this commit added (the live ones are already in the copied file)."""
        db.executemany(
            "INSERT INTO terms VALUES (?, ?)", ((i, t) for t, i in self.ids.items() if i >= self.first_new)
        )


def read_sources(db: sqlite3.Connection, sources: Sequence[str] | None = None) -> Iterator[SourceTerms]:
    """The given files' counts (default: every file's), in row order.

    One file at a time: at 10^5 chunks all counts together are ~50 M pairs (400 MB), and no
    reader needs them all at once.
    """
    # A file's chunks hold consecutive rows (added together, removed together), so files in
    # order of their first row give the chunks in row order.
    query = "SELECT pairs, ids, counts FROM source_terms"
    if sources is None:
        rows = db.execute(query + " ORDER BY first_row")
    else:
        rows = db.execute(query + f" WHERE source IN ({','.join('?' * len(sources))}) ORDER BY first_row", list(sources))
    for pairs, ids, counts in rows:
        yield SourceTerms(*(np.frombuffer(blob, dtype=_INT32) for blob in (pairs, ids, counts)))


def prune(db: sqlite3.Connection, vocab: Vocabulary, change: np.ndarray, df: np.ndarray) -> None:
    """Delete the terms no chunk uses any more: those whose document frequency ``df`` fell to 0
    by this commit's ``change``, and new ones that only a file removed in the same commit had."""
    new = np.arange(len(df)) >= vocab.first_new
    gone = np.flatnonzero((df == 0) & ((change < 0) | new))
    db.executemany("DELETE FROM terms WHERE id = ?", ((int(i),) for i in gone))
