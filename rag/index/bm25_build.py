"""bm25s's score matrix built from stored term counts, file by file, in numpy.

bm25s builds its matrix with a Python loop per document (a ``Counter`` each): 16 s for
30,000 chunks on the 2-core machine of the README.  The local index rebuilds the matrix on
every commit (idf and the mean length change with every file), so that loop would cost a
minute at 10^5 chunks for each file added.  bm25s documents ``build_index_from_ids`` as the
method to override to build the index another way; this subclass does that, reading the
(term id, count) pairs of :mod:`rag.index.chunk_terms`, and keeps everything else — query
scoring, the weight mask, ``save``/``load`` — bm25s's own.

Two passes over the stored files, one file in memory at a time: the first sums document
frequencies and lengths, the second scores each file's pairs and places them straight into
the column-major arrays bm25s keeps (a counting sort).  So the build holds the result and
one file, not the corpus' counts plus sorted copies of them.

The arithmetic is bm25s's, in the same order and precision (Lucene idf through
:func:`rag.index.bm25_weights.idf`, the Robertson/Lucene term part in float64 as NumPy 2
promotes bm25s's scalar, one rounding to float32), and within a term the documents are in
row order as in bm25s, so the arrays are bitwise the ones bm25s builds from the token
strings: ``tests/test_index.py`` compares the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import bm25s
import numpy as np

from rag.index.bm25_weights import B, K1, idf
from rag.index.chunk_terms import SourceTerms

Sources = Callable[[], Iterator[SourceTerms]]  # each call: every file's counts again, in row order


@dataclass
class CorpusStats:
    df: np.ndarray  # document frequency by term id
    lengths: np.ndarray  # token count per chunk, in row order


def corpus_stats(sources: Sources) -> CorpusStats:
    """The first pass: document frequencies and chunk lengths."""
    df = np.zeros(0, dtype=np.int64)
    lengths = []
    for terms in sources():
        # A chunk holds each of its terms once, so pairs per id = chunks with that term.
        found = np.bincount(terms.ids)
        if len(found) > len(df):
            df = np.pad(df, (0, len(found) - len(df)))
        df[: len(found)] += found
        lengths.append(terms.lengths())
    return CorpusStats(df, np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64))


class _Corpus:
    # bm25s.BM25.index accepts "an object with ids and vocab attributes" and hands ``ids`` to
    # build_index_from_ids untouched.
    def __init__(self, sources: Sources, stats: CorpusStats, vocab: dict[str, int]):
        self.ids = (sources, stats)
        self.vocab = vocab


class StoredCountsBM25(bm25s.BM25):
    """A bm25s index whose build reads stored term counts instead of token lists."""

    def __init__(self):
        super().__init__(k1=K1, b=B, method="lucene", idf_method="lucene")

    def build_index_from_ids(self, unique_token_ids, corpus_token_ids, show_progress=True, leave_progress=False):
        sources, stats = corpus_token_ids
        self.nonoccurrence_array = None  # only BM25L / BM25+ use it
        # Removed terms leave gaps in the ids (rag.index.chunk_terms): their columns stay empty,
        # and no query reaches them, as they are not in the vocabulary.
        n_vocab = max(unique_token_ids) + 1
        df = np.pad(stats.df, (0, n_vocab - len(stats.df)))
        n_docs = len(stats.lengths)
        # idf per distinct document frequency: a few thousand values, in Python's float as bm25s.
        values, where = np.unique(df, return_inverse=True)
        idf_array = np.array([idf(int(v), n_docs) if v else 0.0 for v in values], dtype=np.float32)[where]
        norm = K1 * ((1 - B) + B * stats.lengths / stats.lengths.mean())
        indptr = np.zeros(n_vocab + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        data = np.empty(indptr[-1], dtype=np.float32)
        indices = np.empty(indptr[-1], dtype=np.int32)
        heads = indptr[:-1].copy()  # next free place in each term's column
        first_doc = 0
        for terms in sources():
            docs = np.repeat(np.arange(first_doc, first_doc + len(terms.pairs), dtype=np.int32), terms.pairs)
            first_doc += len(terms.pairs)
            if not len(docs):
                continue
            tf = terms.counts.astype(np.float64)
            scores = idf_array[terms.ids] * (tf / (norm[docs] + tf))
            # Stable by term: within a term this file's documents stay in row order, after
            # those of the files before it.
            order = np.argsort(terms.ids, kind="stable")
            ids = terms.ids[order]
            at = np.arange(len(ids))
            starts = np.r_[True, ids[1:] != ids[:-1]]
            rank = at - np.maximum.accumulate(np.where(starts, at, 0))
            places = heads[ids] + rank
            data[places] = scores[order]
            indices[places] = docs[order]
            heads += np.bincount(terms.ids, minlength=n_vocab)
        return {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}


def build(sources: Sources, stats: CorpusStats, vocab: dict[str, int]) -> bm25s.BM25:
    """The bm25s index of the stored chunks; ``vocab``: the live terms (and "") by id, each id a column."""
    bm25 = StoredCountsBM25()
    bm25.index(_Corpus(sources, stats, vocab), show_progress=False)
    return bm25
