"""Measuring OCR against a text layer: scans made from real text PDFs, and character accuracy.

Used by the fidelity test (a few pages) and by ``rag bench --ocr`` (every page).
A "scan" here is a page rendered to a grayscale bitmap at a given resolution,
optionally with noise and a small rotation, as a flat-bed scanner would make it;
an image-only PDF of such pages has no text layer at all.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from pathlib import Path

from rag.normalize import comparable


def scan_page(pdf_path: Path, page: int, dpi: int, *, noise: float = 0.0, skew_deg: float = 0.0, seed: int = 0):
    """PIL grayscale image of 1-based ``page`` as a scanner would give it.

    ``noise``: share of pixels flipped to random grey (speckle, 0.02 is a poor scan);
    ``skew_deg``: rotation in degrees (a sheet laid slightly crooked).
    """
    import pypdfium2 as pdfium
    from PIL import Image

    pdf = pdfium.PdfDocument(str(pdf_path))
    try:
        image = pdf[page - 1].render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
    finally:
        pdf.close()
    if skew_deg:
        image = image.rotate(skew_deg, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    if noise:
        rng = random.Random(seed)
        pixels = image.load()
        w, h = image.size
        for _ in range(int(noise * w * h)):
            pixels[rng.randrange(w), rng.randrange(h)] = rng.randrange(256)
    return image


def image_only_pdf(pdf_path: Path, out_path: Path, dpi: int, pages: Sequence[int] | None = None, **scan) -> Path:
    """Write a PDF of page images (no text layer) made from ``pdf_path``; ``pages`` 1-based, default all."""
    import pypdfium2 as pdfium

    if pages is None:
        pdf = pdfium.PdfDocument(str(pdf_path))
        pages = range(1, len(pdf) + 1)
        pdf.close()
    images = [scan_page(pdf_path, p, dpi, seed=p, **scan) for p in pages]
    images[0].save(out_path, format="PDF", save_all=True, append_images=images[1:], resolution=float(dpi))
    return out_path


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def char_accuracy(reference: str, ocr: str) -> float:
    """1 − (edit distance / reference length), compared as :func:`rag.normalize.comparable` (no spaces, NFKC).

    Reading order counts: a block read in another place costs its characters twice.
    """
    from rapidfuzz.distance import Levenshtein

    ref, hyp = comparable(reference), comparable(ocr)
    if not ref:
        return 1.0 if not hyp else 0.0
    return max(0.0, 1.0 - Levenshtein.distance(ref, hyp) / len(ref))
