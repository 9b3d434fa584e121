"""What the API server holds between requests: the live pipeline, the keys, the rate limiter.

The pipeline is swapped, never mutated: a request takes the current one and
keeps it to the end, while a newer index version (a re-ingest from the CLI or
an upload through the API) is loaded beside it in a background thread and then
replaces it in one assignment.  So a re-ingest while serving fails no request.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from rag.access import DEFAULT_COLLECTION, AccessPolicy, check_collection, collection_of
from rag.api.keys import KeyStore
from rag.config import Settings
from rag.embeddings import IndexEmbedder, load_embedder
from rag.index.backend import live_version
from rag.pipeline import Pipeline


class LivePipeline:
    """The pipeline of the index version that is live now, reloaded when the live version changes."""

    def __init__(self, settings: Settings, embedder: IndexEmbedder):
        self.settings = settings
        self.embedder = embedder
        self._version = live_version(settings)
        self._pipeline = Pipeline.load(settings, embedder=embedder)
        self._lock = threading.Lock()
        self._loading = False
        self._next_check = time.monotonic() + settings.api.reload_check_s

    def get(self) -> Pipeline:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.settings.api.reload_check_s
            version = live_version(self.settings)
            if version and version != self._version:
                with self._lock:
                    start = not self._loading
                    self._loading = True
                if start:
                    threading.Thread(target=self._reload, args=(version,), daemon=True).start()
        return self._pipeline

    def reload_now(self) -> Pipeline:
        """Load the live version at once (after this server changed the index itself)."""
        self._reload(live_version(self.settings))
        return self._pipeline

    def _reload(self, version: str | None) -> None:
        try:
            pipeline = Pipeline.load(self.settings, embedder=self.embedder)
            # The version that was actually opened: another commit may have landed meanwhile.
            self._version = pipeline.index.version or version
            self._pipeline = pipeline
        except Exception:  # noqa: BLE001 - keep serving the old version; the next check retries
            self._version = None
        finally:
            with self._lock:
                self._loading = False


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, name: str) -> int | None:
        """None when the request may go ahead, else the seconds to wait (for ``Retry-After``)."""
        if self.per_minute <= 0:
            return None
        rate = self.per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(name, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                return None
            self._buckets[name] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / rate))


class Service:
    def __init__(self, settings: Settings, embedder: IndexEmbedder | None = None):
        self.settings = settings
        self.embedder = embedder or load_embedder(settings.embedder)
        self.pipelines = LivePipeline(settings, self.embedder)
        self.keys = KeyStore(settings.api.keys_db)
        self.limiter = RateLimiter(settings.api.rate_per_minute)
        # One writer at a time inside this process; rag.index.write_lock guards against other processes.
        self.write_lock = threading.Lock()
        self._schemes: dict[tuple, list] = {}

    @property
    def corpus(self) -> Path:
        return Path(self.settings.corpus_dir).resolve()

    def visible_sources(self, pipeline: Pipeline, policy: AccessPolicy) -> list[str]:
        return policy.visible(sorted(pipeline.index.manifest.sources))

    def schemes(self, pipeline: Pipeline, policy: AccessPolicy) -> list:
        from rag.schemes import extract_schemes

        visible = self.visible_sources(pipeline, policy)
        key = (id(pipeline), tuple(visible))
        if key not in self._schemes:
            # An empty filter means "every page" to the index: ask it only for a non-empty one.
            pages = pipeline.index.iter_pages(sources=visible) if visible else iter(())
            self._schemes = {k: v for k, v in self._schemes.items() if k[0] == id(pipeline)}
            self._schemes[key] = extract_schemes(pages)
        return self._schemes[key]

    def source_path(self, source: str) -> Path | None:
        """The file of an indexed source, only if it lies inside the corpus folder."""
        path = (self.corpus / source).resolve()
        try:
            path.relative_to(self.corpus)
        except ValueError:
            return None
        return path if path.is_file() else None

    def collection_dir(self, collection: str) -> Path:
        name = check_collection(collection)
        folder = self.corpus if name == DEFAULT_COLLECTION else self.corpus / name
        if folder != self.corpus and (folder.is_symlink() or folder.resolve().parent != self.corpus):
            raise ValueError("collection folder escapes the corpus")
        return folder

    def ingest(self) -> None:
        from rag.ingest import ingest

        ingest(self.settings, embedder=self.embedder)
        self.pipelines.reload_now()

    def remove(self, source: str) -> None:
        """Take ``source`` out of the corpus and the index in one index commit (:func:`rag.uploads.remove_source`)."""
        from rag.uploads import remove_source

        remove_source(self.corpus, source, self.ingest)


__all__ = ["Service", "LivePipeline", "RateLimiter", "collection_of"]
