"""Reading around a quoted sentence on its page: the caption above it, the items under it.

Slides and KPI sheets put the answer next to the line that matches a question:
a place in the caption above an example, a list under the heading that names it,
last year's figure in brackets under a target.  The answerer finds the matching
line; these functions read its neighbours.  They work on a page's lines as plain
strings and know nothing about scores.
"""

from __future__ import annotations

import re

from rag.chunking import _SENTENCE
from rag.normalize import BULLET_START, CELL_SEPARATOR, SENTENCE_END

# Slides flattened into one line keep their boxes apart with these marks: each box is its own item.
INLINE_ITEM = re.compile(r"\s*[■□◆◇●]\s*")
HEADING_OPEN = ("<", "＜", "【", "[", "〈", "《")
PREFECTURE = r"(?:北海道|東京都|京都府|大阪府|[一-龥]{2,3}県)"
# A named place: a prefecture (with its municipality), or a municipality standing as a word
# ("加賀市、", "横浜市では").  Not 都道府県・市区町村, not 各府省 or 国道 or …国家構想.
_MUNICIPALITY = r"[一-龥ァ-ヶ]{1,6}?[市区町村](?=[、。・,)）\s]|では|でも|の|は|が|に|を|と|や|$)"
PLACE = re.compile(
    r"(?<![一-龥])(?!都道府県|市区町村|市町村)"
    rf"(?:{PREFECTURE}(?:(?![のではがをとにも])[一-龥ぁ-んァ-ヶ]{{1,6}}?[市区町村])?|{_MUNICIPALITY})"
)
_BRACKET_TAIL = re.compile(r"[（(]([^()（）]*)[)）]$")


def place_tail(text: str) -> bool:
    """"取組名 (福島県会津若松市)": how slides caption one regional example among several."""
    m = _BRACKET_TAIL.search(text)
    return bool(m and PLACE.search(m.group(1)))


NUMBER = re.compile(r"\d")
_LIST_REACH = 15  # lines read below a list's heading
# Lines walked up from a table row to its header: a slide's table has a handful of rows,
# and a cell spanning several rows puts its lines between them.  (Rows further down a
# long table take the header the row above them found.)
_TABLE_REACH = 10
# A short line ending so asks what the table under it answers: 「補助率・補助上限額は？」.
ASKS_ABOVE = ("?", "？", ":", "：")
_TABLE_NOTE = ("・", "※")


def sentences(text: str, boxes: bool = True) -> list[str]:
    """The quotable units of a text: sentences, and (``boxes``) each box of a flattened slide line."""
    out = []
    for line in text.split("\n"):
        for m in _SENTENCE.finditer(line):
            for s in INLINE_ITEM.split(m.group(0)) if boxes else [m.group(0)]:
                s = s.strip()
                if len(s) >= 4:
                    out.append(s)
    return out


def locate(text: str, sentence: str, near: int = 0) -> tuple[list[str], int | None]:
    """The page's lines, and the index of the line ``sentence`` stands in: the occurrence
    at or after ``near`` (where its chunk starts), else the first."""
    lines = text.split("\n")
    pos = find(text, sentence, near)
    return lines, (None if pos < 0 else text.count("\n", 0, pos))


def find(text: str, sentence: str, near: int = 0) -> int:
    """Where ``sentence`` stands in ``text``: at or after ``near`` if it is there, else anywhere."""
    pos = text.find(sentence, near)
    return pos if pos >= 0 else text.find(sentence)


def table_heads(lines: list[str]) -> list[list[str]]:
    """For each line that is a table row, the header rows above it and the caption over them.

    「5人以下　750万円」 says nothing of 補助上限額 on its own: its column header
    and the table's caption do.  A header row has cells and no figures; the walk up
    from a row passes other rows and short cell lines, and stops at a sentence.
    """
    heads: list[list[str]] = [[] for _ in lines]
    for at, line in enumerate(lines):
        if CELL_SEPARATOR not in line or not NUMBER.search(line):
            continue
        for i in range(at - 1, max(-1, at - 1 - _TABLE_REACH), -1):
            if heads[i]:
                heads[at] = heads[i]  # the row above has found the header: a long table shares it
                break
            above = lines[i].strip()
            if above.endswith(ASKS_ABOVE) and len(above) <= 40:
                heads[at] = [above]  # a slide's table under the question it answers: 「補助率・補助上限額は？」
                break
            if above.startswith(_TABLE_NOTE) and len(above) <= 60:
                continue  # 「・P9「…」をご参照ください。」 between two rows
            if not above or above[-1] in SENTENCE_END or len(above) > 60:
                break
            if CELL_SEPARATOR in above and not NUMBER.search(above):
                top = i
                while top > 0 and CELL_SEPARATOR in lines[top - 1] and not NUMBER.search(lines[top - 1]):
                    top -= 1
                if top > 0 and is_label(lines[top - 1].strip()):
                    top -= 1
                heads[at] = [x.strip() for x in lines[top : i + 1]]
                break
    return heads


def is_label(text: str) -> bool:
    """A heading or caption rather than a statement: short, and not a finished sentence."""
    return 0 < len(text) <= 40 and not text.endswith(("。", "！", "？", ":", "："))


def bullet_family(line: str) -> str:
    """Which kind of list marker a line starts with, so ① ② ③ are read as one list."""
    first = line.lstrip()[:1]
    if first in "-‐–—" and line.lstrip()[1:].lstrip()[:1].isdigit():
        return "numbered"  # "- 1 地方に仕事をつくる": a numbered list a converter prefixed with dashes
    if "\u2460" <= first <= "\u2473" or "\u2776" <= first <= "\u277f":
        return "circled"
    if first.isdigit() or first in "(（":
        return "numbered"
    return "bullet"  # -, ・, ▶ … are mixed freely within one list by PDF converters


def plain_items(lines: list[str]) -> int:
    """How many of ``lines`` in a row are short unmarked items (no bullet, no sentence end, not a heading)."""
    n = 0
    for line in lines:
        line = line.strip()
        if not (4 <= len(line) <= 45) or BULLET_START.match(line) or line.endswith(("。", ":", "：")):
            break
        n += 1
    return n


def place_caption(lines: list[str], at: int | None, reach: int = 3) -> list[str]:
    """The short lines from the nearest one above ``at`` that names a place, down to ``at`` (exclusive)."""
    if at is None:
        return []
    for back in range(1, reach + 1):
        i = at - back
        if i < 0 or len(lines[i]) > 60:
            return []
        if PLACE.search(lines[i]):
            return [line.strip() for line in lines[i:at]]
    return []


def places_below(lines: list[str], at: int | None, reach: int = 3) -> list[str]:
    """The regional examples listed right under ``at``: "地域通貨… (埼玉県深谷市)"."""
    if at is None:
        return []
    out = []
    for line in lines[at + 1 : at + 1 + reach]:
        if not place_tail(line.strip()):
            break
        out.append(line.strip())
    return out


def figure_below(lines: list[str], at: int | None, sentence: str) -> str | None:
    """The line under ``sentence`` that carries its number: a KPI's baseline "(2021年度は31%)",
    or the dated sub-item under a measure that gives no date itself."""
    if at is None or at + 1 >= len(lines):
        return None
    after = lines[at + 1].strip()
    baseline = after.startswith(("(", "（")) and len(after) <= 80
    detail = not NUMBER.search(sentence) and len(after) <= 160
    return after if (baseline or detail) and NUMBER.search(after) and after != sentence else None


def introduces_list(lines: list[str], at: int | None, sentence: str) -> bool:
    """Whether ``sentence`` reads as the heading of a list below it."""
    if len(sentence) <= 40 or sentence.endswith((":", "：")):
        return True
    if at is None or at + 1 >= len(lines) or not lines[at].rstrip().endswith(sentence):
        return False
    # A sentence that ends its line right above "1 …", "① …", or above short unmarked items.
    nxt = lines[at + 1].strip()
    numbered = bool(BULLET_START.match(nxt)) and bullet_family(nxt) in ("circled", "numbered")
    return numbered or plain_items(lines[at + 1 : at + 3]) == 2


def list_items(lines: list[str], at: int | None, sentence: str) -> list[str]:
    """The items listed under ``sentence``: one marker family, or short unmarked lines."""
    if at is None:
        return []
    plain = plain_items(lines[at + 1 : at + 1 + _LIST_REACH])
    if plain >= 2:
        # Items laid out as short lines with no marker at all (a slide's box of examples).
        return [line.strip() for line in lines[at + 1 : at + 1 + plain]]
    out: list[str] = []
    family = None
    last = 0
    for n, line in enumerate(lines[at + 1 :]):
        if line.startswith(HEADING_OPEN) or n >= _LIST_REACH:
            break
        if not BULLET_START.match(line):
            # Numbered items may carry a line of explanation each (① 技術名 / その説明 / ② …): skip it.
            if out and family in ("circled", "numbered"):
                continue
            if not out and n == 0 and len(line) <= 60:
                continue  # a subtitle between the heading and its list
            break
        kind = bullet_family(line)
        family = family or kind
        if kind != family:
            if family == "circled" and kind == "bullet":
                # 「① … / ・「2歳に達する日」とは… / ② …」: a note under an item; the document's
                # own numbering says where the next item is (① ② … must keep counting up).
                continue
            break
        if kind == "circled":
            number = _circled(line)
            if out and number <= last:
                break  # ① again: the next list (the steps' details under their overview)
            last = number
        pieces = sentences(line)
        # A line of slide boxes ("A ■ B ■ C") is several items; a bullet with sentences is one.
        for piece in pieces if INLINE_ITEM.search(line) else pieces[:1]:
            if place_tail(sentence) and place_tail(piece):
                return out  # another region's example, not an item of this one
            if piece != sentence:
                out.append(piece)
    return out


def _circled(line: str) -> int:
    first = line.lstrip()[:1]
    return ord(first) - (0x2776 if "\u2776" <= first <= "\u277f" else 0x2460) + 1


def sentence_before(text: str, sentence: str, near: int = 0) -> str | None:
    """The sentence right before ``sentence`` in ``text``, on its line or the line above."""
    at = find(text, sentence, near)
    if at <= 0:
        return None
    line = text[:at].rsplit("\n", 1)[-1]
    if not line.strip():  # the sentence starts its line: the last sentence of the line above
        line = text[:at].rstrip("\n").rsplit("\n", 1)[-1]
    found = sentences(line)
    return found[-1] if found else None


def sentences_after(text: str, sentence: str, n: int = 3, near: int = 0) -> list[str]:
    """The next ``n`` sentences after ``sentence`` in ``text``, stopping at the next heading."""
    at = find(text, sentence, near)
    if at < 0:
        return []
    out: list[str] = []
    for line in text[at + len(sentence) :].split("\n"):
        stripped = line.strip()
        if out and (stripped.startswith(HEADING_OPEN) or (is_label(stripped) and not BULLET_START.match(stripped))):
            break
        for piece in sentences(line):
            if place_tail(sentence) and place_tail(piece):
                return out  # the next example of a list of "取組 (県市)" entries, not more about this one
            out.append(piece)
            if len(out) >= n:
                return out
    return out
