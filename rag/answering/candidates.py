"""The candidates an answer is picked from: each sentence (or table row) of the retrieved passages.

A candidate carries what scoring and composing read of it — its words, the table header
over it, the heading and section path of its passage, the document's cover — computed
once here, so that both stages see the same sentence the same way.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag import page_context as pc
from rag.answering.features import char_bigrams
from rag.answering.features import words as _words
from rag.query import topic_words
from rag.retrieve import is_contents
from rag.schema import Chunk, Hit

ANAPHORA = re.compile(
    r"(?:この|その|これらの?|それらの?|こうした|同)(?:場合|際|ため|うち|ほか|他|結果|上で|中で|事業|制度|取組)"
    # 「特に10万円を超える支払いは…」 narrows the rule stated just before it;
    # 「これは、国道40号…によるもの」 explains it.
    r"|(?:特に|ただし|但し|これは|これが)"
)


class PageSource(Protocol):
    """Where the answerer reads past its passages: a page's whole text and a document's cover."""

    def page_text(self, source: str, page: int) -> str | None: ...

    def cover(self, source: str) -> str:
        """A document's title and the title block of its first page."""
        ...


def page_of(pages: PageSource | None, chunk: Chunk) -> str:
    """The whole text of ``chunk``'s page, or the chunk itself when no page source is given."""
    return (pages.page_text(chunk.source, chunk.page) if pages else None) or chunk.text


@dataclass
class Candidate:
    hit_rank: int
    hit: Hit
    text: str  # the sentence as it stands in the page
    terms: frozenset[str] = frozenset()
    # Words of the document's title and cover: what every sentence of it is about.
    topic: frozenset[str] = frozenset()
    # A table row's caption and header rows: 「5人以下　750万円」 is about 補助上限額.
    head: tuple[str, ...] = ()
    header: bool = False  # the header row of a table (「基本要件の種類　基準値　達成する時点」)
    bigrams: frozenset[str] = frozenset()
    # Words of the row's header rows (as good as its own) and of the caption over them (as a heading).
    column: frozenset[str] = frozenset()
    caption: frozenset[str] = frozenset()
    cover: str = ""  # the document's title block (an edition or variant is named there)
    heading_words: frozenset[str] = frozenset()  # words of the passage's heading and section path
    score: float = 0.0  # the model's probability that this sentence holds the answer
    lexical: float = 0.0  # the same without sentence meaning (rows of one table are compared by it)
    figure: str = ""  # the line under it that carries its number (pc.figure_below), for a question about one
    dense: float | None = None  # scaled cosine with the question; None when not embedded
    row: np.ndarray | None = None  # the feature vector the score came from

    def __post_init__(self) -> None:
        if self.head:
            # Header rows, and the question a slide's table answers (「補助率・補助上限額は？」),
            # say what the cells are; a label over them (「未達成の場合返還義務あり」) only where they are.
            says = [pc.CELL_SEPARATOR in line or line.endswith(pc.ASKS_ABOVE) for line in self.head]
            self.column = _words("\n".join(line for line, s in zip(self.head, says) if s))
            self.caption = _words("\n".join(line for line, s in zip(self.head, says) if not s))

    @property
    def context(self) -> frozenset[str]:
        return self.column | self.caption

    @property
    def page(self) -> int:
        return self.hit.chunk.page

    @property
    def passage(self) -> str:
        return self.hit.chunk.text

    @property
    def contents(self) -> bool:
        return _contents(self.hit.chunk.text)

    def neighbour(self, text: str) -> Candidate:
        """A line read around this one on its page, quoted under the same citation."""
        return Candidate(self.hit_rank, self.hit, text, topic=self.topic)


def candidates(hits: list[Hit], pages: PageSource | None) -> list[Candidate]:
    """Every distinct sentence of ``hits``, in hit order, with what it is read with."""
    seen: set[str] = set()
    out: list[Candidate] = []
    for rank, hit in enumerate(hits):
        cover = pages.cover(hit.chunk.source) if pages else ""
        topic = topic_words(cover) if cover else frozenset()
        heading = _words(hit.chunk.heading + "\n" + "\n".join(getattr(hit.chunk, "section", ())))
        heads = table_context(page_of(pages, hit.chunk)) if pc.CELL_SEPARATOR in hit.chunk.text else {}
        headers = {head[-1] for head in heads.values()}
        previous = None
        for sentence in pc.sentences(hit.chunk.text):
            text = sentence
            if previous and ANAPHORA.match(sentence) and f"{previous}{sentence}" in hit.chunk.text:
                # "この場合、月4.2万円まで無償。" means nothing without the sentence it refers to,
                # and quoted alone it loses the rule it narrows ("原則銀行振込。特に…").
                text = f"{previous}{sentence}"
            previous = sentence
            if text in seen:
                continue
            seen.add(text)
            out.append(
                Candidate(
                    rank,
                    hit,
                    text,
                    _words(text),
                    topic,
                    head=heads.get(text, ()),
                    header=text in headers,
                    bigrams=char_bigrams(text),
                    cover=cover,
                    heading_words=heading,
                )
            )
    return out


def figure_below(c: Candidate, pages: PageSource | None) -> str:
    """The line under ``c`` on its page that carries its number, or ''."""
    chunk = c.hit.chunk
    text = page_of(pages, chunk)
    lines, at = pc.locate(text, c.text, chunk.start if text is not chunk.text else 0)
    return pc.figure_below(lines, at, c.text) or ""


@functools.lru_cache(maxsize=1024)
def _contents(passage: str) -> bool:
    """is_contents, once per passage rather than once per sentence of it."""
    return is_contents(passage)


@functools.lru_cache(maxsize=256)
def table_context(page: str) -> dict[str, tuple[str, ...]]:
    """Each table row of a page, with its header rows and caption (caption first).

    Cached and shared between questions: read it, never change it.
    """
    lines = page.split("\n")
    return {line.strip(): tuple(head) for line, head in zip(lines, pc.table_heads(lines)) if head}
