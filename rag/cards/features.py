"""Where a field's value stands: features of one line read as one field's value.

Each feature is a small pure function of (the field's view of the document, a line) with
a name and a one-line statement of the evidence it measures.  The weights that combine
them are fitted on the gold cards of *other* documents (:mod:`rag.cards.train`); the
features themselves know no document.

The evidence is of three kinds: the document's own structure naming the field where the
line stands (its heading, its page's title, its table's column header, its row label);
the answerer having quoted the line for one of the field's standard questions; and
context that says the line is not the scheme's own term (a worked example, a special
case that raises the ceiling, a pointer to another page).  :data:`DIRECTION` says which
side of the choice each feature speaks for; the fit keeps it there.

A line is a *candidate* for a field only when the document names the field at or around
it (:data:`SUPPORT`) and what it shows has the field's kind of value
(:func:`rag.cards.fields.evidence`): a field nothing in the document names is 「記載なし」.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rag.cards import compose
from rag.cards import fields as fd
from rag.cards import values as cv
from rag.cards.layout import Layout

# How close a label above (or a naming line around) must be to speak for the line.
_ABOVE = 3
_NEAR = 2
_LABEL_CHARS = 30
# The name starts the line (after its bullet; one character of slack for 「お」「各」): 「補助率　2/3」, 「申請締切：…」.
_LABEL_START = 1
# What follows a name used as a label: a gap, a colon, a bracket, the topic marker.
_LABEL_FOLLOWERS = frozenset(" \t:：(（)）】>＞]は")
# A name this far into the line is still its topic when は follows (「本補助金の補助対象者は」).
_TOPIC_START = 8
_MARKS = re.compile(r"^[\s\d.\-‐()①-⑳❶-❿・■●◆◇○▶※★▲◎<>【】\[\]]+")
_EXAMPLE = re.compile(r"例[:①-⑳\d]|例えば|計算例|記載例|算定例|イメージ|ケース|シミュレーション|試算|参考|早見表")
_INTRO_WORD = re.compile(r"以下|下記|次")
# How far after 「以下」「下記」「次」 the thing they introduce is named (「以下の全ての要件」).
_INTRODUCED_REACH = 8
_STATES = r"(?:です|となります|になります|になりません|となりません|とします)?$"
_EXAMPLE_REACH = 15
# Rows under one header from which a table reads as a lookup chart rather than a set of terms.
_LONG_TABLE = 8
_TIMES_RATE = re.compile(r"[×x]\s*\d+(?:\.\d+)?\s*%")
_PAYMENT = re.compile(r"支給額|補助金額|補助額|助成額|給付額|交付額")
_SPECIAL = re.compile(r"特例|上乗せ|加算|引き上げ|引上げ|割増")
_ELSEWHERE = re.compile(r"P\.?\s*\d|\d+\s*(?:頁|ページ)|参照|ご確認ください|をご覧ください")
_BRACKETED = re.compile(r"[(（][^()（）]*[)）]")


@dataclass(frozen=True)
class Cited:
    """A line the answerer quoted for one of a field's questions."""

    page: int
    quote: str
    confidence: float


@dataclass
class FieldView:
    """One field's view of a document: its lines, what the answerer quoted, where the field is named."""

    field: str
    layout: Layout
    cited: list[Cited] = field(default_factory=list)

    def __post_init__(self) -> None:
        lines = self.layout.lines
        self._cells: dict[int, compose.Cell] = {}
        self._quoted: dict[int, float] = {}
        for c in self.cited:
            key = _squash(c.quote)
            for i in self.layout.pages.get(c.page, range(0)):
                text = _squash(lines[i].text)
                if key and (key in text or (len(text) >= 8 and text in key)):
                    self._quoted[i] = max(self._quoted.get(i, 0.0), c.confidence)
        # Pages (in order) where a heading, page title or table header names the field.
        self.named_pages = sorted({ln.page for i, ln in enumerate(lines) if not ln.contents and self.titled(i)})

    def cell(self, i: int) -> compose.Cell:
        """What the card shows when the field is read at line ``i`` (:func:`compose.cell`)."""
        if i not in self._cells:
            self._cells[i] = compose.cell(self.field, self.layout, i)
        return self._cells[i]

    def value(self, i: int) -> str:
        """The value shown when the field is read at line ``i``."""
        return self.cell(i).value

    def names(self, text: str) -> bool:
        return fd.names(self.field, cv.nfkc(text))

    def heading_of(self, i: int) -> str:
        line = self.layout.lines[i]
        return "\n".join([line.path[-1] if line.path else "", line.title])

    def titled(self, i: int) -> bool:
        """The heading, page title or table header over line ``i`` names the field."""
        return self.names(self.heading_of(i)) or self.names("\n".join(self.layout.lines[i].head))

    def quoted(self, i: int) -> float:
        return self._quoted.get(i, 0.0)

    def context(self, i: int) -> str:
        """The headings and labels around line ``i`` (what :func:`fields.evidence` may read beside it)."""
        around = [ln.text for ln in self.layout.same_page(i, -_NEAR, _NEAR)]
        return "\n".join([self.heading_of(i), *self.layout.lines[i].head, *around])


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", cv.nfkc(text))


def label_names(v: FieldView, i: int) -> float:
    """The line is the field's own statement: it starts with the field's name as a label
    (「補助率　2/3」「申請締切：2025年7月25日」) or has it as its topic (「本補助金の補助対象者は、…」).

    Not a line that merely starts with the name as a modifier (「補助対象者の要件は…」「要件を満たした日」).
    """
    text = _MARKS.sub("", cv.nfkc(v.layout.lines[i].text))
    for n in fd.NAMES[v.field]:
        at = text.find(n)
        if at < 0:
            continue
        after = text[at + len(n) : at + len(n) + 1]
        if at <= _LABEL_START and (not after or after in _LABEL_FOLLOWERS):
            return 1.0
        if at <= _TOPIC_START and after == "は":
            return 1.0
    return 0.0


def specific_name(v: FieldView, i: int) -> float:
    """The line or its heading names the field by a name that means nothing else (「支給限度額」「補助上限額」「申請期間」),
    not only a generic one (「上限額」「支給額」「要件」「締切」) that other limits and deadlines share."""
    line = v.layout.lines[i]
    text = cv.nfkc("\n".join([line.text, v.heading_of(i), *line.head]))
    return float(fd.names_specifically(v.field, text))


def introduces_named(v: FieldView, i: int) -> float:
    """The line says a list of the field follows: the field is what 「以下の」「下記の」「次の」 introduce
    (「以下の全ての要件を満たす…」「以下の経費は補助対象外です。」)."""
    line = v.layout.lines[i]
    if not compose.introduces(line):
        return 0.0
    text = cv.nfkc(line.text)
    return float(any(v.names(text[m.end() : m.end() + _INTRODUCED_REACH]) for m in _INTRO_WORD.finditer(text)))


def states_field(v: FieldView, i: int) -> float:
    """The line ends by stating the field of what it names (「…の経費は補助対象外。」「…法人…が対象です。」)."""
    text = cv.nfkc(v.layout.lines[i].text).rstrip("。. ")
    return float(any(re.search(re.escape(n) + _STATES, text) for n in fd.NAMES[v.field]))


def line_names(v: FieldView, i: int) -> float:
    """The line names the field anywhere in it."""
    return float(v.names(v.layout.lines[i].text))


def heading_names(v: FieldView, i: int) -> float:
    """The innermost section heading over the line, or its page's title, names the field."""
    return float(v.names(v.heading_of(i)))


def field_heading(v: FieldView, i: int) -> float:
    """The line is itself a section heading or page title that names the field: the section is the field's."""
    line = v.layout.lines[i]
    return float((line.heading or line.text == line.title) and v.names(line.text))


def sub_heading(v: FieldView, i: int) -> float:
    """The line is a heading inside a section already named for the field (「① 製品等の新規性要件」
    under 「(1) 新事業進出要件」): one part of the field, where the section over it states the whole."""
    line = v.layout.lines[i]
    return float(line.heading and any(v.names(h) for h in line.path[:-1]))


def column_names(v: FieldView, i: int) -> float:
    """The header row or caption of the table the line is a row of names the field."""
    return float(v.names("\n".join(v.layout.lines[i].head)))


def label_above(v: FieldView, i: int) -> float:
    """A short label line just above names the field (「(2)補助率」 over 「1/2」, 「補助率・補助上限額は?」 over a table)."""
    return float(any(len(ln.text) <= _LABEL_CHARS and not ln.text.endswith("。") and v.names(ln.text) for ln in v.layout.same_page(i, -_ABOVE, -1)))


def named_near(v: FieldView, i: int) -> float:
    """A line within two lines of it names the field (a row label printed beside, not before, the value)."""
    return float(any(v.names(ln.text) for ln in v.layout.same_page(i, -_NEAR, _NEAR)))


def first_named(v: FieldView, i: int) -> float:
    """The line is on the first page with a heading, title or table header naming the field:
    documents state terms where they first title them, and refer back later."""
    return float(bool(v.named_pages) and v.layout.lines[i].page == v.named_pages[0])


def answer_quote(v: FieldView, i: int) -> float:
    """The answerer quoted this line for one of the field's questions (its calibrated confidence)."""
    return v.quoted(i)


def excluded_heading(v: FieldView, i: int) -> float:
    """The heading over the line names the field's exclusion (「補助対象外となる事業者」 over would-be applicants)."""
    return float(v.field in fd.EXCLUDED_BY and fd.excludes(cv.nfkc(v.heading_of(i))))


def example(v: FieldView, i: int) -> float:
    """The line, its heading or its table's caption is a worked example or a lookup chart (「早見表」),
    or the line stands in an example: below a line that opens one (「例③:…」) with no heading between."""
    line = v.layout.lines[i]
    if _EXAMPLE.search(cv.nfkc("\n".join([v.heading_of(i), line.text, *line.head]))):
        return 1.0
    for ln in reversed(v.layout.same_page(i, -_EXAMPLE_REACH, -1)):
        if compose.EXAMPLE_START.match(cv.nfkc(ln.text)):
            return 1.0
        if ln.heading:
            break
    return 0.0


def rate_formula(v: FieldView, i: int) -> float:
    """A payment written as base × rate (「支給額 = 賃金額 × 10%」), the amount named on the line or the one above.

    Benefit leaflets state their rate this way and never call it 補助率.
    """
    if v.field != "補助率":
        return 0.0
    text = cv.nfkc(v.layout.lines[i].text)
    if not _TIMES_RATE.search(text):
        return 0.0
    return float(any(_PAYMENT.search(cv.nfkc(ln.text)) for ln in [v.layout.lines[i], *v.layout.same_page(i, -1, -1)]))


def special_case(v: FieldView, i: int) -> float:
    """The line (outside brackets) or its heading is about a special case that raises or adds to the terms."""
    own = _BRACKETED.sub("", cv.nfkc(v.layout.lines[i].text))
    return float(bool(_SPECIAL.search(own + "\n" + cv.nfkc(v.heading_of(i)))))


def long_table(v: FieldView, i: int) -> float:
    """The line is a row of a long table (a lookup chart of many values), not a stated term."""
    line = v.layout.lines[i]
    if not line.head:
        return 0.0
    return float(sum(ln.head == line.head for ln in v.layout.same_page(i, -_LONG_TABLE * 3, _LONG_TABLE * 3)) + 1 >= _LONG_TABLE)


def elsewhere(v: FieldView, i: int) -> float:
    """The line points to another page or document (「補助対象となる経費 P.4」「詳細は17ページ」) instead of stating."""
    return float(bool(_ELSEWHERE.search(cv.nfkc(v.layout.lines[i].text))))


def own_evidence(v: FieldView, i: int) -> float:
    """The line itself, not only what it introduces, shows the field's kind of value."""
    return float(fd.evidence(v.field, cv.nfkc(v.layout.lines[i].text), cv.nfkc(v.context(i)), cv.nfkc(v.heading_of(i))))


def composed(v: FieldView, i: int) -> float:
    """The value is read beyond the line: the items it introduces, a table's row labels, a breakdown."""
    return float(compose.shorten(v.layout.lines[i].text) != v.value(i))


def long_line(v: FieldView, i: int) -> float:
    """A long running sentence (over 80 characters) rather than a stated term."""
    return float(len(v.layout.lines[i].text) > 80)


FEATURES: dict[str, Callable[[FieldView, int], float]] = {
    "label_names": label_names,
    "line_names": line_names,
    "specific_name": specific_name,
    "introduces_named": introduces_named,
    "states_field": states_field,
    "heading_names": heading_names,
    "field_heading": field_heading,
    "sub_heading": sub_heading,
    "column_names": column_names,
    "label_above": label_above,
    "named_near": named_near,
    "first_named": first_named,
    "answer_quote": answer_quote,
    "excluded_heading": excluded_heading,
    "example": example,
    "rate_formula": rate_formula,
    "special_case": special_case,
    "long_table": long_table,
    "elsewhere": elsewhere,
    "own_evidence": own_evidence,
    "composed": composed,
    "long_line": long_line,
}
# What each feature is evidence of: +1 for the line being the field's value, -1 against, 0 either
# way.  The fit (rag.cards.train) keeps each weight on its side and starts from it as a prior.
DIRECTION: dict[str, int] = {
    "label_names": 1, "line_names": 1, "specific_name": 1, "introduces_named": 1, "states_field": 1,
    "heading_names": 1, "field_heading": 1, "column_names": 1, "label_above": 1, "named_near": 1, "first_named": 1,
    "answer_quote": 1, "rate_formula": 1, "own_evidence": 1,
    "sub_heading": -1, "excluded_heading": -1, "example": -1, "special_case": -1, "long_table": -1, "elsewhere": -1,
    "long_line": -1,
    "composed": 0,
}
# A line is a candidate only when the document itself names the field at or around it.  The
# answerer's quote alone is not enough: on the development documents such lines were almost never
# the value (1 of 18), and they are how a field the document does not state would get filled.
# Everything else stays out, so a field nothing names is 記載なし.
SUPPORT = ("label_names", "line_names", "heading_names", "column_names", "label_above", "named_near", "rate_formula")


def candidates(v: FieldView) -> list[tuple[int, list[float]]]:
    """(line index, feature row) of every line that can be read as the field's value."""
    out = []
    for i, line in enumerate(v.layout.lines):
        if line.contents:
            continue  # a table of contents names every field and states none
        if not any(FEATURES[n](v, i) for n in SUPPORT):
            continue
        value = v.value(i)
        if compose.only_names(v.field, value):
            continue  # a heading alone (「お問い合わせ」) names the field and states nothing
        if fd.evidence(v.field, cv.nfkc(value), cv.nfkc(v.context(i)), cv.nfkc(v.heading_of(i))):
            out.append((i, [f(v, i) for f in FEATURES.values()]))
    return out


__all__ = ["DIRECTION", "FEATURES", "SUPPORT", "Cited", "FieldView", "candidates"]
