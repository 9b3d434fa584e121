"""The offline answerer: quote the sentences that answer the question, with page markers.

Every candidate sentence is scored by named features and fitted weights
(:mod:`rag.answering.scoring`); when the calibrated confidence that the quote answers is
under the fitted threshold it abstains with :data:`ABSTENTION` and lists the nearest pages
instead, and in the middle band it answers marked 「確度：低」.  The answer itself is cut
from the cited pages (:mod:`rag.answering.composing`): the answerer never writes text of its
own beyond fixed phrases.
"""

from __future__ import annotations

from rag.answering.candidates import PageSource
from rag.answering.composing import ABSTENTION, Composer
from rag.answering.model import AnswerModel, load_model
from rag.answering.scoring import Ranking, Scorer
from rag.config import AnswerSettings
from rag.query import PreparedQuery
from rag.schema import Answer, Hit

__all__ = ["ABSTENTION", "OfflineAnswerer", "PageSource", "Ranking"]


class OfflineAnswerer:
    def __init__(
        self,
        settings: AnswerSettings | None = None,
        embedder=None,
        pages: PageSource | None = None,
        model: AnswerModel | None = None,
    ):
        """``embedder`` (an :class:`rag.embeddings.IndexEmbedder`) adds sentence-level dense similarity,
        which catches paraphrases that share no words with the question.

        ``pages.cover(source)``: a question names the document it is about (「ものづくり補助金の…」);
        that name identifies the document, not the sentence, so every sentence of the document
        counts as having the cover's words.  ``pages.page_text(source, page)`` lets an answer
        read past the end of its chunk: a list's items, a caption, the header of a table row.

        ``model``: the fitted feature weights and calibration (default: the shipped
        ``rag/data/answer_model.json``).
        """
        self.settings = settings or AnswerSettings()
        self.scorer = Scorer(model or load_model(), embedder, pages)
        self.composer = Composer(self.settings, pages)

    @property
    def model(self) -> AnswerModel:
        return self.scorer.model

    def rank(self, question: str | PreparedQuery, hits: list[Hit], query_vector=None) -> Ranking | None:
        """Score every sentence of ``hits`` once, and order the hits by their best sentence
        (:meth:`rag.answering.scoring.Scorer.rank`); the same scores pick the answer."""
        return self.scorer.rank(question, hits, query_vector)

    def rescore(self, ranking: Ranking, model: AnswerModel) -> Ranking:
        """The same candidates scored with other weights (training folds and ablations reuse one ranking)."""
        return self.scorer.rescore(ranking, model)

    def explain(self, ranking: Ranking, n: int = 8) -> list[tuple[str, float]]:
        """The features that decided the best candidate's score, largest effect first."""
        return self.scorer.explain(ranking, n)

    def answer(
        self,
        question: str | PreparedQuery,
        hits: list[Hit],
        titles: dict[str, str] | None = None,
        query_vector=None,
        ranking: Ranking | None = None,
        decline: float | None = None,
    ) -> Answer:
        """``query_vector`` is the question as the retriever embedded it (saves embedding it twice);
        ``ranking``: :meth:`rank` of ``hits``, when the caller has already scored them (the
        answer then lists the hits in its order).  Without one the hits keep the order given.
        ``decline``: the confidence under which to decline, over the settings and the model's
        (training judges every answer with 0, whatever the user configured)."""
        titles = titles or {}
        text = question.text if isinstance(question, PreparedQuery) else question
        if ranking is not None:
            hits = ranking.hits
        ranking = ranking or (self.rank(question, hits, query_vector) if hits else None)
        if ranking is None:
            return self.abstain(text, hits, titles)
        model = ranking.model
        if decline is None:
            decline = self.settings.decline_below if self.settings.decline_below is not None else model.decline_below
        # A question about another edition or variant than the one the document describes (第21次 in
        # the 第20次 公募要領) is unanswerable by construction, however close the dates read: a veto,
        # not a weight (the Q&A has too few such questions to learn it from).
        evidence = ranking.confidence if ranking.evidence is None else ranking.evidence
        if evidence < decline or ranking.feature("other_edition"):
            abstained = self.abstain(text, hits, titles)
            abstained.evidence, abstained.confidence = evidence, ranking.confidence
            return abstained
        answer = self.composer.compose(text, ranking, hits, titles)
        answer.evidence, answer.confidence = evidence, ranking.confidence
        # Marked on the evidence, as declining is: whether the best line answers, not how many
        # further lines happened to complete it.
        answer.low_confidence = evidence < model.low_below
        return answer

    def abstain(self, question: str, hits: list[Hit], titles: dict[str, str]) -> Answer:
        return self.composer.abstain(question, hits, titles)
