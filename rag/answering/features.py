"""Named features of a candidate sentence (or table row) for one question.

Each feature is a small pure function of the parsed question (:class:`QuestionView`) and a
candidate, returning a number, mostly in [0, 1].  Features say what evidence they measure;
they hold no weights.  How much each counts is fitted from the development Q&A
(:mod:`rag.answering.train`) and stored beside the feature names
(:mod:`rag.answering.model`), so a maintainer can ask "what does X add on unseen
documents?" by switching X off, not by editing code.

A feature that only applies to one kind of question (「いつ」, 「いくら」) is 0 for the
others, so its weight is learned from the questions it applies to.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from rag import page_context as pc
from rag import patterns as pat
from rag.query import Asks
from rag.tokenize import char_ngrams, content_words


class Candidate(Protocol):
    """What a feature may read of a candidate (see :class:`rag.answering.candidates.Candidate`)."""

    text: str
    terms: frozenset[str]
    topic: frozenset[str]
    column: frozenset[str]
    caption: frozenset[str]
    head: tuple[str, ...]
    header: bool
    bigrams: frozenset[str]
    figure: str
    hit_rank: int
    dense: float | None
    heading_words: frozenset[str]
    page: int
    contents: bool
    cover: str
    passage: str


@functools.lru_cache(maxsize=8192)
def words(text: str) -> frozenset[str]:
    """Content-word lemmas of a text (cached: ranking and composing read the same sentences)."""
    return frozenset(content_words(text))


@functools.lru_cache(maxsize=8192)
def char_bigrams(text: str) -> frozenset[str]:
    return frozenset(t for t in char_ngrams(text) if len(t) == 2)


@dataclass
class QuestionView:
    """A question as the features see it: its parse, and its terms weighted over the candidates."""

    asks: Asks
    terms: list[str]
    alternatives: dict[str, set[str]]  # each term with the document-side words that count as it
    weights: dict[str, float] = field(default_factory=dict)  # idf of each term over the candidates
    bigrams: frozenset[str] = frozenset()
    # Terms that no retrieved passage has, in its sentences, table headers, headings or title:
    # what the question asks about may be what the documents do not say.
    absent: frozenset[str] = frozenset()

    @property
    def total(self) -> float:
        return sum(self.weights.values()) or 1.0

    def covered(self, found: frozenset[str] | set[str]) -> float:
        """Share of the question's term weight that ``found`` words cover."""
        return sum(w for t, w in self.weights.items() if self.alternatives[t] & found) / self.total


Feature = Callable[[QuestionView, Candidate], float]
FEATURES: dict[str, Feature] = {}
DESCRIPTIONS: dict[str, str] = {}


def feature(fn: Feature) -> Feature:
    """Register ``fn`` under its name; its docstring's first line is what ``--explain`` shows."""
    FEATURES[fn.__name__] = fn
    DESCRIPTIONS[fn.__name__] = (fn.__doc__ or "").strip().split("\n")[0]
    return fn


# ------------------------------------------------------------------ words shared with the question


@feature
def term_coverage(q: QuestionView, c: Candidate) -> float:
    """Question terms in the sentence, its table header or the document's title (idf-weighted)."""
    return q.covered(c.terms | c.topic | c.column)


@feature
def own_coverage(q: QuestionView, c: Candidate) -> float:
    """Question terms in the sentence itself, not counting the document's title."""
    return q.covered(c.terms)


@feature
def section_coverage(q: QuestionView, c: Candidate) -> float:
    """Question terms only in the heading, section path or caption above the sentence."""
    return q.covered((c.heading_words | c.caption) - c.terms - c.column)


@feature
def bigram_overlap(q: QuestionView, c: Candidate) -> float:
    """Share of the question terms' character bigrams found in the sentence."""
    return len(q.bigrams & c.bigrams) / len(q.bigrams) if q.bigrams else 0.0


@feature
def absent_terms(q: QuestionView, c: Candidate) -> float:
    """Question terms found in none of the retrieved passages (idf-weighted; the same for every sentence)."""
    return sum(q.weights[t] for t in q.absent) / q.total


@feature
def dense(q: QuestionView, c: Candidate) -> float:
    """Meaning: the sentence embedding's cosine with the question, scaled per embedder."""
    return c.dense or 0.0


@feature
def dense_missing(q: QuestionView, c: Candidate) -> float:
    """The sentence was not among those embedded (it ranked low on words)."""
    return float(c.dense is None)


@feature
def passage_rank(q: QuestionView, c: Candidate) -> float:
    """Retrieval's rank of the passage the sentence stands in (1 for the first)."""
    return 1.0 / (1 + c.hit_rank)


@feature
def only_title_words(q: QuestionView, c: Candidate) -> float:
    """The sentence and its surroundings share only the document's name with the question."""
    asked = [t for t in q.terms if not q.alternatives[t] & c.topic]
    if not asked:
        return 0.0
    around = c.terms | c.column | c.caption | c.heading_words
    return float(not any(q.alternatives[t] & around for t in asked))


# ------------------------------------------------------------------ the kind of answer asked for


def _with_figure(c: Candidate) -> str:
    return c.text + "\n" + c.figure if c.figure else c.text


@feature
def number_for_numeric(q: QuestionView, c: Candidate) -> float:
    """A question asking for a number or date, and the sentence (or the line under it) has a number."""
    return float(q.asks.numeric and bool(pat.NUMBER.search(_with_figure(c))))


@feature
def unit_in_question(q: QuestionView, c: Candidate) -> float:
    """A unit the question writes (「何団体」) follows a number in the sentence."""
    text = _with_figure(c)
    return float(any(re.search(rf"\d[\d,.]*\s*{re.escape(u)}", text) for u in q.asks.unit_words))


@feature
def kind_of_number(q: QuestionView, c: Candidate) -> float:
    """The kind of number asked (円 for いくら, % for 割合, 人 for 何人) is in the sentence."""
    return float(bool(q.asks.units) and any(u.search(_with_figure(c)) for u in q.asks.units))


@feature
def kind_of_number_missing(q: QuestionView, c: Candidate) -> float:
    """The question asks a kind of number the sentence does not hold."""
    return float(bool(q.asks.units) and not any(u.search(_with_figure(c)) for u in q.asks.units))


@feature
def year_match(q: QuestionView, c: Candidate) -> float:
    """The sentence names every year the question names (era years read as western)."""
    return float(bool(q.asks.years) and q.asks.years <= pat.years_in(c.text))


@feature
def year_missing(q: QuestionView, c: Candidate) -> float:
    """The question names a year the sentence does not."""
    return float(bool(q.asks.years) and not q.asks.years <= pat.years_in(c.text))


@feature
def date_for_when(q: QuestionView, c: Candidate) -> float:
    """「いつ」 and the sentence (or the line under it) carries a date, a period or a time."""
    return float(q.asks.when and bool(pat.DATE.search(_with_figure(c))))


@feature
def date_missing_for_when(q: QuestionView, c: Candidate) -> float:
    """「いつ」 and the sentence carries no date."""
    return float(q.asks.when and not pat.DATE.search(_with_figure(c)))


@feature
def target_for_goal(q: QuestionView, c: Candidate) -> float:
    """A question about a target, and the sentence states one with a number (「…までに」, 目標)."""
    return float(q.asks.goal and bool(pat.NUMBER.search(c.text)) and bool(pat.GOAL.search(c.text)))


@feature
def place_for_where(q: QuestionView, c: Candidate) -> float:
    """「どこ」 and the sentence names a place."""
    return float(q.asks.place and bool(pc.PLACE.search(c.text)))


@feature
def named_place_missing(q: QuestionView, c: Candidate) -> float:
    """The question names a place the sentence does not."""
    return float(bool(q.asks.places) and not any(p in c.text for p in q.asks.places))


@feature
def name_for_name(q: QuestionView, c: Candidate) -> float:
    """「名前は」 and the sentence carries a proper name (quoted, katakana, Latin)."""
    return float(q.asks.name and bool(pat.NAME.search(c.text)))


@feature
def heads_a_list(q: QuestionView, c: Candidate) -> float:
    """A list question and the line heads a list or table (its items follow it)."""
    heads = c.header or (c.text.startswith(pc.HEADING_OPEN) and len(c.text) <= 40)
    return float(q.asks.list and (heads or c.text.rstrip().endswith(LEAD_IN_ENDS)))


@feature
def other_edition(q: QuestionView, c: Candidate) -> float:
    """The question names an edition or variant (第21次, 創業型) that the document's cover does not."""
    for number, counter in q.asks.ordinals:
        named = [n for n, k in _ordinals(c.cover + "\n" + c.passage) if k == counter]
        if named and number not in named:
            return 1.0
    covered = _variants(c.cover)
    for stem, kind in q.asks.variants:
        named = [s for s, k in covered if k == kind]
        if named and not any(stem in s or s in stem for s in named) and stem + kind not in c.text:
            return 1.0
    return 0.0


@functools.lru_cache(maxsize=1024)
def _ordinals(text: str) -> tuple[tuple[str, str], ...]:
    """The editions a cover and passage name, once per passage rather than once per sentence."""
    return tuple(pat.ORDINAL.findall(text))


@functools.lru_cache(maxsize=256)
def _variants(cover: str) -> tuple[tuple[str, str], ...]:
    return tuple(pat.VARIANT.findall(cover))


# ------------------------------------------------------------------ the sentence's shape

_PARTICLE_START = re.compile(r"^[はがをにでとものへやか、，,。)）」』]")
_MID_WORD_END = re.compile(r"[^。．.！？!?）)」』\d%円人件年月日度上下内外等]$")
# How a line that introduces the lines under it ends: the answer is below it, not in it.
LEAD_IN_ENDS = (
    "次のとおり", "次のとおりとする。", "次のとおりです。", "次の通り", "以下のとおり", "以下のとおりです。", "以下の通り",
    "下記のとおり", "下記のとおりです。", "ご連絡ください。", "お問い合わせください。", "次のいずれか", "次のいずれかに該当すること。",
    "以下のいずれか", ":", "：",
)
_NAME_SEPARATORS = re.compile(r"[・、，,／/「]")
_PREDICATE_END = re.compile(r"(?:。|です|ます|する|した|いる|ある|なる|れる|ない|こと|もの)[。）)]?$")


@feature
def long_sentence(q: QuestionView, c: Candidate) -> float:
    """How far the sentence runs past 200 characters (flattened tables match words by chance)."""
    return min(1.0, max(0, len(c.text) - 200) / 400)


@feature
def bare_short_line(q: QuestionView, c: Candidate) -> float:
    """A line under 12 characters with no table header to say what it means."""
    return float(len(c.text) < 12 and not (c.column or c.caption))


@feature
def starts_mid_sentence(q: QuestionView, c: Candidate) -> float:
    """The line starts with a particle or closing mark: the tail of a sentence wrapped from above."""
    return float(bool(_PARTICLE_START.match(c.text)))


@feature
def ends_mid_sentence(q: QuestionView, c: Candidate) -> float:
    """A line of prose that stops without a sentence end: cut at a line break."""
    # A comma inside says it is prose, not a heading or a label that ends without 。.
    return float(len(c.text) > 20 and "、" in c.text and not c.head and bool(_MID_WORD_END.search(c.text)))


@feature
def lead_in(q: QuestionView, c: Candidate) -> float:
    """The line introduces what follows (「次のとおり」, 「下記までご連絡ください」, a trailing colon)."""
    return float(c.text.rstrip().endswith(LEAD_IN_ENDS))


@feature
def list_of_names(q: QuestionView, c: Candidate) -> float:
    """The line is a run of names (many separators, no predicate): a list that names, not an answer."""
    separators = len(_NAME_SEPARATORS.findall(c.text))
    if separators < 3 or _PREDICATE_END.search(c.text):
        return 0.0
    return min(1.0, separators / 8)


@feature
def name_list_passage(q: QuestionView, c: Candidate) -> float:
    """Share of the passage's lines that are bare names (short, no number, no sentence end)."""
    return _bare_share(c.passage)


@functools.lru_cache(maxsize=1024)
def _bare_share(passage: str) -> float:
    """Once per passage: every sentence of it asks the same."""
    lines = [line.strip() for line in passage.split("\n") if line.strip()]
    if len(lines) < 4:
        return 0.0
    bare = sum(1 for line in lines if len(line) <= 25 and not pat.NUMBER.search(line) and not line.endswith("。"))
    return bare / len(lines)


@feature
def has_number(q: QuestionView, c: Candidate) -> float:
    """The sentence carries a figure at all."""
    return float(bool(pat.NUMBER.search(c.text)))


@feature
def table_row(q: QuestionView, c: Candidate) -> float:
    """A table row read under its header."""
    return float(bool(c.head) and not c.header)


@feature
def cover_page(q: QuestionView, c: Candidate) -> float:
    """The sentence is on the document's first page (title, publisher, date)."""
    return float(c.page == 1)


@feature
def contents_page(q: QuestionView, c: Candidate) -> float:
    """The passage is a table of contents (entries joined to page numbers by dot leaders)."""
    return float(c.contents)


#: What each feature measures, in the words `rag ask --explain` and the eval report show a user.
LABELS = {
    "term_coverage": "質問の語が文・表の見出し・資料名にある",
    "own_coverage": "質問の語が文そのものにある",
    "section_coverage": "質問の語が上の見出し・節の見出しにだけある",
    "bigram_overlap": "質問の語と文字の並びが重なる",
    "absent_terms": "質問の語が検索したどの箇所にもない",
    "dense": "質問と文の意味が近い",
    "dense_missing": "意味の近さを計算していない文",
    "passage_rank": "検索での箇所の順位が高い",
    "only_title_words": "資料名以外に質問と共通する語がない",
    "number_for_numeric": "数を聞く質問に、数のある文",
    "unit_in_question": "質問にある単位（団体・%など）の数が文にある",
    "kind_of_number": "聞かれた種類の数（円・%・人など）が文にある",
    "kind_of_number_missing": "聞かれた種類の数が文にない",
    "year_match": "質問の年が文にある",
    "year_missing": "質問の年が文にない",
    "date_for_when": "「いつ」に日付・期間のある文",
    "date_missing_for_when": "「いつ」に日付のない文",
    "target_for_goal": "目標を聞く質問に、目標の数値",
    "place_for_where": "「どこ」に地名のある文",
    "named_place_missing": "質問の地名が文にない",
    "name_for_name": "名称を聞く質問に、固有の名前のある文",
    "heads_a_list": "一覧を聞く質問に、一覧や表の見出しの行",
    "other_edition": "質問の回・型（第21次・創業型など）が資料と違う",
    "long_sentence": "200字を超える長い行",
    "bare_short_line": "表の見出しもない短い行",
    "starts_mid_sentence": "助詞などで始まる（折り返しの途中）",
    "ends_mid_sentence": "文の途中で切れている",
    "lead_in": "「次のとおり」など、下に続く行の前置き",
    "list_of_names": "名前が並ぶだけの行",
    "name_list_passage": "名前が並ぶだけの箇所",
    "has_number": "数値のある行",
    "table_row": "表の行",
    "cover_page": "表紙のページ",
    "contents_page": "目次のページ",
}


def vector(q: QuestionView, c: Candidate, names: list[str] | tuple[str, ...]) -> list[float]:
    """The named features of one candidate, in ``names`` order."""
    return [float(FEATURES[n](q, c)) for n in names]
