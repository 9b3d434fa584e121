"""OCR the pages of a PDF that have no text layer: render, look up the cache, run Tesseract in parallel.

Rendering stays in the calling thread (PDFium is not thread-safe); each page's
Tesseract run is a separate process started from a small thread pool, so pages
are recognised in parallel on all cores while the next page is rendered.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rag.config import OcrSettings
from rag.ocr.cleanup import page_text
from rag.ocr.store import OcrStore
from rag.ocr.tesseract import OcrError, OcrResult, engine_version, missing, run_tesseract, vertical_share

# A page whose rendering has fewer dark pixels than this share is blank (a separator sheet, the back
# of a cover): OCR would find nothing there and costs seconds a page.
BLANK_DARK_SHARE = 0.0005
# Pages mostly set in vertical lines are read again with the vertical model (rag.ocr.tesseract.vertical_share).
VERTICAL_SHARE = 0.5

PageProgress = Callable[[int, int], None]  # (pages done, pages to OCR)


@dataclass(frozen=True, slots=True)
class OcrPage:
    page: int  # 1-based
    text: str  # cleaned raw text, one line per OCR line (make_page normalises it)
    confidence: float | None  # 0-1
    result: OcrResult


@dataclass
class OcrOutcome:
    pages: dict[int, OcrPage] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    cached: int = 0  # pages found in the cache
    recognised: int = 0  # pages Tesseract read in this run


def recognise(png: bytes, dpi: int, settings: OcrSettings) -> OcrResult:
    """One page image through Tesseract; a page of mostly vertical lines is read again with the vertical model."""
    first = run_tesseract(png, dpi, settings.languages)
    if not settings.vertical_languages or vertical_share(first) < VERTICAL_SHARE:
        return first
    second = run_tesseract(png, dpi, settings.vertical_languages)
    return second if (second.confidence or 0) > (first.confidence or 0) else first


def image_key(gray_pixels: bytes, size: tuple[int, int], dpi: int, settings: OcrSettings) -> str:
    digest = hashlib.sha256(gray_pixels)
    digest.update(f"|{size}|{dpi}|{settings.languages}|{settings.vertical_languages}|{engine_version()}".encode())
    return digest.hexdigest()


class PageOcr:
    """OCR for one ingest run: the settings, the cache and a progress callback."""

    def __init__(self, settings: OcrSettings, cache_file: Path, progress: PageProgress | None = None):
        self.settings = settings
        self.cache_file = Path(cache_file)
        self.progress = progress

    @property
    def unavailable(self) -> str | None:
        """Why OCR will not run (disabled, or Tesseract missing: one line saying what to install)."""
        if not self.settings.enabled:
            return "OCRは設定で無効です（ocr.enabled）"
        langs = "+".join(dict.fromkeys(f"{self.settings.languages}+{self.settings.vertical_languages}".strip("+").split("+")))
        return missing(langs)

    def read(self, path: Path, file_sha256: str | None, numbers: Sequence[int]) -> OcrOutcome:
        """OCR the 1-based ``numbers`` of the PDF at ``path`` (pages found to have no text)."""
        import pypdfium2 as pdfium

        from rag.render import _PDFIUM_LOCK

        outcome = OcrOutcome()
        limit = self.settings.max_pages_per_file
        todo = list(numbers)
        if len(todo) > limit:
            skipped = todo[limit:]
            todo = todo[:limit]
            outcome.problems.append(
                f"p.{skipped[0]}〜p.{skipped[-1]}（{len(skipped)}ページ）: OCRの上限（1ファイル{limit}ページ、ocr.max_pages_per_file）を超えたため読み取りませんでした"
            )
        if not todo:
            return outcome
        dpi = self.settings.dpi
        workers = self.settings.workers or os.cpu_count() or 1
        store = OcrStore(self.cache_file)
        pending: dict[int, tuple[Future, str]] = {}
        done = 0

        def finish(number: int, key: str, result: OcrResult) -> None:
            text = page_text(result.words)
            if text.strip():
                outcome.pages[number] = OcrPage(number, text, result.confidence, result)
            if file_sha256:
                store.link(file_sha256, number, key)

        def collect(number: int) -> None:
            nonlocal done
            future, key = pending.pop(number)
            try:
                result = future.result()
            except OcrError as exc:
                outcome.problems.append(f"p.{number}: OCRに失敗しました（{exc}）")
            else:
                store.put(key, result)
                outcome.recognised += 1
                finish(number, key, result)
            done += 1
            if self.progress:
                self.progress(done, len(todo))

        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for number in todo:
                    key = store.key_for(file_sha256, number) if file_sha256 else None
                    cached = store.get(key) if key else None
                    if cached is None:
                        with _PDFIUM_LOCK:
                            pdf = pdfium.PdfDocument(str(path))
                            try:
                                page = pdf[number - 1]
                                image = page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
                                page.close()
                            finally:
                                pdf.close()
                        pixels = image.tobytes()
                        dark = sum(image.histogram()[:128])
                        if dark < BLANK_DARK_SHARE * image.width * image.height:
                            done += 1  # blank: nothing to read, and nothing worth caching
                            continue
                        key = image_key(pixels, image.size, dpi, self.settings)
                        cached = store.get(key)
                    if cached is not None:
                        outcome.cached += 1
                        finish(number, key, cached)
                        done += 1
                        if self.progress:
                            self.progress(done, len(todo))
                        continue
                    buf = io.BytesIO()
                    image.save(buf, format="PNG", compress_level=1)
                    pending[number] = (pool.submit(recognise, buf.getvalue(), dpi, self.settings), key)
                    # Bound the rendered pages waiting in memory (a 300-dpi page is ~9 MB of pixels).
                    while len(pending) >= 2 * workers:
                        collect(min(pending))
                while pending:
                    collect(min(pending))
        finally:
            store.close()
        return outcome
