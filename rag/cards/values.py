"""Reading amounts, rates, head-count bands and deadlines out of a scheme document's lines.

These parsers are general Japanese public-sector notation, not tied to any document:
「750万円」「1,500万円」「6.7億円」「471,393円」, 「1/2」「２／３」「3分の1」「10％」,
「5人以下」「6～20人」「51人以上」, 「令和8年3月26日」「2025年7月25日」「2か月以内」.
Input is NFKC-normalised first, so full-width digits and 「／」「～」 need no special case.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

from rag.patterns import ERA_START

_AMOUNT = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*(億|万|千)?\s*円")
_UNIT = {"億": 100_000_000, "万": 10_000, "千": 1_000, None: 1}
# A fraction written as a rate: small denominators only, so dates (7/25) and page ranges are not rates.
_FRACTION = re.compile(r"(?<![\d/])(\d{1,2})\s*/\s*(\d{1,2})(?![\d/])")
_BUNNO = re.compile(r"(\d{1,2})\s*分の\s*(\d{1,2})")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_RATE_DENOMINATORS = {2, 3, 4, 5, 10}
# Head-count bands: 「5人以下」, 「6~20人」, 「51人以上」, 「従業員数101人以上」.
_BAND_RANGE = re.compile(r"(\d+)\s*[~\-〜ー－]\s*(\d+)\s*(?:人|名)")
_BAND_UPTO = re.compile(r"(\d+)\s*(?:人|名)\s*以下")
_BAND_FROM = re.compile(r"(\d+)\s*(?:人|名)\s*以上")
_DATE = re.compile(r"(?:(令和|平成)\s*(\d{1,2}|元)|(\d{4}))\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_WITHIN = re.compile(r"(\d+)\s*(か月|ヶ月|カ月|日|週間)\s*以内")
_PHONE = re.compile(r"\d{2,4}\s*[-‐−ー－]\s*\d{2,4}\s*[-‐−ー－]\s*\d{3,4}")


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def amounts(text: str) -> list[int]:
    """Every yen amount in ``text``, in yen, in the order written."""
    out = []
    for number, unit in _AMOUNT.findall(nfkc(text)):
        try:
            value = float(number.replace(",", ""))
        except ValueError:
            continue
        out.append(int(round(value * _UNIT[unit or None])))
    return out


def rates(text: str) -> list[Fraction]:
    """Every subsidy-rate-like number in ``text`` (1/2, 2/3, 3分の1, 10%) as a fraction of one."""
    t = nfkc(text)
    out: list[Fraction] = []
    for pattern in (_FRACTION, _BUNNO):
        for a, b in pattern.findall(t):
            num, den = (int(a), int(b)) if pattern is _FRACTION else (int(b), int(a))
            if den in _RATE_DENOMINATORS and 0 < num < den:
                out.append(Fraction(num, den))
    for p in _PERCENT.findall(t):
        value = Fraction(p) / 100
        if 0 < value <= 1:
            out.append(value)
    return out


@dataclass(frozen=True)
class Band:
    """A head-count range, inclusive; ``high`` is None for 「…人以上」."""

    low: int
    high: int | None

    def contains(self, n: int) -> bool:
        return n >= self.low and (self.high is None or n <= self.high)

    def label(self) -> str:
        if self.high is None:
            return f"{self.low}人以上"
        if self.low <= 0:
            return f"{self.high}人以下"
        return f"{self.low}～{self.high}人"


def band(text: str) -> Band | None:
    """The head-count band a table row starts with, if any."""
    t = nfkc(text)
    if m := _BAND_RANGE.search(t):
        return Band(int(m.group(1)), int(m.group(2)))
    if m := _BAND_UPTO.search(t):
        return Band(0, int(m.group(1)))
    if m := _BAND_FROM.search(t):
        return Band(int(m.group(1)), None)
    return None


@dataclass(frozen=True)
class BandAmount:
    band: Band
    amount: int  # yen; the first amount on the row (a 「750万円～2,500万円」 row: see :func:`band_amounts`)
    line: str


def band_amounts(lines: list[str]) -> list[BandAmount]:
    """Rows that pair a head-count band with an amount: a ceiling broken down by 従業員規模.

    A row 「20人以下 750万円～2,500万円（3,000万円）」 gives a floor, a ceiling and a raised
    ceiling; the ceiling is the largest amount before any bracket.
    """
    out = []
    for line in lines:
        b = band(line)
        if b is None:
            continue
        plain = re.split(r"[（(]", nfkc(line), maxsplit=1)[0]
        found = amounts(plain) or amounts(line)
        if found:
            out.append(BandAmount(b, max(found), line.strip()))
    return out


def dates(text: str) -> list[str]:
    """Every full date in ``text`` as ISO yyyy-mm-dd (Japanese eras converted)."""
    out = []
    for era, era_year, year, month, day in _DATE.findall(nfkc(text)):
        if era:
            y = ERA_START[era] + (1 if era_year == "元" else int(era_year))
        else:
            y = int(year)
        out.append(f"{y:04d}-{int(month):02d}-{int(day):02d}")
    return out


def periods(text: str) -> list[str]:
    """Relative deadlines such as 「2か月以内」 (normalised spelling)."""
    return [f"{n}{unit.replace('ヶ', 'か').replace('カ', 'か')}以内" for n, unit in _WITHIN.findall(nfkc(text))]


def phones(text: str) -> list[str]:
    return [re.sub(r"\s", "", p) for p in _PHONE.findall(nfkc(text))]


def yen(amount: int) -> str:
    """750万円, 1,500万円, 6.7億円, 471,393円: how a Japanese reader writes the amount."""
    if amount >= 100_000_000 and amount % 10_000_000 == 0:
        return f"{amount / 100_000_000:g}億円"
    if amount >= 10_000 and amount % 10_000 == 0:
        return f"{amount // 10_000:,}万円"
    return f"{amount:,}円"


def rate_label(rate: Fraction) -> str:
    if rate.denominator in _RATE_DENOMINATORS and rate.denominator != 10:
        return f"{rate.numerator}/{rate.denominator}"
    return f"{float(rate) * 100:g}%"
