"""Page text the way a person reads it, from the positioned characters pdfium reports.

Plain extraction (pypdf's ``extract_text``, pdfium's ``get_text_range``) follows the
content stream.  On public-sector PDFs that order is often not the reading order
(PowerPoint writes a slide's title last and its number first), bold headings are
"printed" three or four times at offsets of a fraction of a point, and vertical
text (縦書き) comes out one character per line.  This module works from the
characters and their boxes instead:

1. characters drawn again at (almost) the same place with the same glyph are
   dropped (simulated bold);
2. characters are strung into lines in stream order while they sit on one
   baseline; single stacked characters are joined into vertical lines;
3. lines are put in reading order by recursive XY-cut: split the page at empty
   bands, top before bottom, left before right.  A column gap is preferred to a
   horizontal band that merely runs between lines of both columns (two panels
   are read one after the other), except where the layout says otherwise: the
   two sides pair up row by row and were written alternately (a table, read
   row by row), the band has text on one side only (a title above columns, a
   box under a timeline), or it separates the rows of a grid of panels;
4. a number standing alone in the top or bottom margin is returned as the
   printed page label instead of being part of the text;
5. a line that fills its block to the right edge and goes on directly below,
   aligned, in the same size, is one paragraph with the next line: it becomes one
   line of text.  Everything else keeps its own line, so the short items of a
   slide, a flow chart or a table never run into each other (guessing from the
   text alone, as for pypdf's output, cannot tell them apart).

Cells of one row are separated by a tab (a gap of more than a character's width),
so that normalisation can keep them apart while it removes the meaningless spaces
inside Japanese text.

The content-stream order is used as evidence where geometry is ambiguous: a
producer writes a table row by row, two columns one after the other, and the
columns of vertical text in reading order.

Pages are processed one at a time and their pdfium objects closed at once, so
memory does not grow with the page count.  Normalisation (NFKC, bullets, spaces
between Japanese characters) is left to :mod:`rag.normalize`, as for every other
extractor.
"""

from __future__ import annotations

import bisect
import ctypes
import math
import re
import statistics
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.normalize import CONTINUES, LABEL_CLOSERS, SENTENCE_END, collapse_overprint, starts_item
from rag.sections import heading_style

__all__ = ["PageText", "PdfTextError", "iter_page_texts", "page_text"]


class PdfTextError(Exception):
    """pdfium could not open the file (the caller falls back to pypdf)."""


@dataclass(frozen=True, slots=True)
class PageText:
    number: int  # 1-based index of the page in the file
    text: str  # lines in reading order, wrapped paragraphs joined, not yet normalised
    label: str | None  # printed page number found standing alone in the top/bottom margin


@dataclass(slots=True)
class _Char:
    ch: str
    x0: float
    y0: float
    x1: float
    y1: float
    ox: float  # origin (on the baseline)
    oy: float
    size: float
    angle: float  # radians, 0 for ordinary horizontal text
    index: int  # position in the content stream


@dataclass(slots=True)
class _Line:
    chars: list[_Char]
    vertical: bool = False
    text: str = ""
    x0: float = 0.0
    y0: float = 0.0
    x1: float = 0.0
    y1: float = 0.0
    size: float = 0.0
    index: int = 0  # stream position of its first character

    def finish(self) -> _Line:
        ink = [c for c in self.chars if not c.ch.isspace()] or self.chars
        self.x0 = min(c.x0 for c in ink)
        self.y0 = min(c.y0 for c in ink)
        self.x1 = max(c.x1 for c in ink)
        self.y1 = max(c.y1 for c in ink)
        self.size = statistics.median(c.size for c in ink)
        self.index = self.chars[0].index
        if self.vertical:
            self.text = "".join(c.ch for c in self.chars).strip()
        else:
            self.text = _horizontal_text(self.chars)
        return self

    @property
    def height(self) -> float:
        return self.y1 - self.y0


# Overprinted (simulated bold) copies sit within this fraction of the font size.
_OVERPRINT_TOLERANCE = 0.15
# A gap wider than a character (in font sizes) is a table's column gap or a tab stop:
# justified Japanese never spaces its glyphs that far apart within a phrase.
_CELL_GAP = 1.0
# Characters closer than this (in font sizes) on one baseline belong to one line.
_MAX_WORD_GAP = 3.0
# Characters of vertical text: ideographs, kana, and the punctuation set vertically.
_VERTICAL_OK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff60\ufe10-\ufe4f↓→]")
_LABEL = re.compile(r"^[-‐–—−\s]*(?:[pP]\.?\s*)?((?:巻頭|資料|参考|別添|付録)?\s*\d{1,4})(?:\s*/\s*\d{1,4})?[-‐–—−\s]*$")
# A line ending in one of these goes on in the next line (a particle, a comma).
_DECORATIVE = re.compile(r"^[\s()（）0-9０-９\u2460-\u2473\u2776-\u277f\u3251-\u325f]{1,4}$")


def iter_page_texts(path: Path, password: str | None = None) -> Iterator[PageText | Exception]:
    """Each page's text in order; an exception object (not raised) for a page pdfium cannot read."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path), password=password)
    except pdfium.PdfiumError as exc:
        raise PdfTextError(str(exc)) from None
    try:
        for i in range(len(pdf)):
            try:
                page = pdf[i]
            except pdfium.PdfiumError as exc:
                yield exc
                continue
            try:
                yield page_text(page, i + 1)
            except Exception as exc:  # a damaged page must not stop the rest of the file
                yield exc
            finally:
                page.close()
    finally:
        pdf.close()


def page_text(page, number: int) -> PageText:
    """Reading-order text of one pdfium page."""
    textpage = page.get_textpage()
    try:
        chars = _dedupe_overprint(_chars(textpage))
    finally:
        textpage.close()
    chars, (bottom, top) = _upright(chars, page.get_bbox())
    lines = _drop_decorative(_dedupe_lines(_lines(chars)))
    label_line = _page_number_line(lines, bottom, top)
    if label_line is not None:
        lines = [line for line in lines if line is not label_line]
    for line in lines:
        if _overprinted(line):
            line.text = collapse_overprint(line.text)
    # Rows are merged before and after the interleave: it needs whole rows next to the runs it pairs.
    text = _paragraphs(_merge_rows(_interleave_cells(_merge_rows(_order(lines)))))
    label = None
    if label_line is not None:
        label = _LABEL.match(unicodedata.normalize("NFKC", label_line.text)).group(1).replace(" ", "")
    return PageText(number=number, text=text, label=label)


# ---------------------------------------------------------------- characters


def _chars(textpage) -> list[_Char]:
    import pypdfium2.raw as raw

    count = raw.FPDFText_CountChars(textpage)
    get_unicode = raw.FPDFText_GetUnicode
    is_generated = raw.FPDFText_IsGenerated
    get_box = raw.FPDFText_GetLooseCharBox
    get_origin = raw.FPDFText_GetCharOrigin
    get_size = raw.FPDFText_GetFontSize
    get_matrix = raw.FPDFText_GetMatrix
    rect = raw.FS_RECTF()
    rect_p = ctypes.byref(rect)
    matrix = raw.FS_MATRIX()
    matrix_p = ctypes.byref(matrix)
    ox, oy = ctypes.c_double(), ctypes.c_double()
    ox_p, oy_p = ctypes.byref(ox), ctypes.byref(oy)
    hypot, atan2, two_pi = math.hypot, math.atan2, 2 * math.pi
    out: list[_Char] = []
    for i in range(count):
        code = get_unicode(textpage, i)
        if code < 0x20 or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            continue
        # pdfium adds its own spaces and line breaks between text objects: we place lines ourselves.
        if code == 0x20 and is_generated(textpage, i):
            continue
        if not get_box(textpage, i, rect_p):
            continue
        get_origin(textpage, i, ox_p, oy_p)
        size = get_size(textpage, i)
        angle = 0.0
        if get_matrix(textpage, i, matrix_p):
            # The size a reader sees is the font size scaled by the text and page matrices
            # (many producers set "1 Tf" and scale with the matrix).  pdfium measures
            # angles clockwise, as FPDFText_GetCharAngle does.
            size *= hypot(matrix.c, matrix.d) or 1.0
            if matrix.b or matrix.a < 0:
                angle = atan2(-matrix.b, matrix.a) % two_pi
        x0, y0, x1, y1 = rect.left, rect.bottom, rect.right, rect.top
        if size <= 0:
            size = max(x1 - x0, y1 - y0)
            if size <= 0:
                continue
        out.append(_Char(chr(code), x0, y0, x1, y1, ox.value, oy.value, size, angle, i))
    return out


def _dedupe_overprint(chars: list[_Char]) -> list[_Char]:
    """Drop a glyph drawn again at (almost) the same spot: bold simulated by overprinting."""
    cell = 4.0
    seen: dict[tuple[str, int, int], list[_Char]] = {}
    kept: list[_Char] = []
    for c in chars:
        # Never further than a fraction of the glyph's own width, so "ll" or "ーー" survive.
        tol = min(_OVERPRINT_TOLERANCE * c.size, 0.4 * max(c.x1 - c.x0, c.y1 - c.y0, 0.1))
        ch, x0, y0, size = c.ch, c.x0, c.y0, c.size
        duplicate = False
        for gx in range(int((x0 - tol) // cell), int((x0 + tol) // cell) + 1):
            for gy in range(int((y0 - tol) // cell), int((y0 + tol) // cell) + 1):
                bucket = seen.get((ch, gx, gy))
                if bucket and any(
                    abs(o.x0 - x0) <= tol and abs(o.y0 - y0) <= tol and abs(o.size - size) <= tol for o in bucket
                ):
                    duplicate = True
                    break
            if duplicate:
                break
        if not duplicate:
            seen.setdefault((ch, int(x0 // cell), int(y0 // cell)), []).append(c)
            kept.append(c)
    return kept


def _upright(chars: list[_Char], bbox: tuple[float, float, float, float]) -> tuple[list[_Char], tuple[float, float]]:
    """Turn the page so that most of its text runs left to right, as the reader holds it.

    A landscape page stored in portrait with /Rotate (or a table set sideways)
    has all its text at 90 or 270 degrees; reading order is decided in the
    turned frame.  Returns the characters and the page's bottom and top in that frame.
    """
    weight: dict[int, int] = {}
    for c in chars:
        quarter = round(c.angle / (math.pi / 2)) % 4
        weight[quarter] = weight.get(quarter, 0) + 1
    quarter = max(weight, key=weight.get) if weight else 0
    a = quarter * math.pi / 2
    cos, sin = round(math.cos(a)), round(math.sin(a))

    def turn(x: float, y: float) -> tuple[float, float]:
        # pdfium's angles are clockwise: turning the points counter-clockwise by the same angle levels the text.
        return x * cos - y * sin, x * sin + y * cos

    corners = [turn(x, y) for x in (bbox[0], bbox[2]) for y in (bbox[1], bbox[3])]
    out: list[_Char] = []
    for c in chars:
        if quarter:
            (ax, ay), (bx, by) = turn(c.x0, c.y0), turn(c.x1, c.y1)
            ox, oy = turn(c.ox, c.oy)
            angle = (c.angle - a) % (2 * math.pi)
            c = _Char(c.ch, min(ax, bx), min(ay, by), max(ax, bx), max(ay, by), ox, oy, c.size, angle, c.index)
        if abs(c.angle) < 0.02 or abs(c.angle - 2 * math.pi) < 0.02:
            c.angle = 0.0
        if c.angle == 0.0 and c.y1 - c.y0 < 0.6 * c.size:
            # pdfium fits the box to the glyph when the font has no ascent/descent: a comma
            # would then be a sliver below its line.  Give it the line's height.
            c.y0, c.y1 = min(c.y0, c.oy - 0.12 * c.size), max(c.y1, c.oy + 0.88 * c.size)
        out.append(c)
    return out, (min(y for _, y in corners), max(y for _, y in corners))


# --------------------------------------------------------------------- lines


def _continues(line: list[_Char], c: _Char) -> bool:
    last = line[-1]
    if abs(c.angle - last.angle) > 0.05:
        return False
    size = min(c.size, last.size)
    if max(c.size, last.size) > 2.5 * size:
        return False  # a huge background numeral is not part of the text it sits behind
    if last.angle == 0.0:
        # One baseline: the boxes overlap vertically for most of the smaller height.
        overlap = min(c.y1, last.y1) - max(c.y0, last.y0)
        if overlap < 0.5 * min(c.y1 - c.y0, last.y1 - last.y0):
            return False
        # Justified Japanese squeezes punctuation, so the next glyph may start inside the last one's box.
        gap = c.x0 - last.x1
        return c.x0 > last.x0 and gap <= _MAX_WORD_GAP * size
    # Rotated text: work along and across the writing direction from the origins.
    # pdfium's angles are clockwise: the writing direction is (cos, -sin).
    cos, sin = math.cos(c.angle), math.sin(c.angle)
    along = (c.ox - last.ox) * cos - (c.oy - last.oy) * sin
    across = (c.ox - last.ox) * sin + (c.oy - last.oy) * cos
    return abs(across) <= 0.35 * size and 0 < along <= (_MAX_WORD_GAP + 1.2) * size


def _cell_gap(left: _Char | _Line, right: _Char | _Line) -> bool:
    """The space between two glyphs (or pieces of a row) is a column gap, not a word space."""
    return right.x0 - left.x1 > _CELL_GAP * min(left.size, right.size)


def _horizontal_text(chars: list[_Char]) -> str:
    parts: list[str] = []
    prev: _Char | None = None
    for c in chars:
        if prev is not None and not c.ch.isspace() and not prev.ch.isspace():
            gap = c.x0 - prev.x1 if c.angle == 0.0 else 0.0
            # A visible gap between glyphs is a word space the producer did not write;
            # wider than a character, it separates table cells or tab stops.
            if gap and _cell_gap(prev, c):
                parts.append("\t")
            elif gap > 0.25 * min(c.size, prev.size):
                parts.append(" ")
        parts.append(c.ch)
        prev = c
    return "".join(parts).strip()


def _stacked(upper: _Char, lower: _Char) -> bool:
    """``lower`` continues a column of vertical text below ``upper``."""
    size = min(upper.size, lower.size)
    if abs(upper.size - lower.size) > 0.2 * size:
        return False
    centre_u, centre_l = (upper.x0 + upper.x1) / 2, (lower.x0 + lower.x1) / 2
    if abs(centre_u - centre_l) > 0.35 * size:
        return False
    gap = upper.y0 - lower.y1
    return -0.4 * size <= gap <= 0.6 * size


def _lines(chars: list[_Char]) -> list[_Line]:
    runs: list[list[_Char]] = []
    for c in chars:
        if runs and _continues(runs[-1], c):
            runs[-1].append(c)
        elif c.ch.isspace():
            continue  # a space never starts a line
        else:
            runs.append([c])
    # Vertical text: pdfium gives one character per line.  Join runs of single
    # stacked characters, in stream order (columns of one text are written in
    # reading order, right to left).
    lines: list[_Line] = []
    column: list[_Char] = []

    def flush() -> None:
        if len(column) >= 2:
            lines.append(_Line(list(column), vertical=True).finish())
        elif column:
            lines.append(_Line(list(column)).finish())
        column.clear()

    for run in runs:
        ink = [c for c in run if not c.ch.isspace()]
        # Glyphs set sideways in a column (arrows, dashes, brackets) report an angle: they still belong to it.
        single = len(ink) == 1 and (_VERTICAL_OK.match(ink[0].ch) or (ink[0].angle != 0.0 and column))
        if single and column and _stacked(column[-1], ink[0]):
            column.append(ink[0])
            continue
        # A short run (e.g. "告→" where an arrow is drawn beside the column) may still continue it.
        if column and len(ink) <= 3 and _stacked(column[-1], ink[0]) and len(column) >= 2:
            column.extend(ink[:1])
            rest = ink[1:]
            flush()
            if rest:
                lines.append(_Line(rest).finish())
            continue
        flush()
        if single:
            column.append(ink[0])
        else:
            lines.append(_Line(run).finish())
    flush()
    return [line for line in lines if line.text]


def _dedupe_lines(lines: list[_Line]) -> list[_Line]:
    """Drop a whole line drawn again a little off its first copy (bold by overprinting at a larger offset)."""
    kept: list[_Line] = []
    seen: dict[str, list[_Line]] = {}
    for line in lines:
        near = 0.5 * line.size
        if any(
            abs(other.x0 - line.x0) <= near and abs(other.y0 - line.y0) <= near and abs(other.x1 - line.x1) <= near
            for other in seen.get(line.text, ())
        ):
            continue
        seen.setdefault(line.text, []).append(line)
        kept.append(line)
    return kept


def _overprinted(line: _Line) -> bool:
    """Copies of the text drawn over each other further apart than :func:`_dedupe_overprint` allows.

    The glyphs then need far more room than the line takes.  Only such a line is
    collapsed as text: a table header that really repeats 「都道府県 年平均成長率」 four
    times across the page is left alone.
    """
    if line.vertical or line.chars[0].angle != 0.0:
        return False
    ink = sum(c.x1 - c.x0 for c in line.chars if not c.ch.isspace())
    return ink > 1.5 * (line.x1 - line.x0)


def _drop_decorative(lines: list[_Line]) -> list[_Line]:
    """Drop huge background numerals (slide watermarks like a faded ① behind a panel)."""
    sizes = [line.size for line in lines for _ in line.text]
    if not sizes:
        return lines
    typical = statistics.median(sizes)
    return [line for line in lines if not (line.size >= 2.5 * typical and _DECORATIVE.match(line.text))]


def _page_number_line(lines: list[_Line], bottom: float, top: float) -> _Line | None:
    """The line holding the printed page number: alone, short, in the lowest (or highest) row of the page."""
    if len(lines) < 2:
        return None if not lines or not _LABEL.match(unicodedata.normalize("NFKC", lines[0].text)) else lines[0]
    height = max(top - bottom, 1.0)
    typical = statistics.median(line.size for line in lines)
    candidates = [
        line for line in lines if line.size <= 2.5 * typical and _LABEL.match(unicodedata.normalize("NFKC", line.text))
    ]
    lowest = [
        line
        for line in candidates
        if line.y1 <= bottom + 0.15 * height
        and all(other.y0 >= line.y0 - 0.5 * line.height or other is line for other in lines)
    ]
    if len(lowest) == 1:
        return lowest[0]
    highest = [
        line
        for line in candidates
        if line.y0 >= top - 0.1 * height
        and all(other.y1 <= line.y1 + 0.5 * line.height or other is line for other in lines)
    ]
    return highest[0] if len(highest) == 1 and not lowest else None


# --------------------------------------------------------------------- order


def _gaps(spans: list[tuple[float, float]], min_gap: float) -> list[tuple[float, float]]:
    """(width, position) of every empty band between the projected spans, widest first."""
    spans = sorted(spans)
    out: list[tuple[float, float]] = []
    reach = spans[0][1]
    for lo, hi in spans[1:]:
        if lo - reach > min_gap:
            out.append((lo - reach, (lo + reach) / 2))
        reach = max(reach, hi)
    return sorted(out, reverse=True)


def _same_row(a: _Line, b: _Line) -> bool:
    overlap = min(a.y1, b.y1) - max(a.y0, b.y0)
    return overlap >= 0.5 * min(a.height, b.height)


def _table_like(left: list[_Line], right: list[_Line]) -> bool:
    """The two sides of a vertical band pair up row by row and were written alternately: a table."""
    small, large = (left, right) if len(left) <= len(right) else (right, left)
    if len(small) < 2 or any(line.vertical for line in small + large):
        return False
    aligned = sum(any(_same_row(a, b) for b in large) for a in small)
    if aligned < 0.6 * len(small):
        return False
    sides = [side for _, side in sorted([(line.index, 0) for line in left] + [(line.index, 1) for line in right])]
    changes = sum(a != b for a, b in zip(sides, sides[1:]))
    return changes >= 0.5 * (2 * len(small) - 1)


def _grid_row(cut: float, left: list[_Line], right: list[_Line]) -> bool:
    """A horizontal band at ``cut`` ends a row and starts the next on both sides of a column gap (a 2x2 grid).

    Two independent panels have their own line breaks: what ends above a band on
    the left is not level with what ends above it on the right, nor is what starts below it.
    """

    def level(a: _Line | None, b: _Line | None, attr: str) -> bool:
        return a is not None and b is not None and abs(getattr(a, attr) - getattr(b, attr)) <= 0.5 * min(a.size, b.size)

    def first_below(side: list[_Line]) -> _Line | None:
        return max((line for line in side if line.y1 < cut), key=lambda line: line.y1, default=None)

    def last_above(side: list[_Line]) -> _Line | None:
        return min((line for line in side if line.y0 > cut), key=lambda line: line.y0, default=None)

    return level(first_below(left), first_below(right), "y1") and level(last_above(left), last_above(right), "y0")


def _row_break(cut: float, gap: float, typical: float, left: list[_Line], right: list[_Line]) -> bool:
    """Whether a horizontal band at ``cut`` should be cut before the column gap between ``left`` and ``right``."""
    ul = [line for line in left if (line.y0 + line.y1) / 2 > cut]
    ll = [line for line in left if (line.y0 + line.y1) / 2 <= cut]
    ur = [line for line in right if (line.y0 + line.y1) / 2 > cut]
    lr = [line for line in right if (line.y0 + line.y1) / 2 <= cut]
    if (
        ul
        and ur
        and _one_row(ul + ur)
        and (not ll or max(line.index for line in ur) < min(line.index for line in ll))
    ):
        # One row across both columns above the band, written before what is below it:
        # a title with the date beside it.  (The first row of two text columns is not:
        # the right column is written after the whole left one.)
        return True
    if ul and ll and ur and lr:
        if _table_like(ul, ur) != _table_like(ll, lr):
            return True  # two panels above, one table across both below (or the other way round)
        if gap >= typical and (_one_row(ul) and _one_row(ll) or _one_row(ur) and _one_row(lr)):
            # One label above a wide band and one below it on a side: row headers of
            # two tables stacked one above the other, not a column of text.
            return True
        # Lines of both columns on both sides of the band: a row of a grid of panels, or
        # two columns of text whose paragraph breaks happen to coincide.  A grid's rows
        # end and start level, and its producer wrote it row by row (the top right panel
        # before the bottom left one); columns are written one after the other.
        return (
            gap >= typical
            and _grid_row(cut, left, right)
            and statistics.median(line.index for line in ur) < statistics.median(line.index for line in ll)
        )
    # Text on one side of the column gap only, above or below the band: it is a row of
    # its own (a box under a timeline) when it runs across the gaps of the text it
    # shares that side with; otherwise it just continues that column.
    missing = [not ul, not ll, not ur, not lr].count(True)
    if missing >= 2:
        return True
    alone, rest = (ul, ll) if not ur else (ll, ul) if not lr else (ur, lr) if not ul else (lr, ur)
    if len(rest) < 2:
        return False
    gaps = _gaps([(line.x0, line.x1) for line in rest], 0.6 * typical)
    return any(line.x0 < pos < line.x1 for line in alone for _, pos in gaps)


def _one_row(lines: list[_Line]) -> bool:
    return all(_same_row(line, lines[0]) for line in lines)


def _split_rows(lines: list[_Line], cut: float) -> tuple[list[_Line], list[_Line]]:
    upper = [line for line in lines if (line.y0 + line.y1) / 2 > cut]
    return upper, [line for line in lines if (line.y0 + line.y1) / 2 <= cut]


def _order(lines: list[_Line]) -> list[_Line]:
    """Recursive XY-cut: split at an empty band, top before bottom, left before right."""
    if len(lines) <= 1:
        return list(lines)
    if all(line.vertical for line in lines):
        # Columns of vertical text: the producer writes them in reading order (right to left).
        return sorted(lines, key=lambda line: line.index)
    typical = statistics.median(line.size for line in lines)
    # Loose boxes of neighbouring lines may touch; trim them a little so rows still separate.
    # Positions are negated so that the topmost band comes first in ties.
    rows = [
        (gap, -pos)
        for gap, pos in _gaps([(-(line.y1 - 0.15 * line.size), -(line.y0 + 0.15 * line.size)) for line in lines], 0.0)
    ]
    cols = _gaps([(line.x0, line.x1) for line in lines], 0.6 * typical)
    if cols:
        cut = cols[0][1]
        left = [line for line in lines if line.x1 <= cut]
        right = [line for line in lines if line.x1 > cut]
        if rows and _table_like(left, right):
            # A table: one strip per row (all at once, so a long table does not recurse per row).
            strips = _strips(lines, [pos for _, pos in rows])
            return [line for strip in strips for line in _order(strip)]
        else:
            # Columns win unless a band runs across the whole region rather than between
            # lines of both columns: it has a column on one side only (a title above two
            # columns, a box below a timeline), or it separates the rows of a grid of panels.
            chosen = next((pos for gap, pos in rows if _row_break(pos, gap, typical, left, right)), None)
            if chosen is None:
                return _columns(left, right)
        upper, lower = _split_rows(lines, chosen)
        if upper and lower:
            return _order(upper) + _order(lower)
        return _columns(left, right)
    if rows:
        sections = _sections(lines, [pos for _, pos in rows], typical)
        if len(sections) > 1:
            return [line for section in sections for line in _order(section)]
        upper, lower = _split_rows(lines, rows[0][1])
        if upper and lower:
            return _order(upper) + _order(lower)
    return _reading_sort(lines)


def _sections(lines: list[_Line], cuts: list[float], typical: float) -> list[list[_Line]]:
    """Cut at every empty band, then rejoin neighbouring strips that share a column gap.

    Cutting only at the widest band can slice a two-column body in half (where a
    photo leaves both columns empty at the same height) before the title above it
    is out of the way; rejoining strips that keep a common gap keeps each
    multi-column block whole, while a title or a full-width paragraph stays a strip of its own.
    """
    sections: list[list[_Line]] = []
    for strip in _strips(lines, cuts):
        # The section must already have a column gap that the strip leaves open: a title
        # (one line, no gap) never swallows the columns below it.
        if (
            sections
            and _gaps([(line.x0, line.x1) for line in sections[-1]], 0.6 * typical)
            and _gaps([(line.x0, line.x1) for line in sections[-1] + strip], 0.6 * typical)
        ):
            sections[-1].extend(strip)
        else:
            sections.append(list(strip))
    return sections


def _strips(lines: list[_Line], cuts: list[float]) -> list[list[_Line]]:
    """The lines between consecutive horizontal cuts, top to bottom (empty strips left out)."""
    downwards = sorted(-cut for cut in cuts)
    strips: list[list[_Line]] = [[] for _ in range(len(cuts) + 1)]
    for line in lines:
        strips[bisect.bisect_right(downwards, -(line.y0 + line.y1) / 2)].append(line)
    return [strip for strip in strips if strip]


def _columns(left: list[_Line], right: list[_Line]) -> list[_Line]:
    if all(line.vertical for line in right) and not all(line.vertical for line in left):
        # Vertical text to the right of horizontal text is an aside (a ribbon on a
        # slide): read it where it starts, not after everything on its left.
        # It comes after the lines beside it, but not between a line ending in a
        # particle or comma (a sentence that goes on) and the line that continues it.
        out = _order(left)
        for line in _order(right):
            at = max((i + 1 for i, other in enumerate(out) if other.y1 >= line.y0), default=0)
            while at > 0 and out[at - 1].text and out[at - 1].text[-1] in CONTINUES:
                at -= 1
            out.insert(at, line)
        return out
    return _order(left) + _order(right)


def _reading_sort(lines: list[_Line]) -> list[_Line]:
    """Overlapping lines with no empty band between them: top to bottom, rows left to right.

    A vertical line (a ribbon of 縦書き beside a paragraph) is a row of its own,
    read where its top is.
    """
    rest = sorted(lines, key=lambda line: -line.y1)
    out: list[_Line] = []
    while rest:
        head = rest[0]
        row = [head] if head.vertical else [line for line in rest if not line.vertical and _same_row(head, line)]
        out.extend(sorted(row, key=lambda line: line.x0))
        rest = [line for line in rest if not any(line is r for r in row)]
    return out


def _interleave_cells(lines: list[_Line]) -> list[_Line]:
    """Two runs of cells read column by column become row by row.

    A table whose first and second columns the XY-cut read apart (beside a cell
    spanning several rows) comes out 「6～20人 / 21～50人 / 1,000万円 / 1,500万円」;
    a reader pairs each label with the figure level with it.  Only where a row
    next to the runs already has its cells at the same positions: that is what
    tells a table from two captions or wrapped boxes side by side.
    """
    out = list(lines)
    i = 0
    while i < len(out):
        for n in range(_MAX_INTERLEAVED, 1, -1):
            left, right = out[i : i + n], out[i + n : i + 2 * n]
            if len(right) == n and _column_pair(left, right) and _row_like(out, i, 2 * n, left[0], right[0]):
                out[i : i + 2 * n] = [line for pair in zip(left, right) for line in pair]
                i += 2 * n - 1
                break
        i += 1
    return out


# Rows of a table read as two columns; longer runs are paragraphs side by side, not cells.
_MAX_INTERLEAVED = 8
_MAX_CELL_CHARS = 30


def _column_pair(left: list[_Line], right: list[_Line]) -> bool:
    """Each line of ``right`` is level with and right of the same line of ``left``; both are rows, not wraps."""
    for a, b in zip(left, right):
        if a.vertical or b.vertical or not _same_row(a, b) or b.x0 < a.x1:
            return False
        if len(a.text) > _MAX_CELL_CHARS or len(b.text) > _MAX_CELL_CHARS:
            return False
    for side in (left, right):
        for upper, lower in zip(side, side[1:]):
            # Table rows are spaced apart; the lines of one wrapped cell sit close.
            size = min(upper.size, lower.size)
            if not 0.5 * size <= upper.y0 - lower.y1 <= 1.2 * size:
                return False
    return True


def _row_like(lines: list[_Line], start: int, n: int, left: _Line, right: _Line) -> bool:
    """A line next to ``lines[start:start + n]`` is a row with cells starting where ``left`` and ``right`` do."""
    for k in (start - 1, start + n):
        if 0 <= k < len(lines) and not lines[k].vertical:
            cells = _cell_starts(lines[k])
            tol = 1.0 * min(left.size, right.size)
            if abs(cells[0] - left.x0) <= tol and any(abs(x - right.x0) <= tol for x in cells[1:]):
                return True
    return False


def _cells(line: _Line) -> list[list[_Char]]:
    """The line's glyphs split at its cell gaps (one cell when it has none; none when it has no ink)."""
    cells: list[list[_Char]] = []
    for c in line.chars:
        if c.ch.isspace():
            continue
        if not cells or _cell_gap(cells[-1][-1], c):
            cells.append([])
        cells[-1].append(c)
    return cells


def _cell_starts(line: _Line) -> list[float]:
    """Left edges of the line's cells (the line itself when it has no cell gap)."""
    return [cell[0].x0 for cell in _cells(line)] or [line.x0]


def _centred_label(label: _Line, value: _Line) -> bool:
    """A row label centred on a cell of two lines: level with neither, overlapping the first.

    「インボイス特例」 beside 「50万円上乗せ※」 over its note sits half a line lower
    than the figure; a column gap away, it is still that figure's row.
    """
    overlap = min(label.y1, value.y1) - max(label.y0, value.y0)
    return (
        overlap >= _CENTRED_OVERLAP * min(label.height, value.height)
        and _cell_gap(label, value)
        and abs(label.size - value.size) <= 0.15 * min(label.size, value.size)
        # A label is words, short (a chart's numbers and a table's wrapped cells are not labels).
        and len(label.text) <= _MAX_CELL_CHARS
        and not any(ch.isdigit() for ch in label.text)
        and sum(_VERTICAL_OK.match(ch) is not None for ch in label.text) >= 2
    )


# Measured on the real PDFs: a centred label overlaps its figure by 0.43 of a line.
_CENTRED_OVERLAP = 0.3


def _merge_rows(lines: list[_Line]) -> list[_Line]:
    """Consecutive pieces of one row (table cells, label and value) become one line."""
    out: list[_Line] = []
    for line in lines:
        prev = out[-1] if out else None
        if (
            prev is not None
            and not prev.vertical
            and not line.vertical
            and (_same_row(prev, line) or _centred_label(prev, line))
            and line.x0 >= prev.x1 - 0.5 * min(prev.size, line.size)
        ):
            merged = _Line(prev.chars + line.chars)
            merged.x0, merged.y0 = prev.x0, min(prev.y0, line.y0)
            merged.x1, merged.y1 = line.x1, max(prev.y1, line.y1)
            merged.size, merged.index = prev.size, prev.index
            merged.text = prev.text + ("\t" if _cell_gap(prev, line) else " ") + line.text
            out[-1] = merged
        else:
            out.append(line)
    return out


def _paragraphs(lines: list[_Line]) -> str:
    """The page's text, one line per paragraph: wrapped lines joined, every other break kept."""
    out: list[str] = []
    block: list[_Line] = []
    max_gap = _body_line_gap(lines)
    for line in lines:
        if block and not _wraps_to(block[-1], line, max_gap):
            out.extend(_block_text(block))
            block = []
        block.append(line)
    if block:
        out.extend(_block_text(block))
    return "\n".join(out)


# Lines of one paragraph are at most this far apart (in font sizes) in tightly set text.
_TIGHT_LINE_GAP = 0.9
# Word sets Japanese body text on a document grid: lines about twice the font size apart
# (a gap of 0.9-1.1 sizes between line boxes).  A paragraph's lines may be as far apart as
# the page's own body lines, plus this slack, but never as far as a blank line.
_GAP_SLACK = 0.15
_MAX_BODY_LINE_GAP = 1.6
# Only long lines measure the body's line pitch: table rows and slide items are spaced their own way.
_BODY_LINE_CHARS = 20


def _body_line_gap(lines: list[_Line]) -> float:
    """The largest gap (in font sizes) between two lines of one paragraph on this page.

    Measured, not assumed: the most common gap below a long line of body text.  A page
    set tightly keeps :data:`_TIGHT_LINE_GAP`; a page on a wide grid (Word's default for
    Japanese) lets its wrapped lines join as well, while a blank line (about twice the
    pitch) still separates paragraphs.
    """
    counts: dict[int, int] = {}
    for a, b in zip(lines, lines[1:]):
        if a.vertical or b.vertical or len(a.text) < _BODY_LINE_CHARS:
            continue
        size = min(a.size, b.size)
        if abs(a.size - b.size) > 0.15 * size:
            continue
        gap = (a.y0 - b.y1) / size
        if 0.0 <= gap <= _MAX_BODY_LINE_GAP:
            counts[round(gap * 20)] = counts.get(round(gap * 20), 0) + 1
    if not counts or max(counts.values()) < 3:
        return _TIGHT_LINE_GAP
    mode = max(sorted(counts), key=counts.get) / 20
    return min(max(_TIGHT_LINE_GAP, mode + _GAP_SLACK), _MAX_BODY_LINE_GAP)


def _wraps_to(a: _Line, b: _Line, max_gap: float = _TIGHT_LINE_GAP) -> bool:
    """``b`` sits where the next line of ``a``'s paragraph would: directly below, aligned, same size.

    In a table row, "a's paragraph" is its last cell: a long cell wraps within its column.
    ``max_gap`` is the page's paragraph line gap in font sizes (:func:`_body_line_gap`).
    """
    if a.vertical and b.vertical:
        # The next column of 縦書き: just left of this one, starting at the same height.
        size = min(a.size, b.size)
        return abs(a.size - b.size) <= 0.15 * size and -0.5 * size <= a.x0 - b.x1 <= 0.9 * size and abs(a.y1 - b.y1) <= size
    if a.vertical or b.vertical or a.chars[0].angle != 0.0 or b.chars[0].angle != 0.0:
        return False
    start, bottom, a_size = _last_cell(a)
    size = min(a_size, b.size)
    if abs(a_size - b.size) > 0.15 * size:
        return False
    gap = bottom - b.y1
    # Loose boxes of neighbouring lines overlap a little; a blank line or more is a new block.
    if not -0.5 * size <= gap <= max_gap * size:
        return False
    # Flush left, a first-line indent, or a hanging indent under a bullet or "※２".
    return -1.5 * size <= b.x0 - start <= 3.5 * size and b.x0 < a.x1


def _last_cell(line: _Line) -> tuple[float, float, float]:
    """Left edge, bottom and font size of the text after the line's last cell gap (the whole line if it has none)."""
    cells = _cells(line)
    if len(cells) < 2:
        return line.x0, line.y0, line.size
    cell = cells[-1]
    return cell[0].x0, min(c.y0 for c in cell), statistics.median(c.size for c in cell)


def _block_text(block: list[_Line]) -> list[str]:
    """Lines of one block, joined where a line runs to the block's edge and the text goes on."""
    if block[0].vertical:
        # Columns of 縦書き wrap at the bottom: a column that reaches it goes on in the next.
        bottom = min(line.y0 for line in block)

        def joins(prev: _Line, line: _Line) -> bool:
            return prev.y0 <= bottom + 1.5 * prev.size and prev.text[-1:] not in SENTENCE_END and not starts_item(line.text)

    else:
        right = max(line.x1 for line in block)
        # The block's right edge is a wrapping margin when two lines reach it; a single
        # line reaching it is just the longest of some short items, unless it is long itself.
        margin = sum(line.x1 >= right - 1.5 * line.size for line in block) >= 2

        def joins(prev: _Line, line: _Line) -> bool:
            return _joins(prev, line, right, margin)

    out = [block[0].text]
    for prev, line in zip(block, block[1:]):
        if joins(prev, line):
            latin = not prev.vertical and out[-1][-1:].isascii() and line.text[:1].isascii()
            out[-1] += (" " if latin else "") + line.text
        else:
            out.append(line.text)
    return out


def _joins(prev: _Line, line: _Line, right: float, margin: bool) -> bool:
    last, first = prev.text[-1:], line.text[:1]
    if starts_item(line.text) or heading_style(line.text) is not None:
        return False  # a new item or a numbered heading
    if "\t" in line.text:
        # A table row, unless the line above breaks off mid-phrase: the first cell's
        # wrapped start (「住宅宿泊事業者の」 over 「改装関係　住宅宿泊事業法…」).
        return "\t" not in prev.text and last in _PARTICLES + "、,，・" and len(prev.text) >= 6
    if last in SENTENCE_END:
        return False  # a sentence ends where the line does: keep the author's break
    at_edge = prev.x1 >= right - 1.5 * prev.size
    if not at_edge and heading_style(prev.text) is not None:
        return False  # a numbered heading ("１ はじめに") that stops short introduces its body
    # A line that stops short of the edge ends an item or a paragraph, unless it
    # ends on a comma or particle that no item or heading ends on, or the next one
    # starts with what no item starts with (small kana, a long vowel mark, punctuation).
    if last in "、,，・" or first in _GOES_ON:
        return True
    if last in _PARTICLES and (at_edge or len(prev.text) >= 6):
        return True  # "従業員規模毎の" / "区切り無し"; a short "はじめに" is a heading
    if last in LABEL_CLOSERS:
        return False
    if at_edge and first in _PARTICLES:
        return True  # "…上記「実績報告書提出期限」" / "のいずれか早い日までに…"
    wide = len(prev.text) >= (_WRAPPED_MIN_CHARS // 2 if margin else _WRAPPED_MIN_CHARS)
    return at_edge and wide


# A line this long that ends at its block's edge was wrapped there: a slide's items are
# shorter.  Half as long will do where a second line reaches the same edge (a narrow box).
_WRAPPED_MIN_CHARS = 12
# No item starts with a small kana, a long vowel mark or closing punctuation.
_GOES_ON = "ぁぃぅぇぉっゃゅょァィゥェォッャュョー、。，．）)」』"
# Many words start with は, に, と…: a line starting with one continues only a line that runs to the edge.
_PARTICLES = "のをにがはでともへや"
