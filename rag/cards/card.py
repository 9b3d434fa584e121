"""Scheme cards: the key terms of a 公募要領 / 支給要領 / ガイドブック, each with its page and line.

A consultant reading this week's 公募要領 wants one row: who may apply, up to how much,
at what rate, for which costs, by when, whom to call.  The card is filled by the same
offline answerer the chat uses, and by the document's own structure:

1. the answerer is asked a few standard questions per field, scoped to the one document
   (``sources=[file]``); the lines it quotes are one kind of evidence;
2. every line of the document is laid out with its section heading, page title and table
   header (:mod:`.layout`); a line where the structure names the field (「(2)補助率」 over
   「1/2」, a row under 「補助上限額」) is a candidate, if it (or the list it introduces,
   :mod:`.compose`) shows the field's kind of value (:func:`.fields.evidence`: an amount,
   a rate, a date …).  A line the answerer quoted but nothing names is not;
3. the candidates are scored by fitted weights (:mod:`.features`, :mod:`.model`), and the
   best is taken when its probability clears the fitted threshold.

A field with no candidate, or none good enough, is ``None`` and shown as 「記載なし」.
Nothing is guessed.  制度名 and 実施機関 come from the cover.

Cards are cached beside the index (``cards.json``, JSON only) keyed by each document's
sha256, the card format, the answer model and the card model, so a card is rebuilt only
when its document (or what reads it) changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rag.cards import values as cv
from rag.cards.compose import clean
from rag.cards.features import Cited, FieldView, candidates
from rag.cards.fields import ORG
from rag.cards.layout import Layout, layout
from rag.cards.model import CardModel, load_card_model
from rag.jsonfile import write_atomically
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
# Bump when questions, features, evidence rules or the JSON shape change: old cached cards are then rebuilt.
CARD_FORMAT = 2

# Standard questions per field, phrased as a consultant asks them; the wordings after the first
# catch other schemes' words (支給, 助成, 給付).  Every one is asked (see :func:`read`).
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


def scheme_name(pages: list[Page], cover: str) -> tuple[str, int, str, float] | None:
    """(name with 回/枠, page, quoted line, confidence) from the cover, else the most named scheme.

    The cover's title block names the scheme (「…補助金」「…給付の内容と支給申請手続」); a
    document that starts mid-pamphlet (an excerpt) is named by the scheme it mentions most.
    """
    first = pages[0] if pages else None
    lines = [clean(line) for line in cover.split("\n") if line.strip()]
    if first is not None:
        lines += [clean(line) for line in first.text.split("\n")[:8] if line.strip()]
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


def _organisation_on_cover(first: Page | None) -> tuple[str, str] | None:
    """A short cover line naming the body that runs the scheme (ends with 事務局, 機構, 労働局 …)."""
    if first is None:
        return None
    for line in first.text.split("\n"):
        line = clean(line)
        core = re.sub(r"[（(][^）)]*[）)]$", "", line)
        if 2 < len(line) <= 60 and re.search(ORG + r"$", core) and not line.endswith("。"):
            return line, line
    return None


@dataclass
class Reading:
    """What a card is made from: the document's pages and, per field, the lines the answerer quoted."""

    source: str
    title: str
    cover: str
    pages: list[Page]
    cited: dict[str, list[Cited]]

    @functools.cached_property
    def layout(self) -> Layout:
        return layout(self.pages)

    def views(self) -> dict[str, FieldView]:
        """Each question-asked field's view of the document (what :mod:`rag.cards.features` reads)."""
        return {name: FieldView(name, self.layout, self.cited.get(name, [])) for name in QUESTIONS}


def read(pipeline, source: str) -> Reading | None:
    """Ask the answerer every field's standard questions about ``source`` (scoped to it), or
    ``None`` when the document does not describe a scheme."""
    pages = list(pipeline.index.iter_pages([source]))
    if not pages or not is_scheme_document(pages):
        return None
    cited: dict[str, list[Cited]] = {}
    for name, questions in QUESTIONS.items():
        if name == "実施機関" and _organisation_on_cover(pages[0]):
            continue  # the cover names it, and the cover's line is taken (card_from)
        # Every wording is asked: a line quoted for two wordings of the field is better evidence
        # than one, and the choice among lines is the card model's, not the first answer's.
        for q in questions:
            answer = pipeline.ask(q, sources=[source])
            if not answer.found:
                continue
            confidence = float(answer.confidence or 0.0)
            cited.setdefault(name, []).extend(Cited(c.page, c.quote, confidence) for c in answer.citations if c.source == source)
    return Reading(source, pipeline.titles().get(source, source), pipeline.cover(source), pages, cited)


def choose(view: FieldView, model: CardModel) -> CardField | None:
    """The field's value: the best-scored candidate line, or ``None`` (記載なし) when none is
    good enough or nothing in the document speaks for the field at all."""
    scored = [(model.probability(row), i) for i, row in candidates(view)]
    if not scored:
        return None
    # Ties go to the earlier line: a document states a term before it qualifies it.
    p, i = max(scored, key=lambda s: (s[0], -s[1]))
    if p < model.threshold:
        return None
    shown = view.cell(i)
    return CardField(shown.value, shown.line.page, shown.quote, p, shown.line.label)


def card_from(reading: Reading, model: CardModel) -> SchemeCard:
    """The card of a read document, each field chosen by ``model``."""
    pages = reading.pages
    fields: dict[str, CardField | None] = {n: None for n in FIELDS}
    named = scheme_name(pages, reading.cover)
    if named:
        name, page, quote, conf = named
        fields["制度名"] = CardField(name, page, quote, conf, pages[0].label if page == pages[0].page else None)
    for name, view in reading.views().items():
        fields[name] = choose(view, model)
    # The cover's own line naming the body that runs the scheme outranks any line inside.
    if org := _organisation_on_cover(pages[0]):
        fields["実施機関"] = CardField(org[0], pages[0].page, org[1], 0.8, pages[0].label)
    return SchemeCard(reading.source, reading.title, named[0] if named else reading.title, fields)


def build_card(pipeline, source: str, model: CardModel | None = None) -> SchemeCard | None:
    """The card of one indexed document, or ``None`` when it does not describe a scheme."""
    reading = read(pipeline, source)
    return card_from(reading, model or load_card_model()) if reading else None


# ------------------------------------------------------------------ cache beside the index


def model_fingerprint(pipeline, card_model: CardModel) -> str:
    model = getattr(pipeline.offline, "model", None)
    text = model.to_json() if model is not None else ""
    return hashlib.sha256(f"{CARD_FORMAT}\n{text}\n{card_model.to_json()}".encode()).hexdigest()[:16]


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    # A cache from another card format is ignored (rebuilt), never misread.
    return data.get("cards", {}) if isinstance(data, dict) and data.get("format") == CARD_FORMAT else {}


def _write_cache(path: Path, entries: dict) -> None:
    write_atomically(path, json.dumps({"format": CARD_FORMAT, "cards": entries}, ensure_ascii=False, indent=1))


def cards_for_index(
    pipeline, index_dir: Path, progress: Callable[[str], None] | None = None, card_model: CardModel | None = None,
) -> list[SchemeCard]:
    """Every scheme card of the index, rebuilding only documents whose sha256, answerer or card model changed."""
    path = Path(index_dir) / CARDS_FILE
    cached = _read_cache(path)
    card_model = card_model or load_card_model()
    fingerprint = model_fingerprint(pipeline, card_model)
    entries, changed = {}, False
    for info in pipeline.index.manifest.source_infos():
        old = cached.get(info.source)
        if old and old.get("sha256") == info.sha256 and old.get("model") == fingerprint:
            entries[info.source] = old
            continue
        if progress:
            progress(info.source)
        card = build_card(pipeline, info.source, card_model)
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
    "FIELDS", "NOT_STATED", "QUESTIONS", "CardField", "Reading", "SchemeCard", "build_card", "card_from", "cards_for_index",
    "card_rows", "choose", "format_cards", "is_scheme_document", "read", "scheme_name",
]
