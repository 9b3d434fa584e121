"""Who may see which documents: collections and the access policy every read path goes through.

A document's collection is its top-level folder under the corpus
(``internal/x.pdf`` → ``internal``); files directly in the corpus belong to
``default``.  The ``source`` of a document stays its path relative to the corpus.

An :class:`AccessPolicy` is passed into :class:`rag.pipeline.Pipeline` and used
by the API for listings, page text, PDF download and schemes, so there is one
place that decides what a caller may see.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_COLLECTION = "default"
# A collection becomes a folder name under the corpus: one plain path component, nothing hidden.
_COLLECTION_NAME = re.compile(r"^[^\s/\\.:*?\"<>|\x00-\x1f][^/\\:*?\"<>|\x00-\x1f]{0,63}$")


class CollectionError(ValueError):
    """A collection name that cannot be used; the message is one Japanese line."""


def collection_of(source: str) -> str:
    """``internal/x.pdf`` → ``internal``; ``x.pdf`` → ``default``."""
    head, sep, _ = source.partition("/")
    return head if sep else DEFAULT_COLLECTION


def check_collection(name: str) -> str:
    """The collection name normalised (NFKC), or :class:`CollectionError` for one that is not a plain folder name."""
    text = unicodedata.normalize("NFKC", name or "").strip()
    if not _COLLECTION_NAME.match(text) or text in (".", ".."):
        raise CollectionError(
            f"コレクション名が正しくありません（{name[:40]!r}）。記号（/ \\ : * ? \" < > |）や先頭の「.」を含まない64文字以内の名前にしてください"
        )
    return text


@dataclass(frozen=True)
class AccessPolicy:
    """The collections a caller may read (``None``: all, as for the CLI and an app without sign-in)."""

    collections: frozenset[str] | None = None
    writable: bool = False

    @classmethod
    def everything(cls) -> AccessPolicy:
        return cls(None, writable=True)

    def allows(self, source: str) -> bool:
        return self.collections is None or collection_of(source) in self.collections

    def allows_collection(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def visible(self, sources: Iterable[str]) -> list[str]:
        """The sources this policy lets through, in the given order."""
        return [s for s in sources if self.allows(s)]

    def restrict(self, requested: Iterable[str] | None, indexed: Iterable[str]) -> tuple[str, ...] | None:
        """The sources a search may look at.

        ``None`` means "no restriction" and is returned only for an unrestricted
        policy without a request.  A restricted policy always yields an explicit
        tuple — possibly empty, which the caller must treat as "nothing to
        search", never as "everything" (the index reads an empty filter as none).
        """
        requested = list(requested) if requested else None
        if self.collections is None:
            return tuple(requested) if requested else None
        pool = requested if requested is not None else indexed
        return tuple(s for s in pool if self.allows(s))
