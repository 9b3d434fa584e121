"""What numbers, dates, years, places and names look like in administrative Japanese.

Shared by the question parser (:mod:`rag.query`: what a question asks for) and the
answerer's features (:mod:`rag.answering.features`: what a sentence holds), so the two
sides read a date or an amount the same way.
"""

from __future__ import annotations

import functools
import re

from rag.page_context import PREFECTURE

NUMBER = re.compile(r"\d")
YEAR = re.compile(r"(?<!\d)(20\d\d|19\d\d)(?!\d)")
# The year before each Japanese era's first, to read era years as western ones.
ERA_START = {"明治": 1867, "大正": 1911, "昭和": 1925, "平成": 1988, "令和": 2018}
_ERAS = "|".join(ERA_START)
# Japanese era years, as the documents write them (「昭和 45 年」, 「平成元年」).
ERA_YEAR = re.compile(rf"({_ERAS})\s*(\d{{1,2}}|元)\s*年")
# What answers 「いつ」: a date, a day count, a part of a month (「10月下旬頃」), an era year, a clock
# time (「受付時間:9:00~17:00」), a fiscal year named relative to this one (「年度末まで」, 「随時」).
DATE = re.compile(
    r"\d\s*(?:年|月|日|か月|ヶ月|カ月|週間|時)|\d{1,2}/\d{1,2}|\d{1,2}[:：]\d{2}|\d{4}\.\d{1,2}\.\d{1,2}|[上中下]旬"
    rf"|(?:{_ERAS})\s*(?:\d|元)|[一二三四五六七八九十]+月|(?:今|来|翌|前|本)年度|年度(?:末|内|中)|随時|通年"
)
# An edition or round of a scheme (第20次公募, 第17回受付締切), and a variant of it (一般型, 通常枠).
ORDINAL = re.compile(r"第\s*(\d+)\s*([次回期号弾])")
VARIANT = re.compile(r"([一-龥ァ-ヶー]{2,6}?)([型枠])")
# A target rather than today's figure: 「2027年度までに」, 「目標」.
GOAL = re.compile(r"までに|まで[)）]|目標|目指")
# A proper name: a quoted title, a katakana word, a Latin acronym.
NAME = re.compile(r"「[^」]{2,}」|[ァ-ヶー]{4,}|[A-Za-z]{3,}")
# A prefecture, optionally with its municipality, as named in a question (北海道, 茨城県境町).
PREFECTURE_NAMED = re.compile(rf"{PREFECTURE}(?:[一-龥]{{1,4}}?[市区町村])?")
# Units a question may write itself (「何団体」, 「何%」): the sentence should carry a number in them.
UNITS = ("団体", "%", "人", "校", "地域", "か所", "箇所", "都市", "円", "件", "市区町村", "事業者", "拠点", "社", "万", "億", "倍", "割")


@functools.lru_cache(maxsize=8192)
def years_in(text: str) -> frozenset[str]:
    """The years a text names, era years as western ones: 「昭和45年」 is 1970, the same as 「1970年」."""
    era = {str(ERA_START[e] + (1 if n == "元" else int(n))) for e, n in ERA_YEAR.findall(text)}
    return frozenset(YEAR.findall(text)) | era
