"""The value a card cell shows for a chosen line: the line, or what the line introduces.

A field's line often does not hold the value itself:

- a line that introduces a list (「以下の経費は補助対象外です。」「下記に該当する法人…が対象です。」,
  or one ending in 「：」), or a heading that only names the field (「(2)補助率」「6-2.補助対象外
  となる経費」), is followed by the items that are the value; a numbered section's items go on
  over the page break;
- a table's header row (「補助対象経費科目　活用事例」) heads the rows whose first
  cells are the value (「機械装置等費、広報費、…」);
- a ceiling broken down by head count is every row of that breakdown
  (「5人以下 750万円／6～20人 1,000万円／…」), not the one row that was quoted.

Each reads the document's own layout (:mod:`rag.cards.layout`); none knows a document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.cards import fields as fd
from rag.cards import values as cv
from rag.cards.layout import Layout, Line
from rag.normalize import CELL_SEPARATOR

VALUE_CHARS = 160
# A list (costs, requirements) read under its heading gets a longer cell, each item cut to
# what names it: a consultant needs to see the items, not the first one in full.
LIST_CHARS = 240
_ITEMS_READ = 12
_ITEM_CHARS = 50
# A column named for a field is a name (「補助対象経費科目」), not a statement about one.
_COLUMN_NAME_CHARS = 10
_HEADING_CHARS = 30
_NUMBERED = re.compile(r"^(?:[①-⑳❶-❿]|[(（]\d{1,2}[)）])")
_NOTE_MARKS = ("・", "※")
# A short heading that ends as a clause (「…最低限度額以下のとき」) is an item of a list, not a title.
_CLAUSE_END = ("とき", "場合", "こと", "ます", "です", "。")
# Fields whose value is a figure (an amount, a rate, a date, a number to call); the others are lists.
_FIGURE_FIELDS = frozenset({"補助上限額", "補助率", "申請期間", "問い合わせ先"})
# A line that opens a worked example (「例1:…」「例③:…」): not one of a list's items.
EXAMPLE_START = re.compile(r"^[<(【]?例\s*[①-⑳\d:：]")
_QUANTITY = re.compile(r"[\d額数円人名%歳日月年率度]$")
_INTRO = re.compile(r"(?:以下|下記|次)(?:の|に|のとおり|のいずれか|に掲げる)|[:：]$")
# A list item's bullet or number, and the space after it: 「・」「①」「(1)」「1.」 — not the
# figures that start an item (「2歳未満の子…」「471,393円 - …」).
_MARKERS = re.compile(r"^(?:[\s・■●◆◇○▶※★▲◎\-]|[①-⑳❶-❿]|[(（]\d{1,2}[)）]|\d{1,2}[.．)）](?!\d))+")
_CELL_MARKS = re.compile(r"[★▲◎■◆●※]+.*$")


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def shorten(text: str, limit: int = VALUE_CHARS) -> str:
    text = clean(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def introduces(line: Line) -> bool:
    """A line that says a list follows: 「以下の…」「下記の…」「次の…」, or a label ending in a colon.

    Not 以下 after a quantity (「最低限度額以下のとき」「5人以下の」): that is "or less".
    """
    text = cv.nfkc(line.text)
    return any(not (m.group(0).startswith("以下") and _QUANTITY.search(text[: m.start()])) for m in _INTRO.finditer(text))


def _item(text: str) -> str:
    """One listed item as a cell names it: without its bullet, up to its first sentence end."""
    core = _MARKERS.sub("", text).strip()
    core = core.split("。", 1)[0]
    return core if len(core) <= _ITEM_CHARS else core[: _ITEM_CHARS - 1] + "…"


def items_below(layout: Layout, i: int) -> list[tuple[Line, str]]:
    """The lines after ``i`` that belong to it, each with the item it names: inside its section,
    up to the section's end.

    A numbered section goes on over the page break (「6-2.補助対象外となる経費」 at a page's
    foot, its list on the next page); a line outside any section ends with its page.
    """
    line = layout.lines[i]
    out: list[tuple[Line, str]] = []
    following = layout.lines[i + 1 :] if line.path else layout.after(i)
    numbered = False
    for nxt in following:
        # A line outside the section ``i`` stands in (or opens) ends what ``i`` introduces; a
        # heading deeper inside it (「① 初日から末日まで…」 under 「(2)各月の支給要件」) is an item.
        if not _inside(nxt, line) or EXAMPLE_START.match(cv.nfkc(nxt.text)):
            break
        text = nxt.text.lstrip()
        numbered = numbered or bool(_NUMBERED.match(text))
        if numbered and text.startswith(_NOTE_MARKS):
            continue  # a note under a numbered item explains it; it is not the next item
        item = _item(nxt.text)
        if item:
            out.append((nxt, item))
        if len(out) >= _ITEMS_READ:
            break
    return out


def _inside(nxt: Line, line: Line) -> bool:
    """Whether ``nxt`` stands inside the section ``line`` stands in (a deeper heading included)."""
    return nxt.path[: len(line.path)] == line.path


def first_cells(layout: Layout, i: int) -> list[tuple[Line, str]]:
    """Under a header row, the first cell of every row of its table (the row labels), with its row."""
    header = layout.lines[i]
    out: list[tuple[Line, str]] = []
    for nxt in layout.after(i):
        if not _inside(nxt, header):
            break
        if CELL_SEPARATOR not in nxt.text:
            continue
        cell = _CELL_MARKS.sub("", _MARKERS.sub("", nxt.cells[0])).strip()
        if cell and len(cell) <= 25 and cell not in (c for _, c in out):
            out.append((nxt, cell))
    return out


def only_names(field: str, value: str) -> bool:
    """Whether ``value`` is no more than the field's name (a heading 「お問い合わせ」 alone)."""
    rest = cv.nfkc(value)
    for n in sorted(fd.NAMES[field], key=len, reverse=True):
        rest = rest.replace(n, "")
    return len(re.sub(r"[\W_]", "", rest)) < 2


def is_header_row(line: Line) -> bool:
    """A table's header row: cells apart, no figures, short."""
    return CELL_SEPARATOR in line.text and not re.search(r"\d", line.text) and len(line.text) <= 60


@dataclass(frozen=True)
class Cell:
    """What a card shows for a field read at one line: the value, and the line quoted for it."""

    value: str
    line: Line  # the line quoted for it (its page is the field's page)

    @property
    def quote(self) -> str:
        return clean(self.line.text)


def cell(field: str, layout: Layout, i: int) -> Cell:
    """The cell when ``field`` is read at line ``i``.

    The quote is the line that holds the value: the line itself, or, under a heading that
    only names the field (「3. 補助対象経費」), the first line of what it heads.
    """
    line = layout.lines[i]
    if field == "補助上限額":
        span = layout.pages[line.page]
        rows = cv.band_amounts([layout.lines[j].text for j in span])
        # A row of the breakdown, or the heading over it: the whole breakdown.  Another amount on
        # the page (「補助上限額を100~1,000万円上乗せします」) is its own value.
        if len(rows) >= 2 and (any(r.line == line.text for r in rows) or not cv.amounts(line.text)):
            first = next(ln for j in span if (ln := layout.lines[j]).text == rows[0].line)
            return Cell("／".join(f"{r.band.label()} {cv.yen(r.amount)}" for r in rows), line if cv.amounts(line.text) else first)
    if is_header_row(line) and len(line.cells[0]) <= _COLUMN_NAME_CHARS and fd.names(field, cv.nfkc(line.cells[0])):
        # The header's first column is named for the field (「補助対象経費科目」): its rows' labels are the value.
        cells = first_cells(layout, i)
        if len(cells) >= 2:
            return Cell(shorten(f"{line.cells[0]}: " + "、".join(c for _, c in cells)), cells[0][0])
    titled = (line.heading or line.text == line.title) and len(line.text) <= _HEADING_CHARS and not line.text.endswith(_CLAUSE_END)
    if introduces(line) or titled:
        shown = items_below(layout, i)
        if field in _FIGURE_FIELDS:
            # A figure under its heading (「(1)補助金額」 over rows of amounts) is the value; the lines
            # between that explain it are not.
            context = cv.nfkc(line.text + "\n" + "\n".join(line.path) + "\n" + line.title)
            shown = [(ln, it) for ln, it in shown if fd.evidence(field, cv.nfkc(it), context, context)]
        if shown:
            limit = VALUE_CHARS if field in _FIGURE_FIELDS else LIST_CHARS
            quoted = line if introduces(line) and not titled else shown[0][0]
            return Cell(shorten(clean(line.text) + " " + "／".join(it for _, it in shown), limit), quoted)
    return Cell(shorten(line.text), line)


__all__ = ["VALUE_CHARS", "LIST_CHARS", "EXAMPLE_START", "Cell", "cell", "introduces", "items_below", "first_cells", "is_header_row", "only_names",
           "clean", "shorten"]
