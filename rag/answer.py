"""The offline answerer: quote the sentences that answer the question, with page markers.

It never writes text of its own beyond fixed phrases: every sentence of an
answer is cut from a cited page.  When the evidence is weak it abstains with
:data:`ABSTENTION` and lists the nearest pages instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rag.chunking import _SENTENCE
from rag.config import AnswerSettings
from rag.query import key_terms, synonym_groups
from rag.schema import Answer, Citation, Hit
from rag.tokenize import char_ngrams, content_words

#: The one phrase used whenever the documents do not answer (tests and the LLM prompt use it too).
ABSTENTION = "資料中に該当する記載が見つかりませんでした。"

_NUMBER = re.compile(r"\d")
_YEAR_Q = re.compile(r"いつ|何年|何月|時期|期限|期間|まで[にの]?$|年度")
_AMOUNT_Q = re.compile(r"何|いくら|幾ら|どれくらい|どのくらい|どの程度|割合|率|数|目標|KPI|規模|上限|金額")
_UNITS = ("団体", "%", "人", "校", "地域", "か所", "箇所", "都市", "円", "件", "市区町村", "事業者", "拠点", "社", "万", "億", "倍", "割")
_MAX_SENTENCE_CHARS = 130


@dataclass
class _Candidate:
    hit_rank: int
    hit: Hit
    text: str  # the sentence as it stands in the page
    terms: set[str]
    bigrams: set[str]
    score: float = 0.0
    evidence: float = 0.0


def _sentences(text: str) -> list[str]:
    out = []
    for line in text.split("\n"):
        for m in _SENTENCE.finditer(line):
            s = m.group(0).strip()
            if len(s) >= 4:
                out.append(s)
    return out


def _bigrams(text: str) -> set[str]:
    return {t for t in char_ngrams(text) if len(t) == 2}


def _trim(sentence: str, terms: list[str], budget: int) -> str:
    """Cut an over-long sentence to the window that holds most question terms (marked with …)."""
    if len(sentence) <= budget:
        return sentence
    positions = sorted(p for t in terms for p in [sentence.find(t)] if p >= 0) or [0]
    best_start, best_count = 0, -1
    for start in range(0, len(sentence) - budget + 1, 5):
        count = sum(start <= p < start + budget for p in positions) + 0.5 * len(
            _NUMBER.findall(sentence[start : start + budget])
        ) / 10
        if count > best_count:
            best_start, best_count = start, count
    window = sentence[best_start : best_start + budget]
    return ("…" if best_start > 0 else "") + window + ("…" if best_start + budget < len(sentence) else "")


class OfflineAnswerer:
    def __init__(self, settings: AnswerSettings | None = None):
        self.settings = settings or AnswerSettings()

    def answer(self, question: str, hits: list[Hit], titles: dict[str, str] | None = None) -> Answer:
        titles = titles or {}
        terms = key_terms(question)
        alternatives = self._alternatives(question, terms)
        if not hits or not terms:
            return self._abstain(question, hits, titles)

        candidates = self._candidates(hits[:8])
        if not candidates:
            return self._abstain(question, hits, titles)
        weights = self._term_weights(terms, alternatives, candidates)
        q_bigrams = _bigrams("".join(terms))
        numeric = bool(_AMOUNT_Q.search(question) or _YEAR_Q.search(question))
        unit_wanted = [u for u in _UNITS if u in question]
        total = sum(weights.values()) or 1.0
        for c in candidates:
            heading_terms = set(content_words(c.hit.chunk.heading))
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
            if len(c.text) < 12:
                score -= 0.2  # a bare heading answers nothing
            c.score = score

        candidates.sort(key=lambda c: -c.score)
        best = candidates[0]
        if best.evidence < self.settings.min_evidence:
            return self._abstain(question, hits, titles)
        chosen = [best]
        covered_terms = set(best.terms)
        used = len(best.text)
        for c in candidates[1:]:
            if len(chosen) >= self.settings.max_sentences:
                break
            if c.score < 0.8 * best.score or c.text in {x.text for x in chosen}:
                continue
            adds_terms = any(alternatives[t] & c.terms and not alternatives[t] & covered_terms for t in weights)
            other_page = all((c.hit.chunk.source, c.hit.chunk.page) != (x.hit.chunk.source, x.hit.chunk.page) for x in chosen)
            if not (adds_terms or other_page):
                continue
            if used + min(len(c.text), _MAX_SENTENCE_CHARS) > self.settings.max_chars:
                continue
            chosen.append(c)
            covered_terms |= c.terms
            used += min(len(c.text), _MAX_SENTENCE_CHARS)
        # Keep reading order within a page so a list reads as it does in the document.
        return self._compose(question, chosen, hits, titles, terms)

    def _candidates(self, hits: list[Hit]) -> list[_Candidate]:
        seen: set[str] = set()
        out: list[_Candidate] = []
        for rank, hit in enumerate(hits):
            for sentence in _sentences(hit.chunk.text):
                if sentence in seen:
                    continue
                seen.add(sentence)
                out.append(_Candidate(rank, hit, sentence, set(content_words(sentence)), _bigrams(sentence)))
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

    def _compose(self, question: str, chosen: list[_Candidate], hits: list[Hit], titles: dict[str, str], terms: list[str]) -> Answer:
        markers: dict[tuple[str, int], int] = {}
        citations: list[Citation] = []
        lines: list[str] = []
        for c in chosen:
            chunk = c.hit.chunk
            key = (chunk.source, chunk.page)
            if key not in markers:
                markers[key] = len(markers) + 1
                citations.append(
                    Citation(markers[key], chunk.source, chunk.page, chunk.heading, c.text, chunk.id, titles.get(chunk.source, ""))
                )
            lines.append(f"{_trim(c.text, terms, _MAX_SENTENCE_CHARS)}[{markers[key]}]")
        return Answer(question=question, text="\n".join(lines), found=True, citations=citations, hits=hits)

    def _abstain(self, question: str, hits: list[Hit], titles: dict[str, str]) -> Answer:
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
