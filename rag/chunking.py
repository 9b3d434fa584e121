"""Japanese-aware chunking: sentences and bullet lines packed into page-bound chunks.

Invariants: a chunk never spans two pages; its text is exactly
``page.text[start:end]``; a heading line is never the last unit of a chunk (it
travels with the body that follows); consecutive chunks share
``overlap_sentences`` whole sentences.

Each chunk carries the section path at its first line (:mod:`rag.sections`); its
heading is the innermost numbered section there, or the page's heading when the
document has no numbered sections.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rag.config import ChunkingSettings
from rag.normalize import BULLET_START, CELL_SEPARATOR, SENTENCE_END
from rag.schema import Chunk, Page
from rag.sections import heading_style, section_paths

# A 。 inside brackets does not end the sentence: split there, 「総額で500万円(税抜き。グローバル枠の場合は、
# 1,000万円)までを補助上限額とします。」 leaves a second half that reads as a rule of its own.
_BRACKETED = r"[(（][^()（）\n]{0,80}[)）]|「[^「」\n]{0,80}」"
# A bracket right before another (「地方に仕事をつくる。」「人の流れをつくる。」) is read character by
# character, so that a run of quoted slogans stays one sentence each.
_SENTENCE = re.compile(rf"(?:(?:{_BRACKETED})(?![「(（])|[^{SENTENCE_END}])*+(?:[{SENTENCE_END}]+[」』）)]*|$)")


@dataclass(frozen=True, slots=True)
class _Unit:
    start: int
    end: int
    heading: bool


def _is_heading(line: str, is_last: bool) -> bool:
    # A short line with no sentence end that is not a bullet item introduces what follows,
    # and so does a numbered section heading ("(2) 推進体制").
    return (
        not is_last
        and heading_style(line) is not None
    ) or (
        not is_last
        and len(line) <= 40
        and line[-1] not in SENTENCE_END
        and not BULLET_START.match(line)
    ) or (line.startswith(("<", "＜", "【")) and not is_last)


def _units(text: str, max_chars: int) -> Iterator[_Unit]:
    offset = 0
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            heading = _is_heading(line, is_last=i == len(lines) - 1)
            for m in _SENTENCE.finditer(line):
                if not m.group(0).strip():
                    continue
                s, e = offset + m.start(), offset + m.end()
                # An over-long sentence (tables flattened into one line) is cut at commas, then hard.
                while e - s > max_chars:
                    window = text[s : s + max_chars]
                    cut = max(window.rfind("、"), window.rfind(" "), window.rfind(CELL_SEPARATOR), window.rfind("，"))
                    cut = cut + 1 if cut > max_chars // 2 else max_chars
                    yield _Unit(s, s + cut, False)
                    s += cut
                yield _Unit(s, e, heading)
        offset += len(line) + 1


def chunk_page(page: Page, settings: ChunkingSettings) -> list[Chunk]:
    units = list(_units(page.text, settings.max_chars))
    lines = page.text.split("\n")
    paths = section_paths(lines, page.section)
    # Offset of each line's start, to find the line a chunk starts on.
    line_starts = [0]
    for line in lines[:-1]:
        line_starts.append(line_starts[-1] + len(line) + 1)
    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        j = i
        size = 0
        while j < len(units):
            unit_len = units[j].end - units[j].start
            if j > i and size + unit_len > settings.target_chars and not units[j - 1].heading:
                break
            if j > i and size + unit_len > settings.max_chars:
                break
            size += unit_len
            j += 1
        # Do not end on a heading when something follows it.
        while j - 1 > i and units[j - 1].heading and j < len(units):
            j -= 1
        start, end = units[i].start, units[j - 1].end
        # The chunk's own text starts after the sentences it repeats from the chunk before:
        # its section is the one that text is in, not the previous chunk's.
        own = chunks[-1].end if chunks and start < chunks[-1].end < end else start
        section = paths[bisect.bisect_right(line_starts, own) - 1] if paths else ()
        chunks.append(
            Chunk(
                id=Chunk.make_id(page.source, page.page, start),
                source=page.source,
                page=page.page,
                # A section opened on this page names the chunk; before the page's first heading,
                # the page's own heading (its title line, or the section it continues) does.
                heading=section[-1] if section and section != page.section else page.heading,
                text=page.text[start:end],
                start=start,
                end=end,
                section=section,
            )
        )
        if j >= len(units):
            break
        # Step back by whole sentences for overlap, but always make progress.
        i = max(j - settings.overlap_sentences, i + 1)
    return chunks


def chunk_pages(pages: Iterable[Page], settings: ChunkingSettings) -> list[Chunk]:
    return [chunk for page in pages for chunk in chunk_page(page, settings)]


def indexable_text(chunk: Chunk) -> str:
    """Text given to BM25 and the embedder: the page heading gives a chunk its topic."""
    if chunk.text.startswith(chunk.heading):
        return chunk.text
    return f"{chunk.heading}\n{chunk.text}"
