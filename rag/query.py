"""Query understanding for administrative Japanese.

* validation: empty, over-long and control-character questions get a clear error;
* everyday words → the documents' administrative vocabulary (``rag/data/synonyms.json``),
  applied to the sparse query only (the dense model already knows paraphrase);
* follow-up questions (「それはいつまで？」) carry over the previous question's key terms.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rag import patterns as pat
from rag.normalize import normalize_query
from rag.tokenize import content_words, morphemes

MAX_QUESTION_CHARS = 1000
_SYNONYMS_FILE = Path(__file__).parent / "data" / "synonyms.json"

# Words that make a question a question rather than carry its topic.
QUESTION_WORDS = frozenset(
    """何 なに なん 何れ どう どの どこ 何処 いつ 何時 誰 いくら 幾ら どれ どんな 如何 教える 知る 下さる ください
    ある 有る する 為る いる 居る なる 成る こと 事 もの 物 について 具体 的 よう 様 ため 為 方 ほう 中 等 など
    おる 思う 言う いう できる 出来る 行う れる られる 可能 場合 どれくらい どのくらい 程度 くらい 位 何か 何件 名前 名称 ？ ? 、 。
    何の 何故 なぜ 頃 ごろ 何時頃""".split()
)
_FOLLOWUP = re.compile(r"^(それ|その|これ|この|あれ|あの|そこ|そちら|他|ほか|他に|ほかに|では|じゃあ|じゃ|なら|また|さらに|同じ|それぞれ)")
_FOLLOWUP_ANYWHERE = re.compile(r"(他の|ほかの|他に|ほかに|それ以外|その他|それら|それは|それの|その中)")


class QuestionError(ValueError):
    """A question that cannot be searched; the message says what to do."""


def validate_question(question: str) -> str:
    """The question, normalised, or :class:`QuestionError` with a message for the user."""
    if question is None or not question.strip():
        raise QuestionError("質問が空です。調べたい内容を入力してください。")
    if len(question) > MAX_QUESTION_CHARS * 20:
        raise QuestionError(
            f"質問が長すぎます（{len(question):,}文字）。{MAX_QUESTION_CHARS:,}文字以内に要点をまとめて入力してください。"
        )
    text = normalize_query(question)
    if not text:
        raise QuestionError("質問に文字がありません（制御文字のみ）。調べたい内容を入力してください。")
    if len(text) > MAX_QUESTION_CHARS:
        raise QuestionError(
            f"質問が長すぎます（{len(text):,}文字）。{MAX_QUESTION_CHARS:,}文字以内に要点をまとめて入力してください。"
        )
    return text


@lru_cache(maxsize=1)
def _synonyms() -> tuple[tuple[str, tuple[str, ...]], ...]:
    data = json.loads(_SYNONYMS_FILE.read_text(encoding="utf-8"))
    pairs = [(normalize_query(k), tuple(v)) for k, v in data.items() if not k.startswith("_")]
    # Longest key first so 引っ越し wins over a shorter key inside it.
    return tuple(sorted(pairs, key=lambda kv: -len(kv[0])))


def synonym_groups(question: str) -> list[tuple[str, tuple[str, ...]]]:
    """(everyday word found in ``question``, the administrative terms it stands for)."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for key, terms in _synonyms():
        # A shorter key inside a longer one already found (引越 in 引越し) adds nothing.
        if _occurs(key, question) and not any(key in k for k, _ in found):
            found.append((key, terms))
    return found


_KATAKANA = re.compile(r"[ァ-ヶー]")


def _occurs(key: str, question: str) -> bool:
    """``key`` in ``question`` as a word of its own: a katakana word is not the middle of a longer
    one (ネット is not in ネットワーク, テスト not in コンテスト)."""
    start = question.find(key)
    while start >= 0:
        end = start + len(key)
        before_ok = start == 0 or not (_KATAKANA.match(key[0]) and _KATAKANA.match(question[start - 1]))
        after_ok = end == len(question) or not (_KATAKANA.match(key[-1]) and _KATAKANA.match(question[end]))
        if before_ok and after_ok:
            return True
        start = question.find(key, start + 1)
    return False


def expand_synonyms(question: str) -> list[str]:
    """Administrative terms to add to the sparse query for the everyday words in ``question``."""
    added: list[str] = []
    for _, terms in synonym_groups(question):
        added.extend(t for t in terms if t not in question and t not in added)
    return added


def key_terms(text: str) -> list[str]:
    """Content-word lemmas of a question, question words removed, order kept, no repeats."""
    seen: dict[str, None] = {}
    for term in content_words(text):
        if term not in QUESTION_WORDS and (not term.isdigit() or re.fullmatch(r"\d{4}", term)):
            seen.setdefault(term, None)
    return list(seen)


def is_followup(question: str) -> bool:
    """Only explicit signals (それ, 他の, …) or a question with no topic of its own: a short
    new question such as 「5Gとは？」 starts a new topic."""
    if _FOLLOWUP.match(question) or _FOLLOWUP_ANYWHERE.search(question):
        return True
    return not key_terms(question)


def resolve_followup(question: str, history: list[str]) -> str:
    """A standalone question: the previous question's topic is carried into a follow-up.

    ``history`` holds the earlier standalone questions of the conversation, oldest first.
    """
    if not history:
        return question
    swapped = swap_topic(question, history[-1])
    if swapped:
        return swapped
    if not is_followup(question):
        return question
    carried = [p for p in topic_phrases(history[-1]) if p not in question]
    if not carried:
        return question
    return f"{' '.join(carried)} {question}"


# 「Bの場合は？」, 「日額だと？」, 「第18回は？」: a topic and nothing that says what is asked about it.
_ELLIPSIS_TAIL = re.compile(r"(?:の場合|の方|のほう|だと|では|なら|って|について|は|も|だったら|の時|のとき)*[?？]?$")
_ELLIPSIS_MAX_CHARS = 15
_DEFINITION = re.compile(r"とは[?？]?$|って何|とは何")
# What a question asks about something, as opposed to the something (「締切」, 「補助率」 vs 「公民館」).
_ATTRIBUTE = re.compile(r"(?:率|額|日|期間|期限|締切|要件|対象|方法|時間|時期|件数|人数|数|先|場所|条件|内容|書類|上限|下限|目標)$")
# A question word, or 「XのY」 (「電子申請の方法は？」): the question says what it asks about X.
_OWN_QUESTION = re.compile(r"何|いつ|いくら|幾ら|どこ|誰|どう|どの|どれ|どんな|なぜ|の")


def swap_topic(question: str, previous: str) -> str | None:
    """A follow-up that names only a new topic keeps the previous question's frame.

    After 「Aの目標は？」, 「Bの場合は？」 asks for B's target: the previous question with
    A replaced by B.  What B replaces is the part of the previous question of the same
    shape (「第17回」 for 「第18回」, 「5G」 for 「6G」), else the phrase that shares its
    head word (月額 for 日額), else the phrase sharing most characters, else the first
    topic phrase.  ``None`` when the question asks something of its own.
    """
    if _DEFINITION.search(question):
        return None  # 「5Gとは？」 asks what 5G is: a new question
    core = _ELLIPSIS_TAIL.sub("", question).strip()
    if not core or core == question.strip() or len(core) > _ELLIPSIS_MAX_CHARS or _OWN_QUESTION.search(core):
        return None
    shape = re.escape(core)
    shape = re.sub(r"\\?\d+", lambda _: r"\d+", re.sub(r"\d+", "0", shape))
    m = re.search(shape, previous) if re.search(r"\d", core) else None
    if m:
        return previous[: m.start()] + core + previous[m.end() :]
    phrases = [p for p in topic_phrases(previous) if p not in core]
    for p in phrases:
        if p.endswith(core[-1]) and len(p) > len(core) and len(core) >= 2:
            # 「…賃金月額」 → 「…賃金日額」: the same head word, another kind.
            return previous.replace(p, p[: len(p) - len(core)] + core, 1)
    shared = [(len(set(p) & set(core)), p) for p in phrases]
    most, target = max(shared, default=(0, ""))
    if most and [n for n, _ in shared].count(most) == 1:
        return previous.replace(target, core, 1)  # 「初回」 for 「2回目以降」
    if not phrases:
        return None
    # Nothing of the same shape: an attribute (「締切は？」, 「補助率は？」) takes the place of the
    # attribute asked before (the last phrase), anything else the place of the subject (the first).
    slot = phrases[-1] if _ATTRIBUTE.search(core) and len(phrases) > 1 else phrases[0]
    return previous.replace(slot, core, 1)


def topic_phrases(text: str) -> list[str]:
    """Runs of content words as written (光ファイバ, 世帯カバー率), question words left out."""
    phrases: list[str] = []
    run = ""
    for surface, lemma, content in morphemes(text):
        if content and lemma not in QUESTION_WORDS and surface not in QUESTION_WORDS:
            run += surface
        elif run:
            phrases.append(run)
            run = ""
    if run:
        phrases.append(run)
    return phrases


@lru_cache(maxsize=1024)
def topic_words(cover: str) -> frozenset[str]:
    """Content words of a document's cover, figures left out: a date on a cover names nothing.

    One-character words stay (補助金 is 補助 + 金 to the tokenizer).
    """
    return frozenset(w for w in content_words(cover) if not any(ch.isdigit() for ch in w))


# Shortest name taken for a document's: 音威子府村, 持続化補助金 (measured on both eval sets).
_MIN_NAME_CHARS = 5


def named_document(text: str, topics: Mapping[str, frozenset[str]]) -> tuple[str, str] | None:
    """The one document a question names, and its name as the question writes it.

    「ものづくり補助金の補助率は？」 names the document whose title and cover carry
    物作り・補助・金 and no other document's do.  A name two documents share
    (「デジタル田園都市国家構想」 in a strategy and its KPI sheet) names neither, and
    a question that names two documents (「ものづくり補助金と持続化補助金の違い」) is about both.
    """
    named: dict[str, str] = {}
    for phrase in topic_phrases(text):
        words = topic_words(phrase)
        if len(words) < 2 or len(phrase) < _MIN_NAME_CHARS:
            continue  # 「全体像」, 「計画」: a word of the title, not the document's name
        owners = [source for source, topic in topics.items() if words <= topic]
        if len(owners) == 1:
            named.setdefault(owners[0], phrase)
    return next(iter(named.items())) if len(named) == 1 else None


# ------------------------------------------------------------------ what a question asks for

_AMOUNT_Q = re.compile(r"何|いくら|幾ら|どれくらい|どのくらい|どの程度|割合|率|数|目標|KPI|規模|上限|金額")
# Not いつも, いつでも, 追いつく, 「どのくらいつくる」.
_WHEN_Q = re.compile(r"いつ(?!も|でも|[くけきなつ])")
_YEAR_Q = re.compile(rf"{_WHEN_Q.pattern}|何年|何月|時期|期限|期間|まで[にの]?$|年度")
# What kind of number a question asks for, and how the documents write it.
_EXPECTED_UNIT = (
    (re.compile(r"いくら|金額|予算|費用|運賃|報酬|上限額|単価|何円|何万円"), re.compile(r"\d\s*(?:万|億|千)?円")),
    (re.compile(r"何%|何パーセント|割合|補助率|カバー率|(?<![効倍比])率は"), re.compile(r"\d\s*%|\d割|分の|\d/\d")),
    (re.compile(r"何(?:万|千)?人"), re.compile(r"\d\s*(?:万|千)?人")),
    (re.compile(r"何団体"), re.compile(r"\d\s*団体")),
    (re.compile(r"何件|件数"), re.compile(r"\d\s*件")),
    (re.compile(r"何か所|何箇所|何カ所"), re.compile(r"\d\s*(?:か所|箇所|カ所|ヶ所)")),
)
_PLACE_Q = re.compile(r"どこ(?!まで|から)|どの(?:自治体|地域|市|町|県|都市)|(?:自治体|市|町|村|県|都市|地域|市町村)(?:は|を|が)[?？]?$")
_GOAL_Q = re.compile(r"目標|目指|増やす|減らす|までに")
_LIST_Q = re.compile(
    r"挙げ|ごと|毎の|流れ|手順|順番|ステップ|\d+つの|[二三四五六七八九十]つの|どんな|どのような|どういった|主な|一覧|何が(?:ある|あり)"
    r"|ものは|取組は|施策は|事例は|分野は|技術は|自治体は|例は"
)
_NAME_Q = re.compile(r"名前|名称|何という|何と呼|どんな(?:制度|事業|交付金|補助金|仕組み|システム)|何を")


@dataclass(frozen=True)
class Asks:
    """What a question asks for, as far as its wording tells."""

    numeric: bool  # a number, an amount, a date
    when: bool  # "いつ？": a date
    years: frozenset[str]  # "2030年度の目標は？"
    units: tuple[re.Pattern, ...]  # how the kind of number asked is written: 円 for いくら, % for 割合 …
    unit_words: tuple[str, ...]  # units written in the question itself
    places: frozenset[str]  # prefectures and municipalities named in the question
    place: bool  # "どこ？", "どの自治体？"
    name: bool  # "名前は？"
    goal: bool  # "目標は？", "何人まで増やす？"
    list: bool  # "どのような取組？", "4つの施策は？"
    ordinals: frozenset[tuple[str, str]] = frozenset()  # ("21", "次") for 「第21次公募」
    variants: frozenset[tuple[str, str]] = frozenset()  # ("創業", "型") for 「創業型の補助上限額」

    @classmethod
    def of(cls, question: str) -> Asks:
        return cls(
            numeric=bool(_AMOUNT_Q.search(question) or _YEAR_Q.search(question)),
            when=bool(_WHEN_Q.search(question)),
            years=pat.years_in(question),
            units=tuple(pattern for asks, pattern in _EXPECTED_UNIT if asks.search(question)),
            unit_words=tuple(u for u in pat.UNITS if u in question),
            places=frozenset(m.group(0) for m in pat.PREFECTURE_NAMED.finditer(question)) - {"都道府県"},
            place=bool(_PLACE_Q.search(question)),
            name=bool(_NAME_Q.search(question)),
            goal=bool(_GOAL_Q.search(question)),
            list=bool(_LIST_Q.search(question)),
            ordinals=frozenset(pat.ORDINAL.findall(question)),
            variants=frozenset(pat.VARIANT.findall(question)),
        )

    def focus(self) -> list[re.Pattern]:
        """What a trimmed quote must keep in view."""
        from rag.page_context import PLACE

        return list(self.units) + [re.compile(y) for y in self.years] + ([PLACE] if self.place else [])


@dataclass(frozen=True)
class PreparedQuery:
    text: str  # the standalone, normalised question
    sparse_extra: tuple[str, ...]  # synonym expansions for the sparse query
    # The document the question names, and the name: the name picks the document;
    # within it, every passage is about that name, so it is left out of the word search.
    scope: str | None = None
    name: str = ""
    use_synonyms: bool = True
    # Parsed once here; retrieval and the answerer read these, never the raw text again.
    asks: Asks | None = None
    terms: tuple[str, ...] = ()

    def sparse_text(self, scoped: bool = False) -> str:
        """The words to search for; ``scoped``: the search is restricted to the named document."""
        if not (scoped and self.name):
            return self.text + (" " + " ".join(self.sparse_extra) if self.sparse_extra else "")
        text = self.text.replace(self.name, " ")
        # The name's own synonyms (補助金 → 交付金) would bring back what leaving it out removes.
        extra = expand_synonyms(text) if self.use_synonyms else []
        return text + (" " + " ".join(extra) if extra else "")


def prepare(
    question: str,
    history: list[str] | None = None,
    use_synonyms: bool = True,
    topics: Mapping[str, frozenset[str]] | None = None,
) -> PreparedQuery:
    """``topics``: each document's title words (:meth:`rag.pipeline.Pipeline.topics`), to find the one it names."""
    text = resolve_followup(validate_question(question), history or [])
    extra = tuple(expand_synonyms(text)) if use_synonyms else ()
    named = named_document(text, topics) if topics else None
    scope, name = named or (None, "")
    return PreparedQuery(
        text=text,
        sparse_extra=extra,
        scope=scope,
        name=name,
        use_synonyms=use_synonyms,
        asks=Asks.of(text),
        terms=tuple(key_terms(text)),
    )
