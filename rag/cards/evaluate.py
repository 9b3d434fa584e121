"""Measuring scheme cards against a hand-written gold file, leave-one-document-out.

The gold (``eval/cards_gold.jsonl``) has one line per development document: whether it
describes a scheme, and for each card field either ``null`` (the document does not state
it) or the pages that state it and ``accept``: groups of short strings, one group of which
must all appear in the card's value or quoted line (compared after NFKC and with
whitespace removed, as the Q&A gold does).  The gold holds field values, pages and
short quotes only, never the documents.

Held out: each document's card is made by an answer model fitted (weights, calibration,
thresholds) on the other documents' questions only (:func:`rag.answering.train.fit_model`),
and its lines are chosen by card weights fitted on the other documents' gold cards only
(:func:`rag.cards.train.fit_card_model`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag.cards.card import FIELDS, SchemeCard, card_from, is_scheme_document, read
from rag.config import PROJECT_ROOT

GOLD_FILE = PROJECT_ROOT / "eval" / "cards_gold.jsonl"


@dataclass(frozen=True)
class GoldField:
    pages: tuple[int, ...]
    accept: tuple[tuple[str, ...], ...]
    value: str = ""


@dataclass(frozen=True)
class GoldDoc:
    set: str
    source: str
    scheme: bool
    fields: dict[str, GoldField | None] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.set}/{self.source}"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def load_gold(path: Path = GOLD_FILE) -> list[GoldDoc]:
    docs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        d = json.loads(line)
        fields: dict[str, GoldField | None] = {}
        if d["scheme"]:
            unknown = set(d["fields"]) - set(FIELDS)
            if unknown or set(FIELDS) - set(d["fields"]):
                raise ValueError(f"{path}:{n}: 項目が一致しません（余分: {sorted(unknown)}, 不足: {sorted(set(FIELDS) - set(d['fields']))}）")
            for name in FIELDS:
                g = d["fields"][name]
                fields[name] = None if g is None else GoldField(tuple(g["pages"]), tuple(tuple(a) for a in g["accept"]), g.get("value", ""))
        docs.append(GoldDoc(d["set"], d["source"], bool(d["scheme"]), fields))
    return docs


@dataclass(frozen=True)
class FieldResult:
    document: str
    field: str
    stated: bool  # the gold says the document states it
    given: bool  # the card gives a value
    value_right: bool  # some accepted group appears in the value or quote
    page_right: bool

    @property
    def right(self) -> bool:
        """Stated: right value on a right page.  Unstated: the card says 記載なし."""
        return (self.value_right and self.page_right) if self.stated else not self.given


def accepted(g: GoldField, value: str, quote: str) -> bool:
    """Whether a card's value or quoted line holds one of the gold's accepted groups of strings."""
    text = _squash(value + "\n" + quote)
    return any(all(_squash(s) in text for s in group) for group in g.accept)


def score_card(gold: GoldDoc, card: SchemeCard | None) -> list[FieldResult]:
    out = []
    for name in FIELDS:
        g = gold.fields.get(name)
        f = card.fields.get(name) if card else None
        if g is None:
            out.append(FieldResult(gold.key, name, False, f is not None, False, False))
            continue
        if f is None:
            out.append(FieldResult(gold.key, name, True, False, False, False))
            continue
        out.append(FieldResult(gold.key, name, True, True, accepted(g, f.value, f.quote), f.page in g.pages))
    return out


def summarise(results: Sequence[FieldResult], detection: Sequence[tuple[str, bool, bool]]) -> dict:
    """Per-field and overall figures; ``detection``: (document, gold scheme?, card made?)."""
    stated = [r for r in results if r.stated]
    unstated = [r for r in results if not r.stated]

    def rate(xs, pred):
        return (sum(map(pred, xs)) / len(xs)) if xs else None

    per_field = {}
    for name in FIELDS:
        s = [r for r in stated if r.field == name]
        u = [r for r in unstated if r.field == name]
        per_field[name] = {
            "stated": len(s),
            "value_accuracy": rate(s, lambda r: r.value_right),
            "page_accuracy": rate(s, lambda r: r.page_right),
            "right_with_page": rate(s, lambda r: r.right),
            "unstated": len(u),
            "unstated_declined": rate(u, lambda r: not r.given),
        }
    return {
        "documents": len({r.document for r in results}),
        "stated_fields": len(stated),
        "unstated_fields": len(unstated),
        "value_accuracy": rate(stated, lambda r: r.value_right),
        "page_accuracy": rate(stated, lambda r: r.page_right),
        "right_with_page": rate(stated, lambda r: r.right),
        "unstated_declined": rate(unstated, lambda r: not r.given),
        "invented": sum(r.given for r in unstated),
        "detection_accuracy": rate(detection, lambda d: d[1] == d[2]),
        "detection": [{"document": d, "scheme": g, "card": c} for d, g, c in detection],
        "per_field": per_field,
    }


def fold_models(gold: Sequence[GoldDoc], cases, pipelines: dict, progress: Callable[[str], None] | None = None) -> dict:
    """For each scheme document of the gold, the answer model fitted without it (weights,
    calibration, thresholds: :func:`rag.answering.train.fit_model` on the other documents' questions)."""
    from rag.answering.features import FEATURES
    from rag.answering.train import fit_model

    models = {}
    for g in gold:
        base = pipelines.get(g.set)
        if base is None or g.source not in base.index.manifest.sources:
            continue
        if not is_scheme_document(base.index.iter_pages([g.source])):
            continue  # telling scheme documents apart needs no answer model
        if progress:
            progress(g.key)
        models[g.key] = fit_model([c for c in cases if c.document != g.key], list(FEATURES))
    return models


def set_pipelines(cases) -> dict:
    """Each development set's open pipeline, from the collected cases (document = ``set/source``)."""
    pipelines = {}
    for c in cases:
        pipelines.setdefault(c.document.split("/", 1)[0], c.pipeline)
    return pipelines


def held_out_readings(gold: Sequence[GoldDoc], pipelines: dict, models: dict) -> dict:
    """Each gold document's :class:`~rag.cards.card.Reading` (``None`` when it is not told to be a
    scheme document), its questions answered by the answer model fitted without it (``models``)."""
    from rag.pipeline import Pipeline

    readings = {}
    for g in gold:
        base = pipelines.get(g.set)
        if base is None or g.source not in base.index.manifest.sources:
            continue
        model = models.get(g.key)
        # The set's open index and embedder; only the answer model differs per fold.
        fold = base if model is None else Pipeline(base.settings, base.index, base.embedder, None, model)
        readings[g.key] = read(fold, g.source)
    return readings


def held_out_cards(gold: Sequence[GoldDoc], pipelines: dict, models: dict) -> dict[str, SchemeCard | None]:
    """Each gold document's card, made with nothing fitted on it: the answers by the answer model
    fitted without it (``models``, from :func:`fold_models`), the choice among lines by card
    weights fitted on the other documents' gold cards (:mod:`rag.cards.train`)."""
    from rag.cards.train import fit_card_model, training_groups

    readings = held_out_readings(gold, pipelines, models)
    by_key = {g.key: g for g in gold}
    groups = {key: training_groups(r, by_key[key]) for key, r in readings.items() if r is not None and by_key[key].scheme}
    cards: dict[str, SchemeCard | None] = {}
    for key, reading in readings.items():
        if reading is None:
            cards[key] = None
            continue
        others = [grp for k, gs in groups.items() if k != key for grp in gs]
        cards[key] = card_from(reading, fit_card_model(others))
    return cards


def evaluate_cards(gold: Sequence[GoldDoc], cards: dict[str, SchemeCard | None]) -> tuple[dict, list[FieldResult]]:
    results: list[FieldResult] = []
    detection = []
    for g in gold:
        if g.key not in cards:
            continue
        card = cards[g.key]
        detection.append((g.key, g.scheme, card is not None))
        if g.scheme:
            results.extend(score_card(g, card))
    return summarise(results, detection), results


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def table(summary: dict) -> str:
    lines = [
        "| 項目 | 記載あり | 値の正解率 | 頁の正解率 | 値・頁とも正解 | 記載なし | 「記載なし」と答えた率 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in summary["per_field"].items():
        lines.append(
            f"| {name} | {f['stated']} | {_fmt(f['value_accuracy'])} | {_fmt(f['page_accuracy'])} | {_fmt(f['right_with_page'])} "
            f"| {f['unstated']} | {_fmt(f['unstated_declined'])} |"
        )
    s = summary
    lines.append(
        f"| **全体** | {s['stated_fields']} | **{_fmt(s['value_accuracy'])}** | **{_fmt(s['page_accuracy'])}** | **{_fmt(s['right_with_page'])}** "
        f"| {s['unstated_fields']} | **{_fmt(s['unstated_declined'])}** |"
    )
    return "\n".join(lines)


def failures(results: Sequence[FieldResult], cards: dict[str, SchemeCard | None], gold: Sequence[GoldDoc]) -> list[str]:
    """One line per wrong field: what the card said, where the gold says it is."""
    by_key = {g.key: g for g in gold}
    out = []
    for r in results:
        if r.right:
            continue
        card = cards.get(r.document)
        f = card.fields.get(r.field) if card else None
        g = by_key[r.document].fields.get(r.field)
        said = f"「{f.value[:60]}」 p.{f.page}" if f else "記載なし"
        want = f"p.{', '.join(map(str, g.pages))}" if g else "記載なし"
        out.append(f"- {r.document} {r.field}: カード {said} / 正解 {want}")
    return out


__all__ = ["GOLD_FILE", "GoldDoc", "GoldField", "FieldResult", "accepted", "load_gold", "score_card", "summarise",
           "held_out_cards", "held_out_readings",
           "evaluate_cards", "table", "failures", "fold_models", "set_pipelines"]
