"""Which further lines an answer quotes beside its best one: named features of a pair, fitted weights.

The best line often holds part of what was asked, and a line next to it on the same page
(the next row of its table, the next item of its list, the line with the figure asked for)
holds the rest, without bringing any word of the question that the best line lacks.  Whether
such a line belongs to the answer is read from the pair (the lines already chosen, the
further line): their place on the page, what kind of figure each holds, how close their
scores are.  How much each counts is fitted from the Q&A (:func:`rag.answering.train.fit_support`):
a further line is a positive example when it holds a ``must_include`` fact that the lines
already chosen lack.  Stored in the answer model's JSON beside the feature names.

The fitted probability orders the runners-up and the quote budget decides how many are
quoted: a threshold on it lost answers on held-out documents (docs/decisions.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rag import page_context as pc
from rag import patterns as pat
from rag.answering.candidates import Candidate
from rag.answering.features import QuestionView, words

#: Further lines considered: the runners-up just below the best one (the analysis of misses found
#: the line holding the missing fact among the best four of its page in most cases).
CONSIDERED = 8


@dataclass
class Pair:
    """A further line ``c`` as a candidate to quote beside the lines already chosen around ``best``."""

    view: QuestionView
    best: Candidate
    chosen_text: str  # the lines already chosen, joined
    chosen_terms: frozenset[str]
    c: Candidate
    rank: int  # c's place among the candidates (1 for the runner-up)
    distance: int | None  # lines between c and the best line on their page; None on another page or not found


PairFeature = Callable[[Pair], float]
PAIR_FEATURES: dict[str, PairFeature] = {}


def pair_feature(fn: PairFeature) -> PairFeature:
    PAIR_FEATURES[fn.__name__] = fn
    return fn


def on_best_page(p: Pair) -> bool:
    return (p.c.hit.chunk.source, p.c.hit.chunk.page) == (p.best.hit.chunk.source, p.best.hit.chunk.page)


@pair_feature
def same_page(p: Pair) -> float:
    """The further line stands on the best line's page."""
    return float(on_best_page(p))


@pair_feature
def same_passage(p: Pair) -> float:
    """The further line stands in the best line's passage (chunk)."""
    return float(p.c.hit.chunk.id == p.best.hit.chunk.id)


@pair_feature
def same_section(p: Pair) -> float:
    """The two lines' passages stand under the same heading."""
    return float(bool(p.c.hit.chunk.heading) and p.c.hit.chunk.heading == p.best.hit.chunk.heading)


@pair_feature
def nearness(p: Pair) -> float:
    """How close the further line stands to the best one on their page (1 for the next line)."""
    return 0.0 if p.distance is None else 1.0 / max(1, abs(p.distance))


@pair_feature
def below_best(p: Pair) -> float:
    """The further line stands under the best one within five lines (a continuation, an item, a figure)."""
    return float(p.distance is not None and 0 < p.distance <= 5)


@pair_feature
def same_table(p: Pair) -> float:
    """Both lines are rows under the same table header."""
    return float(bool(p.c.head) and p.c.head == p.best.head)


@pair_feature
def same_bullet(p: Pair) -> float:
    """Both lines start with the same list mark (items of one list)."""
    marked = pc.BULLET_START.match(p.c.text) and pc.BULLET_START.match(p.best.text)
    return float(bool(marked) and pc.bullet_family(p.c.text) == pc.bullet_family(p.best.text))


def _kind_gap(p: Pair, patterns: list[re.Pattern]) -> float:
    has = lambda text: any(u.search(text) for u in patterns)  # noqa: E731
    return float(bool(patterns) and has(p.c.text) and not has(p.chosen_text))


# 「いつ」 and a dated further line, a named place only the further line names: measured, these
# never fired on the development Q&A (the ranker's date_missing_for_when and named_place_missing
# already put such a line first), so they are not features (docs/decisions.md).


@pair_feature
def adds_kind_of_number(p: Pair) -> float:
    """The question asks a kind of number (円, %, 人) the further line holds and the chosen lines do not."""
    return _kind_gap(p, list(p.view.asks.units))


@pair_feature
def adds_number(p: Pair) -> float:
    """A question asking for a number, and only the further line has one."""
    return float(p.view.asks.numeric and bool(pat.NUMBER.search(p.c.text)) and not pat.NUMBER.search(p.chosen_text))


@pair_feature
def adds_new_number(p: Pair) -> float:
    """The further line has a figure the chosen lines do not (another row's amount, a second target)."""
    mine = set(re.findall(r"\d[\d,.]*", p.c.text))
    return float(bool(mine - set(re.findall(r"\d[\d,.]*", p.chosen_text))))


@pair_feature
def adds_terms(p: Pair) -> float:
    """Share of the question's term weight the further line brings that the chosen lines lack."""
    v = p.view
    return sum(w for t, w in v.weights.items() if v.alternatives[t] & p.c.terms and not v.alternatives[t] & p.chosen_terms) / v.total


@pair_feature
def own_terms(p: Pair) -> float:
    """Share of the question's term weight in the further line itself."""
    return p.view.covered(p.c.terms)


@pair_feature
def repeats_chosen(p: Pair) -> float:
    """Share of the further line's words already quoted (it says again what is said)."""
    return len(p.c.terms & p.chosen_terms) / len(p.c.terms) if p.c.terms else 1.0


@pair_feature
def score_share(p: Pair) -> float:
    """The further line's probability as a share of the best line's."""
    return p.c.score / p.best.score if p.best.score > 0 else 0.0


@pair_feature
def runner_up_rank(p: Pair) -> float:
    """1 for the runner-up, falling with rank."""
    return 1.0 / p.rank


@pair_feature
def length_cost(p: Pair) -> float:
    """The further line's length, in 100s of characters (what it takes from the others)."""
    return len(p.c.text) / 100


@pair_feature
def best_is_label(p: Pair) -> float:
    """The best line is a bare heading or label: what it names is said in the lines under it."""
    return float(pc.is_label(p.best.text) or len(p.best.text) < 20)


@pair_feature
def list_question(p: Pair) -> float:
    """The question asks for a list (「挙げて」, 「どのような」): more lines are more of the answer."""
    return float(p.view.asks.list)


@pair_feature
def several_asked(p: Pair) -> float:
    """The question asks two things (「…と…は？」, 「名前と期間」): one line rarely holds both."""
    return float(len(p.view.terms) >= 4)


@dataclass
class SupportModel:
    """P(a further line holds what the chosen lines lack) = σ(bias + Σ w·feature); quoted at ``threshold`` or over."""

    weights: dict[str, float]
    bias: float
    threshold: float = 0.0
    considered: int = CONSIDERED
    fitted_on: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.weights) != set(PAIR_FEATURES):
            extra, missing = sorted(set(self.weights) - set(PAIR_FEATURES)), sorted(set(PAIR_FEATURES) - set(self.weights))
            raise ValueError(f"引用を添える判断の特徴量がこの版と合いません（余分 {extra}, 不足 {missing}）")
        if not all(math.isfinite(v) for v in [*self.weights.values(), self.bias, self.threshold]):
            raise ValueError("引用を添える判断に数でない値があります")

    def probability(self, x: list[float]) -> float:
        z = self.bias + sum(self.weights[n] * v for n, v in zip(PAIR_FEATURES, x))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_dict(self) -> dict:
        return {
            "weights": {n: round(self.weights[n], 6) for n in PAIR_FEATURES},
            "bias": round(self.bias, 6),
            "threshold": self.threshold,
            "considered": self.considered,
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SupportModel:
        return cls(**data)


def vector(p: Pair) -> list[float]:
    """The pair's named features, in :data:`PAIR_FEATURES` order."""
    return [float(f(p)) for f in PAIR_FEATURES.values()]


def pairs(view: QuestionView, chosen: list[Candidate], candidates: list[Candidate], page_text: Callable[[Candidate], str],
          considered: int = CONSIDERED) -> list[Pair]:
    """The runners-up (up to ``considered``) not already quoted, each paired with ``chosen``."""
    best = candidates[0]
    chosen_text = "\n".join(c.text for c in chosen)
    chosen_terms = words(chosen_text)
    text = page_text(best)
    near = best.hit.chunk.start if text is not best.hit.chunk.text else 0
    _, at = pc.locate(text, best.text, near)
    out = []
    for rank, c in enumerate(candidates[1 : considered + 1], start=1):
        if any(c.text in x.text or x.text in c.text for x in chosen):
            continue
        distance = None
        if at is not None and (c.hit.chunk.source, c.hit.chunk.page) == (best.hit.chunk.source, best.hit.chunk.page):
            _, at_c = pc.locate(text, c.text, c.hit.chunk.start if text is not c.hit.chunk.text else 0)
            distance = None if at_c is None else at_c - at
        out.append(Pair(view, best, chosen_text, chosen_terms, c, rank, distance))
    return out
