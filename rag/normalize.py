"""Text normalisation for Japanese text extracted from PDFs.

Two levels:

* :func:`normalize_page` turns one page of extracted text into clean lines a
  reader would recognise (NFKC, radicals → kanji, no ``(cid:NN)``, no
  private-use glyphs, no letter-spaced words, lines rejoined where the PDF
  broke a sentence).  Chunk offsets index into its output.
* :func:`comparable` is for matching only (eval facts, fixture lines, quotes):
  it also drops all whitespace, thousands separators and case.
"""

from __future__ import annotations

import re
import unicodedata

from rag.sections import heading_style

# CJK Radicals Supplement → ideograph, from Unicode's EquivalentUnifiedIdeograph.txt
# (U+2E81..U+2EF3).  NFKC maps the Kangxi Radicals block but not this one, and
# PDF fonts often encode 長, 西, 青, 食 ... with these code points.
_RADICAL_PAIRS = (
    "⺁厂 ⺂乛 ⺃乚 ⺄乙 ⺅亻 ⺆冂 ⺇𠘨 ⺈刀 ⺉刂 ⺊卜 ⺋㔾 ⺌小 ⺍小 ⺎兀 ⺏尣 ⺐尢 ⺑𡯂 ⺒巳 ⺓幺 ⺔彑 ⺕𫜹 ⺖忄 "
    "⺗心 ⺘扌 ⺙攵 ⺛旡 ⺜日 ⺝月 ⺞歺 ⺟母 ⺠民 ⺡氵 ⺢氺 ⺣灬 ⺤爫 ⺥爫 ⺦丬 ⺧牛 ⺨犭 ⺩王 ⺪𤴔 ⺫目 ⺬示 "
    "⺭礻 ⺮𥫗 ⺯糹 ⺰纟 ⺱罓 ⺲罒 ⺳㓁 ⺴冗 ⺵𦉫 ⺶羊 ⺷𦍌 ⺸𦍋 ⺹耂 ⺺肀 ⺻聿 ⺼肉 ⺽𦥑 ⺾艹 ⺿艹 ⻀艹 ⻁虎 "
    "⻂衤 ⻃覀 ⻄西 ⻅见 ⻆角 ⻇𧢲 ⻈讠 ⻉贝 ⻊𧾷 ⻋车 ⻌辶 ⻍辶 ⻎辶 ⻏邑 ⻐钅 ⻑長 ⻒镸 ⻓长 ⻔门 ⻕𨸏 ⻖阝 "
    "⻗雨 ⻘青 ⻙韦 ⻚页 ⻛风 ⻜飞 ⻝食 ⻞𩙿 ⻟飠 ⻠饣 ⻡𩠐 ⻢马 ⻣骨 ⻤鬼 ⻥鱼 ⻦鸟 ⻧卤 ⻨麦 ⻩黄 ⻪黾 ⻫斉 "
    "⻬齐 ⻭歯 ⻮齿 ⻯竜 ⻰龙 ⻱龜 ⻲亀 ⻳龟"
)
_RADICALS = {pair[0]: pair[1:] for pair in _RADICAL_PAIRS.split()}
_RADICAL_TABLE = str.maketrans(_RADICALS)

_CIRCLED = re.compile("[\u2460-\u2473\u3251-\u325f\u32b1-\u32bf\u2776-\u277f]+")
_CIRCLED_SPLIT = re.compile("([\u2460-\u2473\u3251-\u325f\u32b1-\u32bf\u2776-\u277f]+)")
_CID = re.compile(r"\(cid:\d+\)")
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060\ufeff]")
_PRIVATE_USE = re.compile("[\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd]")
# Glyphs that PDFs use as list bullets; normalised to the plain Japanese bullet.
_BULLET_GLYPHS = "•●○◯◆◇■□▪▫▶▷►➤➢➣➔→⚫⚪✓✔❖◎※♦❑◦▸▹◉⦿❏❐❒"
_BULLET_LINE = re.compile(rf"^\s*[{_BULLET_GLYPHS}\ue000-\uf8ff]+\s*")

_CJK = r"\u3005-\u3007\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_CJK_PUNCT = r"\u3001-\u3003\u3008-\u301f\u30fb\uff01-\uff0f\uff1a-\uff20"
_JA = _CJK + _CJK_PUNCT
# Three or more "character + single space" in a row: letter-spaced (Word, justified) text.
_SPACED_RUN = re.compile(rf"(?:[{_JA}0-9A-Za-z] ){{2,}}[{_JA}0-9A-Za-z]")
# Letter-spacing so wide that each character stands in a cell of its own (a spread-out title).
_SPACED_CELLS = re.compile(rf"(?:[{_JA}]\t){{2,}}[{_JA}]")
# A figure set one character per cell in a Word table: 「1 0 . 5 %」, 「3 0 0 , 0 0 0 円」.
_SPACED_FIGURE = re.compile(r"(?<!\S)\d(?:[ \t][\d.,])+(?:[ \t][%円人件歳])?(?!\S)")
# What such a run must read as once joined: a figure with a separator or a unit.  A row of
# single digits ("1　2　3　4", the month columns of a chart) has neither and stays apart.
_FIGURE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?[%円人件歳]?|\d+\.\d+[%円人件歳]?|\d+[%円人件歳]")
# A two-character label spread across its cell (均等割付): 「目　標」, 「2 目　的」.  Only when
# the pair is the whole line (after a numbering mark): two one-character cells of a row have
# other cells beside them.
_SPACED_PAIR = re.compile(rf"^((?:\(?\d{{1,2}}[.)．]?\s?)?)([{_CJK}])\t([{_CJK}])$")
# A single space between two Japanese characters carries no meaning in Japanese prose.
_SPACE_BETWEEN_JA = re.compile(rf"(?<=[{_JA}]) (?=[{_JA}])")

SENTENCE_END = "。！？!?"
# A line ending with one of these closes a label or a note ("（P.2参照）", "【厳守】", "…について：").
LABEL_CLOSERS = "）)】>＞:：]"
# A line ending with one of these closes its item; the next line starts a new one.
_LINE_CLOSERS = SENTENCE_END + "」』" + LABEL_CLOSERS
# A line ending in a comma or a particle goes on: no heading or item ends on one.
CONTINUES = "、,，をにがはとのでもへや・"
# Line starts that open a new item: bullets, numbered items, bracketed labels.
BULLET_START = re.compile(
    r"^(?:[-・‐–—*＊◦▶➤■⚫①-⑳㉑-㊿❶-❿○●◎◆◇□▪]|\(?\d{1,2}[).．、](?!\d)|[<＜【\[〈《]|\(例\)|[（(][0-9０-９一二三四五六七八九十ア-ン][)）]|第[0-9一二三四五六七八九十]+[章節条])"
)
_PAGE_NUMBER_LINE = re.compile(r"^[-‐–—\s]*(?:[pP]\.?\s*)?(\d{1,4})[-‐–—\s]*$")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_WHITESPACE = re.compile(r"\s+")


def normalize_chars(text: str) -> str:
    """Character-level clean-up: radicals, NFKC, invisible and private-use characters, cid codes."""
    text = _CID.sub("", text)
    text = text.translate(_RADICAL_TABLE)
    # NFKC turns ① into 1; circled numbers mark list items in Japanese documents, so keep them.
    text = "".join(
        part if _CIRCLED.fullmatch(part) else unicodedata.normalize("NFKC", part) for part in _CIRCLED_SPLIT.split(text)
    )
    text = _INVISIBLE.sub("", text)
    return text


# Between the cells of a table row (a gap the layout extractor measured): the ideographic
# space reads as a column gap in Japanese ("5人以下　750万円") and is whitespace to the
# tokenizer and to matching, where glued cells would read as one word.
CELL_SEPARATOR = "\u3000"


def starts_item(line: str) -> bool:
    """The line opens a new item (a bullet, a number, a bracketed label) rather than continuing a sentence."""
    head = normalize_chars(line[:4]).lstrip()
    return bool(_BULLET_LINE.match(head) or BULLET_START.match(head))


def _tidy_line(line: str, laid_out: bool = False) -> str:
    line = _BULLET_LINE.sub("・", line) if _BULLET_LINE.match(line) else line
    line = _PRIVATE_USE.sub("", line)
    # In laid-out text a tab is a cell boundary the layout extractor measured (rag.pdf_text):
    # it survives as CELL_SEPARATOR where a plain space between Japanese characters does not.
    # Elsewhere a tab is just whitespace.
    line = line.replace("\u3000", " ")
    line = re.sub(r" *\t[ \t]*", "\t", line) if laid_out else line.replace("\t", " ")
    line = re.sub(r" {2,}", " ", line).strip()
    line = _SPACED_FIGURE.sub(_join_figure, line)
    line = _SPACED_PAIR.sub(r"\1\2\3", line)
    line = _SPACED_CELLS.sub(lambda m: m.group(0).replace("\t", ""), line)
    line = _SPACED_RUN.sub(lambda m: m.group(0).replace(" ", ""), line)
    line = _SPACE_BETWEEN_JA.sub("", line)
    return line.replace("\t", CELL_SEPARATOR).replace("**", "")


def _join_figure(m: re.Match[str]) -> str:
    joined = re.sub(r"[ \t]", "", m.group(0))
    return joined if _FIGURE.fullmatch(joined) else m.group(0)


def _width(line: str) -> float:
    return sum(1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.5 for ch in line)


def _should_join(prev: str, nxt: str, wrap_width: float) -> bool:
    if not prev or not nxt:
        return False
    if prev[-1] in _LINE_CLOSERS or BULLET_START.match(nxt):
        return False
    if heading_style(nxt) or (_width(prev) < 0.8 * wrap_width and heading_style(prev)):
        return False  # a short numbered heading introduces its body; a heading never continues a line
    # A wrapped line ends near the text width; a short line is a heading or the end of an item.
    if _width(prev) >= 0.8 * wrap_width:
        return True
    # Particles and commas cannot end a heading or a sentence.
    return prev[-1] in CONTINUES


# A printed page number differs from the PDF page index by the front matter at most;
# a lone "2027" or "1000" under a table is data, not a page number.
_MAX_LABEL_OFFSET = 12


def split_page_number(lines: list[str], page_index: int | None = None) -> tuple[list[str], str | None]:
    """Remove a printed page number standing alone at the bottom (or top) of a page."""

    def plausible(number: str) -> bool:
        return page_index is None or abs(int(number) - page_index) <= _MAX_LABEL_OFFSET

    label = None
    if lines and (m := _PAGE_NUMBER_LINE.match(lines[-1])) and plausible(m.group(1)):
        label, lines = m.group(1), lines[:-1]
    elif len(lines) > 1 and (m := _PAGE_NUMBER_LINE.match(lines[0])) and plausible(m.group(1)):
        label, lines = m.group(1), lines[1:]
    return lines, label


def normalize_lines(raw: str, page_index: int | None = None, *, laid_out: bool = False) -> tuple[list[str], str | None]:
    """Normalise a page into cleaned lines and the printed page label (if any).

    ``laid_out`` text comes from :mod:`rag.pdf_text`, which has already joined
    wrapped lines and removed the page number from the geometry; guessing both
    again from the text would glue a slide's separate items together.
    """
    text = normalize_chars(raw)
    lines = [_tidy_line(line, laid_out) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if laid_out:
        return lines, None
    lines, label = split_page_number(lines, page_index)
    if not lines:
        return [], label
    widths = sorted(_width(line) for line in lines)
    wrap_width = widths[int(0.9 * (len(widths) - 1))]
    joined: list[str] = [lines[0]]
    for i, line in enumerate(lines[1:], start=1):
        # The first line is the page's title: never glue the body onto it.
        if i > 1 and _should_join(joined[-1], line, wrap_width):
            sep = " " if joined[-1][-1].isascii() and line[0].isascii() else ""
            joined[-1] = joined[-1] + sep + line
        else:
            joined.append(line)
    return joined, label


def normalize_page(raw: str) -> str:
    lines, _ = normalize_lines(raw)
    return "\n".join(lines)


def normalize_query(text: str) -> str:
    """A question as typed: NFKC, no control characters, single spaces."""
    text = normalize_chars(text)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return _WHITESPACE.sub(" ", text).strip()


def comparable(text: str) -> str:
    """Form used only for matching: NFKC, no whitespace, no thousands separators, lower case."""
    text = normalize_chars(text).replace("**", "")
    text = _WHITESPACE.sub("", text)
    return _THOUSANDS.sub("", text).lower()


# --- Repairs for text that plain PDF extraction breaks (used by the PDF loader) ---

_SINGLE_CJK_LINE = re.compile(rf"^\s*[{_JA}]\s*$")
_WORDY = re.compile(rf"[{_CJK}A-Za-z]")


def collapse_overprint(line: str) -> str:
    """One copy of a line that a PDF "printed" several times to look bold.

    Extractors return such headings as ``人口の減少人口の減少人口の減少人口の減少``,
    ``① 見出し ① 見出し 見出し`` (a later copy may lack the leading mark), or
    with every character repeated (``森森森森とととと``).  Only whole-line
    repetition is collapsed, and only where ordinary prose does not repeat itself:
    a unit of four or more characters, or three or more copies.
    """
    text = line.strip()
    compact = re.sub(r"\s+", "", text)
    n = len(compact)
    # Headings are words: repeated figures ("1,000 1,000") are table cells, not overprint.
    if n < 4 or len(_WORDY.findall(compact)) < 2:
        return line
    for size in range(2, n // 2 + 1):  # the shortest unit first: four copies are not two of two
        k, rest = divmod(n, size)
        if rest or k > 8:
            continue
        if compact[:size] * k == compact and (size >= 4 or k >= 3):
            return _prefix_with(text, size)
    groups = [len(m.group(0)) for m in re.finditer(r"(.)\1*", compact)]
    if len(groups) >= 2 and groups[0] >= 2 and (len(groups) >= 3 or groups[0] >= 3) and len(set(groups)) == 1:
        return compact[:: groups[0]]
    tokens = text.split()
    for p in range(1, len(tokens) // 2 + 1):
        first = "".join(tokens[:p])
        if len(first) < 4:
            continue
        piece, copies, ok = "", 0, True
        for token in tokens[p:]:
            piece += token
            if piece == first or (len(piece) >= max(4, len(first) // 2) and first.endswith(piece)):
                piece, copies = "", copies + 1
            elif not first.startswith(piece) and not first.endswith(piece) and piece not in first:
                ok = False
                break
        if ok and copies and not piece:
            return " ".join(tokens[:p])
    return line


def collapse_repeated_lines(lines: list[str]) -> list[str]:
    """Drop a line of words that repeats the line before it (an overprinted heading split into lines).

    Numbers and marks repeat legitimately in tables (``100.0``, ``○``), so only a
    line with four or more letters, kana or kanji counts.
    """
    out: list[str] = []
    for line in lines:
        if out and line.strip() == out[-1].strip() and len(_WORDY.findall(line)) >= 4:
            continue
        out.append(line)
    return out


def _prefix_with(text: str, count: int) -> str:
    """The shortest prefix of ``text`` holding ``count`` non-space characters."""
    seen = 0
    for i, ch in enumerate(text):
        if not ch.isspace():
            seen += 1
            if seen == count:
                return text[: i + 1]
    return text


def join_vertical_runs(lines: list[str]) -> list[str]:
    """Rejoin vertical text (縦書き) that an extractor gave one character per line.

    Three or more consecutive lines of a single Japanese character are one
    vertical line; two could be a short table column, so they are left alone.
    """
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, None]:
        if line is not None and _SINGLE_CJK_LINE.match(line):
            run.append(line.strip())
            continue
        if len(run) >= 3:
            out.append("".join(run))
        else:
            out.extend(run)
        run = []
        if line is not None:
            out.append(line)
    return out
