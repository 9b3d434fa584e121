"""Scoring: every candidate sentence of a question's passages, by named features and fitted weights.

One scoring orders both the passages (a passage is as good as its best sentence) and the
sentences an answer is picked from, so the page listed first is the page the answer cites
first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rag.answering.candidates import Candidate, PageSource, candidates, figure_below
from rag.answering.features import QuestionView, char_bigrams, vector
from rag.answering.model import AnswerModel, logit, margin, sigmoid
from rag.query import Asks, PreparedQuery, prepare, synonym_groups
from rag.schema import Hit
from rag.tokenize import content_words

# Sentences embedded per question, those sharing most words with it: 12 → 24 measured on held-out
# documents (docs/decisions.md); their vectors are kept across questions, so p50 stays under 50 ms.
_DENSE_RERANK = 24
_VECTORS_KEPT = 20_000  # sentence vectors remembered across questions (about 40 MB)
# (cosine of unrelated text, spread up to a clear answer) per embedder; USE measured on eval/qa.jsonl.
_DENSE_CALIBRATION = {"use-multilingual": (0.15, 0.45)}


@dataclass
class Ranking:
    """One scoring of a question's passages: their order, and the sentences an answer is picked from."""

    hits: list[Hit]  # best-answering passage first
    candidates: list[Candidate]  # best first
    view: QuestionView
    confidence: float  # calibrated probability that an answer quoting candidates[0] is right, as shown
    model: AnswerModel  # the weights and thresholds it was scored with
    evidence: float | None = None  # …that candidates[0] answers, declining is decided on it (None: confidence)

    @property
    def terms(self) -> list[str]:
        return self.view.terms

    @property
    def asks(self) -> Asks:
        return self.view.asks

    @property
    def alternatives(self) -> dict[str, set[str]]:
        return self.view.alternatives

    @property
    def weights(self) -> dict[str, float]:
        return self.view.weights

    def feature(self, name: str) -> float:
        """The best candidate's value of feature ``name``."""
        best = self.candidates[0]
        return float(best.row[self.model.column(name)]) if best.row is not None else 0.0


class Scorer:
    def __init__(self, model: AnswerModel, embedder=None, pages: PageSource | None = None):
        """``embedder`` (an :class:`rag.embeddings.IndexEmbedder`) adds sentence-level dense
        similarity, which catches paraphrases that share no words with the question;
        ``pages`` lets a table row be read with its header and a measure with the figure under it."""
        self.model = model
        self.embedder = embedder
        self.pages = pages
        # A sentence's meaning does not change between questions: embed each once.
        self._vectors: dict[str, np.ndarray] = {}

    def rank(self, question: str | PreparedQuery, hits: list[Hit], query_vector=None) -> Ranking | None:
        """Score every sentence of ``hits`` once, and order the hits by their best sentence.

        A chunk is as good as the sentence in it that answers: a contents page or a cover
        matches the words of every question but has no sentence that answers any.  ``None``
        when the question has no topic words or the hits no sentences.
        """
        query = question if isinstance(question, PreparedQuery) else prepare(question)
        terms = list(query.terms)
        found = candidates(hits, self.pages) if terms else []
        if not found:
            return None
        view = QuestionView(query.asks, terms, _alternatives(query.text, terms))
        view.weights = _term_weights(terms, view.alternatives, found)
        seen = frozenset().union(*(c.terms | c.topic | c.context | c.heading_words for c in found))
        view.absent = frozenset(t for t in terms if not view.alternatives[t] & seen)
        view.bigrams = char_bigrams("".join(terms))
        if view.asks.numeric or view.asks.when:
            for c in found:
                c.figure = figure_below(c, self.pages)
        if self.embedder is not None:
            # Embedding every sentence costs more than the rest of a question: the ones that
            # share most words with it are embedded; the others carry dense_missing instead.
            by_words = sorted(
                found,
                key=lambda c: -(view.covered(c.terms | c.topic | c.column) + 0.5 * len(view.bigrams & c.bigrams) / max(1, len(view.bigrams))),
            )
            self._add_dense(query.text, by_words[:_DENSE_RERANK], query_vector)
        self.score(view, found)
        found.sort(key=lambda c: -c.score)
        return _ordered(hits, found, view, self.model)

    def rescore(self, ranking: Ranking, model: AnswerModel) -> Ranking:
        """The same candidates scored with other weights (training folds and ablations reuse one ranking)."""
        found = list(ranking.candidates)
        self.score(ranking.view, found, model)
        found.sort(key=lambda c: -c.score)
        hits = sorted(ranking.hits, key=lambda h: min((c.hit_rank for c in found if c.hit is h), default=len(ranking.hits)))
        return _ordered(hits, found, ranking.view, model)

    def score(self, view: QuestionView, found: list[Candidate], model: AnswerModel | None = None) -> None:
        """Each candidate's feature vector, and its probability under ``model`` (default: this scorer's)."""
        model = model or self.model
        if any(c.row is None for c in found):
            for c in found:
                c.row = np.asarray(vector(view, c, model.names), dtype=np.float64)
        matrix = np.vstack([c.row for c in found])
        logits = model.scores(matrix)
        meaning = [model.column(n) for n in ("dense", "dense_missing")]
        without_meaning = logits - matrix[:, meaning] @ model._w[meaning]
        for c, z, z0 in zip(found, logits, without_meaning):
            c.score = sigmoid(z)
            c.lexical = sigmoid(z0)

    @staticmethod
    def explain(ranking: Ranking, n: int = 8) -> list[tuple[str, float]]:
        """The features that decided the best candidate's score, largest effect first."""
        best = ranking.candidates[0]
        return ranking.model.contributions(best.row)[:n] if best.row is not None else []

    def _add_dense(self, question: str, top: list[Candidate], query_vector=None) -> None:
        if query_vector is None:
            query_vector = self.embedder.embed_query_array(question)
        # A table row means what its header says it means: embedded bare, 「5人以下　750万円」 matches nothing.
        texts = [("\n".join(c.head[-1:]) + "\n" + c.text)[-300:] if c.head else c.text[:300] for c in top]
        # This call's vectors are read from its own dict: another session's thread may clear the
        # shared cache between the update and the read.
        cache = self._vectors
        vectors = {t: cache[t] for t in dict.fromkeys(texts) if t in cache}
        missing = [t for t in dict.fromkeys(texts) if t not in vectors]
        if missing:
            vectors.update(zip(missing, self.embedder.embed_array(missing)))
            if len(cache) > _VECTORS_KEPT:
                cache.clear()
            cache.update((t, vectors[t]) for t in missing)
        sims = np.vstack([vectors[t] for t in texts]) @ np.asarray(query_vector, dtype=np.float32)
        # Where cosines of answering and unrelated sentences fall depends on the model:
        # calibrated for the bundled USE on eval/qa.jsonl; a rough default for others.
        low, span = _DENSE_CALIBRATION.get(self.embedder.name, (0.5, 0.4))
        for c, sim in zip(top, sims):
            c.dense = float(np.clip((sim - low) / span, 0.0, 1.0))


def _ordered(hits: list[Hit], found: list[Candidate], view: QuestionView, model: AnswerModel) -> Ranking:
    """Each passage where its best sentence stands among all sentences; passages with none last."""
    first: dict[str, int] = {}
    for at, c in enumerate(found):
        first.setdefault(c.hit.chunk.id, at)
    order = sorted(range(len(hits)), key=lambda i: (first.get(hits[i].chunk.id, len(found)), i))
    best = found[0]
    lead = margin([c.score for c in found[:2]], model.bias)
    confidence = model.confidence(logit(best.score), lead, best.row)
    evidence = model.evidence(logit(best.score), lead, best.row)
    return Ranking([hits[i] for i in order], found, view, confidence, model, evidence)


def _alternatives(question: str, terms: list[str]) -> dict[str, set[str]]:
    """Each question term with the document-side words that count as the same thing."""
    alts = {t: {t} for t in terms}
    for key, expansions in synonym_groups(question):
        key_lemmas = set(content_words(key))
        expansion_lemmas = {w for e in expansions for w in content_words(e)}
        for t in terms:
            if t in key_lemmas or t in key:
                alts[t] |= expansion_lemmas
    return alts


def _term_weights(terms: list[str], alternatives: dict[str, set[str]], found: list[Candidate]) -> dict[str, float]:
    n = len(found)
    weights: dict[str, float] = {}
    for t in terms:
        # Only a sentence's own words count here.  Counting the title words for every
        # sentence (measured) makes the document's name weightless: three real-PDF answers
        # are lost for one declined unanswerable question.
        df = sum(bool(alternatives[t] & c.terms) for c in found)
        weights[t] = math.log(1 + n / (1 + df))
    return weights
