"""The question-answering pipeline that the CLI, the app and the eval all call.

Loads the index and the embedder once; ``ask`` runs retrieval then answering
and returns an :class:`Answer` with timings.  The LLM path streams through
``ask_stream``.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from rag.answer import OfflineAnswerer, Ranking
from rag.access import AccessPolicy
from rag.answering.model import AnswerModel, load_model
from rag.config import Settings
from rag.embeddings import IndexEmbedder, load_embedder
from rag.index import SearchIndex
from rag.index.backend import open_index
from rag.normalize import CELL_SEPARATOR, SENTENCE_END, starts_item
from rag.ocr.store import OcrStore
from rag.ocr.tesseract import OcrResult
from rag.page_context import HEADING_OPEN
from rag.query import PreparedQuery, prepare, topic_words, validate_question
from rag.retrieve import HybridRetriever, Reranker
from rag.schema import Answer, Citation, Hit

_TITLE_LINES = 3
_PAGES_KEPT = 512  # a few hundred KB of page text


def _title_block(text: str) -> list[str]:
    """The first lines of a page up to its first sentence, list item or table row: a cover's title and subtitle."""
    out = []
    for line in text.split("\n")[:_TITLE_LINES]:
        # A bracketed line under a title names its variant (「<一般型通常枠>」), not a list item.
        item = starts_item(line) and not line.startswith(HEADING_OPEN)
        if len(line) > 100 or line.endswith(tuple(SENTENCE_END)) or item or CELL_SEPARATOR in line:
            break
        out.append(line)
    return out


@dataclasses.dataclass
class Retrieved:
    """A question parsed once, its passages, and (offline) the scoring of their sentences."""

    query: PreparedQuery
    hits: list[Hit]
    query_vector: object
    ranking: Ranking | None


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        index: SearchIndex,
        embedder: IndexEmbedder,
        reranker: Reranker | None = None,
        model: AnswerModel | None = None,
    ):
        self.settings = settings
        self.index = index
        self.embedder = embedder
        self.retriever = HybridRetriever(index=index, embedder=embedder, settings=settings.retrieval, reranker=reranker)
        self._covers: dict[str, str] = {}
        # The answerer reads a question's pages several times (table headers, the lines around
        # the quote, the cover, the citations' labels); a loaded index's pages never change.
        self._get_page = functools.lru_cache(maxsize=_PAGES_KEPT)(index.get_page)
        self._all_topics: dict[str, frozenset[str]] | None = None
        model = model or load_model(settings.answer.model_file)
        self.offline = OfflineAnswerer(settings.answer, embedder, pages=self, model=model)
        self._llm = None
        # The manifest of a loaded index never changes; a new index means a new Pipeline.
        self._titles = {name: s.get("title") or name for name, s in index.manifest.sources.items()}
        # OCR results live beside the index, keyed by file hash (rag.ocr.store); opened on first use.
        self._ocr_store: OcrStore | bool | None = None
        self._ocr_lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings, embedder: IndexEmbedder | None = None, model: AnswerModel | None = None) -> Pipeline:
        """Open the configured index (``settings.index``); refuses one built with another embedder.

        ``model``: answer weights other than the configured ones (training and
        leave-one-document-out fit their own, and must not depend on the shipped file).
        """
        embedder = embedder or load_embedder(settings.embedder)
        index = open_index(settings, embedder=embedder.name, dimension=embedder.dimension)
        reranker = Reranker(settings.retrieval.reranker) if settings.retrieval.reranker else None
        return cls(settings, index, embedder, reranker, model)

    @property
    def llm(self):
        if self._llm is None and self.settings.llm.enabled:
            from rag.llm import LLMAnswerer

            self._llm = LLMAnswerer(self.settings.llm, self.offline)
        return self._llm

    def titles(self) -> dict[str, str]:
        return self._titles

    def cover(self, source: str) -> str:
        """A document's title and the title block of its first page: what the document is."""
        if source not in self._covers:
            page = self._get_page(source, 1)
            title = self._titles.get(source, source)
            # A file with no title metadata is titled by its file name, which names nothing a reader asks for.
            named = title not in (source, Path(source).stem)
            # Two threads may compute the same entry at once; both store the same value.
            self._covers[source] = "\n".join([title if named else "", *_title_block(page.text if page else "")]).strip()
        return self._covers[source]

    def topic(self, source: str) -> frozenset[str]:
        """The words of a document's :meth:`cover` (:func:`rag.query.topic_words`)."""
        return topic_words(self.cover(source))

    def topics(self) -> dict[str, frozenset[str]]:
        """Every indexed document's :meth:`topic` (a loaded index's documents never change)."""
        if self._all_topics is None:
            self._all_topics = {source: self.topic(source) for source in self._titles}
        return self._all_topics

    def page_text(self, source: str, page: int) -> str | None:
        """A page's text from the index (the answerers read past their chunk with it)."""
        found = self._get_page(source, page)
        return found.text if found else None

    def ocr_page(self, source: str, page: int) -> OcrResult | None:
        """The OCR reading (words with boxes, confidence) of a page that had no text layer; None for text pages."""
        sha = self.index.manifest.sources.get(source, {}).get("sha256")
        if not sha:
            return None
        with self._ocr_lock:
            if self._ocr_store is None:
                self._ocr_store = OcrStore.open_if_exists(self.settings.ocr_cache_file) or False
            return self._ocr_store.page(sha, page) if self._ocr_store else None

    def _with_labels(self, citations: list[Citation]) -> list[Citation]:
        labels: dict[tuple[str, int], tuple[str | None, OcrResult | None]] = {}
        out = []
        for c in citations:
            key = (c.source, c.page)
            if key not in labels:
                page = self._get_page(*key)
                labels[key] = (page.label if page else None, self.ocr_page(*key) if page else None)
            label, ocr = labels[key]
            out.append(dataclasses.replace(
                c, label=label, title=c.title or self._titles.get(c.source, c.source),
                ocr=ocr is not None, ocr_confidence=ocr.confidence if ocr is not None else None,
            ))
        return out

    def ask(
        self,
        question: str,
        history: Sequence[str] = (),
        sources: Sequence[str] | None = None,
        k: int | None = None,
        use_llm: bool | None = None,
        explain: bool = False,
        policy: AccessPolicy | None = None,
    ) -> Answer:
        """Answer one question.  ``history``: earlier standalone questions of the conversation.

        ``policy``: the documents the caller may see (``None``: all).
        Raises :class:`rag.query.QuestionError` for an unusable question.
        """
        answer = None
        for item in self.ask_stream(question, history, sources, k, use_llm, explain, policy):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def retrieve(
        self,
        question: str,
        history: Sequence[str] = (),
        sources: Sequence[str] | None = None,
        k: int | None = None,
        use_llm: bool = False,
        policy: AccessPolicy | None = None,
    ) -> Retrieved:
        """Parse the question (once), search, and score every sentence of the passages found."""
        topics = self.topics()
        if policy is not None:
            sources = policy.restrict(sources, self._titles)
            # A question naming a forbidden document must neither be scoped to it nor told its title.
            topics = {s: t for s, t in topics.items() if policy.allows(s)}
        if use_llm and history:
            standalone = self.llm.condense(question, list(history))
            query = prepare(standalone, use_synonyms=self.settings.retrieval.use_synonyms, topics=topics)
        else:
            query = prepare(question, list(history), use_synonyms=self.settings.retrieval.use_synonyms, topics=topics)
        query_vector = self.embedder.embed_query_array(query.text)
        if policy is not None and sources is not None and not sources:
            # Nothing the caller may see: the index reads an empty filter as "all", so do not ask it.
            return Retrieved(query, [], query_vector, None)
        hits = self.retriever.search(query, k=k, sources=sources or None, query_vector=query_vector)
        ranking = None
        if self.settings.retrieval.sentence_rerank and self.retriever.reranker is None:
            # One scoring orders the passages and picks the offline answer's sentences.
            ranking = self.offline.rank(query, hits, query_vector)
            hits = ranking.hits if ranking else hits
        return Retrieved(query, hits, query_vector, ranking)

    def finish(self, question: str, found: Retrieved, answer: Answer, sources: Sequence[str] | None, explain: bool = False) -> Answer:
        """What every answer carries whichever answerer wrote it: the question, labels, notes."""
        query = found.query
        answer.question = question
        answer.standalone_question = query.text if query.text != validate_question(question) else None
        answer.citations = self._with_labels(answer.citations)
        if explain and found.ranking is not None:
            answer.explanation = self.offline.explain(found.ranking)
        if query.scope and sources and query.scope not in sources:
            # The answer comes from the documents the user chose, not from the one the question names.
            title = self._titles.get(query.scope, query.scope)
            answer.notes.append(f"質問にある「{query.name}」は「{title}」の内容ですが、この資料は検索の対象に選ばれていません。")
        return answer

    def ask_stream(
        self,
        question: str,
        history: Sequence[str] = (),
        sources: Sequence[str] | None = None,
        k: int | None = None,
        use_llm: bool | None = None,
        explain: bool = False,
        policy: AccessPolicy | None = None,
    ) -> Iterator[str | Answer]:
        """Yield answer text pieces as they are produced (LLM), then the final :class:`Answer`."""
        t0 = time.perf_counter()
        use_llm = self.llm is not None if use_llm is None else (use_llm and self.llm is not None)
        found = self.retrieve(question, history, sources, k, use_llm, policy)
        query, hits = found.query, found.hits
        t1 = time.perf_counter()
        if use_llm:
            answer = None
            for item in self.llm.stream(query.text, hits, self._titles, found.query_vector, found.ranking):
                if isinstance(item, Answer):
                    answer = item
                else:
                    yield item
        else:
            answer = self.offline.answer(query, hits, self._titles, found.query_vector, found.ranking)
        t2 = time.perf_counter()
        answer = self.finish(question, found, answer, sources, explain)
        answer.timings_ms = {"retrieve": (t1 - t0) * 1000, "answer": (t2 - t1) * 1000, "total": (t2 - t0) * 1000}
        yield answer
