"""Japanese tokenisation for BM25.

Three splitters, chosen by name and recorded in the index manifest:

* ``fugashi``: MeCab (unidic-lite) lemmas of content words.  UniDic lemmas merge
  orthographic variants for free (子ども/こども/子供 → 子供, 取組/取り組み → 取り組む).
* ``ngram``: NFKC character unigrams + bigrams; robust to OCR errors and to
  words the dictionary splits oddly.
* ``hybrid``: both, prefixed so the two vocabularies never collide.  Measured on
  the eval set, each wins on different questions (see README).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from functools import lru_cache

from rag.normalize import normalize_chars

Splitter = Callable[[str], list[str]]

TOKENIZERS = ("fugashi", "ngram", "hybrid")
# Particles, auxiliaries, symbols and blanks carry no topic.
_DROP_POS = {"助詞", "助動詞", "補助記号", "記号", "空白"}
_NGRAM_SKIP = re.compile(r"[\s\u3000、。，．,.・:：;；!！?？「」『』（）()\[\]【】<>＜＞\-―─…※*＊/／]")

_local = threading.local()


def tagger():
    """This thread's MeCab tagger (unidic-lite).

    MeCab taggers are not thread-safe; Streamlit serves each session on its own thread.
    """
    instance = getattr(_local, "tagger", None)
    if instance is None:
        import fugashi

        instance = _local.tagger = fugashi.Tagger()
    return instance


def _lemma(word) -> str:
    lemma = getattr(word.feature, "lemma", None)
    if not lemma or lemma == "*":
        return word.surface.lower()
    # UniDic writes loanwords as "デジタル-digital"; keep the Japanese part.
    return lemma.split("-", 1)[0].lower() if not lemma.startswith("-") else lemma.lower()


def morphemes(text: str) -> list[tuple[str, str, bool]]:
    """(surface, lemma, is_content_word) for each morpheme, in order."""
    text = normalize_chars(text)
    return [
        (w.surface, _lemma(w), w.feature.pos1 not in _DROP_POS and bool(w.surface.strip())) for w in tagger()(text)
    ]


def content_words(text: str) -> list[str]:
    """Lemmas of content words, in order (used by BM25 and by the answerer's term matching)."""
    text = normalize_chars(text)
    return [_lemma(w) for w in tagger()(text) if w.feature.pos1 not in _DROP_POS and w.surface.strip()]


def char_ngrams(text: str) -> list[str]:
    out: list[str] = []
    for run in _NGRAM_SKIP.split(normalize_chars(text).lower()):
        if not run:
            continue
        out.extend(run)
        out.extend(run[i : i + 2] for i in range(len(run) - 1))
    return out


def hybrid(text: str) -> list[str]:
    return ["w:" + t for t in content_words(text)] + ["c:" + t for t in char_ngrams(text)]


@lru_cache(maxsize=None)
def get_splitter(name: str) -> Splitter:
    try:
        return {"fugashi": content_words, "ngram": char_ngrams, "hybrid": hybrid}[name]
    except KeyError:
        raise ValueError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}") from None
