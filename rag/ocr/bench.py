"""`rag bench --ocr`: OCR fidelity and speed on scans made from real text PDFs.

* Character accuracy against the text layer, per scan resolution, with noise and
  ±1° skew, for the raw Tesseract output and after each clean-up step.
* Page recall of the eval questions on an image-only copy of the default
  document (ingested through the product's own OCR path) against the original.
* Pages per second of OCR with the configured number of parallel processes.

Slow by nature (seconds a page): it is a benchmark, not a test; the test suite
checks a handful of pages (tests/test_ocr.py).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rag.config import PROJECT_ROOT, OcrSettings, Settings

DEFAULT_PDF = PROJECT_ROOT / "corpus" / "digiden-sogo-senryaku-2023-2027.pdf"
DEV_PDFS = PROJECT_ROOT.parent / "shared" / "devpdfs"

# (dpi, noise share, skew degrees)
VARIANTS: tuple[tuple[int, float, float], ...] = (
    (150, 0.0, 0.0),
    (200, 0.0, 0.0),
    (300, 0.0, 0.0),
    (200, 0.01, 0.0),
    (200, 0.0, 1.0),
    (200, 0.01, -1.0),
)


def variant_name(dpi: int, noise: float, skew: float) -> str:
    parts = [f"{dpi}dpi"]
    if noise:
        parts.append(f"noise {noise:.0%}")
    if skew:
        parts.append(f"skew {skew:+.0f}°")
    return " ".join(parts)


def text_pages(pdf: Path, limit: int | None = None) -> dict[int, str]:
    """Reference text of the pages with real text (≥ 100 characters): the text layer, as the loader reads it."""
    from rag.loaders import load_document

    doc = load_document(pdf, pdf.name)
    pages = {p.page: p.text for p in doc.pages if len(p.text) >= 100}
    return dict(list(pages.items())[:limit]) if limit else pages


def fidelity(pdf: Path, pages: dict[int, str], dpi: int, noise: float, skew: float, settings: OcrSettings, workers: int) -> dict:
    """OCR ``pages`` of ``pdf`` scanned as given; accuracy raw / spaces removed / confusions fixed / as indexed."""
    from rag.loaders import make_page
    from rag.ocr.cleanup import page_lines, spaces_between_japanese
    from rag.ocr.fidelity import char_accuracy, png_bytes, scan_page
    from rag.ocr.pages import recognise

    def one(page: int) -> dict:
        image = scan_page(pdf, page, dpi, noise=noise, skew_deg=skew, seed=page)
        result = recognise(png_bytes(image), dpi, settings)
        ref = pages[page]
        raw = "\n".join(page_lines(result.words, spaces=True, confusions=False))
        nospace = "\n".join(page_lines(result.words, confusions=False))
        cleaned = "\n".join(page_lines(result.words))
        made = make_page("x.pdf", page, cleaned)
        indexed = made.text if made else ""
        return {
            "page": page,
            "raw": char_accuracy(ref, raw),
            "confusions": char_accuracy(ref, cleaned),
            "indexed": char_accuracy(ref, indexed),
            "spaces_raw": spaces_between_japanese(raw),
            "spaces_clean": spaces_between_japanese(indexed),
            "confidence": result.confidence,
            "nospace_equals_raw": char_accuracy(ref, nospace),
        }

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(one, sorted(pages)))
    seconds = time.perf_counter() - t0
    mean = lambda key: round(statistics.fmean(r[key] for r in rows), 4)  # noqa: E731
    return {
        "document": pdf.name,
        "variant": variant_name(dpi, noise, skew),
        "pages": len(rows),
        "char_accuracy": mean("indexed"),
        "char_accuracy_raw": mean("raw"),
        "char_accuracy_after_confusions": mean("confusions"),
        "worst_page": min(rows, key=lambda r: r["indexed"])["page"],
        "worst_page_accuracy": round(min(r["indexed"] for r in rows), 4),
        "spaces_between_japanese_raw": sum(r["spaces_raw"] for r in rows),
        "spaces_between_japanese_indexed": sum(r["spaces_clean"] for r in rows),
        "mean_confidence": round(statistics.fmean(r["confidence"] or 0 for r in rows), 3),
        "seconds": round(seconds, 1),
        "pages_per_second": round(len(rows) / seconds, 3),
    }


def recall_on_scan(work: Path, dpi: int, settings: OcrSettings) -> dict:
    """R@k of the eval questions on the default corpus with its strategy PDF replaced by an image-only copy."""
    from rag.evaluate import load_qa, run_eval
    from rag.ingest import ingest
    from rag.ocr.fidelity import image_only_pdf
    from rag.pipeline import Pipeline

    items = load_qa(PROJECT_ROOT / "eval" / "qa.jsonl")
    out: dict = {}
    for name, scanned in (("original", False), ("scanned", True)):
        corpus = work / f"corpus-{name}"
        corpus.mkdir()
        for pdf in (PROJECT_ROOT / "corpus").glob("*.pdf"):
            if scanned and pdf.name == DEFAULT_PDF.name:
                image_only_pdf(pdf, corpus / pdf.name, dpi)
            else:
                shutil.copy(pdf, corpus / pdf.name)
        s = Settings(corpus_dir=corpus, index_dir=work / f"index-{name}", ocr=settings.model_copy(update={"dpi": dpi}))
        t0 = time.perf_counter()
        report = ingest(s)
        seconds = time.perf_counter() - t0
        run = run_eval(Pipeline.load(s), items, baselines=False)
        r = run.summary["retrieval"]
        ocr_pages = sum(len(f.ocr_pages) for f in report.files)
        out[name] = {"recall@1": r["recall@1"], "recall@5": r["recall@5"], "mrr": r["mrr"],
                     "answer_accuracy": run.summary["answer_accuracy"], "ingest_seconds": round(seconds, 1),
                     "ocr_pages": ocr_pages}
    out["scanned"]["dpi"] = dpi
    return out


def run_ocr_bench(workers: int = 0, devpdf_pages: int = 4, variants: Sequence[tuple[int, float, float]] = VARIANTS) -> dict:
    """Recall on the scanned copy first (the figure the issue is judged by), then accuracy per scan variant."""
    import os

    from rag.ocr.tesseract import engine_version, missing

    settings = OcrSettings()
    why = missing(f"{settings.languages}+{settings.vertical_languages}")
    if why:
        raise RuntimeError(why)
    workers = workers or os.cpu_count() or 1
    results: dict = {"tesseract": engine_version(), "workers": workers, "fidelity": []}
    with tempfile.TemporaryDirectory(prefix="rag-ocr-bench-") as tmp:
        results["recall"] = recall_on_scan(Path(tmp), 200, settings)
    print(json.dumps(results["recall"], ensure_ascii=False), flush=True)
    pages = text_pages(DEFAULT_PDF)
    for dpi, noise, skew in variants:
        results["fidelity"].append(fidelity(DEFAULT_PDF, pages, dpi, noise, skew, settings, workers))
        print(json.dumps(results["fidelity"][-1], ensure_ascii=False), flush=True)
    if DEV_PDFS.is_dir():
        for pdf in sorted(DEV_PDFS.glob("*.pdf")):
            row = fidelity(pdf, text_pages(pdf, devpdf_pages), 200, 0.0, 0.0, settings, workers)
            results["fidelity"].append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    return results
