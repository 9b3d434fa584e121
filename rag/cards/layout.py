"""A scheme document as lines with the structure a reader sees around each one.

A 公募要領 states its terms where its own structure names them: under a heading
「(2)補助率」, in a row whose column header says 補助上限額, on a slide titled
「補助対象経費」, after a label 「申請締切：」.  The card reads that structure; this
module only lays it out: every line with its page, its section path (rag.sections,
carried from page to page in running text, afresh on each slide), the page's title
when its first line reads as one, the header row of the table it sits in, and
whether the page is a table of contents.  It decides nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag import page_context as pc
from rag.normalize import CELL_SEPARATOR
from rag.retrieve import is_contents
from rag.schema import Page
from rag.sections import document_section_paths, heading_style

# How far up from a table row the walk for its header row goes, through other rows and short cell lines.
_HEADER_REACH = 12
_DIGIT = re.compile(r"\d")
_TITLE_CHARS = 30
# A contents page without dot leaders: entries that end in their page number (「・補助対象となる経費　P.4」).
_PAGE_REF = re.compile(r"(?:P|p|ページ|頁)\.?\s*\d{1,3}$|\d{1,3}\s*(?:ページ|頁)$")
_CONTENTS_REFS = 3
_ITEM_MARKS = ("・", "※", "-", "●", "○", "■", "◆", "(注", "注")


@dataclass(frozen=True)
class Line:
    """One non-empty line of a page, as it stands in :attr:`Page.text` (stripped)."""

    page: int  # 1-based PDF page index
    at: int  # position among the page's non-empty lines
    text: str
    path: tuple[str, ...]  # open section headings, outermost first (its own when the line is one)
    title: str  # the page's first line when it reads as a title (a slide's, a section's), else ''
    head: tuple[str, ...]  # header rows / caption of the table the line is a row of, else ()
    contents: bool  # the page is a table of contents
    heading: bool  # the line is itself a section heading (rag.sections)
    label: str | None = None  # the printed page number, when it differs

    @property
    def cells(self) -> list[str]:
        return [c.strip() for c in self.text.split(CELL_SEPARATOR) if c.strip()]


@dataclass
class Layout:
    """Every line of one document in reading order, with a per-page index."""

    lines: list[Line]
    pages: dict[int, range]  # page → indices into ``lines``

    def same_page(self, i: int, lo: int, hi: int) -> list[Line]:
        """Lines ``lo``..``hi`` (relative to ``i``, both inclusive) that stand on ``i``'s page."""
        span = self.pages[self.lines[i].page]
        return [self.lines[j] for j in range(max(span.start, i + lo), min(span.stop, i + hi + 1)) if j != i]

    def after(self, i: int) -> list[Line]:
        """The lines after ``i`` on its page."""
        return [self.lines[j] for j in range(i + 1, self.pages[self.lines[i].page].stop)]


def table_heads(lines: Sequence[str]) -> list[tuple[str, ...]]:
    """For each table row (cells apart), its header rows and caption.

    :func:`rag.page_context.table_heads` finds them for rows with figures; a table of
    words (「補助対象経費科目　活用事例」 over 「①機械装置等費　補助事業の…」) has a
    header too: the first row of the run of rows it stands in, when that row carries no
    figure.  A row under one that already has its header shares it, so a long table
    keeps its header however far down.
    """
    numeric = pc.table_heads(list(lines))
    out: list[tuple[str, ...]] = []
    for at, line in enumerate(lines):
        if numeric[at]:
            out.append(tuple(numeric[at]))
            continue
        found: tuple[str, ...] = ()
        if CELL_SEPARATOR in line.strip():
            top = None
            for i in range(at - 1, max(-1, at - 1 - _HEADER_REACH), -1):
                above = lines[i].strip()
                if CELL_SEPARATOR not in above:
                    if len(above) > 60 or above.endswith("。"):
                        break  # a sentence ends the table
                    continue  # a short line between rows (a cell of its own, a note)
                if out[i]:
                    found = out[i]
                    break
                if not _DIGIT.search(above) and len(above) <= 60:
                    top = above
            found = found or ((top,) if top else ())
        out.append(found)
    return out


def _titles(line: str) -> bool:
    """A page's first line that names what the page is about: short, not a sentence, not an item.

    Read on every page, not only in decks that rag.sections treats as slides: a guidebook
    whose slides are titled as questions (「補助金の対象者とは?」) runs on as text there.
    """
    return 0 < len(line) <= _TITLE_CHARS and not line.endswith("。") and not line.startswith(_ITEM_MARKS)


def layout(pages: Sequence[Page]) -> Layout:
    """The lines of a document's pages (page order), with their structure."""
    texts = [[ln.strip() for ln in p.text.split("\n") if ln.strip()] for p in pages]
    paths = document_section_paths(texts)
    lines: list[Line] = []
    index: dict[int, range] = {}
    for page, text, page_paths in zip(pages, texts, paths):
        start = len(lines)
        contents = is_contents(page.text) or sum(bool(_PAGE_REF.search(t)) for t in text) >= _CONTENTS_REFS
        title = text[0] if text and _titles(text[0]) else ""
        for at, (line, path, head) in enumerate(zip(text, page_paths, table_heads(text))):
            lines.append(Line(page.page, at, line, path, title, head, contents, heading_style(line) is not None, page.label))
        index[page.page] = range(start, len(lines))
    return Layout(lines, index)
