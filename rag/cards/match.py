"""Project → schemes: which scheme cards fit a client's project, why, and up to how much.

A consultant describes the project in a few fields or one sentence (業種, 従業員数, 投資額,
目的, 所在地).  Each card is checked only against what it states, with the card line and
page that decide it: the head-count limits in 対象者, the ceiling for the head count in
補助上限額, the rate in 補助率, the costs in 補助対象経費.  A condition the card does not
state is reported as unknown, never assumed to pass.  The expected maximum is
min(上限, 投資額 × 補助率), shown with the lines it came from.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from rag.cards import values as cv
from rag.cards.card import CardField, SchemeCard

PURPOSES: dict[str, tuple[str, ...]] = {
    "設備投資": ("機械装置", "機械・装置", "設備", "装置"),
    "IT導入": ("システム", "ソフトウェア", "クラウド", "ウェブサイト", "IT", "デジタル"),
    "賃上げ": ("賃上げ", "賃金", "給与支給総額", "最低賃金"),
    "人材育成": ("訓練", "研修", "人材育成", "受講", "教育"),
    "新事業": ("新事業", "新製品", "新サービス", "新市場", "販路開拓", "海外"),
}
# How a sentence says each purpose (a client speaks of 機械を入れる, not 設備投資).
_PURPOSE_WORDS: dict[str, tuple[str, ...]] = {
    "設備投資": ("設備", "機械", "装置", "ライン", "工場"),
    "IT導入": ("IT", "システム", "ソフト", "クラウド", "DX", "デジタル", "ウェブ", "EC"),
    "賃上げ": ("賃上げ", "賃金", "給与"),
    "人材育成": ("研修", "訓練", "人材育成", "リスキリング", "育成", "資格"),
    "新事業": ("新事業", "新分野", "新製品", "新商品", "新サービス", "海外", "輸出", "販路"),
}
INDUSTRIES = (
    "製造業", "建設業", "運輸業", "卸売業", "小売業", "宿泊業", "娯楽業", "飲食", "ソフトウェア業", "情報処理サービス業",
    "旅館業", "サービス業", "商業",
)
# Industries that a table row names under a broader heading (宿泊業 is a サービス業 …).
_INDUSTRY_ROWS = {
    "飲食": ("飲食", "小売業", "商業", "サービス業"),
    "宿泊業": ("宿泊業", "旅館業", "サービス業"),
    "娯楽業": ("娯楽業", "サービス業"),
    "小売業": ("小売業", "商業"),
    "卸売業": ("卸売業", "商業"),
    "製造業": ("製造業",),
}
_PREFECTURE = re.compile(r"(北海道|東京都|大阪府|京都府|\S{2,3}県)")


@dataclass
class Project:
    industry: str | None = None
    employees: int | None = None
    investment: int | None = None  # yen
    purpose: str | None = None  # one of PURPOSES
    location: str | None = None


def parse_project(sentence: str) -> Project:
    """A project from one sentence: 「製造業、従業員30人、3,000万円で新しい加工機を導入したい（愛知県）」."""
    t = cv.nfkc(sentence)
    p = Project()
    p.industry = next((i for i in INDUSTRIES if i in t), None)
    if m := re.search(r"(?:従業員|社員|スタッフ)\D{0,4}(\d+)\s*(?:人|名)", t) or re.search(r"(\d+)\s*(?:人|名)(?:規模|の会社|の企業)?", t):
        p.employees = int(m.group(1))
    found = cv.amounts(t)
    p.investment = max(found) if found else None
    p.purpose = next((k for k, words in _PURPOSE_WORDS.items() if any(w in t for w in words)), None)
    if m := _PREFECTURE.search(t):
        p.location = m.group(1)
    return p


@dataclass(frozen=True)
class Reason:
    verdict: str  # "fit", "no" or "unknown"
    field: str
    text: str  # Japanese, for the consultant
    page: int | None = None
    quote: str = ""


@dataclass
class Match:
    card: SchemeCard
    score: float
    fits: bool | None  # False: a stated condition excludes the project; None: nothing decides it
    reasons: list[Reason] = field(default_factory=list)
    ceiling: int | None = None
    rate: Fraction | None = None
    expected_max: int | None = None
    expected_lines: list[Reason] = field(default_factory=list)


PageText = Callable[[str, int], "str | None"]


def _lines(card: SchemeCard, f: CardField, page_text: PageText | None) -> list[str]:
    text = page_text(card.source, f.page) if page_text else None
    return [ln for ln in (text or f.quote).split("\n") if ln.strip()]


def _size_limit(card: SchemeCard, project: Project, page_text: PageText | None) -> tuple[int | None, str]:
    """The head-count limit 対象者 states for the project's industry, with the line that says it."""
    f = card.fields.get("対象者")
    if f is None:
        return None, ""
    rows = []
    for line in _lines(card, f, page_text):
        b = cv.band(line)
        if b and b.low <= 0 and b.high is not None:
            rows.append((line, b.high))
    if not rows:
        return None, ""
    if project.industry:
        names = _INDUSTRY_ROWS.get(project.industry, (project.industry,))
        for name in names:
            for line, high in rows:
                if name in cv.nfkc(line) and not re.search(f"{name}のうち|{name}[^、\\s]*除く", cv.nfkc(line)):
                    return high, line.strip()
    # Industry unknown or not in the table: the largest limit bounds every industry.
    line, high = max(rows, key=lambda r: r[1])
    return high, line.strip()


def _ceiling(card: SchemeCard, project: Project, page_text: PageText | None) -> tuple[int | None, str, str]:
    """(ceiling in yen, the line, how it was chosen) for the project's head count."""
    f = card.fields.get("補助上限額")
    if f is None:
        return None, "", ""
    rows = cv.band_amounts(_lines(card, f, page_text))
    if rows and project.employees is not None:
        for r in rows:
            if r.band.contains(project.employees):
                return r.amount, r.line, f"従業員{project.employees}人の区分"
        return None, "", ""
    if rows:
        return None, "", "従業員数によって上限額が異なります"
    found = cv.amounts(f.value) or cv.amounts(f.quote)
    return (found[0], f.quote, "") if found else (None, "", "")


def match_card(card: SchemeCard, project: Project, page_text: PageText | None = None) -> Match:
    m = Match(card, 0.0, None)
    fields = card.fields
    # Who may apply: a stated head-count limit decides; none stated is unknown.
    if project.employees is not None:
        limit, line = _size_limit(card, project, page_text)
        f = fields.get("対象者")
        if limit is not None and f is not None:
            if project.employees <= limit:
                m.reasons.append(Reason("fit", "対象者", f"従業員{project.employees}人は上限{limit}人以内", f.page, line))
                m.score += 1
            else:
                m.reasons.append(Reason("no", "対象者", f"従業員{project.employees}人は上限{limit}人を超えます", f.page, line))
                m.fits = False
                m.score -= 5
        else:
            m.reasons.append(Reason("unknown", "対象者", "従業員数の条件はカードに記載がありません（公募要領で確認してください）"))
    # What it pays for.
    if project.purpose:
        words = PURPOSES.get(project.purpose, (project.purpose,))
        costs = fields.get("補助対象経費")
        hit = next(((n, f) for n in ("補助対象経費", "制度名", "主な要件") if (f := fields.get(n)) and any(w in cv.nfkc(f.value + f.quote) for w in words)), None)
        if hit:
            n, f = hit
            m.reasons.append(Reason("fit", n, f"目的「{project.purpose}」に合う記載があります", f.page, f.quote))
            m.score += 2 if n == "補助対象経費" else 1
        elif costs is None:
            m.reasons.append(Reason("unknown", "補助対象経費", "補助対象経費の記載がないため、目的に合うか判断できません"))
        else:
            m.reasons.append(Reason("no", "補助対象経費", f"目的「{project.purpose}」に合う経費の記載が見当たりません", costs.page, costs.quote))
            m.score -= 1
    # How much: ceiling for this head count × rate on the investment.
    ceiling, line, how = _ceiling(card, project, page_text)
    up = fields.get("補助上限額")
    if ceiling is not None and up is not None:
        m.ceiling = ceiling
        m.expected_lines.append(Reason("fit", "補助上限額", f"上限 {cv.yen(ceiling)}" + (f"（{how}）" if how else ""), up.page, line))
    elif up is None:
        m.reasons.append(Reason("unknown", "補助上限額", "補助上限額の記載がありません"))
    elif how:
        m.reasons.append(Reason("unknown", "補助上限額", how + "（従業員数を入れてください）", up.page, up.quote))
    rate_field = fields.get("補助率")
    rates = (cv.rates(rate_field.value) or cv.rates(rate_field.quote)) if rate_field else []
    if rates:
        m.rate = rates[0]
        note = "（条件により異なる率あり）" if len(set(rates)) > 1 else ""
        m.expected_lines.append(Reason("fit", "補助率", f"補助率 {cv.rate_label(m.rate)}{note}", rate_field.page, rate_field.quote))
    else:
        m.reasons.append(Reason("unknown", "補助率", "補助率の記載がありません"))
    if project.investment is not None and m.rate is not None:
        by_rate = int(project.investment * m.rate)
        m.expected_max = min(by_rate, m.ceiling) if m.ceiling is not None else by_rate
        if m.ceiling is None:
            m.reasons.append(Reason("unknown", "補助上限額", "上限額が確認できないため、補助率だけで計算しています"))
    if m.fits is None and any(r.verdict == "fit" for r in m.reasons) and not any(r.verdict == "no" for r in m.reasons):
        m.fits = True
    m.score -= 0.1 * sum(r.verdict == "unknown" for r in m.reasons)
    if m.expected_max:
        m.score += 0.5
    return m


def rank(cards: Iterable[SchemeCard], project: Project, page_text: PageText | None = None) -> list[Match]:
    """Every card matched, best first: fitting ones, then undecided, then excluded."""
    order = {True: 0, None: 1, False: 2}
    matches = [match_card(c, project, page_text) for c in cards]
    return sorted(matches, key=lambda m: (order[m.fits], -m.score, -(m.expected_max or 0), m.card.scheme))
