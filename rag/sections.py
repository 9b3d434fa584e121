"""Section headings from a document's own numbering, and the section path of every line.

Japanese public documents number their sections (第1章, 1., (1), ①, イ, (ア), 2003 …)
and rarely mark headings any other way that survives text extraction.  A line is a
*section heading* when it is short, starts with a numbering mark (or is a bracketed
title such as 【…】 or ＜…＞), carries a title rather than figures, and does not end a
sentence (。).

Headings nest the way legal drafting nests them: the first numbering style met is
the outermost level; a heading of a style already open closes everything inside it
and replaces its sibling; a style not yet open goes one level deeper.  The style
includes whether a space follows the mark, because documents number their sections
「1.事業の目的」 and the list items inside them 「1.　本補助金の…」.

The *section path* of a line is the tuple of open headings, outermost first, e.g.
``("2.補助対象者", "2-1.補助対象者", "(1)中小企業者")``.  A heading line's own path
ends with itself.  Paths carry over from page to page: pass the path in effect at
the end of the previous page as ``start``; the styles are read back from its headings.

Everything here is a pure function of text: lines are expected as they are in
:attr:`rag.schema.Page.text` (NFKC-normalised, table cells separated by
:data:`rag.normalize.CELL_SEPARATOR`), but raw text works too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

__all__ = [
    "BRACKETED",
    "MAX_HEADING_CHARS",
    "document_section_paths",
    "heading_style",
    "section_paths",
    "sections_run_on",
    "stands_alone",
]

# Longer lines are items or sentences, not section titles.
MAX_HEADING_CHARS = 40

_KANSUJI = "一二三四五六七八九十百〇"
_NUM = rf"[0-9{_KANSUJI}]+"
# Gojūon order (ア, イ, ウ …) and iroha order (イ, ロ, ハ …) are both used for items.
_KATAKANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲン"
_IROHA = "イロハニホヘトチリヌルヲワカヨタレソツネナラム"
_CIRCLED = "\u2460-\u2473\u3251-\u325f\u32b1-\u32bf\u2776-\u277f"
_SPACE = r"[ \u3000\t]"
_CIRCLED_RUN = re.compile(f"[{_CIRCLED}]+")
_CIRCLED_SPLIT = re.compile(f"([{_CIRCLED}]+)")

# (style name, pattern of the mark).  Order matters where marks share a prefix:
# "2-1." before "2.", "(1)" before "(ア)", "2003 " before "2 ".
_STYLES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("part", rf"^第{_SPACE}?{_NUM}{_SPACE}?編"),
        ("chapter", rf"^第{_SPACE}?{_NUM}{_SPACE}?章"),
        ("section", rf"^第{_SPACE}?{_NUM}{_SPACE}?節"),
        ("article", rf"^第{_SPACE}?{_NUM}{_SPACE}?条(?:の{_NUM})?"),
        ("roman", rf"^(?:I|II|III|IV|V|VI|VII|VIII|IX|X)(?:[.．]|{_SPACE})"),
        # Four-digit section codes (「1001　事業内容」), never a year (「2024年」) or a figure.
        # Only before a wide gap: "2020 ブロンズに塗装" under a photo is a year in a caption.
        ("code4", r"^[1-9]\d{3}(?=[\u3000\t])"),
        ("num-dash", r"^(?!0)\d{1,2}[-－‐―]\d{1,2}(?:[-－‐―]\d{1,2})?(?:[.．]|(?=[ \u3000\t]))"),
        ("num-dot", r"^(?!0)\d{1,2}[.．](?!\d)"),
        ("num-paren-half", r"^(?!0)\d{1,2}[)）]"),
        ("num-paren", r"^[(（](?!0)\d{1,2}[)）]"),
        ("kana-paren", rf"^[(（][{_KATAKANA}][)）]"),
        ("alpha-paren", r"^[(（][a-zA-Z][)）]"),
        ("circled", rf"^[{_CIRCLED}]"),
        ("alpha-dash", r"^[A-Z][-－]\d{1,2}(?![\d.])"),
        ("num-space", rf"^(?!0)\d{{1,2}}(?={_SPACE})"),
        ("iroha", rf"^[{_IROHA}](?={_SPACE})"),
        ("kana-dot", rf"^[{_KATAKANA}][.．]"),
        ("alpha-dot", r"^[A-Z][.．](?![A-Z])"),
    )
)
# Bracketed titles: 【重要事項】, ＜申請方法＞, 〈目的〉, ■ 概要.  The whole line is the bracket.
_BRACKETED = re.compile(r"^(?:【[^【】]+】|[<＜〈《][^<＞>〉》]+[>＞〉》]|[■◆][^■◆]+)$")
# A table of contents names headings and their pages: 「1.事業の目的……3」.
_LEADER = re.compile(r"(?:[.．・…‥·]{3,}|…|‥)\s*\d*$|\s\d{1,3}$")
_TITLE_CHARS = re.compile(r"[A-Za-z\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
_SENTENCE_END = "。！？!?"
# A title never starts with a particle or closing punctuation: "2)に所属する…" is the
# wrapped end of "(※2)", not a heading.
# (A title may start with a kana word: 「はじめに」, 「にぎわいの創出」.)
_PARTICLES = "のをにがはでともへや"
_HIRAGANA = re.compile("[\u3041-\u309f]")
_CLOSERS = "、。，．)）」』"
# Check marks and table symbols: "51 沖縄県北谷町 ○ ○" is a table row, not a title.
_MARKS = re.compile("[○●◎△▲▽▼×✓✔□■◇◆]")
BRACKETED = "bracketed"
# A heading does not end on a comma or a particle that carries the sentence on.
_GOES_ON = "、,，"


def heading_style(line: str) -> str | None:
    """The numbering style of ``line`` when it is a section heading, else ``None``.

    The style names the mark ("num-paren" for (1), "circled" for ①, "bracketed"
    for 【…】 …), with ``+sp`` appended when a space separates the mark from the title.
    """
    text = _normalized(line)
    if not text or len(text) > MAX_HEADING_CHARS or text[-1] in _SENTENCE_END + _GOES_ON:
        return None
    if _LEADER.search(text):
        return None
    if _BRACKETED.match(text):
        return BRACKETED
    found = _mark(text)
    if found is None:
        return None
    style, title = found
    # A title is words: "(1)　3億円　300人" is a table row, "1　2　3" a header of numbers,
    # "1. 1版" a version number.
    if title and (
        not _TITLE_CHARS.search(title)
        or "\t" in title
        or title[0].isdigit()
        or title[0] in _CLOSERS
        or (title[0] in _PARTICLES and not _HIRAGANA.match(title[1:2]))
        or _MARKS.search(title) is not None
    ):
        return None
    if not title and not style.startswith(("part", "chapter", "section", "article")):
        return None  # a bare "(1)" or "①" is a cell or a list mark, not a heading
    return style


def _mark(text: str) -> tuple[str, str] | None:
    """(style, rest of the line) when ``text`` starts with a numbering mark."""
    for name, pattern in _STYLES:
        m = pattern.match(text)
        if m:
            rest = text[m.end() :]
            spaced = bool(rest[:1]) and rest[0] in " \t"
            return name + ("+sp" if spaced else ""), rest.strip(" \t")
    return None


def _normalized(line: str) -> str:
    # NFKC would turn the ideographic space (the project's cell separator) into a plain one:
    # keep it apart as a tab, so that a heading's title is told from a table row's cells.
    # NFKC would also turn ① into 1; circled numbers are a numbering style of their own.
    line = line.replace("\u3000", "\t")
    return "".join(
        part if _CIRCLED_RUN.fullmatch(part) else unicodedata.normalize("NFKC", part)
        for part in _CIRCLED_SPLIT.split(line)
    ).strip()


def _label(line: str) -> str:
    # The line as it stands in the page text, so that a chunk starting with it is recognised.
    return line.strip()[:80]


class _Stack:
    """Open headings with their styles, outermost first."""

    def __init__(self, start: Sequence[str] = ()):
        self.items: list[tuple[str, str]] = []
        for heading in start:
            self.push(heading, heading_style(heading) or "carried")

    def push(self, heading: str, style: str) -> None:
        self.close(style)
        self.items.append((style, _label(heading)))

    def close(self, style: str) -> None:
        """Close the open heading of ``style`` (with all inside it) and any bracketed title."""
        # A bracketed title (【目次】, ＜申請方法＞) labels what follows it up to the next
        # heading of any kind; it never encloses numbered sections.
        while self.items and self.items[-1][0] == BRACKETED:
            self.items.pop()
        for level, (open_style, _) in enumerate(self.items):
            if open_style == style:
                del self.items[level:]  # a sibling closes its predecessor and all inside it
                break

    def path(self) -> tuple[str, ...]:
        return tuple(label for _, label in self.items)


def section_paths(lines: Iterable[str], start: Sequence[str] = ()) -> list[tuple[str, ...]]:
    """The section path (outermost heading first) in effect at each of ``lines``.

    ``start`` is the path in effect before the first line (the path at the end of the
    previous page); a heading line's own path ends with the heading itself.  A page
    without numbered headings gets ``tuple(start)`` for every line.
    """
    stack = _Stack(start)
    out: list[tuple[str, ...]] = []
    for line in lines:
        style = heading_style(line)
        if style is not None:
            stack.push(line, style)
        elif (item := _mark(_normalized(line))) and any(
            open_style == item[0] for open_style, _ in stack.items
        ):
            # A long numbered item ("10. 公募開始時点において…") is a sibling of the heading
            # "9. みなし大企業" before it, not part of that section.
            stack.close(item[0])
        out.append(stack.path())
    return out


# A page whose first line is a short title of its own (not a numbered heading, not a
# sentence, not a bullet) stands alone, like a slide.
_SLIDE_SHARE = 0.6


def stands_alone(first_line: str) -> bool:
    """A short title of its own: not a numbered heading, not a sentence, not an item."""
    text = _normalized(first_line)
    return (
        0 < len(text) <= MAX_HEADING_CHARS
        and text[-1] not in _SENTENCE_END + _GOES_ON
        and heading_style(text) is None
        and _mark(text) is None
        and _TITLE_CHARS.match(text) is not None
    )


def sections_run_on(first_lines: Sequence[str]) -> bool:
    """Whether numbered sections go on from page to page in a document whose pages start so.

    In running text (a Word document, a report) a page starts mid-section.  In a slide
    deck most pages start with a title of their own, and a numbered item on one slide
    says nothing about the next: there each page's sections start afresh.
    """
    if len(first_lines) < 3:
        return True
    alone = sum(stands_alone(line) for line in first_lines)
    return alone < _SLIDE_SHARE * len(first_lines)


def document_section_paths(pages: Iterable[Sequence[str]]) -> list[list[tuple[str, ...]]]:
    """Per page, the section path of each line, carried over from page to page."""
    pages = [list(lines) for lines in pages]
    run_on = sections_run_on([lines[0] for lines in pages if lines])
    out: list[list[tuple[str, ...]]] = []
    path: tuple[str, ...] = ()
    for lines in pages:
        paths = section_paths(lines, path if run_on else ())
        if paths:
            path = paths[-1]
            # A bracketed title labels a box or a table on its own page: it does not go on.
            while path and heading_style(path[-1]) == BRACKETED:
                path = path[:-1]
        out.append(paths)
    return out
