"""The optional LLM answerer: a chat model writes the answer from the retrieved passages.

The model sees only the top passages, numbered, inside a delimited document
block.  Its answer is never trusted as is: every [n] marker is checked against
the passages actually sent, and any failure to reach the model degrades to the
offline answerer with a visible note, so the product keeps answering.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import httpx
from langchain_core.exceptions import ContextOverflowError, ModelConnectionError, ModelError, ModelTimeoutError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import SecretStr

from rag import page_context
from rag.answer import ABSTENTION, OfflineAnswerer
from rag.answering.features import char_bigrams
from rag.config import PROJECT_ROOT, LLMSettings
from rag.normalize import SENTENCE_END
from rag.query import QuestionError, resolve_followup, validate_question
from rag.schema import Answer, Citation, Hit

log = logging.getLogger(__name__)

PROMPTS_DIR = PROJECT_ROOT / "prompts"
CONTEXT_HITS = 6
# After an outage, skip the model for a while: otherwise a follow-up question
# waits for the time-out twice (condense, then answer) before falling back.
OUTAGE_COOLDOWN_S = 20.0
_HISTORY_TURNS = 5
_MAX_CONDENSED_CHARS = 300

# [1], [1, 3], ［２］: what models write when asked for [n].
_MARKER = re.compile(r"[\[［]\s*(\d{1,4}(?:\s*[,，、]\s*\d{1,4})*)\s*[\]］]")
_TRAILING_MARKERS = re.compile(rf"(?:{_MARKER.pattern}|\s)+$")
_DOC_BRACKET_NUMBER = re.compile(r"[\[［](\d+)[\]］]")
# Angle brackets of any width become 〈〉 so no text can open or close the <資料> block.
_ANGLES = str.maketrans({"<": "〈", ">": "〉", "＜": "〈", "＞": "〉", "﹤": "〈", "﹥": "〉"})
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S)
_CONDENSE_LABEL = re.compile(r"^(?:書き換えた質問|質問|独立した質問)\s*[:：]\s*")

UNVERIFIED_NOTE = "出典が確認できない回答です"


@cache
def load_prompt(name: str, folder: Path = PROMPTS_DIR) -> str:
    return (folder / name).read_text(encoding="utf-8").strip()


def fill(template: str, **values: str) -> str:
    """Insert ``values`` at ``{name}``; one pass, so braces inside a value are never expanded."""

    def replace(m: re.Match[str]) -> str:
        return values[m.group(1)] if m.group(1) in values else m.group(0)

    return re.sub(r"\{(\w+)\}", replace, template)


def build_chat_model(settings: LLMSettings) -> BaseChatModel:
    if not settings.model:
        raise ValueError("LLM model name is not set (llm.model)")
    if settings.provider == "openai":
        from langchain_openai import ChatOpenAI

        # ``stream()`` streams regardless of ``streaming``; leaving it off keeps
        # ``invoke()`` (condense) a plain JSON request, which every server supports.
        return ChatOpenAI(
            model=settings.model,
            base_url=settings.base_url,
            api_key=SecretStr(settings.api_key or "not-needed"),  # local servers ignore it; the client insists on one
            temperature=settings.temperature,
            timeout=settings.timeout_s,
            max_retries=0,  # a retry doubles the wait; the offline answer is the better fallback
            # Some model names make LangChain switch to /v1/responses, which vLLM,
            # llama.cpp and Ollama do not serve.
            use_responses_api=False,
        )
    if settings.provider == "ollama":
        from langchain_ollama import ChatOllama

        return ChatOllama(
            model=settings.model,
            base_url=settings.base_url,
            temperature=settings.temperature,
            client_kwargs={"timeout": settings.timeout_s},  # the ollama client waits forever by default
        )
    raise ValueError(f"LLM provider {settings.provider!r} cannot answer; choose 'openai' or 'ollama'")


# ------------------------------------------------------------------ prompt


def neutralise(text: str) -> str:
    """Document text made inert: it cannot close the block or pass for a numbered source."""
    return _DOC_BRACKET_NUMBER.sub(r"〔\1〕", text.translate(_ANGLES))


def format_context(hits: list[Hit], titles: dict[str, str]) -> str:
    blocks = []
    for n, hit in enumerate(hits, 1):
        chunk = hit.chunk
        head = f"[{n}] {neutralise(titles.get(chunk.source) or chunk.source)} p.{chunk.page}"
        if chunk.heading:
            head += f"「{neutralise(chunk.heading)}」"
        blocks.append(f"{head}\n{neutralise(chunk.text).strip()}")
    return "\n\n".join(blocks)


# ------------------------------------------------------------------ checking the answer


def _carrying_sentence(text: str, marker_start: int) -> str:
    """The answer sentence a marker belongs to; a marker after the full stop cites the sentence before it."""
    before = _TRAILING_MARKERS.sub("", text[:marker_start])
    cut = max(before.rfind(c, 0, len(before) - 1) for c in SENTENCE_END + "\n")
    return _MARKER.sub("", before[cut + 1 :]).strip()


def _best_quote(chunk_text: str, sentence: str) -> str:
    candidates = page_context.sentences(chunk_text, boxes=False) or [chunk_text.strip()]
    target = char_bigrams(sentence)
    best = max(range(len(candidates)), key=lambda i: (len(target & char_bigrams(candidates[i])), -i))
    return candidates[best]


def check_citations(text: str, context: list[Hit], titles: dict[str, str]) -> tuple[str, list[Citation], list[str]]:
    """Drop markers that point at no passage; renumber the rest 1..m by first appearance.

    Returns the corrected text, one citation per cited passage, and notes for the user.
    """
    renumbered: dict[int, int] = {}
    carriers: dict[int, str] = {}
    invalid: list[int] = []

    def replace(m: re.Match[str]) -> str:
        out: list[str] = []
        for raw in re.split(r"[,，、]", m.group(1)):
            n = int(raw)
            if not 1 <= n <= len(context):
                if n not in invalid:
                    invalid.append(n)
                continue
            if n not in renumbered:
                renumbered[n] = len(renumbered) + 1
                carriers[n] = _carrying_sentence(text, m.start())
            marker = f"[{renumbered[n]}]"
            if marker not in out:
                out.append(marker)
        return "".join(out)

    body = _MARKER.sub(replace, text).strip()
    citations = []
    for n, new in sorted(renumbered.items(), key=lambda kv: kv[1]):
        chunk = context[n - 1].chunk
        quote = _best_quote(chunk.text, carriers[n])
        citations.append(Citation(new, chunk.source, chunk.page, chunk.heading, quote, chunk.id, titles.get(chunk.source, "")))
    notes = []
    if invalid:
        notes.append(f"存在しない出典番号 {'、'.join(f'[{n}]' for n in invalid)} を削除しました")
    return body, citations, notes


def is_abstention(text: str) -> bool:
    flat = re.sub(r"\s", "", _MARKER.sub("", text))
    return ABSTENTION.rstrip("。") in flat


# ------------------------------------------------------------------ streaming


def _visible(raw: str, final: bool) -> str:
    """The part of a reply a user should see: reasoning models' <think> blocks removed."""
    text = _THINK_BLOCK.sub("", raw)
    if _THINK_CLOSE in text:  # the chat template opened the block inside the prompt
        text = text.rsplit(_THINK_CLOSE, 1)[1]
    if _THINK_OPEN in text:
        text = text[: text.index(_THINK_OPEN)]
    text = text.lstrip()
    if not final:
        # Hold back a possible "<thi" until the next piece shows what it is.
        for k in range(min(len(text), len(_THINK_OPEN) - 1), 0, -1):
            if _THINK_OPEN.startswith(text[-k:]):
                return text[:-k]
    return text


class _Visible:
    def __init__(self) -> None:
        self.raw = ""
        self.sent = ""

    def feed(self, piece: str) -> str:
        self.raw += piece
        return self._release(_visible(self.raw, final=False))

    def finish(self) -> str:
        return self._release(self.text)

    @property
    def text(self) -> str:
        return _visible(self.raw, final=True)

    def _release(self, visible: str) -> str:
        if not visible.startswith(self.sent):
            return ""  # text already shown cannot be taken back; the final Answer corrects it
        new, self.sent = visible[len(self.sent) :], visible
        return new


# ------------------------------------------------------------------ failures


try:  # the openai SDK moved to httpx2; a dropped stream can surface from it unwrapped
    import httpx2

    _HTTP_LIBS: tuple = (httpx, httpx2)
except ImportError:
    _HTTP_LIBS = (httpx,)
_TIMEOUTS = (ModelTimeoutError, TimeoutError, *(lib.TimeoutException for lib in _HTTP_LIBS))
_UNREACHABLE = (ModelConnectionError, ConnectionError, OSError, *(lib.TransportError for lib in _HTTP_LIBS))


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str  # Japanese, shown to the user
    kind: Literal["outage", "refused", "unexpected"]  # outage: unreachable, too slow or overloaded

    def note(self) -> str:
        lead = "LLMに接続できなかったため" if self.kind == "outage" else "LLMから回答を得られなかったため"
        return f"{lead}、オフラインの回答を表示しています（理由: {self.reason}）"


def describe_failure(exc: BaseException, settings: LLMSettings) -> Failure:
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) and status > 0 else None
    if isinstance(exc, _TIMEOUTS):
        return Failure(f"{settings.timeout_s:g}秒以内に応答がありませんでした", "outage")
    if status and status >= 500:
        return Failure(f"LLMサーバーのエラー（HTTP {status}）", "outage")
    if isinstance(exc, ContextOverflowError):
        return Failure("資料が長すぎてモデルの入力上限を超えました", "refused")
    if status in (401, 403):
        return Failure(f"認証に失敗しました（HTTP {status}）。APIキーを確認してください", "refused")
    if status == 404:
        return Failure(f"モデル「{settings.model}」または接続先URLが見つかりません（HTTP 404）", "refused")
    if status:
        return Failure(f"リクエストが受け付けられませんでした（HTTP {status}）", "refused")
    if isinstance(exc, _UNREACHABLE):
        return Failure(f"{settings.base_url or '既定の接続先'} に接続できません", "outage")
    if isinstance(exc, ModelError) or type(exc).__module__.startswith("ollama"):
        return Failure(f"LLMの呼び出しに失敗しました（{str(exc)[:120]}）", "refused")
    return Failure(f"予期しないエラー（{type(exc).__name__}）", "unexpected")


# ------------------------------------------------------------------ answerer


class LLMAnswerer:
    def __init__(self, settings: LLMSettings, offline: OfflineAnswerer, context_hits: int = CONTEXT_HITS):
        self.settings = settings
        self.offline = offline
        self.context_hits = context_hits
        self.model = build_chat_model(settings)
        self.system_prompt = fill(load_prompt("answer_system.txt"), abstention=ABSTENTION)
        self.user_template = load_prompt("answer_user.txt")
        self.condense_template = load_prompt("condense.txt")
        self._outage: tuple[float, Failure] | None = None

    def messages(self, question: str, context: list[Hit], titles: dict[str, str]) -> list[BaseMessage]:
        user = fill(self.user_template, context=format_context(context, titles), question=neutralise(question))
        return [SystemMessage(self.system_prompt), HumanMessage(user)]

    def stream(
        self,
        question: str,
        hits: list[Hit],
        titles: dict[str, str],
        query_vector=None,
        ranking=None,
    ) -> Iterator[str | Answer]:
        """Yield answer text as it arrives, then exactly one final :class:`Answer`.

        ``query_vector`` and ``ranking`` (:meth:`rag.answer.OfflineAnswerer.rank` of ``hits``)
        go to the offline answerer when the LLM fails, so the fallback is the usual offline
        answer, without embedding the question or scoring its sentences again.
        """
        fallback = functools.partial(self._fallback, question, hits, titles, query_vector, ranking)
        context = hits[: self.context_hits]
        if not context:  # nothing to ground an answer on; the model could only guess
            yield self._abstain(question, hits, titles, [])
            return
        if (failure := self._recent_outage()) is not None:
            yield fallback(failure)
            return
        visible = _Visible()
        try:
            for chunk in self.model.stream(self.messages(question, context, titles)):
                if piece := visible.feed(chunk.text):
                    yield piece
        except Exception as exc:  # noqa: BLE001 - any failure of the optional model degrades to offline
            yield fallback(self._record(exc))
            return
        self._outage = None
        if tail := visible.finish():
            yield tail
        yield self._finish(question, visible.text, context, hits, titles, fallback)

    def condense(self, question: str, history: list[str]) -> str:
        """A follow-up rewritten as a standalone question; the rule-based rewrite if the model fails."""
        try:
            validate_question(question)
        except QuestionError:
            return question  # the pipeline reports it; no point asking the model
        fallback = resolve_followup(question, history)
        if not history or self._recent_outage() is not None:
            return fallback
        turns = "\n".join(f"- {neutralise(h)}" for h in history[-_HISTORY_TURNS:])
        prompt = fill(self.condense_template, history=turns, question=neutralise(question))
        try:
            reply = self.model.invoke([HumanMessage(prompt)])
        except Exception as exc:  # noqa: BLE001 - same policy as stream()
            self._record(exc)
            return fallback
        self._outage = None
        return _clean_condensed(reply.text) or fallback

    # -- helpers

    def _finish(
        self, question: str, text: str, context: list[Hit], hits: list[Hit], titles: dict[str, str], fallback: Callable[[Failure], Answer]
    ) -> Answer:
        if not text.strip():
            return fallback(Failure("LLMの回答が空でした", "refused"))
        body, citations, notes = check_citations(text, context, titles)
        found = not is_abstention(body)
        if not found and not citations:
            return self._abstain(question, hits, titles, notes)
        if not citations:
            notes.append(UNVERIFIED_NOTE)
        return Answer(
            question=question, text=body, found=found, citations=citations, hits=hits,
            notes=notes, verified=bool(citations), mode="llm",
        )

    def _abstain(self, question: str, hits: list[Hit], titles: dict[str, str], notes: list[str]) -> Answer:
        # The offline answerer's abstention lists the nearest pages, which is what a user needs next.
        answer = self.offline.abstain(question, hits, titles)
        answer.mode = "llm"
        answer.notes.extend(notes)
        return answer

    def _fallback(
        self, question: str, hits: list[Hit], titles: dict[str, str], query_vector, ranking, failure: Failure
    ) -> Answer:
        answer = self.offline.answer(question, hits, titles, query_vector, ranking)
        answer.mode = "offline"
        answer.notes.append(failure.note())
        return answer

    def _record(self, exc: Exception) -> Failure:
        failure = describe_failure(exc, self.settings)
        if failure.kind == "unexpected":
            log.exception("LLM call failed unexpectedly")
        else:
            log.warning("LLM call failed: %s (%s)", failure.reason, exc)
        if failure.kind == "outage":
            self._outage = (time.monotonic(), failure)
        return failure

    def _recent_outage(self) -> Failure | None:
        if self._outage and time.monotonic() - self._outage[0] < OUTAGE_COOLDOWN_S:
            return self._outage[1]
        return None


def _clean_condensed(reply: str) -> str:
    lines = [line.strip() for line in _visible(reply, final=True).splitlines() if line.strip()]
    if not lines:
        return ""
    text = _CONDENSE_LABEL.sub("", lines[0]).strip().strip("「」『』\"'“”").strip()
    if len(text) > _MAX_CONDENSED_CHARS:  # the model answered instead of rewriting
        return ""
    try:
        validate_question(text)
    except QuestionError:
        return ""
    return text
