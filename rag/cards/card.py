"""Scheme cards: the key terms of a 公募要領 / 支給要領 / ガイドブック, each with its page and line.

A consultant reading this week's 公募要領 wants one row: who may apply, up to how much,
at what rate, for which costs, by when, whom to call.  The card is filled by the same
offline answerer the chat uses: a few standard questions per field, scoped to the one
document (``sources=[file]``).  An answer is kept for a field only when the answerer
does not decline *and* the quoted line carries the kind of evidence the field needs
(an amount for 補助上限額, a rate for 補助率, a date or 「…以内」 for 申請期間 …);
otherwise the field is ``None`` and is shown as 「記載なし」.  Nothing is guessed.

Cards are cached beside the index (``cards.json``, JSON only) keyed by each document's
sha256, the card format and the answer model, so a card is rebuilt only when its
document (or the answerer) changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rag.cards import values as cv
from rag.schema import Page

FIELDS = (
    "制度名",
    "実施機関",
    "対象者",
    "補助上限額",
    "補助率",
    "補助対象経費",
    "対象外経費",
    "申請期間",
    "主な要件",
    "問い合わせ先",
)
NOT_STATED = "記載なし"
CARDS_FILE = "cards.json"
# Bump when questions, evidence rules or the JSON shape change: old cached cards are then rebuilt.
CARD_FORMAT = 1
_VALUE_CHARS = 160

# Standard questions per field, phrased as a consultant asks them.  The first that yields an
# answer with the right kind of evidence wins; later ones catch other wordings (支給, 助成).
QUESTIONS: dict[str, tuple[str, ...]] = {
    "実施機関": ("この補助金の事務局・実施機関はどこですか？", "申請先はどこですか？"),
    "対象者": ("補助対象者は誰ですか？", "支給を受けることができるのはどのような人ですか？", "対象となる事業者の規模の要件は？"),
    "補助上限額": ("補助上限額はいくらですか？", "補助金額の上限はいくらですか？", "支給額の限度額はいくらですか？"),
    "補助率": ("補助率はいくらですか？", "支給率・助成率は何％ですか？"),
    "補助対象経費": ("補助対象経費は何ですか？", "助成の対象となる経費は何ですか？"),
    "対象外経費": ("補助対象外となる経費は何ですか？", "補助の対象にならない経費や支払いは？"),
    "申請期間": ("申請の締切はいつですか？", "申請期間はいつまでですか？"),
    "主な要件": ("補助を受けるための基本要件は何ですか？", "満たす必要がある要件は何ですか？"),
    "問い合わせ先": ("問い合わせ先の電話番号は？", "問い合わせ先はどこですか？"),
}

# What a quoted line must show to count as the field's value (NFKC text).  A line without
# it answers some other question, however confident the answerer is.
_ORG = r"(?:事務局|機構|労働局|公共職業安定所|ハローワーク|中央会|協会|センター|財団|省|庁|商工会|商工会議所|都道府県|役場|課|部|局|市|町|村|県)"
_EVIDENCE: dict[str, Callable[[str], bool]] = {
    "実施機関": lambda t: bool(re.search(_ORG, t)),
    "対象者": lambda t: bool(re.search(r"対象者|対象とな|対象です|被保険者|事業者|中小企業|小規模|法人|個人|従業員", t)),
    "補助上限額": lambda t: bool(cv.amounts(t)) and bool(re.search(r"上限|限度|補助金額|補助額|助成額|支給額|以下|人", t)),
    "補助率": lambda t: bool(cv.rates(t)) and bool(re.search(r"補助率|助成率|支給率|負担割合|×|中小企業|小規模", t)),
    "補助対象経費": lambda t: bool(re.search(r"経費|費|代|料", t)) and not re.search(r"対象外|対象になりません|対象となりません", t),
    "対象外経費": lambda t: bool(re.search(r"対象外|対象になりません|対象となりません|認められません|助成対象となりません", t))
    and bool(re.search(r"経費|費|支払|購入|代|料|契約額", t)),
    "申請期間": lambda t: bool(cv.dates(t) or cv.periods(t)) and bool(re.search(r"申請|締切|受付|期限|公募|提出", t)),
    "主な要件": lambda t: bool(re.search(r"要件|以上増加|増加させ|満たす|満たし|こと", t)),
    "問い合わせ先": lambda t: bool(cv.phones(t)) or bool(re.search(r"問い?合わ?せ|問合せ|コールセンター|相談窓口|サポートセンター", t)),
}

# Words that make a document a scheme document: the terms of applying for money.  A strategy
# document names 交付金 often but rarely states a rate, a ceiling and a deadline.
_APPLICATION_TERMS = (
    "補助率", "助成率", "支給率", "補助上限", "上限額", "限度額", "支給額", "補助金額", "補助対象経費", "支給対象",
    "申請期間", "申請締切", "応募締切", "公募期間", "支給申請", "交付申請", "申請受付", "公募要領", "補助対象者",
)
_SCHEME_WORD = re.compile(r"補助金|助成金|給付金?|交付金|支援金|奨励金")
_ROUND = re.compile(r"第\s*\d+\s*(?:回|次)")
_VARIANT = re.compile(r"[＜<〈【]([^＞>〉】]{1,20}(?:枠|型|コース))[＞>〉】]|([^\s、。（(]{1,15}(?:枠|コース))")


@dataclass(frozen=True)
class CardField:
    """One field of a card: the value, the 1-based PDF page and the line quoted from it."""

    value: str
    page: int
    quote: str
    confidence: float
    label: str | None = None  # the printed page number when it differs from ``page``

    def to_json(self) -> dict:
        return {"value": self.value, "page": self.page, "quote": self.quote, "confidence": round(self.confidence, 3), "label": self.label}

    @classmethod
    def from_json(cls, d: dict) -> CardField:
        return cls(d["value"], int(d["page"]), d["quote"], float(d["confidence"]), d.get("label"))


@dataclass
class SchemeCard:
    source: str
    title: str
    scheme: str
    fields: dict[str, CardField | None] = field(default_factory=dict)

    def to_json(self) -> dict:
        """``{"source", "scheme", "fields": {field: {...} | null}}`` plus the document title."""
        return {
            "source": self.source,
            "scheme": self.scheme,
            "title": self.title,
            "fields": {name: (f.to_json() if (f := self.fields.get(name)) else None) for name in FIELDS},
        }

    @classmethod
    def from_json(cls, d: dict) -> SchemeCard:
        return cls(
            d["source"], d.get("title", d["source"]), d["scheme"],
            {name: (CardField.from_json(v) if (v := d["fields"].get(name)) else None) for name in FIELDS},
        )


# ------------------------------------------------------------------ which documents get a card


def application_terms(pages: Iterable[Page]) -> tuple[int, int, set[str]]:
    """(pages, pages using an application term, the distinct terms used)."""
    total, hit, terms = 0, 0, set()
    for page in pages:
        total += 1
        text = cv.nfkc(page.text)
        found = {t for t in _APPLICATION_TERMS if t in text}
        terms |= found
        hit += bool(found)
    return total, hit, terms


def is_scheme_document(pages: Iterable[Page]) -> bool:
    """A document that describes how to apply for a scheme (公募要領, 支給要領, leaflet, guidebook).

    Several distinct application terms, on a fair share of the pages: a strategy document
    mentions a 交付金 or a 申請 here and there, a 公募要領 is made of them.
    """
    total, hit, terms = application_terms(pages)
    return total > 0 and len(terms) >= 2 and hit >= max(2, 0.15 * total)


# ------------------------------------------------------------------ the scheme's name


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def scheme_name(pages: list[Page], cover: str) -> tuple[str, int, str, float] | None:
    """(name with 回/枠, page, quoted line, confidence) from the cover, else the most named scheme.

    The cover's title block names the scheme (「…補助金」「…給付の内容と支給申請手続」); a
    document that starts mid-pamphlet (an excerpt) is named by the scheme it mentions most.
    """
    first = pages[0] if pages else None
    lines = [_clean(line) for line in cover.split("\n") if line.strip()]
    if first is not None:
        lines += [_clean(line) for line in first.text.split("\n")[:8] if line.strip()]
    name_line = next((line for line in lines if _SCHEME_WORD.search(line) and len(line) <= 60), None)
    if name_line is not None and first is not None:
        # A title broken over lines (「ものづくり・商業・サービス」/「生産性向上促進補助金」) is joined back.
        i = lines.index(name_line)
        if i > 0 and not _SCHEME_WORD.search(lines[i - 1]) and len(lines[i - 1]) <= 20 and not lines[i - 1].endswith(tuple("。．")):
            name_line = lines[i - 1] + name_line
        name = _with_round(name_line, "\n".join(lines))
        return name, first.page, name_line, 0.9
    from rag.schemes import extract_schemes

    named = [s for s in extract_schemes(pages) if s.kind in ("補助金", "助成金", "給付金", "交付金", "支援金")]
    if not named:
        return None
    best = max(named, key=lambda s: s.mention_count)
    m = best.mentions[0]
    return _with_round(best.name, m.context), m.page, m.context, 0.6


def _with_round(name: str, around: str) -> str:
    """The name with its round (第3回, 第20次) and track (通常枠, …コース) when the cover says them.

    The name ends at its scheme word: a cover line goes on to say what the document is
    (「…補助金 公募要領 概要版」「…給付の内容と支給申請手続」), which is not the scheme's name.
    """
    name = re.sub(r"\s+", "", cv.nfkc(name))
    if m := _SCHEME_WORD.search(name):
        name = name[: m.end()]
    text = cv.nfkc(around)
    extra = []
    if (m := _ROUND.search(text)) and m.group(0).replace(" ", "") not in name:
        extra.append(m.group(0).replace(" ", ""))
    for m in _VARIANT.finditer(text):
        v = (m.group(1) or m.group(2) or "").strip()
        if v and v not in name and v not in extra and not _SCHEME_WORD.search(v):
            extra.append(v)
            break
    return name + (f"（{'・'.join(extra)}）" if extra else "")


# ------------------------------------------------------------------ the fields


def _strip_markers(text: str) -> str:
    return _clean(re.sub(r"\[\d+\]", "", text))


def _organisation_on_cover(first: Page | None) -> tuple[str, str] | None:
    """A short cover line naming the body that runs the scheme (ends with 事務局, 機構, 労働局 …)."""
    if first is None:
        return None
    for line in first.text.split("\n"):
        line = _clean(line)
        core = re.sub(r"[（(][^）)]*[）)]$", "", line)
        if 2 < len(line) <= 60 and re.search(_ORG + r"$", core) and not line.endswith("。"):
            return line, line
    return None


def _value(name: str, quote: str, page_text: str) -> str:
    """The value shown in the cell: the quoted line, and for a ceiling broken down by head count, every row."""
    if name == "補助上限額":
        rows = cv.band_amounts(page_text.split("\n"))
        if len(rows) >= 2:
            return "／".join(f"{r.band.label()} {cv.yen(r.amount)}" for r in rows)
    text = _clean(quote)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


_NUMBERING = re.compile(r"^[\s\d０-９.．()（）①-⑳・■●◆▶※]+")


def _only_heading(quote: str) -> bool:
    """A numbered section title alone (「6. 問い合わせ先」) names the field; it does not state it."""
    core = _NUMBERING.sub("", cv.nfkc(quote)).strip()
    return len(core) <= 12 and not re.search(r"\d", core)


def field_from_answers(name: str, answers: Iterable, page_text: Callable[[str, int], str | None], source: str) -> CardField | None:
    """The first cited line, over the answers given in order, that is evidence for ``name``."""
    test = _EVIDENCE[name]
    for answer in answers:
        if not answer.found:
            continue
        for c in answer.citations:
            if c.source != source:
                continue
            text = page_text(c.source, c.page) or ""
            quote = c.quote
            if _only_heading(quote):
                # The answerer found the field's heading: its content is the line under it.
                quote = _line_after(text, quote)
            if quote and test(cv.nfkc(quote)) and not _only_heading(quote):
                return CardField(_value(name, quote, text), c.page, _clean(quote), float(answer.confidence or 0.0), c.label)
    return None


def _line_after(page_text: str, heading: str) -> str:
    lines = [ln for ln in page_text.split("\n") if ln.strip()]
    key = _clean(heading)
    for i, line in enumerate(lines[:-1]):
        if _clean(line) == key or key in _clean(line):
            return lines[i + 1]
    return ""


def build_card(pipeline, source: str) -> SchemeCard | None:
    """The card of one indexed document, or ``None`` when it does not describe a scheme."""
    pages = list(pipeline.index.iter_pages([source]))
    if not pages or not is_scheme_document(pages):
        return None
    title = pipeline.titles().get(source, source)
    fields: dict[str, CardField | None] = {n: None for n in FIELDS}
    named = scheme_name(pages, pipeline.cover(source))
    if named:
        name, page, quote, conf = named
        fields["制度名"] = CardField(name, page, quote, conf, pages[0].label if page == pages[0].page else None)
    scheme = named[0] if named else title
    for fname, questions in QUESTIONS.items():
        if fname == "実施機関" and (org := _organisation_on_cover(pages[0])):
            fields[fname] = CardField(org[0], pages[0].page, org[1], 0.8, pages[0].label)
            continue
        # Asked lazily: the second wording is asked only when the first gave no evidence.
        answers = (pipeline.ask(q, sources=[source]) for q in questions)
        fields[fname] = field_from_answers(fname, answers, pipeline.page_text, source)
    return SchemeCard(source, title, scheme, fields)


# ------------------------------------------------------------------ cache beside the index


def model_fingerprint(pipeline) -> str:
    model = getattr(pipeline.offline, "model", None)
    text = model.to_json() if model is not None else ""
    return hashlib.sha256(f"{CARD_FORMAT}\n{text}".encode()).hexdigest()[:16]


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    # A cache from another card format is ignored (rebuilt), never misread.
    return data.get("cards", {}) if isinstance(data, dict) and data.get("format") == CARD_FORMAT else {}


def _write_cache(path: Path, entries: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps({"format": CARD_FORMAT, "cards": entries}, ensure_ascii=False, indent=1), encoding="utf-8")
    # Readers see the old file or the new one, never half of one.
    os.replace(tmp, path)


def cards_for_index(pipeline, index_dir: Path, progress: Callable[[str], None] | None = None) -> list[SchemeCard]:
    """Every scheme card of the index, rebuilding only documents whose sha256 or answerer changed."""
    path = Path(index_dir) / CARDS_FILE
    cached = _read_cache(path)
    fingerprint = model_fingerprint(pipeline)
    entries, changed = {}, False
    for info in pipeline.index.manifest.source_infos():
        old = cached.get(info.source)
        if old and old.get("sha256") == info.sha256 and old.get("model") == fingerprint:
            entries[info.source] = old
            continue
        if progress:
            progress(info.source)
        card = build_card(pipeline, info.source)
        entries[info.source] = {"sha256": info.sha256, "model": fingerprint, "card": card.to_json() if card else None}
        changed = True
    if changed or set(cached) != set(entries):
        _write_cache(path, entries)
    return [SchemeCard.from_json(e["card"]) for _, e in sorted(entries.items()) if e.get("card")]


def card_rows(cards: Iterable[SchemeCard]) -> list[dict]:
    """One flat row per scheme (for CSV / Excel): 資料, then each field's value and page."""
    rows = []
    for card in cards:
        row = {"資料": card.source, "制度": card.scheme}
        for name in FIELDS:
            f = card.fields.get(name)
            row[name] = f.value if f else NOT_STATED
            row[f"{name}（頁）"] = f.page if f else None
        rows.append(row)
    return rows


def format_cards(cards: list[SchemeCard]) -> str:
    """Plain text for the terminal: one block per card, one line per field with its page."""
    out = []
    for card in cards:
        out.append(f"■ {card.scheme}  [{card.source}]")
        for name in FIELDS:
            f = card.fields.get(name)
            out.append(f"  {name}: {f.value}（p.{f.page}、確度 {f.confidence:.2f}）" if f else f"  {name}: {NOT_STATED}")
        out.append("")
    return "\n".join(out).rstrip()


__all__ = [
    "FIELDS", "NOT_STATED", "QUESTIONS", "CardField", "SchemeCard", "build_card", "cards_for_index",
    "card_rows", "format_cards", "is_scheme_document", "scheme_name",
]
