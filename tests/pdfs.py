"""Make real PDFs inside tests (reportlab with a CID Japanese font, so pypdf and pdfium extract real text)."""

from __future__ import annotations

from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

FONT = "HeiseiKakuGo-W5"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))


def make_pdf(path: Path, pages: list[list[str]], *, encrypt: str | None = None, font_size: int = 11) -> Path:
    """One PDF page per list of lines; an empty list makes a blank page."""
    c = canvas.Canvas(str(path), pagesize=(595, 842), encrypt=encrypt)
    for lines in pages:
        y = 800
        c.setFont(FONT, font_size)
        for line in lines:
            c.drawString(40, y, line)
            y -= font_size * 1.6
        c.showPage()
    c.save()
    return path


def make_image_only_pdf(path: Path, pages: int = 2) -> Path:
    """Pages with drawn shapes but no text layer, like a scan."""
    c = canvas.Canvas(str(path), pagesize=(595, 842))
    for i in range(pages):
        c.rect(50, 50 + i * 10, 400, 600, fill=1)
        c.showPage()
    c.save()
    return path
