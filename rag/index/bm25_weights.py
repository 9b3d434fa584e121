"""BM25's formula, and the same split into a document side and a query side for engines that score sparse vectors by inner product.

Both indexes score as bm25s does (the local one in rag.index.bm25_segments): a chunk d for query tokens q gets

    sum over t in q:  idf(t) * tf(t,d) / (tf(t,d) + k1 * (1 - b + b * len(d) / avgdl))

with Lucene's ``idf(t) = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))`` and k1 = 1.5, b = 0.75
(bm25s's defaults).  The fraction depends only on the chunk and
the corpus' mean length; idf depends on the whole corpus.  So a chunk's sparse vector holds
the fraction per term (:func:`doc_weights`), and the query vector holds ``count * idf`` per
term, computed at search time from the live document frequencies (:func:`query_weights`):
their inner product is the bm25s score, and adding or removing documents changes idf at once
without rewriting any chunk.  The tests compare the scores with bm25s itself.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

K1 = 1.5
B = 0.75


def doc_weights(counts: np.ndarray, lengths: np.ndarray, pairs: np.ndarray, avgdl: float) -> np.ndarray:
    """The document side, tf / (tf + k1 * (1 - b + b * length / avgdl)), for many chunks at once.

    ``counts``: the chunks' term counts back to back (rag.index.chunk_terms); ``pairs``: how many
    each chunk has; ``lengths``: each chunk's token count.  Float64, the same operations as
    Python's floats, so the weights are those a per-term loop would give.
    """
    norm = K1 * (1 - B + B * lengths / avgdl)
    return counts / (counts + np.repeat(norm, pairs))


def idf(df: int, n_docs: int) -> float:
    return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))


def query_weights(tokens: Sequence[str], df: Mapping[str, int], n_docs: int) -> dict[str, float]:
    """The query side: each known token's idf, once per occurrence (bm25s sums a repeated query token twice)."""
    counts = Counter(t for t in tokens if df.get(t, 0) > 0)
    return {term: count * idf(df[term], n_docs) for term, count in counts.items()}
