"""From Tesseract's words to page text a reader (and BM25) can use.

Tesseract puts a space between every two words, and for Japanese a "word" is
often a single character, so raw output reads 「デ ジ タ ル 田 園」.  It also
confuses look-alike characters across scripts: the long-vowel mark ー and the
kanji 一, katakana ロ and the kanji 口, katakana カ and the kanji 力, the letter
O and the digit 0.  The right one follows from the neighbours: a long-vowel
mark follows katakana, 口 stands between kanji, 0 stands inside a number.
What each step gains is measured by ``rag bench --ocr`` (docs/decisions.md).

Line joining is left to :func:`rag.normalize.normalize_lines`, which already
rejoins sentences broken across lines for text without positions.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from rag.ocr.tesseract import Word

_KATAKANA = "\u30a1-\u30fa\u30fc-\u30ff\uff66-\uff9f"
_KANJI = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3005"
_HIRAGANA = "\u3041-\u309f"
_JA = _KATAKANA + _KANJI + _HIRAGANA + "\u3000-\u303f\uff01-\uff0f\uff1a-\uff20"

# Each rule: (pattern, replacement, name).  The name is what the measurement reports.
CONFUSIONS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    # 一 (kanji one) right after katakana is a long-vowel mark: デ一タ → データ.
    (re.compile(rf"(?<=[{_KATAKANA}])一"), "ー", "一→ー"),
    # ー between two kanji is the kanji one: 統ー的 → 統一的; 第ー → 第一.
    (re.compile(rf"(?<=[{_KANJI}])ー(?=[{_KANJI}])|(?<=第)ー"), "一", "ー→一"),
    # ロ (katakana ro) after a kanji and not before katakana is 口: 人ロ → 人口, 窓ロ → 窓口.
    (re.compile(rf"(?<=[{_KANJI}])ロ(?![{_KATAKANA}])"), "口", "ロ→口"),
    # 口 next to katakana is ロ: プ口グラム → プログラム.
    (re.compile(rf"(?<=[{_KATAKANA}])口|口(?=[{_KATAKANA}])"), "ロ", "口→ロ"),
    # カ after a kanji and not before katakana is 力: 協カ → 協力, 能カ → 能力.
    (re.compile(rf"(?<=[{_KANJI}])カ(?![{_KATAKANA}])"), "力", "カ→力"),
    # 力 next to katakana is カ: 力ード → カード, リ力 → リカ.
    (re.compile(rf"(?<=[{_KATAKANA}])力|力(?=[{_KATAKANA}])"), "カ", "力→カ"),
    # A bracket opening a label at the start of a line read as hiragana く: く主要KPI> → <主要KPI>.
    (re.compile(r"^く(?=[^く<>\n]{1,30}>)", re.M), "<", "く→<"),
    # O/o inside a number is 0: 2O23 → 2023, 1,O00 → 1,000, 1O% → 10%.
    (re.compile(r"(?<=[0-9])[Oo](?=[0-9,.%])|(?<=[0-9][,.])[Oo](?=[0-9])|(?<=[0-9])[Oo](?=[年月日万億円人件歳]|$)"), "0", "O→0"),
)

_ASCII_WORD = re.compile(r"[A-Za-z0-9]")


def fix_confusions(text: str, skip: Iterable[str] = ()) -> str:
    """Replace look-alike characters by the one their neighbours call for (rules in :data:`CONFUSIONS`)."""
    skip = set(skip)
    for pattern, replacement, name in CONFUSIONS:
        if name not in skip:
            text = pattern.sub(replacement, text)
    return text


def join_words(words: Sequence[Word]) -> str:
    """One line from its words.  A space only between two Latin/number words that stand apart on
    the page (``KPI 指標`` has none; Tesseract's split of ``2021`` into ``202 1`` closes up)."""
    out = ""
    prev: Word | None = None
    for w in words:
        text = unicodedata.normalize("NFKC", w.text)
        if prev is not None and out and _ASCII_WORD.match(text[0]) and _ASCII_WORD.match(out[-1]):
            gap = w.left - (prev.left + prev.width)
            if gap > 0.3 * max(w.height, prev.height):
                out += " "
        out += text
        prev = w
    return out


def page_lines(words: Iterable[Word], *, spaces: bool = False, confusions: bool = True) -> list[str]:
    """The page's lines in Tesseract's reading order, cleaned.

    ``spaces=True`` keeps Tesseract's space between every two words and ``confusions=False``
    skips the look-alike fixes: the raw forms, for measuring what each step does.
    """
    lines: list[list[Word]] = []
    current = None
    for w in words:
        if w.line != current:
            lines.append([])
            current = w.line
        lines[-1].append(w)
    joined = [" ".join(unicodedata.normalize("NFKC", w.text) for w in ws) if spaces else join_words(ws) for ws in lines]
    return [fix_confusions(line) if confusions else line for line in joined]


def page_text(words: Iterable[Word]) -> str:
    """Raw page text for :func:`rag.loaders.make_page` (one line per OCR line)."""
    return "\n".join(page_lines(words))


def spaces_between_japanese(text: str) -> int:
    """How many spaces stand between two Japanese characters (none should)."""
    return len(re.findall(rf"(?<=[{_JA}]) +(?=[{_JA}])", text))
