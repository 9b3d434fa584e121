"""Japanese OCR for PDF pages without a text layer (Tesseract), its cache, and its clean-up.

Reading documents → (pages with no text) → :class:`PageOcr` → cleaned text back to the loader.
"""

from rag.ocr.pages import OcrOutcome, OcrPage, PageOcr
from rag.ocr.store import OcrStore
from rag.ocr.tesseract import INSTALL_HINT, OcrResult, Word

__all__ = ["INSTALL_HINT", "OcrOutcome", "OcrPage", "OcrResult", "OcrStore", "PageOcr", "Word"]
