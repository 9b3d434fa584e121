"""Showing evidence to a reader: a PDF page as an image, and a quote highlighted in its page.

Pure functions with no Streamlit import, so the app and tests share them.
All HTML produced here escapes the document text: PDFs are untrusted input.
"""

from __future__ import annotations

import html
import io
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# PDFium is not thread-safe and Streamlit serves every browser session from its
# own thread: all PDFium calls in this process go through this lock.
_PDFIUM_LOCK = threading.Lock()

DEFAULT_WIDTH_PX = 1200  # sharp on a high-DPI screen at the chat column's width


class RenderError(Exception):
    """A page that cannot be drawn; the message is one Japanese line."""


def render_page_png(
    pdf_path: Path, page: int, width_px: int = DEFAULT_WIDTH_PX, marks: Sequence[tuple[float, float, float, float]] = ()
) -> bytes:
    """PNG bytes of 1-based ``page`` of ``pdf_path``, ``width_px`` wide.

    ``marks``: boxes to highlight (left, top, width, height as fractions of the page), e.g.
    the OCR words of a quote (:func:`rag.ocr.highlight.quote_boxes`).
    """
    import pypdfium2 as pdfium

    path = Path(pdf_path)
    if not path.is_file():
        raise RenderError(f"{path.name}: ファイルが見つかりません（移動または削除された可能性があります）")
    with _PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as exc:
            raise RenderError(f"{path.name}: PDFを開けません（{exc}）") from None
        try:
            if not 1 <= page <= len(pdf):
                raise RenderError(f"{path.name}: {page}ページ目はありません（全{len(pdf)}ページ）")
            pdf_page = pdf[page - 1]
            try:
                width_pt, _ = pdf_page.get_size()
                scale = max(0.5, min(4.0, width_px / max(width_pt, 1.0)))
                bitmap = pdf_page.render(scale=scale)
                image = bitmap.to_pil()
            finally:
                pdf_page.close()
        finally:
            pdf.close()
    if marks:
        image = _draw_marks(image, marks)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _draw_marks(image, marks: Sequence[tuple[float, float, float, float]]):
    from PIL import Image, ImageDraw

    base = image.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    w, h = base.size
    for left, top, width, height in marks:
        # A translucent marker-pen yellow, a little larger than the glyphs, keeps the text readable.
        pad = 0.15 * height * h
        draw.rectangle(
            (left * w - pad, top * h - pad, (left + width) * w + pad, (top + height) * h + pad), fill=(255, 230, 0, 110)
        )
    return Image.alpha_composite(base, overlay).convert("RGB")


# ----------------------------------------------------------------- highlighting


@dataclass(frozen=True)
class Highlight:
    html: str  # escaped text with <mark> around the quote; no raw newlines (safe inside Markdown)
    found: bool


def find_quote(text: str, quote: str) -> list[tuple[int, int]]:
    """Spans of ``text`` that ``quote`` was cut from.

    Offline quotes are exact sentences of the page; an LLM or a trimmed quote
    may carry "…" where it was shortened, or differ in whitespace, so each
    "…"-separated fragment is looked up exactly, then ignoring whitespace.
    """
    spans: list[tuple[int, int]] = []
    for fragment in (f.strip() for f in re.split(r"…|\.\.\.", quote or "")):
        if len(fragment) < 2:
            continue
        start = text.find(fragment)
        if start >= 0:
            spans.append((start, start + len(fragment)))
            continue
        span = _find_ignoring_space(text, fragment)
        if span:
            spans.append(span)
    return _merge(sorted(spans))


def _find_ignoring_space(text: str, fragment: str) -> tuple[int, int] | None:
    positions = [i for i, ch in enumerate(text) if not ch.isspace()]
    compact = "".join(text[i] for i in positions)
    needle = "".join(fragment.split())
    if not needle:
        return None
    at = compact.find(needle)
    if at < 0:
        return None
    return positions[at], positions[at + len(needle) - 1] + 1


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(e, out[-1][1]))
        else:
            out.append((s, e))
    return out


def escape_text(text: str) -> str:
    """HTML-escape for display inside Streamlit Markdown: no raw newlines, no math ``$``."""
    escaped = html.escape(text, quote=True).replace("$", "&#36;")
    # A blank line would end Markdown's raw-HTML block and let the rest be parsed as Markdown.
    return escaped.replace("\r", "").replace("\n", "<br>")


def highlight_html(text: str, quote: str, context_chars: int | None = None) -> Highlight:
    """``text`` escaped, with the quote wrapped in ``<mark>``.

    With ``context_chars`` only the lines around the quote are kept (… marks a cut),
    so a long page shows the passage that matters.
    """
    spans = find_quote(text, quote)
    lo, hi = 0, len(text)
    if spans and context_chars is not None:
        lo = max(0, spans[0][0] - context_chars)
        hi = min(len(text), spans[-1][1] + context_chars)
        # Widen to whole lines so no line starts mid-word.
        lo = text.rfind("\n", 0, lo) + 1 if lo > 0 else 0
        nl = text.find("\n", hi)
        hi = len(text) if nl < 0 else nl
    parts: list[str] = ["…<br>" if lo > 0 else ""]
    cursor = lo
    for s, e in spans:
        s, e = max(s, lo), min(e, hi)
        if s >= e:
            continue
        parts.append(escape_text(text[cursor:s]))
        parts.append(f"<mark>{escape_text(text[s:e])}</mark>")
        cursor = e
    parts.append(escape_text(text[cursor:hi]))
    if hi < len(text):
        parts.append("<br>…")
    return Highlight("".join(parts), bool(spans))


_MARKER = re.compile(r"\[(\d{1,3})\]")


def answer_html(text: str) -> str:
    """An offline answer (quoted sentences with [n] markers) as escaped HTML, one line per sentence."""
    lines = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        lines.append(_MARKER.sub(r'<sup class="rag-cite">[\1]</sup>', escape_text(line)))
    return "<br>".join(lines)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def markdown_escape(text: str) -> str:
    """Plain text for a Streamlit label that renders Markdown (expander titles, buttons)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join((text or "").split()))
