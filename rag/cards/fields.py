"""What each card field is called in Japanese scheme documents, and what its value looks like.

Two kinds of knowledge, both general public-sector usage rather than any one document's:

- :data:`NAMES`: the words a heading, a row label or a column header uses to name the
  field (「補助率」「助成率」「支給率」 …).  A value usually sits where one of them stands.
- :data:`SPECIFIC`: the names that can mean nothing but the field (「支給限度額」, not
  「上限額」, which a wage has too).
- :func:`evidence`: what a value must show to be the field's at all: an amount for
  補助上限額, a rate for 補助率, a date or 「…以内」 for 申請期間, a phone number or a
  contact heading for 問い合わせ先.  A line without it answers another question,
  however well it is placed, so the card leaves the field 「記載なし」 rather than fill it.

Text passed in is NFKC-normalised.
"""

from __future__ import annotations

import re

from rag.cards import values as cv

NAMES: dict[str, tuple[str, ...]] = {
    "実施機関": ("実施機関", "事務局", "実施主体", "申請先", "提出先", "交付元"),
    "対象者": (
        "補助対象者", "支給対象者", "助成対象者", "交付対象者", "給付対象者", "対象者", "対象となる方", "対象となる事業者", "が対象です",
        "申請できる方", "申請できる者", "応募できる", "受給資格", "申請資格", "応募資格",
    ),
    "補助上限額": (
        "補助上限額", "補助上限", "上限額", "限度額", "補助金額", "補助額", "助成額", "支給額", "給付額", "交付額", "助成金額",
    ),
    "補助率": ("補助率", "助成率", "支給率", "給付率", "補助割合", "助成割合"),
    "補助対象経費": ("補助対象経費", "助成対象経費", "対象経費", "対象となる経費", "経費区分", "経費の区分", "補助対象となる経費"),
    "対象外経費": ("補助対象外", "助成対象外", "対象外", "対象とならない", "対象になりません", "対象となりません", "対象にならない"),
    "申請期間": (
        "申請期間", "公募期間", "募集期間", "受付期間", "申請受付", "申請締切", "応募締切", "締切", "申請期限", "提出期限",
        "提出時期", "申請時期",
    ),
    "主な要件": ("基本要件", "支給要件", "申請要件", "補助要件", "対象要件", "要件"),
    "問い合わせ先": (
        "問い合わせ先", "問合せ先", "お問い合わせ", "お問合せ", "問い合わせ", "問合せ", "相談窓口", "コールセンター", "サポートセンター",
    ),
}

# A heading that names the field's exclusion (「2-2.補助対象外となる事業者」) heads what the
# field is not: the lines under it are not who may apply, nor what is covered.
_EXCLUSION = re.compile(r"対象外|対象とならない|対象となりません|対象になりません|除く|該当しない|できない")
EXCLUDED_BY = frozenset({"対象者", "補助対象経費"})

# The bodies that run or receive applications for a scheme (what a 実施機関 line ends with).
ORG = r"(?:事務局|機構|労働局|公共職業安定所|ハローワーク|中央会|協会|センター|財団|省|庁|商工会|商工会議所|都道府県|役場|課|部|局|市|町|村|県)"
_CONTACT = re.compile(r"問い?合わ?せ|問合せ|コールセンター|相談窓口|サポートセンター|コールバック")
_URL = re.compile(r"https?://|www\.|@[\w.-]+\.\w")
_COST = re.compile(r"経費|費|代|料|購入|支払")
# A condition as schemes write one: a threshold or an obligation, not the word 要件 itself
# (「基本要件②:賃金の増加要件」 names requirements without stating one).
_REQUIREMENT = re.compile(r"以上|以下|未満|以内|こと|満たす|満たし|増加|引上げ|引き上げ|策定|公表|有する|ない者")
# Who may apply, as schemes write it: a class of business or person (with its size limit).
_WHO = re.compile(r"事業者|事業主|企業|小規模|法人|個人|団体|組合|被保険者|従業員|労働者|者であること|方が対象|方です|人以下")
_WHEN = re.compile(r"申請|締切|受付|期限|公募|提出|応募|募集")


# Words that contain a field's name but mean something else: a floor is not a ceiling.
_NOT_NAMES: dict[str, tuple[str, ...]] = {"補助上限額": ("最低限度額", "下限額")}


def names(field: str, text: str) -> bool:
    """Whether ``text`` names ``field`` (one of its :data:`NAMES`)."""
    for other in _NOT_NAMES.get(field, ()):
        text = text.replace(other, "")
    return any(n in text for n in NAMES[field])


# The names that can mean nothing but the field: the scheme's own word with the field's word.
# 「支給限度額」 is the benefit's ceiling; 「上限額」 alone may be a wage's (「賃金月額の上限額」),
# 「支給額」 is what is paid, not its limit; 「要件」 alone may be any condition.
SPECIFIC: dict[str, tuple[str, ...]] = {
    "実施機関": ("実施機関", "実施主体"),
    "対象者": ("補助対象者", "支給対象者", "助成対象者", "交付対象者", "給付対象者"),
    "補助上限額": ("補助上限額", "補助上限", "支給限度額", "助成限度額", "給付限度額", "補助限度額", "交付限度額", "上限額は"),
    "補助率": ("補助率", "助成率", "支給率", "給付率"),
    "補助対象経費": ("補助対象経費", "助成対象経費", "補助対象となる経費"),
    "対象外経費": ("補助対象外", "助成対象外", "対象外経費", "対象外となる経費"),
    "申請期間": ("申請期間", "公募期間", "募集期間", "申請締切", "応募締切", "申請受付", "受付期間", "申請期限"),
    "主な要件": ("基本要件", "支給要件", "申請要件", "補助要件", "対象要件"),
    "問い合わせ先": ("問い合わせ先", "問合せ先", "お問い合わせ", "お問合せ", "相談窓口"),
}


# Every name is a name: the specific ones too (「支給限度額」 labels a line as well as 「限度額」 does).
for _field, _specific in SPECIFIC.items():
    NAMES[_field] = tuple(dict.fromkeys(_specific + NAMES[_field]))


def names_specifically(field: str, text: str) -> bool:
    """Whether ``text`` names ``field`` with one of its :data:`SPECIFIC` names."""
    for other in _NOT_NAMES.get(field, ()):
        text = text.replace(other, "")
    return any(n in text for n in SPECIFIC[field])


def excludes(text: str) -> bool:
    """Whether ``text`` (a heading) names an exclusion rather than what is covered."""
    return bool(_EXCLUSION.search(text))


def evidence(field: str, text: str, context: str = "", heading: str = "") -> bool:
    """Whether ``text`` shows the kind of value ``field`` has.

    ``context``: the headings, labels and lines around the text; ``heading``: the heading
    and page title over it only.  A deadline 「…から4か月以内」 in a
    row labelled 「提出時期」 is the application period; a line under 「【お問合せ先】」 with
    no number (「コールバック予約システム」) still says how to reach the scheme's office.
    """
    if field == "実施機関":
        return bool(re.search(ORG, text))
    if field == "補助上限額":
        return bool(cv.amounts(text))
    if field == "補助率":
        return bool(cv.rates(text))
    if field == "申請期間":
        return bool(cv.dates(text) or cv.periods(text)) and bool(_WHEN.search(text + "\n" + context))
    if field == "問い合わせ先":
        # An invitation to ask someone (「…の運営機関へお問い合わせください」) is not a contact
        # unless it gives a way to reach them: a number, an address, or the contact heading over it.
        return bool(cv.phones(text) or _URL.search(text) or (_CONTACT.search(context) and _CONTACT.search(text)))
    if field == "補助対象経費":
        return bool(_COST.search(text))
    if field == "対象外経費":
        # 「汎用性が高く…もの(車・パソコン等)は補助対象外」 under a heading about costs is a cost exclusion.
        # Only the heading speaks for it: a line about excluded *businesses* next to one about costs is not a cost.
        return names(field, text) and bool(_COST.search(text + "\n" + heading))
    if field == "主な要件":
        return bool(_REQUIREMENT.search(text))
    if field == "対象者":
        return bool(_WHO.search(text))
    raise KeyError(field)


__all__ = ["NAMES", "ORG", "EXCLUDED_BY", "SPECIFIC", "names", "names_specifically", "excludes", "evidence"]
