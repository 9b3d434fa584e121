"""Where a quote stands on an OCR'd page: the word boxes to mark on the page image.

The quote comes from the page text (cleaned, normalised); the boxes belong to
Tesseract's words.  Both are compared in :func:`rag.normalize.comparable` form
(no spaces, NFKC) with the same look-alike fixes, so the characters line up
one to one and each matched character names the word it came from.
"""

from __future__ import annotations

import re

from rag.normalize import comparable
from rag.ocr.cleanup import fix_confusions
from rag.ocr.tesseract import OcrResult

Box = tuple[float, float, float, float]  # left, top, width, height as fractions of the page (0-1)


def quote_boxes(result: OcrResult, quote: str) -> list[Box]:
    """Boxes of the words that carry ``quote`` ("…" separates cut fragments); [] when it is not found."""
    if not result.width or not result.height:
        return []
    chars: list[str] = []
    owner: list[int] = []
    for i, w in enumerate(result.words):
        # Per word, so each character keeps its word; line-level fixes that need a neighbour
        # in the next word are lost here, which only shortens a match, never misplaces it.
        text = comparable(fix_confusions(w.text))
        chars.extend(text)
        owner.extend([i] * len(text))
    page = "".join(chars)
    picked: set[int] = set()
    for fragment in re.split(r"…|\.\.\.", quote or ""):
        needle = comparable(fragment)
        if len(needle) < 2:
            continue
        at = page.find(needle)
        if at < 0:
            continue
        picked.update(owner[at : at + len(needle)])
    W, H = result.width, result.height
    return [
        (w.left / W, w.top / H, w.width / W, w.height / H)
        for i, w in enumerate(result.words)
        if i in picked
    ]
