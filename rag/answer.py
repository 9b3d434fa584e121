"""The offline answerer: quote the sentences that answer the question, with page markers.

It never writes text of its own beyond fixed phrases: every sentence of an
answer is cut from a cited page.  When the evidence is weak it abstains with
:data:`ABSTENTION` and lists the nearest pages instead.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from rag import page_context as pc
from rag.config import AnswerSettings
from rag.query import key_terms, synonym_groups, topic_words
from rag.schema import Answer, Chunk, Citation, Hit
from rag.tokenize import char_ngrams, content_words

#: The one phrase used whenever the documents do not answer (tests and the LLM prompt use it too).
ABSTENTION = "資料中に該当する記載が見つかりませんでした。"

_NUMBER = pc.NUMBER
_AMOUNT_Q = re.compile(r"何|いくら|幾ら|どれくらい|どのくらい|どの程度|割合|率|数|目標|KPI|規模|上限|金額")
_YEAR = re.compile(r"(?<!\d)(20\d\d|19\d\d)(?!\d)")
# The year before each Japanese era's first, to read era years as western ones.
_ERA_START = {"明治": 1867, "大正": 1911, "昭和": 1925, "平成": 1988, "令和": 2018}
_ERAS = "|".join(_ERA_START)
# Not いつも, いつでも, 追いつく, 「どのくらいつくる」.
_WHEN_Q = re.compile(r"いつ(?!も|でも|[くけきなつ])")
_YEAR_Q = re.compile(rf"{_WHEN_Q.pattern}|何年|何月|時期|期限|期間|まで[にの]?$|年度")
# What answers 「いつ」: a date, a day count, a part of a month (「10月下旬頃」), an era year, a clock
# time (「受付時間:9:00~17:00」), a fiscal year named relative to this one (「年度末まで」, 「随時」).
_DATE = re.compile(
    r"\d\s*(?:年|月|日|か月|ヶ月|カ月|週間|時)|\d{1,2}/\d{1,2}|\d{1,2}[:：]\d{2}|\d{4}\.\d{1,2}\.\d{1,2}|[上中下]旬"
    rf"|(?:{_ERAS})\s*(?:\d|元)|[一二三四五六七八九十]+月|(?:今|来|翌|前|本)年度|年度(?:末|内|中)|随時|通年"
)
# Japanese era years, as the documents write them (「昭和 45 年」, 「平成元年」).
_ERA_YEAR = re.compile(rf"({_ERAS})\s*(\d{{1,2}}|元)\s*年")
# An edition or round of a scheme (第20次公募, 第17回受付締切), and a variant of it (一般型, 通常枠).
_ORDINAL = re.compile(r"第\s*(\d+)\s*([次回期号弾])")
_VARIANT = re.compile(r"([一-龥ァ-ヶー]{2,6}?)([型枠])")
# What kind of number a question asks for, and how the documents write it.
_EXPECTED_UNIT = (
    (re.compile(r"いくら|金額|予算|費用|運賃|報酬|上限額|単価|何円|何万円"), re.compile(r"\d\s*(?:万|億|千)?円")),
    (re.compile(r"何%|何パーセント|割合|補助率|カバー率|(?<![効倍比])率は"), re.compile(r"\d\s*%|\d割|分の|\d/\d")),
    (re.compile(r"何(?:万|千)?人"), re.compile(r"\d\s*(?:万|千)?人")),
    (re.compile(r"何団体"), re.compile(r"\d\s*団体")),
    (re.compile(r"何件|件数"), re.compile(r"\d\s*件")),
    (re.compile(r"何か所|何箇所|何カ所"), re.compile(r"\d\s*(?:か所|箇所|カ所|ヶ所)")),
)
_PLACE_Q = re.compile(r"どこ(?!まで|から)|どの(?:自治体|地域|市|町|県|都市)|(?:自治体|市|町|村|県|都市|地域|市町村)(?:は|を|が)[?？]?$")
_GOAL_Q = re.compile(r"目標|目指|増やす|減らす|までに")
_GOAL = re.compile(r"までに|まで[)）]|目標|目指")
_ANAPHORA = re.compile(
    r"(?:この|その|これらの?|それらの?|こうした|同)(?:場合|際|ため|うち|ほか|他|結果|上で|中で|事業|制度|取組)"
    # 「特に10万円を超える支払いは…」 narrows the rule stated just before it;
    # 「これは、国道40号…によるもの」 explains it.
    r"|(?:特に|ただし|但し|これは|これが)"
)
_LIST_Q = re.compile(r"挙げ|ごと|毎の|流れ|手順|順番|ステップ|\d+つの|[二三四五六七八九十]つの|どんな|どのような|どういった|主な|一覧|何が(?:ある|あり)|ものは|取組は|施策は|事例は|分野は|技術は|自治体は|例は")
# A prefecture, optionally with its municipality, as named in a question (北海道, 茨城県境町).
_PREFECTURE = re.compile(rf"{pc.PREFECTURE}(?:[一-龥]{{1,4}}?[市区町村])?")
_NAME_Q = re.compile(r"名前|名称|何という|何と呼|どんな(?:制度|事業|交付金|補助金|仕組み|システム)|何を")
_NAME = re.compile(r"「[^」]{2,}」|[ァ-ヶー]{4,}|[A-Za-z]{3,}")
_UNITS = ("団体", "%", "人", "校", "地域", "か所", "箇所", "都市", "円", "件", "市区町村", "事業者", "拠点", "社", "万", "億", "倍", "割")
_UNIT_MISMATCH = 0.4  # measured: 0.6 → 0.4 moved unanswerable abstention 0.63 → 0.83 with no answerable lost
# Score taken from a sentence with no date for 「いつ」: measured, 0.25–0.4 answer both eval sets alike;
# 0.15 leaves 「電子申請による受付です。」 over the dated line, 0.5 lets a cover's date answer what no page does.
_WHEN_MISMATCH = 0.3
_MAX_SENTENCE_CHARS = 130
# A second or third quote this long is a flattened table or run-on slide line: it crowds out a clean one.
_SECONDARY_MAX_CHARS = 150
# Rows of one table the question matches by the same words, and scores this close before
# the dense step, are equally its answer (rows of one table differ only in their figures).
_ROW_TIE = 0.01
# Steps of a flow this short (「⑥ 交付決定　P.11」) may run past six lines of an answer.
_SHORT_ITEM = 30
_DENSE_RERANK = 12  # sentences embedded per question: enough to reorder, cheap enough for < 50 ms
_DENSE_SHARE = 0.35
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
    score: float = 0.0
    lexical: float = 0.0  # the score before sentence meaning is added
    evidence: float = 0.0
    figure: str = ""  # the line under it that carries its number (pc.figure_below), for a question about one
    # Applied once all evidence (lexical and dense) is in: a sentence about the wrong year,
    # place or kind of number does not answer, however similar it reads.
    mismatch: float = 1.0

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

    def neighbour(self, text: str) -> _Candidate:
        """A line read around this one on its page, quoted under the same citation."""
        return _Candidate(self.hit_rank, self.hit, text, topic=self.topic)


@dataclass
class Ranking:
    """One scoring of a question's passages: their order, and the sentences an answer is picked from."""

    hits: list[Hit]  # best-answering passage first
    candidates: list[_Candidate]  # best first
    terms: list[str]
    asks: _Asks
    alternatives: dict[str, set[str]]
    weights: dict[str, float]


@dataclass(frozen=True)
class _Asks:
    """What a question asks for, as far as its wording tells."""

    numeric: bool  # a number, an amount, a date
    when: bool  # "いつ？": a date
    years: frozenset[str]  # "2030年度の目標は？"
    units: tuple[re.Pattern, ...]  # the kind of number: 円 for いくら, % for 割合 …
    unit_words: tuple[str, ...]  # units written in the question itself
    places: frozenset[str]  # prefectures and municipalities named in the question
    place: bool  # "どこ？", "どの自治体？"
    name: bool  # "名前は？"
    goal: bool  # "目標は？", "何人まで増やす？"
    list: bool  # "どのような取組？", "4つの施策は？"
    ordinals: frozenset[tuple[str, str]] = frozenset()  # ("21", "次") for 「第21次公募」
    variants: frozenset[tuple[str, str]] = frozenset()  # ("創業", "型") for 「創業型の補助上限額」

    @classmethod
    def of(cls, question: str) -> _Asks:
        return cls(
            numeric=bool(_AMOUNT_Q.search(question) or _YEAR_Q.search(question)),
            when=bool(_WHEN_Q.search(question)),
            years=years_in(question),
            units=tuple(pattern for asks, pattern in _EXPECTED_UNIT if asks.search(question)),
            unit_words=tuple(u for u in _UNITS if u in question),
            places=frozenset(m.group(0) for m in _PREFECTURE.finditer(question)) - {"都道府県"},
            place=bool(_PLACE_Q.search(question)),
            name=bool(_NAME_Q.search(question)),
            goal=bool(_GOAL_Q.search(question)),
            list=bool(_LIST_Q.search(question)),
            ordinals=frozenset(_ORDINAL.findall(question)),
            variants=frozenset(_VARIANT.findall(question)),
        )

    def focus(self) -> list[re.Pattern]:
        """What a trimmed quote must keep in view."""
        return list(self.units) + [re.compile(y) for y in self.years] + ([pc.PLACE] if self.place else [])


@functools.lru_cache(maxsize=8192)
def years_in(text: str) -> frozenset[str]:
    """The years a text names, era years as western ones: 「昭和45年」 is 1970, the same as 「1970年」."""
    era = {str(_ERA_START[e] + (1 if n == "元" else int(n))) for e, n in _ERA_YEAR.findall(text)}
    return frozenset(_YEAR.findall(text)) | era


# Reranking and answering read the same sentences; tokenising each once keeps a question near 50 ms.
@functools.lru_cache(maxsize=8192)
def _words(text: str) -> frozenset[str]:
    return frozenset(content_words(text))


@functools.lru_cache(maxsize=8192)
def char_bigrams(text: str) -> frozenset[str]:
    return frozenset(t for t in char_ngrams(text) if len(t) == 2)


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


class OfflineAnswerer:
    def __init__(
        self,
        settings: AnswerSettings | None = None,
        embedder=None,
        cover: Callable[[str], str] | None = None,
        page_text: Callable[[str, int], str | None] | None = None,
    ):
        """``embedder`` (an :class:`rag.embeddings.IndexEmbedder`) adds sentence-level dense similarity,
        which catches paraphrases that share no words with the question.

        ``cover(source)``: a document's title and the title block of its first page.  A question names
        the document it is about (「ものづくり補助金の…」); that name identifies the
        document, not the sentence, so every sentence of the document counts as
        having it.  Otherwise the cover and the notices that repeat the name outscore
        the sentence that answers.

        ``page_text(source, page)`` lets an answer read past the end of its chunk: a
        list's items, a caption, the header of a table row.
        """
        self.settings = settings or AnswerSettings()
        self.embedder = embedder
        self.cover = cover
        self.page_text = page_text

    def rank(self, question: str, hits: list[Hit], query_vector=None) -> Ranking | None:
        """Score every sentence of ``hits`` once, and order the hits by their best sentence.

        A chunk is as good as the sentence in it that answers: a contents page or a cover
        matches the words of every question but has no sentence that answers any.  The
        same scores pick the answer (:meth:`answer`), so the page listed first is the page
        the answer cites first.  Each sentence's score keeps a small share for its passage's
        fused rank.  ``None`` when the question has no topic words or the hits no sentences.
        """
        terms = key_terms(question)
        candidates = self._candidates(hits) if terms else []
        if not candidates:
            return None
        asks = _Asks.of(question)
        if asks.numeric:
            for c in candidates:
                c.figure = self._figure_below(c)
        alternatives = self._alternatives(question, terms)
        weights = self._term_weights(terms, alternatives, candidates)
        self._score(candidates, terms, alternatives, weights, asks)
        candidates.sort(key=lambda c: -c.score)
        if self.embedder is not None:
            self._add_dense(question, candidates[:_DENSE_RERANK], query_vector)
            candidates.sort(key=lambda c: -c.score)
        for c in candidates:
            c.evidence *= c.mismatch
        # Each passage where its best sentence stands among all sentences; passages with none last.
        first: dict[str, int] = {}
        for at, c in enumerate(candidates):
            first.setdefault(c.hit.chunk.id, at)
        order = sorted(range(len(hits)), key=lambda i: (first.get(hits[i].chunk.id, len(candidates)), i))
        return Ranking([hits[i] for i in order], candidates, terms, asks, alternatives, weights)

    def answer(
        self,
        question: str,
        hits: list[Hit],
        titles: dict[str, str] | None = None,
        query_vector=None,
        ranking: Ranking | None = None,
    ) -> Answer:
        """``query_vector`` is the question as the retriever embedded it (saves embedding it twice);
        ``ranking``: :meth:`rank` of ``hits``, when the caller has already scored them (the
        answer then lists the hits in its order).  Without one the hits keep the order given."""
        titles = titles or {}
        if ranking is not None:
            hits = ranking.hits
        ranking = ranking or (self.rank(question, hits, query_vector) if hits else None)
        if ranking is None:
            return self.abstain(question, hits, titles)
        candidates, terms, asks = ranking.candidates, ranking.terms, ranking.asks
        alternatives, weights = ranking.alternatives, ranking.weights
        # A list question reads on from a caption to its items (_read_around); any other is answered by a statement.
        best = candidates[0] if asks.list else _statement_over_caption(candidates, self.settings.min_evidence)
        cover = self.cover(best.hit.chunk.source) if self.cover else ""
        if (
            best.evidence < self.settings.min_evidence
            or _other_edition(asks, best, candidates, cover, self._page(best.hit.chunk))
            or _only_name(best, candidates, terms, alternatives)
        ):
            abstained = self.abstain(question, hits, titles)
            abstained.evidence = best.evidence
            return abstained
        chosen = self._read_around(best, asks)
        if best.head and not asks.list:
            chosen = _with_tied_rows(chosen, best, candidates, weights, alternatives)
        self._add_support(chosen, best, candidates, alternatives, weights, asks)
        answer = self._compose(question, chosen, hits, titles, terms, asks.focus())
        answer.evidence = best.evidence
        return answer

    def _candidates(self, hits: list[Hit]) -> list[_Candidate]:
        seen: set[str] = set()
        out: list[_Candidate] = []
        for rank, hit in enumerate(hits):
            topic = topic_words(self.cover(hit.chunk.source)) if self.cover else frozenset()
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
                    )
                )
        return out

    def _figure_below(self, c: _Candidate) -> str:
        chunk = c.hit.chunk
        text = self._page(chunk)
        lines, at = pc.locate(text, c.text, chunk.start if text is not chunk.text else 0)
        return pc.figure_below(lines, at, c.text) or ""

    def _page(self, chunk: Chunk) -> str:
        return (self.page_text(chunk.source, chunk.page) if self.page_text else None) or chunk.text

    @staticmethod
    def _score(
        candidates: list[_Candidate], terms: list[str], alternatives: dict[str, set[str]], weights: dict[str, float], asks: _Asks
    ) -> None:
        """Lexical evidence (question terms covered, character overlap) and a ranking score that
        also rewards what the question asks for: a number, the year, a place, a name, a target."""
        q_bigrams = char_bigrams("".join(terms))
        total = sum(weights.values()) or 1.0
        heading_terms_of: dict[str, set[str]] = {}
        for c in candidates:
            heading = c.hit.chunk.heading
            if heading not in heading_terms_of:
                heading_terms_of[heading] = set(content_words(heading))
            heading_terms = heading_terms_of[heading]
            covered = 0.0
            own = c.terms | c.topic
            for t, w in weights.items():
                if alternatives[t] & own:
                    covered += w
                elif alternatives[t] & c.column:
                    covered += w
                elif alternatives[t] & (heading_terms | c.caption):
                    covered += 0.5 * w
            overlap = len(q_bigrams & c.bigrams) / len(q_bigrams) if q_bigrams else 0.0
            c.evidence = 0.75 * min(covered / total, 1.0) + 0.25 * overlap
            score = c.evidence + 0.12 / (1 + c.hit_rank)
            if asks.numeric and _NUMBER.search(c.text):
                score += 0.08
                if any(re.search(rf"\d[\d,.]*\s*{re.escape(u)}", c.text) for u in asks.unit_words):
                    score += 0.12
            if asks.years and asks.years <= years_in(c.text):
                score += 0.1
            if asks.goal and _NUMBER.search(c.text) and _GOAL.search(c.text):
                score += 0.1  # "何人まで増やす目標？" is answered by the target, not by today's count
            elif asks.goal and "現在" in c.text:
                score -= 0.1
            if asks.place and pc.PLACE.search(c.text):
                score += 0.15
            if asks.name and _NAME.search(c.text):
                score += 0.05
            if len(c.text) > 200:
                # Flattened tables make very long "sentences" that match many words by chance.
                score -= 0.1 + 0.3 * min(1.0, (len(c.text) - 200) / 400)
            if asks.list and (c.header or c.text.startswith(pc.HEADING_OPEN) and len(c.text) <= 40):
                score += 0.15  # "<国家試験>" or a table's header heads the list asked for; its items follow it
            elif len(c.text) < 12 and not c.context:
                score -= 0.2  # a bare heading answers nothing; a short table row under its header does
            # A question about 北海道 is not answered by a sentence about another prefecture,
            # one about 2030 not by a sentence about 2027, "いくら" not by one with no amount.
            if asks.places and not any(p in c.text for p in asks.places):
                c.mismatch *= 0.7
            if asks.years and not asks.years <= years_in(c.text):
                c.mismatch *= 0.6
                score -= 0.15
            if asks.units and not any(u.search(c.text) for u in asks.units):
                c.mismatch *= _UNIT_MISMATCH
                score -= 0.15
            if asks.when and not (_DATE.search(c.text) or _DATE.search(c.figure)):
                # 「いつから受け付け？」 is not answered by 「電子申請による受付です。」, however close its
                # words and meaning; a measure whose dated sub-item stands under it is (it is quoted with it).
                c.mismatch *= _UNIT_MISMATCH
                score -= _WHEN_MISMATCH
            c.score = c.lexical = score

    def _read_around(self, best: _Candidate, asks: _Asks) -> list[_Candidate]:
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
        # A dateless measure answers 「いつ」 only with the dated line under it (_score excused it for
        # that line): quote it even past the budget (_compose trims each line to a quote's length).
        dates_it = asks.when and not _DATE.search(best.text)
        if figure and (_length(chosen) + len(figure) <= budget or dates_it):
            chosen.append(best.neighbour(figure))
        items: list[str] = []
        in_table = bool(head) or best.header  # its rows are read above; the lines under a table are not its items
        if asks.list and not in_table and pc.introduces_list(lines, at, best.text):
            items = pc.list_items(lines, at, best.text)
        if not items and not in_table and pc.is_label(best.text) and not (asks.numeric and _NUMBER.search(best.text)):
            # A heading that echoes the question says where the answer is, not what it is: read on.
            items = pc.sentences_after(text, best.text, near=near)
        for item in items:
            # Six lines, or more when they are short steps: a flow of twelve steps is one answer.
            if _length(chosen) + len(item) > budget or len(chosen) >= (6 if len(item) > _SHORT_ITEM else 16):
                break
            chosen.append(best.neighbour(item))
        if not items:
            # 「…昭和45年には人口が大きく減少しています。」 is followed by 「これは、国道40号…」:
            # the sentence that explains or narrows it belongs with it, even past the chunk's end.
            after = pc.sentences_after(text, best.text, n=1, near=near)
            if after and _ANAPHORA.match(after[0]) and _length(chosen) + len(after[0]) <= budget:
                chosen.append(best.neighbour(after[0]))
        # Lines read from several directions can meet: quote each once.
        seen: set[str] = set()
        return [c for c in chosen if not (c.text in seen or seen.add(c.text))]

    def _add_support(
        self,
        chosen: list[_Candidate],
        best: _Candidate,
        candidates: list[_Candidate],
        alternatives: dict[str, set[str]],
        weights: dict[str, float],
        asks: _Asks,
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
            if c.score < (0.6 if same_place_elsewhere else 0.8) * best.score or len(c.text) > _SECONDARY_MAX_CHARS:
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
        import numpy as np

        if query_vector is None:
            query_vector = self.embedder.embed_query_array(question)
        # A table row means what its header says it means: embedded bare, 「5人以下　750万円」 matches nothing.
        texts = [("\n".join(c.head[-1:]) + "\n" + c.text)[-300:] if c.head else c.text[:300] for c in top]
        sims = self.embedder.embed_array(texts) @ np.asarray(query_vector, dtype=np.float32)
        # Where cosines of answering and unrelated sentences fall depends on the model:
        # calibrated for the bundled USE on eval/qa.jsonl; a rough default for others.
        low, span = _DENSE_CALIBRATION.get(self.embedder.name, (0.5, 0.4))
        for c, sim in zip(top, sims):
            dense = float(np.clip((sim - low) / span, 0.0, 1.0))
            c.evidence = (1 - _DENSE_SHARE) * c.evidence + _DENSE_SHARE * dense
            c.score += _DENSE_SHARE * dense

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


def _statement_over_caption(candidates: list[_Candidate], min_evidence: float) -> _Candidate:
    """The best candidate, unless it is a caption and a sentence on its page says the same and more.

    A figure's caption (「学校部活動の地域連携・地域移行」) repeats the question's words
    more densely than the sentence that explains them, but names a topic, not an answer.
    """
    best = candidates[0]
    if not best.terms or not pc.is_label(best.text) or best.text.startswith(pc.HEADING_OPEN) or _NUMBER.search(best.text):
        return best
    page = (best.hit.chunk.source, best.hit.chunk.page)
    for c in candidates[1:]:
        if c.score < 0.85 * best.score:
            break
        if (c.hit.chunk.source, c.hit.chunk.page) == page and not pc.is_label(c.text) and best.terms <= c.terms:
            return c if c.evidence >= min_evidence else best
    return best


@functools.lru_cache(maxsize=256)
def _table_context(page: str) -> dict[str, tuple[str, ...]]:
    """Each table row of a page, with its header rows and caption (caption first).

    Cached and shared between questions: read it, never change it.
    """
    lines = page.split("\n")
    return {line.strip(): tuple(head) for line, head in zip(lines, pc.table_heads(lines)) if head}


def _other_edition(asks: _Asks, best: _Candidate, candidates: list[_Candidate], cover: str, page_text: str) -> bool:
    """The question asks about another edition or variant of the scheme than the documents describe.

    「第21次公募の締切」 where the passages and the cover name only 第20次;
    「創業型の補助上限額」 where the cover says the document is the guide to 一般型.
    The dates and amounts found would answer a question nobody asked.
    """
    for number, counter in asks.ordinals:
        named = [n for text in [cover] + [c.text for c in candidates] for n, k in _ORDINAL.findall(text) if k == counter]
        if named and number not in named:
            return True
    # Passages mention sibling variants in passing (「創業型に申請中の事業者でないこと」):
    # the cover says which one the document is about, unless the quoted sentence, its heading
    # or the line over it (「・地域資源型」 over the sentence that describes it) names the asked one.
    covered = _VARIANT.findall(cover)
    over = pc.sentence_before(page_text, best.text, best.hit.chunk.start) or ""
    about = "\n".join([best.text, best.hit.chunk.heading, *best.head, over])
    for stem, kind in asks.variants:
        named = [s for s, k in covered if k == kind]
        if named and not any(stem in s or s in stem for s in named) and stem + kind not in about:
            return True
    return False


def _only_name(best: _Candidate, candidates: list[_Candidate], terms: list[str], alternatives: dict[str, set[str]]) -> bool:
    """The passages share only the document's name with the question, none of what it asks about.

    「音威子府村の村長は誰？」: every sentence of the village's document is about the
    village; when none of the passages found mentions 村長 (in a sentence, a heading
    or a table header), the document does not say who the mayor is.  Not for a
    cover: 「…戦略はいつ、どの組織が作成した資料？」 asks about the document itself.
    """
    asked = [t for t in terms if not alternatives[t] & best.topic]
    if not asked or best.hit.chunk.page == 1:
        return False
    for c in candidates:
        around = c.terms | c.context | _words(c.hit.chunk.heading)
        if any(alternatives[t] & around for t in asked):
            return False
    return True


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
