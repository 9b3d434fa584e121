"""Subsidy-scheme finder: the named support schemes a strategy document mentions.

A consultant wants "which 交付金・補助金・税制 … does this document point to, under
which policy area, and on which pages".  Scheme names are Japanese noun
compounds ending in a scheme word (デジタル田園都市国家構想交付金, 地方拠点強化税制),
so the name boundary is found from MeCab (fugashi/UniDic) parts of speech: a
name is the run of nouns, prefixes, noun suffixes and 「」-quoted units that
ends exactly at the scheme word.  Particles, verbs, punctuation and bullets end
the run, which is what strips 「…については」「拡充した」「- ・」 from the front.

Generic mentions (補助金等, 制度の活用, 税制改正, 交付金の活用, 各種支援制度) are
dropped: either the scheme word does not end the compound, or nothing but
generic words qualifies it.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from rag.normalize import BULLET_START, comparable, normalize_chars
from rag.tokenize import tagger
from rag.schema import Page

# Scheme words, longest first so 支援事業 wins over a shorter overlapping word.
# ふるさと納税 has no scheme suffix but is a tax scheme by law (地方創生応援税制),
# so it is listed with its kind.
_SUFFIX_KIND = {
    "支援事業": "支援事業",
    "補助事業": "補助事業",
    "ふるさと納税": "税制",
    "交付金": "交付金",
    "補助金": "補助金",
    "助成金": "助成金",
    "給付金": "給付金",
    "支援金": "支援金",
    "税制": "税制",
    "制度": "制度",
    "基金": "基金",
}
KINDS = tuple(dict.fromkeys(_SUFFIX_KIND.values()))
_SUFFIX_RE = re.compile("|".join(sorted(_SUFFIX_KIND, key=len, reverse=True)))
# A suffix that is a name by itself; every other suffix needs a qualifier.
_SELF_NAMED = {"ふるさと納税"}

# Words that qualify a scheme word without naming a scheme: 各種支援制度,
# 新制度, 基金補助金, 教育訓練制度 are categories, not something one applies for.
_GENERIC_WORDS = frozenset(
    {
        "各種", "各", "関係", "関連", "新", "新た", "同", "本", "当該", "現行", "既存", "上記", "所要", "必要",
        "様々", "多様", "国", "一般", "特別", "新規", "その他", "認定", "支援", "育成", "補助", "助成", "給付",
        "交付", "金", "教育", "訓練", "人材", "研修", "事業", "等", "基金", "税", "制度", "税制", "新設", "創設",
    }
)

# Ministries: in slide tables a ministry name is glued to the scheme next to it
# (「中山間地域等直接支払交付金経済産業省」), so it bounds a name on either side.
_MINISTRY = re.compile(
    "内閣官房|内閣府|デジタル庁|復興庁|総務省|法務省|外務省|財務省|文部科学省|厚生労働省|農林水産省|経済産業省"
    "|国土交通省|環境省|防衛省|警察庁|金融庁|消費者庁|こども家庭庁|観光庁|中小企業庁|文化庁|スポーツ庁|林野庁|水産庁"
)
# A quoted unit short enough to be (part of) a name: 「子ども子育て新制度」, 「デジ活」.
_QUOTE = re.compile(r"「[^「」。、\n]{1,40}」")
_LEADING_JUNK = re.compile(r"^(?:(?:令和|平成)?\d+(?:年度|年)|[\s\d.,:;%~\-‐–—・*#※()\[\]<>①-⑳])+")
_SPACE = re.compile(r"\s+")
_NAME_POS = {"名詞", "接頭辞"}
_CONTEXT_CHARS = 120
_MIN_NAME_CHARS = 4

# A bullet item's start: only list markers before it.
_ITEM_START = re.compile(r"[\s\-‐・*●■□○◆◇▶▷➤>]*")
# Who acts, not what the scheme is about: 「地方公共団体の…制度」 is not part of a name.
_ACTORS = frozenset({"国", "政府", "地方", "地域", "地方公共団体", "自治体", "市町村", "市区町村", "都道府県", "企業", "事業者", "民間事業者", "各府省", "関係府省庁"})

# Running headings shared by a run of slides; the slide's own topic is the first body line.
GENERIC_HEADINGS = frozenset({"重要施策分野", "モデル地域ビジョン", "施策の方向"})


@dataclass(frozen=True)
class SchemeMention:
    source: str
    page: int
    heading: str
    context: str  # the sentence the name appears in, trimmed to about 120 characters
    area: str = ""  # the policy area of this page (a scheme can appear under several)


@dataclass
class Scheme:
    name: str
    kind: str  # the scheme word the name ends with: 交付金, 補助金, 助成金, 支援事業, 税制, 制度, …
    area: str  # the policy area it is mentioned under most often
    summary: str  # one line of context
    mentions: list[SchemeMention] = field(default_factory=list)

    @property
    def pages(self) -> list[tuple[str, int]]:
        return sorted({(m.source, m.page) for m in self.mentions})

    @property
    def mention_count(self) -> int:
        return len(self.mentions)

    @property
    def areas(self) -> list[str]:
        """Every area it is mentioned under, most mentioned first."""
        counts = Counter(m.area for m in self.mentions if m.area)
        first = {}
        for i, m in enumerate(self.mentions):
            first.setdefault(m.area, i)
        return sorted(counts, key=lambda a: (-counts[a], first[a]))

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "area": self.area,
            "areas": self.areas,
            "summary": self.summary,
            "mention_count": self.mention_count,
            "mentions": [
                {"source": m.source, "page": m.page, "heading": m.heading, "context": m.context, "area": m.area}
                for m in self.mentions
            ],
            "pages": [{"source": s, "page": p} for s, p in self.pages],
        }


# ------------------------------------------------------------------ tokens

@dataclass(frozen=True, slots=True)
class _Tok:
    surface: str
    start: int
    end: int
    pos1: str
    pos3: str
    space_before: bool


def _tokens(line: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    for w in tagger()(line):
        # MeCab drops whitespace; find each surface to keep offsets into the line.
        start = line.find(w.surface, pos)
        if start < 0:  # surface altered by the tagger (should not happen after NFKC); skip it
            continue
        out.append(_Tok(w.surface, start, start + len(w.surface), w.feature.pos1, w.feature.pos3 or "", start > pos))
        pos = start + len(w.surface)
    return out


def _segments(line: str) -> list[tuple[int, int]]:
    """Spans of the line that can hold a name: runs of nouns, prefixes, noun suffixes, 「」 units."""
    quotes = [(m.start(), m.end()) for m in _QUOTE.finditer(line)]

    def quote_at(i: int) -> tuple[int, int] | None:
        return next((q for q in quotes if q[0] <= i < q[1]), None)

    toks = _tokens(line)
    spans: list[tuple[int, int]] = []
    cur: list[int] | None = None  # [start, end]
    i = 0
    while i < len(toks):
        t = toks[i]
        q = quote_at(t.start)
        if q is not None:
            # The whole quote joins the name, whatever its inner parts of speech
            # (「年次有給休暇の計画的付与制度」 is one name).
            if cur is not None and (t.start > cur[1]):
                spans.append((cur[0], cur[1]))
                cur = None
            cur = [q[0], q[1]] if cur is None else [cur[0], q[1]]
            while i < len(toks) and toks[i].start < q[1]:
                i += 1
            continue
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.pos1 in _NAME_POS:
            ok = True
        elif t.pos1 == "接尾辞":
            ok = cur is not None and not t.space_before  # 等, 的, 版 only continue a name
        elif t.pos1 == "形状詞":
            ok = nxt is not None and nxt.pos1 == "名詞" and not nxt.space_before  # ユニバーサル|サービス
        elif t.surface == "・":
            ok = cur is not None and nxt is not None and nxt.pos1 in _NAME_POS | {"形状詞"} and not t.space_before
        else:
            ok = False
        if ok and cur is not None and t.space_before:
            # A space splits table cells; inside a name it only follows a Latin word (日本版MaaS 推進).
            if not re.search(r"[A-Za-z]\s+$", line[: t.start]):
                spans.append((cur[0], cur[1]))
                cur = None
        if ok:
            cur = [t.start, t.end] if cur is None else [cur[0], t.end]
        elif cur is not None:
            spans.append((cur[0], cur[1]))
            cur = None
        i += 1
    if cur is not None:
        spans.append((cur[0], cur[1]))
    return spans


# ------------------------------------------------------------------ names


def canonical_name(name: str) -> str:
    """The form variants merge on: NFKC, no 「」『』, no spaces, no trailing 等, no leading junk."""
    name = normalize_chars(name).replace("**", "")
    name = re.sub(r"[「」『』]", "", name)
    name = _SPACE.sub("", name)
    name = _LEADING_JUNK.sub("", name)
    while name.endswith("等"):
        name = name[:-1]
    return name


def _is_generic(name: str, suffix: str) -> bool:
    if suffix in _SELF_NAMED:
        return False
    qualifier = name[: -len(suffix)]
    if not qualifier:
        return True
    words = [t.surface for t in _tokens(qualifier)]
    return all(w in _GENERIC_WORDS or not w.strip() for w in words)


def _names_in_segment(seg: str) -> list[tuple[int, int, str]]:
    """(start, end, suffix) of each scheme name inside one noun-compound span."""
    found: list[tuple[int, int, str]] = []
    floor = 0  # a name never reaches back over a ministry, a previous name or an open quote
    for m in _SUFFIX_RE.finditer(seg):
        end = m.end()
        rest = seg[end:]
        stripped = rest.lstrip("等")
        # The scheme word must close the compound: 補助金額, 税制改正, 制度整備, 交付金制度(→制度) go on.
        closes = stripped == "" or stripped[0] in "」「・" or _MINISTRY.match(stripped) is not None
        if not closes:
            continue
        start = floor
        for mm in _MINISTRY.finditer(seg, floor, m.start()):
            start = max(start, mm.end())
        open_quote = seg.rfind("「", 0, m.start())
        if open_quote >= start and seg.find("」", open_quote, m.start()) < 0:
            start = open_quote + 1  # the name is the quoted text: 国土交通省「日本版MaaS推進・支援事業」
        found.append((start, end, m.group(0)))
        floor = end + (len(rest) - len(stripped)) + (1 if stripped[:1] in "・」" else 0)
    return found


def _sentence(line: str, start: int, end: int) -> str:
    left = line.rfind("。", 0, start) + 1
    right = line.find("。", end)
    right = len(line) if right < 0 else right + 1
    text = line[left:right].strip()
    offset = left + (len(line[left:right]) - len(line[left:right].lstrip()))
    lead = re.match(r"^(?:[-‐・*●■□○◆◇▶▷➤>]\s*)+", text)
    if lead:
        text, offset = text[lead.end() :], offset + lead.end()
    if len(text) <= _CONTEXT_CHARS:
        return text
    # Keep the name in view: a little before it, the rest after.
    s = max(0, start - offset - 30)
    e = min(len(text), s + _CONTEXT_CHARS)
    s = max(0, e - _CONTEXT_CHARS)
    return ("…" if s > 0 else "") + text[s:e] + ("…" if e < len(text) else "")


def heading_area(heading: str) -> str:
    """「地方に仕事をつくる (デジタルの力を…①)」 → 「地方に仕事をつくる」."""
    return re.split(r"[(（]", heading, maxsplit=1)[0].strip() or heading.strip()


def page_area(page: Page) -> str:
    """The policy area a page belongs to: its heading before the parenthesis, or the slide's topic line."""
    heading = heading_area(page.heading)
    if heading in GENERIC_HEADINGS:
        for line in page.text.split("\n")[1:4]:
            if _looks_like_title(line):
                return line.strip()
    return heading


def _looks_like_title(line: str) -> bool:
    line = line.strip()
    return (
        2 <= len(line) <= 30
        and not BULLET_START.match(line)
        and not re.match(r"^[-・~〜▶➤]", line)
        and not any(ch in line for ch in "。:：")
        and line[-1] not in "、をにがはとのでもへや"
    )


def _with_item_topic(line: str, segments: list[tuple[int, int]], start: int, name: str, suffix: str) -> str:
    """「時間単位の年次有給休暇制度」: a short topic before の that opens the item belongs to the name."""
    if start < 2 or line[start - 1] != "の" or len(name) - len(suffix) > 6:
        return name
    left = next(((s, e) for s, e in segments if e == start - 1), None)
    if left is None or not _ITEM_START.fullmatch(line[: left[0]]):
        return name
    topic = line[left[0] : left[1]]
    if not 2 <= len(topic) <= 6 or topic in _ACTORS or "「" in topic:
        return name
    return canonical_name(topic) + "の" + name


def _split_by_cell(raw: str, piece: str, suffix: str) -> bool:
    """True when the raw page has the name only as two table cells, 「多数機運航 制度」.

    Normalisation removes a single space between Japanese characters (it is
    meaningless in prose), which glues a table cell onto the scheme word of the
    next one; the extracted text still shows the cell gap.
    """
    chars = [c for c in piece if not c.isspace()]
    cut = len(chars) - len(suffix)
    if cut <= 0:
        return False
    pattern = r"\s*".join(map(re.escape, chars[:cut])) + r"(\s*)" + r"\s*".join(map(re.escape, chars[cut:]))
    gaps = [m.group(1) for m in re.finditer(pattern, raw)]
    return bool(gaps) and all(g and "\n" not in g for g in gaps)


def _mentions_in_page(page: Page) -> list[tuple[str, str, SchemeMention]]:
    area = page_area(page)
    raw = normalize_chars(page.raw_text)
    out: list[tuple[str, str, SchemeMention]] = []
    seen: set[tuple[str, str]] = set()
    for line in page.text.split("\n"):
        segments = _segments(line)
        for s, e in segments:
            seg = line[s:e]
            for ns, ne, suffix in _names_in_segment(seg):
                name = canonical_name(seg[ns:ne])
                if len(name) < _MIN_NAME_CHARS or not name.endswith(suffix) or _is_generic(name, suffix):
                    continue
                if _split_by_cell(raw, seg[ns:ne], suffix):
                    continue
                if ns == 0:
                    name = _with_item_topic(line, segments, s, name, suffix)
                context = _sentence(line, s + ns, s + ne)
                if (name, context) in seen:  # the same name twice in one sentence is one mention
                    continue
                seen.add((name, context))
                mention = SchemeMention(page.source, page.page, page.heading, context, area)
                out.append((name, _SUFFIX_KIND[suffix], mention))
    return out


def _merge_glued(by_name: dict[str, list[SchemeMention]]) -> None:
    """Fold 「追加デジタル田園都市国家構想交付金」 (a verbal noun glued on by a slide table) into the real name."""
    for name in sorted(by_name, key=len, reverse=True):
        for other in by_name:
            if other == name or not name.endswith(other) or len(other) < _MIN_NAME_CHARS + 2:
                continue
            prefix = _tokens(name[: -len(other)])
            if prefix and all(t.pos3 == "サ変可能" or t.surface in _GENERIC_WORDS for t in prefix):
                by_name[other].extend(by_name.pop(name))
                break


def _summary(name: str, mentions: list[SchemeMention]) -> str:
    # The first sentence that says something beyond the name itself (tables list bare names).
    for m in mentions:
        if len(m.context) >= len(name) + 15:
            return m.context
    return mentions[0].context if mentions else ""


def extract_schemes(pages: Iterable[Page]) -> list[Scheme]:
    """Named support schemes in the pages, most mentioned first (then by name)."""
    by_name: dict[str, list[SchemeMention]] = defaultdict(list)
    kind_of: dict[str, str] = {}
    for page in sorted(pages, key=lambda p: (p.source, p.page)):
        for name, kind, mention in _mentions_in_page(page):
            by_name[name].append(mention)
            kind_of[name] = kind
    _merge_glued(by_name)
    schemes = []
    for name, mentions in by_name.items():
        mentions.sort(key=lambda m: (m.source, m.page))
        scheme = Scheme(name=name, kind=kind_of[name], area="", summary=_summary(name, mentions), mentions=mentions)
        scheme.area = (scheme.areas or [mentions[0].heading])[0]
        schemes.append(scheme)
    schemes.sort(key=lambda s: (-s.mention_count, s.name))
    return schemes


def search_schemes(schemes: Iterable[Scheme], keyword: str = "", area: str = "") -> list[Scheme]:
    """Schemes matching every space-separated keyword (name first, then context) and the area.

    A keyword matches the name, kind, summary, an area or a mention's sentence, so
    「子育て」 also finds a 交付金 whose name does not say 子育て.  Name matches come
    first; the input order is kept within each group.
    """
    words = [comparable(w) for w in normalize_chars(keyword).split() if w.strip()]
    wanted_area = comparable(area) if area.strip() else ""
    by_name: list[Scheme] = []
    by_text: list[Scheme] = []
    for s in schemes:
        # The running heading counts too: 「重要施策分野」 finds everything on those slides.
        places = [s.area, *s.areas, *(heading_area(m.heading) for m in s.mentions)]
        if wanted_area and not any(wanted_area in comparable(a) for a in places):
            continue
        name = comparable(s.name)
        if all(w in name for w in words):
            by_name.append(s)
            continue
        text = comparable(" ".join([s.name, s.kind, s.summary, *s.areas, *(m.context for m in s.mentions)]))
        if all(w in text for w in words):
            by_text.append(s)
    return by_name + by_text


def schemes_for_index(index) -> list[Scheme]:
    return extract_schemes(index.iter_pages())


# ------------------------------------------------------------------ CLI


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def format_pages(scheme: Scheme) -> str:
    by_source: dict[str, list[int]] = defaultdict(list)
    for source, page in scheme.pages:
        by_source[source].append(page)
    parts = [", ".join(f"p.{p}" for p in pages) for pages in by_source.values()]
    if len(by_source) == 1:
        return parts[0]
    return " / ".join(f"{source} {part}" for source, part in zip(by_source, parts))


def format_table(schemes: list[Scheme]) -> str:
    header = ("名称", "種別", "分野", "言及", "ページ")
    rows = [(s.name, s.kind, s.area, str(s.mention_count), format_pages(s)) for s in schemes]
    widths = [max(_width(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = []
    for r in [header, *rows]:
        cells = [_pad(r[i], widths[i]) if i != 3 else r[i].rjust(widths[i]) for i in range(4)]
        lines.append("  ".join([*cells, r[4]]).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)
