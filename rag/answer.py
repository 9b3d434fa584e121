"""The offline answerer: quote the sentences that answer the question, with page markers.

It never writes text of its own beyond fixed phrases: every sentence of an
answer is cut from a cited page.  Each candidate sentence is scored by named
features and fitted weights (:mod:`rag.answering`); when the calibrated confidence
that the quote answers is under the fitted threshold it abstains with
:data:`ABSTENTION` and lists the nearest pages instead, and in the middle band it
answers marked 「確度：低」.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag import page_context as pc
from rag.answering.features import LEAD_IN_ENDS, QuestionView, char_bigrams, vector
from rag.answering.features import words as _words
from rag.answering.model import AnswerModel, load_model, logit, margin, sigmoid
from rag.config import AnswerSettings
from rag.patterns import DATE as _DATE
from rag.patterns import NUMBER as _NUMBER
from rag.query import Asks, PreparedQuery, prepare, synonym_groups, topic_words
from rag.retrieve import is_contents
from rag.schema import Answer, Chunk, Citation, Hit
from rag.tokenize import content_words

#: The one phrase used whenever the documents do not answer (tests and the LLM prompt use it too).
ABSTENTION = "資料中に該当する記載が見つかりませんでした。"

_ANAPHORA = re.compile(
    r"(?:この|その|これらの?|それらの?|こうした|同)(?:場合|際|ため|うち|ほか|他|結果|上で|中で|事業|制度|取組)"
    # 「特に10万円を超える支払いは…」 narrows the rule stated just before it;
    # 「これは、国道40号…によるもの」 explains it.
    r"|(?:特に|ただし|但し|これは|これが)"
)
_MAX_SENTENCE_CHARS = 130
# A second or third quote this long is a flattened table or run-on slide line: it crowds out a clean one.
_SECONDARY_MAX_CHARS = 150
# Rows of one table the question matches by the same words, and scores this close before
# the dense step, are equally its answer (rows of one table differ only in their figures).
_ROW_TIE = 0.01
# Steps of a flow this short (「⑥ 交付決定　P.11」) may run past six lines of an answer.
_SHORT_ITEM = 30
# A runner-up is quoted beside the best sentence when its probability is at least this share of the best one.
_SUPPORT_SHARE = 0.3
# Sentences embedded per question, those sharing most words with it: 12 → 24 measured on held-out
# documents (docs/decisions.md); their vectors are kept across questions, so p50 stays under 50 ms.
_DENSE_RERANK = 24
_VECTORS_KEPT = 20_000  # sentence vectors remembered across questions (about 40 MB)
# (cosine of unrelated text, spread up to a clear answer) per embedder; USE measured on eval/qa.jsonl.
_DENSE_CALIBRATION = {"use-multilingual": (0.15, 0.45)}


@dataclass
class _Candidate:
    hit_rank: int
    hit: Hit
    text: str  # the sentence as it stands in the page
    terms: frozenset[str] = frozenset()
    # Words of the document's title and cover: what every sentence of it is about.
    topic: frozenset[str] = frozenset()
    # A table row's caption and header rows: 「5人以下　750万円」 is about 補助上限額.
    head: tuple[str, ...] = ()
    header: bool = False  # the header row of a table (「基本要件の種類　基準値　達成する時点」)
    bigrams: frozenset[str] = frozenset()
    # Words of the row's header rows (as good as its own) and of the caption over them (as a heading).
    column: frozenset[str] = frozenset()
    caption: frozenset[str] = frozenset()
    cover: str = ""  # the document's title block (an edition or variant is named there)
    heading_words: frozenset[str] = frozenset()  # words of the passage's heading and section path
    score: float = 0.0  # the model's probability that this sentence holds the answer
    lexical: float = 0.0  # the same without sentence meaning (rows of one table are compared by it)
    figure: str = ""  # the line under it that carries its number (pc.figure_below), for a question about one
    dense: float | None = None  # scaled cosine with the question; None when not embedded
    row: np.ndarray | None = None  # the feature vector the score came from

    def __post_init__(self) -> None:
        if self.head:
            # Header rows, and the question a slide's table answers (「補助率・補助上限額は？」),
            # say what the cells are; a label over them (「未達成の場合返還義務あり」) only where they are.
            says = [pc.CELL_SEPARATOR in line or line.endswith(pc.ASKS_ABOVE) for line in self.head]
            self.column = _words("\n".join(line for line, s in zip(self.head, says) if s))
            self.caption = _words("\n".join(line for line, s in zip(self.head, says) if not s))

    @property
    def context(self) -> frozenset[str]:
        return self.column | self.caption

    @property
    def page(self) -> int:
        return self.hit.chunk.page

    @property
    def passage(self) -> str:
        return self.hit.chunk.text

    @property
    def contents(self) -> bool:
        return _contents(self.hit.chunk.text)

    def neighbour(self, text: str) -> _Candidate:
        """A line read around this one on its page, quoted under the same citation."""
        return _Candidate(self.hit_rank, self.hit, text, topic=self.topic)


@dataclass
class Ranking:
    """One scoring of a question's passages: their order, and the sentences an answer is picked from."""

    hits: list[Hit]  # best-answering passage first
    candidates: list[_Candidate]  # best first
    view: QuestionView
    confidence: float  # calibrated probability that an answer quoting candidates[0] is right
    model: AnswerModel  # the weights and thresholds it was scored with

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


def _trim(sentence: str, terms: list[str], budget: int, focus: list[re.Pattern] = ()) -> str:
    """Cut an over-long sentence to the window that holds most question terms (marked with …).

    ``focus`` patterns (the place or amount the question asks for) weigh more than terms:
    a window with the question's words but not its answer is no answer.
    """
    if len(sentence) <= budget:
        return sentence
    marks = [(p, p + len(t), 1.0) for t in terms for p in [sentence.find(t)] if p >= 0]
    marks += [(m.start(), m.end(), 10.0) for f in focus for m in f.finditer(sentence)]
    best_start, best_weight = 0, -1.0
    for start in range(0, len(sentence) - budget + 1, 2):
        weight = sum(w for a, b, w in marks if start <= a and b <= start + budget)
        if weight > best_weight:
            best_start, best_weight = start, weight
    window = sentence[best_start : best_start + budget]
    return ("…" if best_start > 0 else "") + window + ("…" if best_start + budget < len(sentence) else "")


class PageSource(Protocol):
    """Where the answerer reads past its passages: a page's whole text and a document's cover."""

    def page_text(self, source: str, page: int) -> str | None: ...

    def cover(self, source: str) -> str:
        """A document's title and the title block of its first page."""
        ...


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
        self.embedder = embedder
        self.pages = pages
        self.model = model or load_model()
        # A sentence's meaning does not change between questions: embed each once.
        self._vectors: dict[str, np.ndarray] = {}

    def cover(self, source: str) -> str:
        return self.pages.cover(source) if self.pages else ""

    def rank(self, question: str | PreparedQuery, hits: list[Hit], query_vector=None) -> Ranking | None:
        """Score every sentence of ``hits`` once, and order the hits by their best sentence.

        A chunk is as good as the sentence in it that answers: a contents page or a cover
        matches the words of every question but has no sentence that answers any.  The
        same scores pick the answer (:meth:`answer`), so the page listed first is the page
        the answer cites first.  ``None`` when the question has no topic words or the hits
        no sentences.
        """
        query = question if isinstance(question, PreparedQuery) else prepare(question)
        terms = list(query.terms)
        candidates = self._candidates(hits) if terms else []
        if not candidates:
            return None
        view = QuestionView(query.asks, terms, self._alternatives(query.text, terms))
        view.weights = self._term_weights(terms, view.alternatives, candidates)
        view.bigrams = char_bigrams("".join(terms))
        if view.asks.numeric or view.asks.when:
            for c in candidates:
                c.figure = self._figure_below(c)
        if self.embedder is not None:
            # Embedding every sentence costs more than the rest of a question: the ones that
            # share most words with it are embedded; the others carry dense_missing instead.
            by_words = sorted(candidates, key=lambda c: -(view.covered(c.terms | c.topic | c.column) + 0.5 * len(view.bigrams & c.bigrams) / max(1, len(view.bigrams))))
            self._add_dense(query.text, by_words[:_DENSE_RERANK], query_vector)
        self.score(view, candidates)
        candidates.sort(key=lambda c: -c.score)
        return self._ordered(hits, candidates, view, self.model)

    def rescore(self, ranking: Ranking, model: AnswerModel) -> Ranking:
        """The same candidates scored with other weights (training folds and ablations reuse one ranking)."""
        candidates = list(ranking.candidates)
        self.score(ranking.view, candidates, model)
        candidates.sort(key=lambda c: -c.score)
        hits = sorted(ranking.hits, key=lambda h: min((c.hit_rank for c in candidates if c.hit is h), default=len(ranking.hits)))
        return self._ordered(hits, candidates, ranking.view, model)

    @staticmethod
    def _ordered(hits: list[Hit], candidates: list[_Candidate], view: QuestionView, model: AnswerModel) -> Ranking:
        """Each passage where its best sentence stands among all sentences; passages with none last."""
        first: dict[str, int] = {}
        for at, c in enumerate(candidates):
            first.setdefault(c.hit.chunk.id, at)
        order = sorted(range(len(hits)), key=lambda i: (first.get(hits[i].chunk.id, len(candidates)), i))
        best = candidates[0]
        lead = margin([c.score for c in candidates[:2]], model.bias)
        confidence = model.confidence(logit(best.score), lead, best.row)
        return Ranking([hits[i] for i in order], candidates, view, confidence, model)

    def score(self, view: QuestionView, candidates: list[_Candidate], model: AnswerModel | None = None) -> None:
        """Each candidate's feature vector, and its probability under ``model`` (default: this answerer's)."""
        model = model or self.model
        if any(c.row is None for c in candidates):
            for c in candidates:
                c.row = np.asarray(vector(view, c, model.names), dtype=np.float64)
        matrix = np.vstack([c.row for c in candidates])
        logits = model.scores(matrix)
        meaning = [model.column(n) for n in ("dense", "dense_missing")]
        without_meaning = logits - matrix[:, meaning] @ model._w[meaning]
        for c, z, z0 in zip(candidates, logits, without_meaning):
            c.score = sigmoid(z)
            c.lexical = sigmoid(z0)

    def explain(self, ranking: Ranking, n: int = 8) -> list[tuple[str, float]]:
        """The features that decided the best candidate's score, largest effect first."""
        best = ranking.candidates[0]
        return ranking.model.contributions(best.row)[:n] if best.row is not None else []

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
        candidates, terms, asks = ranking.candidates, ranking.terms, ranking.asks
        alternatives, weights = ranking.alternatives, ranking.weights
        best = candidates[0]
        model = ranking.model
        if decline is None:
            decline = self.settings.decline_below if self.settings.decline_below is not None else model.decline_below
        # A question about another edition or variant than the one the document describes (第21次 in
        # the 第20次 公募要領) is unanswerable by construction, however close the dates read: a veto,
        # not a weight (the Q&A has too few such questions to learn it from).
        if ranking.confidence < decline or _feature(best, model, "other_edition"):
            abstained = self.abstain(text, hits, titles)
            abstained.evidence = abstained.confidence = ranking.confidence
            return abstained
        chosen = self._read_around(best, asks)
        if best.head and not asks.list:
            chosen = _with_tied_rows(chosen, best, candidates, weights, alternatives)
        self._add_support(chosen, best, candidates, alternatives, weights, asks)
        if asks.list:
            chosen = self._with_rows_under_headers(chosen)
        answer = self._compose(text, chosen, hits, titles, terms, asks.focus())
        answer.evidence = answer.confidence = ranking.confidence
        answer.low_confidence = ranking.confidence < model.low_below
        return answer

    def _candidates(self, hits: list[Hit]) -> list[_Candidate]:
        seen: set[str] = set()
        out: list[_Candidate] = []
        for rank, hit in enumerate(hits):
            cover = self.cover(hit.chunk.source)
            topic = topic_words(cover) if cover else frozenset()
            heading = _words(hit.chunk.heading + "\n" + "\n".join(getattr(hit.chunk, "section", ())))
            heads = _table_context(self._page(hit.chunk)) if pc.CELL_SEPARATOR in hit.chunk.text else {}
            headers = {head[-1] for head in heads.values()}
            previous = None
            for sentence in pc.sentences(hit.chunk.text):
                text = sentence
                if previous and _ANAPHORA.match(sentence) and f"{previous}{sentence}" in hit.chunk.text:
                    # "この場合、月4.2万円まで無償。" means nothing without the sentence it refers to,
                    # and quoted alone it loses the rule it narrows ("原則銀行振込。特に…").
                    text = f"{previous}{sentence}"
                previous = sentence
                if text in seen:
                    continue
                seen.add(text)
                out.append(
                    _Candidate(
                        rank,
                        hit,
                        text,
                        _words(text),
                        topic,
                        head=heads.get(text, ()),
                        header=text in headers,
                        bigrams=char_bigrams(text),
                        cover=cover,
                        heading_words=heading,
                    )
                )
        return out

    def _figure_below(self, c: _Candidate) -> str:
        chunk = c.hit.chunk
        text = self._page(chunk)
        lines, at = pc.locate(text, c.text, chunk.start if text is not chunk.text else 0)
        return pc.figure_below(lines, at, c.text) or ""

    def _page(self, chunk: Chunk) -> str:
        return (self.pages.page_text(chunk.source, chunk.page) if self.pages else None) or chunk.text

    def _read_around(self, best: _Candidate, asks: Asks) -> list[_Candidate]:
        """``best`` with what stands around it on its page and belongs to the answer."""
        chunk = best.hit.chunk
        text = self._page(chunk)
        near = chunk.start if text is not chunk.text else 0
        lines, at = pc.locate(text, best.text, near)
        budget = self.settings.max_chars + 60
        chosen = [best]
        if _ANAPHORA.match(best.text):
            # 「特に10万円を超える支払いは…」 quoted alone (its rule is on the line above, or in
            # the chunk before) loses what it narrows: quote that first.
            before = pc.sentence_before(text, best.text, near)
            if before:
                chosen = [best.neighbour(before), best]
        above = pc.place_caption(lines, at) if asks.places or asks.place else []
        named_caption = bool(above) and any(p in above[0] for p in asks.places)
        if named_caption and not any(p in best.text for p in asks.places):
            # "北海道更別村では誰が…？" answered by a box's description: the box is captioned with the place.
            chosen = [best.neighbour(line) for line in above] + chosen
        elif asks.place and not pc.PLACE.search(best.text):
            # "どこ？" answered by an example's description: its place is in the caption above it,
            # or in the examples listed under it.
            chosen = [best.neighbour(line) for line in above] + chosen
            if not above:
                for line in pc.places_below(lines, at):
                    if _length(chosen) + len(line) > budget:
                        break
                    chosen.append(best.neighbour(line))
        head = best.head
        rows: list[str] = []
        if best.header and asks.list:
            # 「基本要件を挙げて」 answered by the header of the table of 基本要件: its rows.
            rows = [row for row, h in _table_context(text).items() if h[-1] == best.text]
        elif head:
            # A row quoted without its column header is a pair of bare figures.
            chosen = [best.neighbour(head[-1])] + chosen
            if asks.list:
                # "従業員規模ごとの補助上限額は？": every row under the same header.
                rows = [row for row, h in _table_context(text).items() if h == head and row != best.text]
        for row in rows:
            if _length(chosen) + len(row) > budget:
                break
            chosen.append(best.neighbour(row))
        figure = best.figure
        # A dateless measure answers 「いつ」 only with the dated line under it (its features read
        # that line): quote it even past the budget (_compose trims each line to a quote's length).
        dates_it = asks.when and not _DATE.search(best.text)
        if figure and (_length(chosen) + len(figure) <= budget or dates_it):
            chosen.append(best.neighbour(figure))
        items: list[str] = []
        in_table = bool(head) or best.header  # its rows are read above; the lines under a table are not its items
        leads_in = best.text.rstrip().endswith(LEAD_IN_ENDS)
        if (asks.list or leads_in) and not in_table and pc.introduces_list(lines, at, best.text):
            items = pc.list_items(lines, at, best.text)
        if not items and not in_table and leads_in:
            # 「…は次のとおりとする。」, 「下記までご連絡ください。」: the fact is in the lines under it.
            items = pc.sentences_after(text, best.text, near=near)
        if not items and not in_table and pc.is_label(best.text) and not (asks.numeric and _NUMBER.search(best.text)):
            # A heading that echoes the question says where the answer is, not what it is: read on.
            items = pc.sentences_after(text, best.text, near=near)
        for item in items:
            # Six lines, or more when they are short steps: a flow of twelve steps is one answer.
            if _length(chosen) + len(item) > budget or len(chosen) >= (6 if len(item) > _SHORT_ITEM else 16):
                break
            chosen.append(best.neighbour(item))
        if not items:
            # The sentence after the quote is read with it when it fits: 「これは、国道40号…」 explains
            # 「…昭和45年には人口が大きく減少しています。」, and a fact split over two sentences or two
            # lines (a scheme and its condition) is answered by both.  Measured on held-out documents:
            # accuracy 0.538 → 0.546 (docs/decisions.md).  Not a heading: that starts another topic.
            after = pc.sentences_after(text, best.text, n=1, near=near)
            if after and not pc.is_label(after[0]) and _length(chosen) + len(after[0]) <= budget:
                chosen.append(best.neighbour(after[0]))
        # Lines read from several directions can meet: quote each once.
        seen: set[str] = set()
        return [c for c in chosen if not (c.text in seen or seen.add(c.text))]

    def _with_rows_under_headers(self, chosen: list[_Candidate]) -> list[_Candidate]:
        """A table's header row quoted for a list question brings the rows under it (「基本要件を挙げて」)."""
        out: list[_Candidate] = []
        budget = self.settings.max_chars + 60
        for c in chosen:
            out.append(c)
            if not c.header or c is chosen[0]:
                continue  # the best line's own rows are read in _read_around
            for row, head in _table_context(self._page(c.hit.chunk)).items():
                if head[-1] == c.text and all(row != x.text for x in chosen) and _length(out) + len(row) <= budget:
                    out.append(c.neighbour(row))
        return out

    def _add_support(
        self,
        chosen: list[_Candidate],
        best: _Candidate,
        candidates: list[_Candidate],
        alternatives: dict[str, set[str]],
        weights: dict[str, float],
        asks: Asks,
    ) -> None:
        """Add the runners-up that say something ``chosen`` does not, or come from another page."""
        covered_terms = set(best.terms)
        used = _length(chosen)
        for c in candidates[1:]:
            if any(c.text in x.text or x.text in c.text for x in chosen):
                continue
            other_page = all((c.hit.chunk.source, c.hit.chunk.page) != (x.hit.chunk.source, x.hit.chunk.page) for x in chosen)
            # "宮城県石巻市は…どのような取組？": another page about the same place is part of the answer.
            same_place_elsewhere = bool(asks.places) and other_page and any(p in c.text for p in asks.places)
            if len(chosen) >= self.settings.max_sentences + same_place_elsewhere:
                continue
            if c.score < (0.6 if same_place_elsewhere else _SUPPORT_SHARE) * best.score or len(c.text) > _SECONDARY_MAX_CHARS:
                continue
            adds_terms = any(alternatives[t] & c.terms and not alternatives[t] & covered_terms for t in weights)
            # "どんな場合？": the next item of the list the best one stands in is another case.
            next_item = asks.list and any(_follows(c, x) for x in chosen)
            if not (adds_terms or other_page or next_item):
                continue
            if used + min(len(c.text), _MAX_SENTENCE_CHARS) > self.settings.max_chars:
                continue
            chosen.append(c)
            covered_terms |= c.terms
            used += min(len(c.text), _MAX_SENTENCE_CHARS)

    def _add_dense(self, question: str, top: list[_Candidate], query_vector=None) -> None:
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

    @staticmethod
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

    @staticmethod
    def _term_weights(terms: list[str], alternatives: dict[str, set[str]], candidates: list[_Candidate]) -> dict[str, float]:
        n = len(candidates)
        weights: dict[str, float] = {}
        for t in terms:
            # Only a sentence's own words count here.  Counting the title words for every
            # sentence (measured) makes the document's name weightless: three real-PDF answers
            # are lost for one declined unanswerable question.
            df = sum(bool(alternatives[t] & c.terms) for c in candidates)
            weights[t] = math.log(1 + n / (1 + df))
        return weights

    def _compose(
        self, question: str, chosen: list[_Candidate], hits: list[Hit], titles: dict[str, str], terms: list[str], focus: list[re.Pattern]
    ) -> Answer:
        markers: dict[tuple[str, int], int] = {}
        citations: list[Citation] = []
        lines: list[tuple[str, int]] = []
        # A page's citation quotes the sentence that matched, not the caption read around it.
        quotes: dict[tuple[str, int], str] = {}
        for c in sorted(chosen, key=lambda c: not c.terms):
            quotes.setdefault((c.hit.chunk.source, c.hit.chunk.page), c.text)
        for c in chosen:
            chunk = c.hit.chunk
            key = (chunk.source, chunk.page)
            if key not in markers:
                markers[key] = len(markers) + 1
                citations.append(
                    Citation(markers[key], chunk.source, chunk.page, chunk.heading, quotes[key], chunk.id, titles.get(chunk.source, ""))
                )
            lines.append((_trim(c.text, terms, _MAX_SENTENCE_CHARS, focus), markers[key]))
        # A run of lines from one page carries its marker once, at the end of the run.
        text = "\n".join(
            line + (f"[{n}]" if i + 1 == len(lines) or lines[i + 1][1] != n else "") for i, (line, n) in enumerate(lines)
        )
        return Answer(question=question, text=text, found=True, citations=citations, hits=hits)

    def abstain(self, question: str, hits: list[Hit], titles: dict[str, str]) -> Answer:
        near: list[Citation] = []
        seen: set[tuple[str, int]] = set()
        for hit in hits:
            key = (hit.chunk.source, hit.chunk.page)
            if key in seen:
                continue
            seen.add(key)
            first = next(iter(pc.sentences(hit.chunk.text)), hit.chunk.text[:80])
            near.append(Citation(len(near) + 1, *key, hit.chunk.heading, first, hit.chunk.id, titles.get(key[0], "")))
            if len(near) == 3:
                break
        return Answer(question=question, text=ABSTENTION, found=False, citations=near, hits=hits)


@functools.lru_cache(maxsize=1024)
def _contents(passage: str) -> bool:
    """is_contents, once per passage rather than once per sentence of it."""
    return is_contents(passage)


@functools.lru_cache(maxsize=256)
def _table_context(page: str) -> dict[str, tuple[str, ...]]:
    """Each table row of a page, with its header rows and caption (caption first).

    Cached and shared between questions: read it, never change it.
    """
    lines = page.split("\n")
    return {line.strip(): tuple(head) for line, head in zip(lines, pc.table_heads(lines)) if head}


def _with_tied_rows(
    chosen: list[_Candidate], best: _Candidate, candidates: list[_Candidate], weights: dict[str, float], alternatives: dict[str, set[str]]
) -> list[_Candidate]:
    """``chosen`` with the other rows of ``best``'s table that the question cannot tell from it, in page order.

    「特例を使うといくら上乗せ？」 fits the row of each 特例 by the same words: all of them answer.
    Compared before sentence meaning is added, which tells such rows apart by chance.
    """

    def matched(c: _Candidate) -> frozenset[str]:
        return frozenset(t for t in weights if alternatives[t] & (c.terms | c.topic | c.context))

    def position(c: _Candidate) -> int:
        return c.hit.chunk.start + c.hit.chunk.text.find(c.text)

    page = (best.hit.chunk.source, best.hit.chunk.page)
    tied = [
        c
        for c in candidates
        if c.head == best.head
        and (c.hit.chunk.source, c.hit.chunk.page) == page
        and c.lexical >= best.lexical - _ROW_TIE
        and matched(c) == matched(best)
    ]
    rows = sorted({c.text: c for c in tied}.values(), key=position)
    at = chosen.index(best)
    return chosen[:at] + rows + [c for c in chosen[at + 1 :] if all(c.text != r.text for r in rows)]


def _follows(c: _Candidate, x: _Candidate) -> bool:
    """``c`` starts the line right after the one ``x`` ends, in the same passage."""
    text = c.hit.chunk.text
    if c.hit.chunk.id != x.hit.chunk.id or (at := text.find(x.text)) < 0:
        return False
    return text.startswith("\n" + c.text, at + len(x.text))


def _length(chosen: list[_Candidate]) -> int:
    return sum(len(c.text) for c in chosen)


def _feature(c: _Candidate, model: AnswerModel, name: str) -> float:
    return float(c.row[model.column(name)]) if c.row is not None else 0.0

