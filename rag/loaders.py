"""Loaders: one file in, its pages out.  One small interface, one implementation per format.

The rest of the pipeline never knows which PDF library ran.  A loader raises
:class:`DocumentError` with a message a user can act on when the whole file is
unusable; page-level trouble (a blank or image-only page) is recorded in
``LoadedDocument.problems`` and the page is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rag.normalize import collapse_overprint, collapse_repeated_lines, join_vertical_runs, normalize_lines
from rag.schema import Page
from rag.sections import BRACKETED, heading_style, section_paths, sections_run_on, stands_alone

if TYPE_CHECKING:
    from rag.ocr import PageOcr

logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns per odd object; we report per file

NO_TEXT_PAGE = "テキストがありません — OCRが必要です"


class DocumentError(Exception):
    """A file that cannot be indexed.  ``str(err)`` is one line: file, what is wrong, what to do."""

    def __init__(self, source: str, problem: str, remedy: str):
        super().__init__(f"{source}: {problem}。{remedy}")
        self.source = source
        self.problem = problem
        self.remedy = remedy


@dataclass
class LoadedDocument:
    source: str
    title: str
    page_count: int
    pages: list[Page] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)  # 1-based pages whose text came from OCR
    ocr_confidence: dict[int, float | None] = field(default_factory=dict)  # page → mean OCR confidence (0-1)


class Loader(Protocol):
    suffixes: tuple[str, ...]

    def load(self, path: Path, source: str, ocr: PageOcr | None = None, file_sha256: str | None = None) -> LoadedDocument: ...


def make_page(
    source: str, number: int, raw: str, label: str | None = None, *, laid_out: bool = False, section: tuple[str, ...] = ()
) -> Page | None:
    """Normalise one page's raw text; ``None`` for a page with no text.

    ``laid_out``: the text comes from the layout extractor (see :func:`rag.normalize.normalize_lines`).
    ``section``: the section path open before the page (see :mod:`rag.sections`).  The
    page's heading is the innermost numbered section at its first line; a page of a
    document without numbered headings (slides, leaflets) is headed by its first line.
    """
    lines, printed = normalize_lines(raw, number, laid_out=laid_out)
    if not lines:
        return None
    heading = page_heading(lines[0], section)
    label = label or printed
    return Page(
        source=source, page=number, heading=heading, raw_text=raw, text="\n".join(lines), label=label, section=section
    )


def page_heading(first_line: str, section: tuple[str, ...] = ()) -> str:
    """The page's heading: its first line when that is a heading or a title of its own, else the
    innermost numbered section the page continues (a page starting mid-sentence), else the first line."""
    first = section_paths([first_line], section)[0]
    if first != tuple(section):
        return first[-1]  # the page opens with a heading
    if section and not stands_alone(first_line):
        return section[-1]
    return first_line[:80]


def _standalone_pages(doc: LoadedDocument) -> None:
    """Pages of a slide deck do not inherit sections from the slide before (:func:`sections_run_on`)."""
    if sections_run_on([p.text.split("\n", 1)[0] for p in doc.pages]):
        return
    doc.pages = [
        replace(p, section=(), heading=page_heading(p.text.split("\n", 1)[0])) if p.section else p for p in doc.pages
    ]


def _section_after(page: Page) -> tuple[str, ...]:
    """The section path open at the end of ``page``: the next page starts inside it.

    A bracketed title (【…】, ＜…＞) labels a box or a table on its own page; only
    numbered sections go on over a page break.
    """
    path = section_paths(page.text.split("\n"), page.section)[-1]
    while path and heading_style(path[-1]) == BRACKETED:
        path = path[:-1]
    return path


class PdfLoader:
    suffixes = (".pdf",)

    def load(self, path: Path, source: str, ocr: PageOcr | None = None, file_sha256: str | None = None) -> LoadedDocument:
        """``ocr``: read the pages that have no text layer with it (when it can run); ``file_sha256``
        lets it find pages it read before without rendering them again."""
        import pypdf
        from pypdf.errors import FileNotDecryptedError, PdfReadError

        if path.stat().st_size == 0:
            raise DocumentError(source, "空のファイルです", "正しいPDFを置き直してください")
        with path.open("rb") as fh:
            if not fh.read(1024).lstrip().startswith(b"%PDF-"):
                raise DocumentError(source, "PDFではありません（先頭に %PDF- がありません）", "PDFとして保存し直してください")
        try:
            reader = pypdf.PdfReader(path)
            if reader.is_encrypted and not _try_empty_password(reader):
                raise DocumentError(
                    source, "パスワードで保護（暗号化）されています", "保護を解除したPDFを置いてください"
                )
            page_count = len(reader.pages)
            labels = _page_labels(reader)
            title = _pdf_title(reader) or Path(source).stem
        except DocumentError:
            raise
        except FileNotDecryptedError:
            raise DocumentError(source, "パスワードで保護（暗号化）されています", "保護を解除したPDFを置いてください") from None
        except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
            raise DocumentError(
                source, f"PDFを読み込めません（壊れている可能性: {exc}）", "元のファイルを入手し直して置き換えてください"
            ) from None

        doc = LoadedDocument(source=source, title=title, page_count=page_count)
        texts = list(_pdf_page_texts(path, reader, page_count))
        ocr_pages = _ocr_missing(path, texts, ocr, file_sha256, doc)
        for number, raw, printed, laid_out, error in texts:
            if error is not None:
                doc.problems.append(f"p.{number}: 文字を取り出せません（{error}）")
                continue
            # /PageLabels is what the author declared; a number printed on the page comes second.
            section = _section_after(doc.pages[-1]) if doc.pages else ()
            made = make_page(source, number, raw, labels.get(number) or printed, laid_out=laid_out, section=section)
            if made is None and number in ocr_pages:
                made = make_page(source, number, ocr_pages[number], labels.get(number), section=section)
                if made is not None:
                    doc.ocr_pages.append(number)
            if made is None:
                doc.problems.append(f"p.{number}: {NO_TEXT_PAGE}")
                continue
            doc.pages.append(made)
        if not doc.pages:
            raise DocumentError(
                source, "テキスト層がありません（スキャン画像のみのPDF）", "OCRで文字を付けたPDFにしてから追加してください"
            )
        _standalone_pages(doc)
        return doc


def _pdf_page_texts(path: Path, reader, page_count: int) -> Iterator[tuple[int, str, str | None, bool, str | None]]:
    """(page number, raw text, printed label, laid out by pdfium, error) for each page, one page at a time.

    pdfium's positioned characters give reading order, one copy of overprinted
    headings and joined vertical text (:mod:`rag.pdf_text`); pypdf is the fallback
    for a file or a page pdfium cannot read.
    """
    from rag.pdf_text import PdfTextError, iter_page_texts

    done = 0
    try:
        for result in iter_page_texts(path):
            done += 1
            if isinstance(result, Exception):
                yield _pypdf_page_text(reader, done)
            else:
                yield done, result.text, result.label, True, None
    except PdfTextError:
        pass
    for number in range(done + 1, page_count + 1):
        yield _pypdf_page_text(reader, number)


def _pypdf_page_text(reader, number: int) -> tuple[int, str, str | None, bool, str | None]:
    try:
        raw = reader.pages[number - 1].extract_text() or ""
    except Exception as exc:  # pypdf raises many types on damaged content streams
        return number, "", None, False, type(exc).__name__
    # pypdf repeats overprinted (bold) headings and gives vertical text one character per line.
    lines = join_vertical_runs(collapse_repeated_lines([collapse_overprint(line) for line in raw.splitlines()]))
    return number, "\n".join(lines), None, False, None


def _try_empty_password(reader) -> bool:
    # Many public PDFs are "encrypted" only with an owner password that forbids
    # editing; they open with an empty user password and are fine to read.
    try:
        return bool(reader.decrypt(""))
    except Exception:
        return False


def _page_labels(reader) -> dict[int, str]:
    """Printed page labels from the PDF's /PageLabels, only where they differ from the index."""
    try:
        labels = reader.page_labels
    except Exception:
        return {}
    if "/PageLabels" not in reader.trailer["/Root"]:
        return {}
    return {i: label for i, label in enumerate(labels, start=1) if label and label != str(i)}


def _pdf_title(reader) -> str | None:
    try:
        title = (reader.metadata or {}).get("/Title")
    except Exception:
        return None
    title = str(title).strip() if title else ""
    # Authoring tools often leave "Microsoft Word - x.docx" or "untitled": not a title.
    if not title or title.lower().startswith(("microsoft", "untitled", "powerpoint")):
        return None
    return title


def _ocr_missing(path: Path, texts: list, ocr: PageOcr | None, file_sha256: str | None, doc: LoadedDocument) -> dict[int, str]:
    """OCR text for the pages whose text layer is empty; {} when OCR cannot run (those pages are refused as before)."""
    if ocr is None or ocr.unavailable:
        return {}
    blank = [number for number, raw, _, laid_out, error in texts if error is None and not normalize_lines(raw, number, laid_out=laid_out)[0]]
    if not blank:
        return {}
    outcome = ocr.read(path, file_sha256, blank)
    doc.problems.extend(outcome.problems)
    doc.ocr_confidence.update({n: p.confidence for n, p in outcome.pages.items()})
    return {n: p.text for n, p in outcome.pages.items()}


class TextLoader:
    """Plain text and Markdown; pages are separated by form feeds (pdftotext's convention)."""

    suffixes = (".txt", ".md")

    def load(self, path: Path, source: str, ocr: PageOcr | None = None, file_sha256: str | None = None) -> LoadedDocument:
        data = path.read_bytes()
        if not data.strip():
            raise DocumentError(source, "空のファイルです", "内容のあるファイルを置いてください")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DocumentError(
                source, "UTF-8のテキストではありません（Shift_JISなど別の文字コードの可能性）", "UTF-8で保存し直してください"
            ) from None
        chunks = text.split("\f")
        doc = LoadedDocument(source=source, title=Path(source).stem, page_count=len(chunks))
        for number, raw in enumerate(chunks, start=1):
            made = make_page(source, number, raw, section=_section_after(doc.pages[-1]) if doc.pages else ())
            if made is None:
                doc.problems.append(f"p.{number}: 空のページです")
                continue
            doc.pages.append(made)
        if not doc.pages:
            raise DocumentError(source, "本文がありません", "内容のあるファイルを置いてください")
        _standalone_pages(doc)
        return doc


LOADERS: tuple[Loader, ...] = (PdfLoader(), TextLoader())
SUPPORTED_SUFFIXES = tuple(s for loader in LOADERS for s in loader.suffixes)


def loader_for(path: Path) -> Loader | None:
    suffix = path.suffix.lower()
    return next((loader for loader in LOADERS if suffix in loader.suffixes), None)


def load_document(path: Path, source: str, ocr: PageOcr | None = None, file_sha256: str | None = None) -> LoadedDocument:
    loader = loader_for(path)
    if loader is None:
        raise DocumentError(
            source,
            f"対応していない形式です（{path.suffix or '拡張子なし'}）",
            f"{'・'.join(SUPPORTED_SUFFIXES)} のいずれかにしてください",
        )
    return loader.load(path, source, ocr, file_sha256)


def iter_corpus(corpus_dir: Path, ignore_names: tuple[str, ...] = ()) -> Iterator[tuple[Path, str]]:
    """Files under the corpus folder (recursively, hidden files skipped) with their source names."""
    for path in sorted(corpus_dir.rglob("*")):
        rel = path.relative_to(corpus_dir)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts) or path.name in ignore_names:
            continue
        yield path, rel.as_posix()
