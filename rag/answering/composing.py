"""Composing: the answer quoted from the best-scored sentence and what stands around it.

It never writes text of its own beyond fixed phrases: every line of an answer is cut from a
cited page — the best sentence, the header of its table row, the items its lead-in
introduces, the sentence after it, and runners-up that add what it lacks.
"""

from __future__ import annotations

import re

from rag import page_context as pc
from rag.answering import support
from rag.answering.candidates import ANAPHORA, Candidate, PageSource, page_of, table_context
from rag.answering.features import LEAD_IN_ENDS
from rag.answering.scoring import Ranking
from rag.config import AnswerSettings
from rag.patterns import DATE as _DATE
from rag.patterns import NUMBER as _NUMBER
from rag.query import Asks
from rag.schema import LOW_CONFIDENCE_NOTE, Answer, Citation, Hit

#: The one phrase used whenever the documents do not answer (tests and the LLM prompt use it too).
ABSTENTION = "資料中に該当する記載が見つかりませんでした。"

_MAX_SENTENCE_CHARS = 130
# A second or third quote this long is a flattened table or run-on slide line: it crowds out a clean one.
_SECONDARY_MAX_CHARS = 150
# Rows of one table the question matches by the same words, and scores this close before
# the dense step, are equally its answer (rows of one table differ only in their figures).
_ROW_TIE = 0.01
# Lines read around the best one (its list items, header, caption) may run this far past max_chars.
_READ_AROUND_EXTRA = 60
# Lines of an answer, unless they are short steps of a flow.
_MAX_LINES = 6
# Steps of a flow this short (「⑥ 交付決定　P.11」) may run past six lines of an answer.
_SHORT_ITEM = 30
# Characters past max_chars that further lines (rag.answering.support) may take: the answer
# with its sources is still cut to max_shown_chars (last lines first).  Measured on held-out
# documents: +60 → accuracy 0.583, +140 → 0.594 at the same threshold (docs/decisions.md).
_FURTHER_EXTRA = 140
# A runner-up is quoted beside the best sentence when its probability is at least this share of the best one.
_SUPPORT_SHARE = 0.3


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


class Composer:
    def __init__(self, settings: AnswerSettings, pages: PageSource | None = None):
        self.settings = settings
        self.pages = pages

    def compose(self, question: str, ranking: Ranking, hits: list[Hit], titles: dict[str, str]) -> Answer:
        """The answer quoting ``ranking``'s best candidate, with what belongs to it; ``hits`` in the order to list them."""
        candidates, asks = ranking.candidates, ranking.asks
        best = candidates[0]
        chosen = self.read_around(ranking)
        further = ranking.model.further
        # Runners-up that bring a word of the question the quote lacks, another page, the next item…
        self._add_support(chosen, best, candidates, ranking.alternatives, ranking.weights, asks)
        if further is not None:
            # …then the ones the fitted pair model finds likeliest to hold what is still missing (the
            # next row, the line with the figure asked for), which bring no new word.  Without the rule
            # first, held-out accuracy was 0.609 against 0.605 (docs/decisions.md), within a question or
            # two, and a list question answered by a header row lost the rows the rule brought with it.
            self._add_further(chosen, ranking, further)
        if asks.list:
            chosen = self._with_rows_under_headers(chosen)
        answer = self._compose(question, chosen, hits, titles, ranking.terms, asks.focus())
        # An answer is read with its source list (and perhaps the low-confidence note): what runs
        # past the shown length is the last line read around the best one, never the best one.
        limit = self.settings.max_shown_chars - len(LOW_CONFIDENCE_NOTE) - 2
        keep = next((i for i, c in enumerate(chosen) if c is best), 0) + 1  # the header over a row stays with it
        while len(chosen) > keep and len(answer.render()) > limit:
            chosen = chosen[:-1]
            answer = self._compose(question, chosen, hits, titles, ranking.terms, asks.focus())
        return answer

    def _page(self, chunk) -> str:
        return page_of(self.pages, chunk)

    def read_around(self, ranking: Ranking) -> list[Candidate]:
        """The best candidate with what stands around it and the table rows tied with it: the
        answer before further lines are added (training labels further lines against this)."""
        candidates, asks = ranking.candidates, ranking.asks
        best = candidates[0]
        chosen = self._read_around(best, asks)
        if best.head and not asks.list:
            chosen = _with_tied_rows(chosen, best, candidates, ranking.weights, ranking.alternatives)
        return chosen

    def further_pairs(self, ranking: Ranking, chosen: list[Candidate], considered: int) -> list[support.Pair]:
        """The runners-up not yet quoted, each read beside ``chosen``."""
        return support.pairs(ranking.view, chosen, ranking.candidates, lambda c: self._page(c.hit.chunk), considered)

    def _add_further(self, chosen: list[Candidate], ranking: Ranking, further: support.SupportModel) -> None:
        """Add, one at a time, the runner-up the fitted pair model finds likeliest to hold what
        ``chosen`` lacks, while one is at the model's threshold or over and the budget allows.

        Read again after each addition: a second row adds nothing once the first one's figure is quoted.
        """
        budget = self.settings.max_chars + _FURTHER_EXTRA
        for _ in range(self.settings.further_lines):
            if len(chosen) >= _MAX_LINES:
                return  # a list or flow read in full is the answer; a line after it starts something else
            pairs = [
                p for p in self.further_pairs(ranking, chosen, further.considered)
                if _length(chosen) + min(len(p.c.text), _MAX_SENTENCE_CHARS) <= budget
                and (support.on_best_page(p) or not self.settings.further_same_page)
            ]
            fits = [(further.probability(support.vector(p)), p.c) for p in pairs]
            if not fits:
                return
            prob, c = max(fits, key=lambda pc_: pc_[0])
            if prob < further.threshold:
                return
            chosen.append(c)

    def _read_around(self, best: Candidate, asks: Asks) -> list[Candidate]:
        """``best`` with what stands around it on its page and belongs to the answer."""
        chunk = best.hit.chunk
        text = self._page(chunk)
        near = chunk.start if text is not chunk.text else 0
        lines, at = pc.locate(text, best.text, near)
        budget = self.settings.max_chars + _READ_AROUND_EXTRA
        chosen = [best]
        if ANAPHORA.match(best.text):
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
            rows = [row for row, h in table_context(text).items() if h[-1] == best.text]
        elif head:
            # A row quoted without its column header is a pair of bare figures.
            chosen = [best.neighbour(head[-1])] + chosen
            if asks.list:
                # "従業員規模ごとの補助上限額は？": every row under the same header.
                rows = [row for row, h in table_context(text).items() if h == head and row != best.text]
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
            if _length(chosen) + len(item) > budget or len(chosen) >= (_MAX_LINES if len(item) > _SHORT_ITEM else 16):
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

    def _with_rows_under_headers(self, chosen: list[Candidate]) -> list[Candidate]:
        """A table's header row quoted for a list question brings the rows under it (「基本要件を挙げて」)."""
        out: list[Candidate] = []
        budget = self.settings.max_chars + _READ_AROUND_EXTRA
        for c in chosen:
            out.append(c)
            if not c.header or c is chosen[0]:
                continue  # the best line's own rows are read in _read_around
            for row, head in table_context(self._page(c.hit.chunk)).items():
                if head[-1] == c.text and all(row != x.text for x in chosen) and _length(out) + len(row) <= budget:
                    out.append(c.neighbour(row))
        return out

    def _add_support(
        self,
        chosen: list[Candidate],
        best: Candidate,
        candidates: list[Candidate],
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

    def _compose(
        self, question: str, chosen: list[Candidate], hits: list[Hit], titles: dict[str, str], terms: list[str], focus: list[re.Pattern]
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



def _with_tied_rows(
    chosen: list[Candidate], best: Candidate, candidates: list[Candidate], weights: dict[str, float], alternatives: dict[str, set[str]]
) -> list[Candidate]:
    """``chosen`` with the other rows of ``best``'s table that the question cannot tell from it, in page order.

    「特例を使うといくら上乗せ？」 fits the row of each 特例 by the same words: all of them answer.
    Compared before sentence meaning is added, which tells such rows apart by chance.
    """

    def matched(c: Candidate) -> frozenset[str]:
        return frozenset(t for t in weights if alternatives[t] & (c.terms | c.topic | c.context))

    def position(c: Candidate) -> int:
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


def _follows(c: Candidate, x: Candidate) -> bool:
    """``c`` starts the line right after the one ``x`` ends, in the same passage."""
    text = c.hit.chunk.text
    if c.hit.chunk.id != x.hit.chunk.id or (at := text.find(x.text)) < 0:
        return False
    return text.startswith("\n" + c.text, at + len(x.text))


def _length(chosen: list[Candidate]) -> int:
    return sum(len(c.text) for c in chosen)


