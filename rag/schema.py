"""The records that flow through the pipeline: Page → Chunk → Hit → Answer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

# Shown under an answer whose calibrated confidence is in the middle band.
LOW_CONFIDENCE_NOTE = "（確度：低。関連ページもあわせて確認してください）"


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a source document.

    ``page`` is the 1-based index of the page in the file (PDF page index, or the
    position between form feeds for text files), never the printed page number;
    that one, when it differs, is ``label``.
    """

    source: str  # file name relative to the corpus folder, with forward slashes
    page: int
    heading: str
    raw_text: str  # as extracted, kept for display
    text: str  # normalised; chunk spans index into this
    label: str | None = None
    # Numbered section headings open before the page's first line (carried over from the
    # pages before), outermost first.  ``rag.sections.section_paths(text.split("\n"), section)``
    # gives the path of every line.
    section: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    """A retrievable passage.  It never spans two pages: ``start``/``end`` index into that page's ``text``."""

    id: str
    source: str
    page: int
    heading: str
    text: str
    start: int
    end: int
    # Section path at the chunk's first line, outermost heading first (``()`` when the
    # document has no numbered headings); ``heading`` is its innermost entry when there is one.
    section: tuple[str, ...] = ()

    @staticmethod
    def make_id(source: str, page: int, start: int) -> str:
        # Stable across rebuilds as long as the page text is unchanged.
        digest = hashlib.blake2b(f"{source}\x00{page}\x00{start}".encode(), digest_size=8).hexdigest()
        return digest


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk returned by retrieval, with the fused score (higher is better)."""

    chunk: Chunk
    score: float
    sparse_rank: int | None = None
    dense_rank: int | None = None
    dense_score: float | None = None


@dataclass(frozen=True, slots=True)
class Citation:
    marker: int  # the n of [n] in the answer text
    source: str
    page: int
    heading: str
    quote: str
    chunk_id: str
    title: str = ""
    label: str | None = None
    # The page's text was read by OCR (no text layer): the quote may carry recognition errors.
    ocr: bool = False
    ocr_confidence: float | None = None  # mean Tesseract word confidence of the page, 0-1

    def page_display(self) -> str:
        shown = f"p.{self.page}（資料上の頁 {self.label}）" if self.label and self.label != str(self.page) else f"p.{self.page}"
        return f"{shown}「OCR」" if self.ocr else shown


@dataclass(slots=True)
class Answer:
    question: str
    text: str  # the answer body including [n] markers, without the source list
    found: bool
    citations: list[Citation] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. LLM fallback, removed markers
    verified: bool = True  # False when an LLM answer carries no valid citation
    mode: str = "offline"
    standalone_question: str | None = None  # the question after follow-up resolution
    evidence: float | None = None  # kept for clients of the JSON before `confidence`; the same value
    # Calibrated probability that the answer is right (offline answerer); low_confidence: shown with 「確度：低」.
    confidence: float | None = None
    low_confidence: bool = False
    explanation: list[tuple[str, float]] = field(default_factory=list)  # features that decided it

    def source_list(self) -> str:
        return "\n".join(
            f"[{c.marker}] {c.title or c.source} {c.page_display()}「{c.heading}」" for c in self.citations
        )

    def render(self) -> str:
        """The answer as a user reads it: body, then the numbered source list."""
        parts = [self.text]
        if self.found and self.low_confidence:
            parts.append(LOW_CONFIDENCE_NOTE)
        if self.citations:
            parts.append(("出典:\n" if self.found else "関連しそうな箇所:\n") + self.source_list())
        if self.notes:
            parts.append("\n".join(f"※ {n}" for n in self.notes))
        return "\n\n".join(parts)

    def to_json(self) -> dict:
        return {
            "question": self.question,
            "answer": self.render(),
            "found": self.found,
            "verified": self.verified,
            "mode": self.mode,
            "citations": [
                {"source": c.source, "page": c.page, "heading": c.heading, "quote": c.quote, "label": c.label,
                 "ocr": c.ocr, **({"ocr_confidence": round(c.ocr_confidence, 3)} if c.ocr_confidence is not None else {})}
                for c in self.citations
            ],
            "hits": [
                {"source": h.chunk.source, "page": h.chunk.page, "chunk_id": h.chunk.id, "score": round(h.score, 6)}
                for h in self.hits
            ],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "evidence": None if self.evidence is None else round(self.evidence, 3),
            "confidence": None if self.confidence is None else round(self.confidence, 3),
            "low_confidence": self.low_confidence,
            **({"explanation": [{"feature": n, "effect": round(v, 3)} for n, v in self.explanation]} if self.explanation else {}),
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What the index knows about one ingested file."""

    source: str
    sha256: str
    title: str
    pages: int
    chunks: int
    problems: tuple[str, ...] = ()
