"""The offline answerer: quote the sentences that answer the question, with page markers.

It never writes text of its own beyond fixed phrases: every sentence of an
answer is cut from a cited page.  When the evidence is weak it abstains with
:data:`ABSTENTION` and lists the nearest pages instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.chunking import _SENTENCE
from rag.config import AnswerSettings
from rag.normalize import BULLET_START
from rag.query import key_terms, synonym_groups
from rag.schema import Answer, Citation, Hit
from rag.tokenize import char_ngrams, content_words

#: The one phrase used whenever the documents do not answer (tests and the LLM prompt use it too).
ABSTENTION = "資料中に該当する記載が見つかりませんでした。"

_NUMBER = re.compile(r"\d")
_YEAR_Q = re.compile(r"いつ|何年|何月|時期|期限|期間|まで[にの]?$|年度")
_AMOUNT_Q = re.compile(r"何|いくら|幾ら|どれくらい|どのくらい|どの程度|割合|率|数|目標|KPI|規模|上限|金額")
_YEAR = re.compile(r"(?<!\d)(20\d\d|19\d\d)(?!\d)")
# What kind of number a question asks for, and how the documents write it.
_EXPECTED_UNIT = (
    (re.compile(r"いくら|金額|予算|費用|運賃|報酬|上限額|単価|何円|何万円"), re.compile(r"\d\s*(?:万|億|千)?円")),
    (re.compile(r"何%|何パーセント|割合|補助率|カバー率|[^効]率は"), re.compile(r"\d\s*%|\d割|分の|\d/\d")),
    (re.compile(r"何人"), re.compile(r"\d\s*(?:万|千)?人")),
    (re.compile(r"何団体"), re.compile(r"\d\s*団体")),
    (re.compile(r"何件|件数"), re.compile(r"\d\s*件")),
    (re.compile(r"何か所|何箇所|何カ所"), re.compile(r"\d\s*(?:か所|箇所|カ所|ヶ所)")),
)
_PLACE_Q = re.compile(r"どこ|どの(?:自治体|地域|市|町|県|都市)|(?:自治体|市|町|村|県|都市|地域|市町村)(?:は|を|が)[?？]?$")
# A named place; the generic words 都道府県・市区町村・市町村 are not one.
_PLACE = re.compile(
    r"(?<![一-龥])(?!都道府県|市区町村|市町村)"
    r"(?:[一-龥ぁ-んァ-ヶ]{1,6}[都道府県][一-龥ぁ-んァ-ヶ]{0,6}[市区町村]?|[一-龥ァ-ヶ]{1,6}[市町村]\b|[一-龥ァ-ヶ]{1,6}[市町村][)）])"
)
_GOAL_Q = re.compile(r"目標|目指|増やす|減らす|までに")
_GOAL = re.compile(r"までに|まで[)）]|目標|目指")
_ANAPHORA = re.compile(r"(?:この|その|これら|それら|同)(?:場合|際|ため|うち|ほか|他|結果|上で|中で|事業|制度|取組)")
_HEADING_OPEN = ("<", "＜", "【", "[", "〈", "《")
# "取組名 (福島県会津若松市)": how slides caption one regional example among several.
_PLACE_TAIL = re.compile(r"[（(][^()（）]*[都道府県市区町村][^()（）]*[)）]$")
_LIST_Q = re.compile(r"挙げ|\d+つの|[二三四五六七八九十]つの|どんな|どのような|どういった|主な|一覧|何が(?:ある|あり)|ものは|取組は|施策は|事例は|分野は|技術は|自治体は|例は")
# A prefecture, optionally with its municipality, as named in a question (北海道, 茨城県境町).
_PREFECTURE = re.compile(r"(?:北海道|東京都|京都府|大阪府|[一-龥]{2,3}県)(?:[一-龥]{1,4}?[市区町村])?")
_NAME_Q = re.compile(r"名前|名称|何という|何と呼|どんな(?:制度|事業|交付金|補助金|仕組み|システム)|何を")
_UNITS = ("団体", "%", "人", "校", "地域", "か所", "箇所", "都市", "円", "件", "市区町村", "事業者", "拠点", "社", "万", "億", "倍", "割")
_UNIT_MISMATCH = 0.4  # measured: 0.6 → 0.4 moved unanswerable abstention 0.63 → 0.83 with no answerable lost
_MAX_SENTENCE_CHARS = 130
# A second or third quote this long is a flattened table or run-on slide line: it crowds out a clean one.
_SECONDARY_MAX_CHARS = 150
_DENSE_RERANK = 12  # sentences embedded per question: enough to reorder, cheap enough for < 50 ms
_DENSE_SHARE = 0.35
# (cosine of unrelated text, spread up to a clear answer) per embedder; USE measured on eval/qa.jsonl.
_DENSE_CALIBRATION = {"use-multilingual": (0.15, 0.45)}


@dataclass
class _Candidate:
    hit_rank: int
    hit: Hit
    text: str  # the sentence as it stands in the page
    terms: set[str]
    bigrams: set[str]
    score: float = 0.0
    evidence: float = 0.0
    # Applied once all evidence (lexical and dense) is in: a sentence about the wrong year,
    # place or kind of number does not answer, however similar it reads.
    mismatch: float = 1.0


# Slides flattened into one line keep their boxes apart with these marks: each box is its own item.
_INLINE_ITEM = re.compile(r"\s*[■□◆◇●]\s*")


def _sentences(text: str) -> list[str]:
    out = []
    for line in text.split("\n"):
        for m in _SENTENCE.finditer(line):
            for s in _INLINE_ITEM.split(m.group(0)):
                s = s.strip()
                if len(s) >= 4:
                    out.append(s)
    return out


def _bigrams(text: str) -> set[str]:
    return {t for t in char_ngrams(text) if len(t) == 2}


def _trim(sentence: str, terms: list[str], budget: int, focus: list[re.Pattern] = ()) -> str:
    """Cut an over-long sentence to the window that holds most question terms (marked with …).

    ``focus`` patterns (the place or amount the question asks for) weigh more than terms:
    a window with the question's words but not its answer is no answer.
    """
    if len(sentence) <= budget:
        return sentence
    marks = [(p, p + len(t), 1.0) for t in terms for p in [sentence.find(t)] if p >= 0]
    marks += [(m.start(), m.end(), 10.0) for f in focus for m in f.finditer(sentence)]
    best_start, best_weight = 0, -1.0
    for start in range(0, len(sentence) - budget + 1, 2):
        weight = sum(w for a, b, w in marks if start <= a and b <= start + budget)
        if weight > best_weight:
            best_start, best_weight = start, weight
    window = sentence[best_start : best_start + budget]
    return ("…" if best_start > 0 else "") + window + ("…" if best_start + budget < len(sentence) else "")


def _page_lines(best: _Candidate, page_text: Callable[[str, int], str | None] | None) -> tuple[list[str], int | None]:
    """The lines of ``best``'s page, and the index of the line it stands in."""
    chunk = best.hit.chunk
    text = (page_text(chunk.source, chunk.page) if page_text else None) or chunk.text
    lines = text.split("\n")
    return lines, next((i for i, line in enumerate(lines) if best.text in line), None)


def _place_caption(lines: list[str], at: int | None, reach: int = 3) -> list[str]:
    """The short lines from the nearest one above ``at`` that names a place, down to ``at`` (exclusive)."""
    if at is None:
        return []
    for back in range(1, reach + 1):
        i = at - back
        if i < 0 or len(lines[i]) > 60:
            return []
        if _PLACE.search(lines[i]):
            return [line.strip() for line in lines[i:at]]
    return []


def _plain_items(lines: list[str]) -> int:
    """How many of ``lines`` in a row are short unmarked items (no bullet, no sentence end, not a heading)."""
    n = 0
    for line in lines:
        line = line.strip()
        if not (4 <= len(line) <= 45) or BULLET_START.match(line) or line.endswith(("。", ":", "：")):
            break
        n += 1
    return n


def _is_label(text: str) -> bool:
    """A heading or caption rather than a statement: short, and not a finished sentence."""
    return 0 < len(text) <= 40 and not text.endswith(("。", "！", "？", ":", "："))


def _bullet_family(line: str) -> str:
    """Which kind of list marker a line starts with, so ① ② ③ are read as one list."""
    first = line.lstrip()[:1]
    if first in "-‐–—" and line.lstrip()[1:].lstrip()[:1].isdigit():
        return "numbered"  # "- 1 地方に仕事をつくる": a numbered list a converter prefixed with dashes
    if "\u2460" <= first <= "\u2473" or "\u2776" <= first <= "\u277f":
        return "circled"
    if first.isdigit() or first in "(（":
        return "numbered"
    return "bullet"  # -, ・, ▶ … are mixed freely within one list by PDF converters


class OfflineAnswerer:
    def __init__(self, settings: AnswerSettings | None = None, embedder=None):
        """``embedder`` (an :class:`rag.embeddings.IndexEmbedder`) adds sentence-level dense similarity,
        which catches paraphrases that share no words with the question."""
        self.settings = settings or AnswerSettings()
        self.embedder = embedder

    def answer(
        self,
        question: str,
        hits: list[Hit],
        titles: dict[str, str] | None = None,
        page_text: Callable[[str, int], str | None] | None = None,
        query_vector=None,
    ) -> Answer:
        """``page_text(source, page)`` lets a list answer continue past the end of its chunk;
        ``query_vector`` is the question as the retriever embedded it (saves embedding it twice)."""
        titles = titles or {}
        terms = key_terms(question)
        alternatives = self._alternatives(question, terms)
        if not hits or not terms:
            return self.abstain(question, hits, titles)

        candidates = self._candidates(hits[:8])
        if not candidates:
            return self.abstain(question, hits, titles)
        weights = self._term_weights(terms, alternatives, candidates)
        q_bigrams = _bigrams("".join(terms))
        numeric = bool(_AMOUNT_Q.search(question) or _YEAR_Q.search(question))
        unit_wanted = [u for u in _UNITS if u in question]
        total = sum(weights.values()) or 1.0
        years = set(_YEAR.findall(question))
        place_wanted = bool(_PLACE_Q.search(question))
        name_wanted = bool(_NAME_Q.search(question))
        goal_wanted = bool(_GOAL_Q.search(question))
        list_wanted = bool(_LIST_Q.search(question))
        heading_terms_of: dict[str, set[str]] = {}
        for c in candidates:
            heading = c.hit.chunk.heading
            if heading not in heading_terms_of:
                heading_terms_of[heading] = set(content_words(heading))
            heading_terms = heading_terms_of[heading]
            covered = 0.0
            for t, w in weights.items():
                if alternatives[t] & c.terms:
                    covered += w
                elif alternatives[t] & heading_terms:
                    covered += 0.5 * w
            overlap = len(q_bigrams & c.bigrams) / len(q_bigrams) if q_bigrams else 0.0
            c.evidence = 0.75 * min(covered / total, 1.0) + 0.25 * overlap
            score = c.evidence + 0.12 / (1 + c.hit_rank)
            if numeric and _NUMBER.search(c.text):
                score += 0.08
                if any(re.search(rf"\d[\d,.]*\s*{re.escape(u)}", c.text) for u in unit_wanted):
                    score += 0.12
            if years and years <= set(_YEAR.findall(c.text)):
                score += 0.1
            if goal_wanted and _NUMBER.search(c.text) and _GOAL.search(c.text):
                score += 0.1  # "何人まで増やす目標？" is answered by the target, not by today's count
            elif goal_wanted and "現在" in c.text:
                score -= 0.1
            if place_wanted and _PLACE.search(c.text):
                score += 0.15
            if name_wanted and re.search(r"「[^」]{2,}」|[ァ-ヶー]{4,}|[A-Za-z]{3,}", c.text):
                score += 0.05
            if len(c.text) > 200:
                # Flattened tables make very long "sentences" that match many words by chance.
                score -= 0.1 + 0.3 * min(1.0, (len(c.text) - 200) / 400)
            if list_wanted and c.text.startswith(_HEADING_OPEN) and len(c.text) <= 40:
                score += 0.15  # "<国家試験>" heads the list asked for; its items follow it
            elif len(c.text) < 12:
                score -= 0.2  # a bare heading answers nothing
            c.score = score

        units = [pattern for asks, pattern in _EXPECTED_UNIT if asks.search(question)]
        places = {m.group(0) for m in _PREFECTURE.finditer(question)} - {"都道府県"}
        for c in candidates:
            # A question about 北海道 is not answered by a sentence about another prefecture.
            if places and not any(p in c.text for p in places):
                c.mismatch *= 0.7
            # A question about 2030 is not answered by a sentence about 2027, nor "いくら" by one with no amount.
            if years and not years <= set(_YEAR.findall(c.text)):
                c.mismatch *= 0.6
                c.score -= 0.15
            if units and not any(u.search(c.text) for u in units):
                c.mismatch *= _UNIT_MISMATCH
                c.score -= 0.15
        candidates.sort(key=lambda c: -c.score)
        if self.embedder is not None:
            self._add_dense(question, candidates[:_DENSE_RERANK], query_vector)
            candidates.sort(key=lambda c: -c.score)
        for c in candidates:
            c.evidence *= c.mismatch
        best = candidates[0]
        if best.evidence < self.settings.min_evidence:
            abstained = self.abstain(question, hits, titles)
            abstained.evidence = best.evidence
            return abstained
        chosen = [best]
        covered_terms = set(best.terms)
        used = len(best.text)
        lines, at = _page_lines(best, page_text)
        if place_wanted and not _PLACE.search(best.text):
            # "どこ？" answered by an example's description: its place is in the caption above it.
            lead = _place_caption(lines, at)
            chosen = [_Candidate(best.hit_rank, best.hit, line, set(), set()) for line in lead] + chosen
            used += sum(len(line) for line in lead)
            if not lead and at is not None:
                # …or in the examples listed under it: "地域通貨… (埼玉県深谷市)".
                for line in lines[at + 1 : at + 4]:
                    if not _PLACE_TAIL.search(line.strip()) or used + len(line) > self.settings.max_chars + 60:
                        break
                    chosen.append(_Candidate(best.hit_rank, best.hit, line.strip(), set(), set()))
                    used += len(line)
        if numeric and at is not None and at + 1 < len(lines):
            # KPI lines carry their baseline on the next line: "(2021年度は31%)".
            after = lines[at + 1].strip()
            baseline = after.startswith(("(", "（")) and len(after) <= 80
            # "いつ？" answered by "・運転免許証との一体化に向けた取組。": its date is in the sub-item below.
            detail = not _NUMBER.search(best.text) and len(after) <= 160
            if (baseline or detail) and _NUMBER.search(after) and after != best.text:
                chosen.append(_Candidate(best.hit_rank, best.hit, after, set(), set()))
                used += len(after)
        items: list[_Candidate] = []
        introduces_list = len(best.text) <= 40 or best.text.endswith((":", "："))
        if at is not None and at + 1 < len(lines) and lines[at].rstrip().endswith(best.text):
            # A sentence that ends its line right above "1 …", "① …" introduces that list.
            nxt = lines[at + 1].strip()
            introduces_list |= bool(BULLET_START.match(nxt)) and _bullet_family(nxt) in ("circled", "numbered")
            introduces_list |= _plain_items(lines[at + 1 : at + 3]) == 2
        if _LIST_Q.search(question) and introduces_list:
            # A list question is answered by the items under the line that introduces them.
            items = self._following_items(best, page_text)
        if not items and _is_label(best.text) and not (numeric and _NUMBER.search(best.text)):
            # A heading that echoes the question says where the answer is, not what it is: read on.
            items = self._following_sentences(best, page_text)
        for item in items:
            if used + len(item.text) > self.settings.max_chars + 60 or len(chosen) >= 6:
                break
            chosen.append(item)
            used += len(item.text)
        for c in candidates[1:]:
            if c.text in {x.text for x in chosen}:
                continue
            other_page = all((c.hit.chunk.source, c.hit.chunk.page) != (x.hit.chunk.source, x.hit.chunk.page) for x in chosen)
            # "宮城県石巻市は…どのような取組？": another page about the same place is part of the answer.
            same_place_elsewhere = bool(places) and other_page and any(p in c.text for p in places)
            if len(chosen) >= self.settings.max_sentences + same_place_elsewhere:
                continue
            if c.score < (0.6 if same_place_elsewhere else 0.8) * best.score or len(c.text) > _SECONDARY_MAX_CHARS:
                continue
            adds_terms = any(alternatives[t] & c.terms and not alternatives[t] & covered_terms for t in weights)
            if not (adds_terms or other_page):
                continue
            if used + min(len(c.text), _MAX_SENTENCE_CHARS) > self.settings.max_chars:
                continue
            chosen.append(c)
            covered_terms |= c.terms
            used += min(len(c.text), _MAX_SENTENCE_CHARS)
        # Keep reading order within a page so a list reads as it does in the document.
        focus = [pattern for asks, pattern in _EXPECTED_UNIT if asks.search(question)]
        focus += [re.compile(y) for y in years]
        if place_wanted:
            focus.append(_PLACE)
        answer = self._compose(question, chosen, hits, titles, terms, focus)
        answer.evidence = best.evidence
        return answer

    def _candidates(self, hits: list[Hit]) -> list[_Candidate]:
        seen: set[str] = set()
        out: list[_Candidate] = []
        for rank, hit in enumerate(hits):
            previous = None
            for sentence in _sentences(hit.chunk.text):
                texts = [sentence]
                if previous and _ANAPHORA.match(sentence) and f"{previous}{sentence}" in hit.chunk.text:
                    # "この場合、月4.2万円まで無償。" means nothing without the sentence it refers to.
                    texts.append(f"{previous}{sentence}")
                previous = sentence
                for text in texts:
                    if text in seen:
                        continue
                    seen.add(text)
                    out.append(_Candidate(rank, hit, text, set(content_words(text)), _bigrams(text)))
        return out

    def _add_dense(self, question: str, top: list[_Candidate], query_vector=None) -> None:
        import numpy as np

        if query_vector is None:
            query_vector = self.embedder.embed_query_array(question)
        sims = self.embedder.embed_array([c.text[:300] for c in top]) @ np.asarray(query_vector, dtype=np.float32)
        # Where cosines of answering and unrelated sentences fall depends on the model:
        # calibrated for the bundled USE on eval/qa.jsonl; a rough default for others.
        low, span = _DENSE_CALIBRATION.get(self.embedder.name, (0.5, 0.4))
        for c, sim in zip(top, sims):
            dense = float(np.clip((sim - low) / span, 0.0, 1.0))
            c.evidence = (1 - _DENSE_SHARE) * c.evidence + _DENSE_SHARE * dense
            c.score += _DENSE_SHARE * dense

    @staticmethod
    def _following_items(best: _Candidate, page_text: Callable[[str, int], str | None] | None) -> list[_Candidate]:
        """The bullet items that follow ``best`` on its page, as candidates (same page, same marker)."""
        chunk = best.hit.chunk
        text = (page_text(chunk.source, chunk.page) if page_text else None) or chunk.text
        lines = text.split("\n")
        at = next((i for i, line in enumerate(lines) if best.text in line), None)
        if at is None:
            return []
        out: list[_Candidate] = []
        plain = _plain_items(lines[at + 1 : at + 16])
        if plain >= 2:
            # Items laid out as short lines with no marker at all (a slide's box of examples).
            return [_Candidate(best.hit_rank, best.hit, line.strip(), set(), set()) for line in lines[at + 1 : at + 1 + plain]]
        family = None
        for n, line in enumerate(lines[at + 1 :]):
            if line.startswith(("<", "＜", "【", "[")) or n >= 15:
                break
            if not BULLET_START.match(line):
                # Numbered items may carry a line of explanation each (① 技術名 / その説明 / ② …): skip it.
                if out and family in ("circled", "numbered"):
                    continue
                if not out and n == 0 and len(line) <= 60:
                    continue  # a subtitle between the heading and its list
                break
            kind = _bullet_family(line)
            family = family or kind
            if kind != family:
                break
            pieces = _sentences(line)
            # A line of slide boxes ("A ■ B ■ C") is several items; a bullet with sentences is one.
            for sentence in pieces if _INLINE_ITEM.search(line) else pieces[:1]:
                if _PLACE_TAIL.search(best.text) and _PLACE_TAIL.search(sentence):
                    return out  # another region's example, not an item of this one
                if sentence != best.text:
                    out.append(_Candidate(best.hit_rank, best.hit, sentence, set(), set()))
        return out

    @staticmethod
    def _following_sentences(best: _Candidate, page_text: Callable[[str, int], str | None] | None, n: int = 3) -> list[_Candidate]:
        """The next ``n`` sentences after ``best`` on its page, stopping at the next heading."""
        chunk = best.hit.chunk
        text = (page_text(chunk.source, chunk.page) if page_text else None) or chunk.text
        at = text.find(best.text)
        if at < 0:
            return []
        out: list[_Candidate] = []
        rest = text[at + len(best.text) :]
        for line in rest.split("\n"):
            stripped = line.strip()
            if out and (stripped.startswith(_HEADING_OPEN) or (_is_label(stripped) and not BULLET_START.match(stripped))):
                break
            for sentence in _sentences(line):
                if _PLACE_TAIL.search(best.text) and _PLACE_TAIL.search(sentence):
                    return out  # the next example of a list of "取組 (県市)" entries, not more about this one
                out.append(_Candidate(best.hit_rank, best.hit, sentence, set(), set()))
                if len(out) >= n:
                    return out
        return out

    @staticmethod
    def _alternatives(question: str, terms: list[str]) -> dict[str, set[str]]:
        """Each question term with the document-side words that count as the same thing."""
        alts = {t: {t} for t in terms}
        for key, expansions in synonym_groups(question):
            key_lemmas = set(content_words(key))
            expansion_lemmas = {w for e in expansions for w in content_words(e)}
            for t in terms:
                if t in key_lemmas or t in key:
                    alts[t] |= expansion_lemmas
        return alts

    @staticmethod
    def _term_weights(terms: list[str], alternatives: dict[str, set[str]], candidates: list[_Candidate]) -> dict[str, float]:
        n = len(candidates)
        weights: dict[str, float] = {}
        for t in terms:
            df = sum(bool(alternatives[t] & c.terms) for c in candidates)
            weights[t] = math.log(1 + n / (1 + df))
        return weights

    def _compose(
        self, question: str, chosen: list[_Candidate], hits: list[Hit], titles: dict[str, str], terms: list[str], focus: list[re.Pattern]
    ) -> Answer:
        markers: dict[tuple[str, int], int] = {}
        citations: list[Citation] = []
        lines: list[tuple[str, int]] = []
        for c in chosen:
            chunk = c.hit.chunk
            key = (chunk.source, chunk.page)
            if key not in markers:
                markers[key] = len(markers) + 1
                citations.append(
                    Citation(markers[key], chunk.source, chunk.page, chunk.heading, c.text, chunk.id, titles.get(chunk.source, ""))
                )
            lines.append((_trim(c.text, terms, _MAX_SENTENCE_CHARS, focus), markers[key]))
        # A run of lines from one page carries its marker once, at the end of the run.
        text = "\n".join(
            line + (f"[{n}]" if i + 1 == len(lines) or lines[i + 1][1] != n else "") for i, (line, n) in enumerate(lines)
        )
        return Answer(question=question, text=text, found=True, citations=citations, hits=hits)

    def abstain(self, question: str, hits: list[Hit], titles: dict[str, str]) -> Answer:
        near: list[Citation] = []
        seen: set[tuple[str, int]] = set()
        for hit in hits:
            key = (hit.chunk.source, hit.chunk.page)
            if key in seen:
                continue
            seen.add(key)
            first = next(iter(_sentences(hit.chunk.text)), hit.chunk.text[:80])
            near.append(Citation(len(near) + 1, *key, hit.chunk.heading, first, hit.chunk.id, titles.get(key[0], "")))
            if len(near) == 3:
                break
        return Answer(question=question, text=ABSTENTION, found=False, citations=near, hits=hits)
