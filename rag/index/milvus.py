"""The index in Milvus: Milvus Lite (a local ``.db`` file) or a Milvus server/cluster by URI.

Everything lives in Milvus, so several app replicas can share one server: chunks with
their dense and sparse vectors, page texts (for citations), the manifest and the BM25
statistics.  Three collections per index folder (prefix ``<milvus_collection>_<folder>``):

- ``<p>_chunks_d<dim>``: one row per chunk and *generation* (below), with the dense
  vector and a sparse vector of BM25 document-side weights.  The dimension is in the
  name so that a rebuild with another embedder writes beside the live rows.
- ``<p>_pages``: page records as JSON, split in parts that fit a VARCHAR.
- ``<p>_meta``: manifests (JSON parts), document frequencies (layers, below), each
  generation's contribution to them (JSON parts), and the pointer rows.

**Versions.**  Every source written by a commit gets a new generation id (``gen``); a
manifest lists the live generation of every source.  A commit writes the new rows, the
new statistics and the new manifest, and only then inserts a pointer row naming the new
manifest — one single-row insert, the switch.  Readers take the newest pointer and filter
every search by the live generations, so a commit killed midway leaves rows nobody
points to (removed by the next commit) and the previous version answering.  The rows of
the version just replaced are kept one commit longer, for readers that opened it.

**BM25 statistics** (see :mod:`rag.index.bm25_weights`).  A chunk's sparse vector holds
``tf / (tf + k1 * (1 - b + b * len / avgdl))`` per term, by term id; the query vector holds
``idf`` per query term, computed at search time from the live document frequencies.  Each
generation keeps its own contribution to the document frequencies (rows ``srcdf``), so
removing or replacing a source subtracts exactly what it added: idf is always that of the
live corpus, as the local index's.  The frequencies themselves are rows ``df`` in *layers*:
a commit writes one layer holding the new value of every term it touched (0 for a term that
is gone), and the manifest lists its layers, oldest first; a reader takes each term from the
newest layer that has it.  So a commit costs the terms of the files it adds or removes, not
the whole vocabulary; every ``_DF_LAYERS`` commits the layers are folded into one.  ``avgdl``
is the mean chunk length at the last full build; incremental commits keep it (rewriting
every chunk when one file changes would defeat incremental ingest), and the manifest
records the live mean beside it; ``rag ingest --rebuild`` refreshes it.  Tokens are our own
Japanese tokeniser's, client-side (Milvus has no Japanese analyzer, Lite none at all), and
each chunk is tokenised once, when it is added: no commit reads old chunks back.

Fusion is not Milvus' ``hybrid_search``: the retriever fuses the sparse and dense lists
itself with weighted reciprocal ranks (the answerer also reads each list's rank and the
dense score), so both backends rank with the same code and the same weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunking import indexable_text
from rag.index.base import (
    FORMAT_VERSION,
    IncompatibleEmbedder,
    IndexError_,
    IndexIncompatible,
    IndexNotFound,
    Manifest,
)
from rag.index.bm25_weights import doc_weights, query_weights
from rag.index.chunk_terms import Vocabulary
from rag.schema import Chunk, Page, SourceInfo
from rag.tokenize import get_splitter

_PART_CHARS = 16_000  # 4 bytes per character at most: a part always fits a 65,535-byte VARCHAR
_BATCH = 500
_VARCHAR = 65_535
_KEEP_POINTERS = 2
_WINDOW = 16_384  # Milvus' default cap on one query's offset + limit
_RANGE = 8_192
_PAGES_KEPT = 256
_DF_LAYERS = 8  # document-frequency layers a reader may look through (see the module docstring)


class MilvusUnavailable(IndexError_):
    """Milvus cannot be reached or refuses us; the message says which and what to do."""


def collection_prefix(base: str, index_dir: Path) -> str:
    """``<base>_<index folder name>``: each index folder (default corpus, eval corpora, LODO sets) is its own set."""
    name = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "_") else "_" for ch in Path(index_dir).name)
    return f"{base}_{name or 'index'}"[:48]


# ---------------------------------------------------------------- connection


log = logging.getLogger(__name__)


class _QuietIterator(logging.Filter):
    # Milvus Lite answers query iterators without a server timestamp; pymilvus then warns on
    # every bulk read that it uses the client's clock, which is right for us (Strong consistency).
    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


class _QuietLite(logging.Filter):
    # Milvus Lite's in-process gRPC server lacks AllocTimestamp, which pymilvus calls while it
    # waits for a new index; pymilvus carries on without it, but grpc logs a traceback first.
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], NotImplementedError))


logging.getLogger("grpc._server").addFilter(_QuietLite())
# Filters are not inherited: attach to the iterator modules' own loggers.
for _name in ("pymilvus.client.iterator.query_iterator", "pymilvus.client.iterator.search_iterator"):
    logging.getLogger(_name).addFilter(_QuietIterator())

_CLIENTS: dict[tuple[str, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def connect(uri: str, token: str | None, timeout_s: float = 10.0):
    """A shared ``MilvusClient`` per (uri, token): Milvus Lite starts one server per file and process."""
    key = (uri, token or "")
    with _CLIENTS_LOCK:
        if key in _CLIENTS:
            return _CLIENTS[key]
        client = _open_client(uri, token, timeout_s)
        _CLIENTS[key] = client
        return client


def disconnect(uri: str, token: str | None = None) -> None:
    """Close the shared client; for Milvus Lite also stop its in-process server, which frees the
    ``.db`` file for another process (Lite admits one process per file)."""
    with _CLIENTS_LOCK:
        client = _CLIENTS.pop((uri, token or ""), None)
    if client is not None:
        client.close()
    if uri.endswith(".db"):
        try:
            from milvus_lite.server_manager import server_manager_instance
        except ImportError:
            return
        server_manager_instance.release_server(uri)


def _open_client(uri: str, token: str | None, timeout_s: float):
    remote = uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))
    if not remote and not uri.endswith(".db"):
        raise MilvusUnavailable(
            f"Milvus の URI が正しくありません（{uri}）。Milvus Lite なら「.db」で終わるファイルのパス、"
            "サーバーなら http://ホスト:19530 を RAG_INDEX__MILVUS_URI に指定してください"
        )
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise MilvusUnavailable(
            "Milvus を使う設定ですが pymilvus が入っていません。`pip install -e .[milvus]` で入れてください"
        ) from None
    if not remote:
        Path(uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    try:
        options = {}
        if not remote:
            # Lite serves gRPC inside this process; pymilvus' 10 s keepalive pings exceed what its
            # server allows, and grpc then prints "too_many_pings" to stderr in the middle of an ingest.
            options["grpc_options"] = {"grpc.keepalive_time_ms": 3_600_000, "grpc.keepalive_permit_without_calls": False}
        client = MilvusClient(uri=uri, token=token or "", timeout=timeout_s, **options)
        client.list_collections()  # a server that accepts the connection may still refuse the token
    except Exception as exc:  # pymilvus raises MilvusException, grpc errors or ConnectionError
        raise MilvusUnavailable(_explain(uri, exc)) from None
    client._rag_uri = uri  # for error messages
    return client


def _refusal(exc: BaseException | None) -> str | None:
    # A server that refuses the token answers the client's first call with gRPC UNAUTHENTICATED,
    # and pymilvus reports that as "Fail connecting to server ... or server unavailable", keeping
    # the gRPC error only as the cause: so the whole chain is looked at, not the message alone.
    # Returns the server's own words, or None when nothing in the chain is a refusal.
    seen = set()
    while exc is not None and id(exc) not in seen:  # chains of exceptions can loop
        seen.add(id(exc))
        code = getattr(exc, "code", None)
        code = code() if callable(code) else code
        details = getattr(exc, "details", None)
        text = (details() if callable(details) else None) or str(getattr(exc, "message", None) or exc)
        if getattr(code, "name", None) in ("UNAUTHENTICATED", "PERMISSION_DENIED") or any(
            w in text.lower() for w in ("auth", "token", "password", "permission", "unauthenticated", "credential")
        ):
            return " ".join(text.split())[:160]
        exc = exc.__cause__ or exc.__context__
    return None


def _explain(uri: str, exc: Exception) -> str:
    # MilvusException carries a readable .message; its str() wraps it in a repr.
    text = " ".join(str(getattr(exc, "message", None) or exc).split())[:160]
    refusal = _refusal(exc)
    if refusal:
        return (
            f"Milvus（{uri}）に認証で拒否されました（{refusal}）。"
            "RAG_INDEX__MILVUS_TOKEN に正しいトークン（ユーザー:パスワード または API キー）を設定してください"
        )
    if uri.endswith(".db"):
        return (
            f"Milvus Lite のファイルを開けません（{uri}: {text}）。"
            "別のプロセスが使用中でないか、書き込めるパスかを確かめてください"
        )
    return (
        f"Milvus（{uri}）に接続できません（{text}）。"
        "サーバーが起動しているか、RAG_INDEX__MILVUS_URI のホスト名とポートを確かめてください"
    )


def _ensure_loaded(client, name: str) -> None:
    """Load a collection into memory once per client: a reopened Lite file or a restarted server
    starts with collections released, and a search on a released one fails."""
    loaded = client.__dict__.setdefault("_rag_loaded", set())
    if name in loaded:
        return
    state = str(client.get_load_state(name).get("state", ""))
    if "Loaded" not in state:
        client.load_collection(name)
    loaded.add(name)


def _quote(value: str) -> str:
    # Milvus filter strings are double-quoted; escape what would end or escape them.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _in(field: str, values: Sequence[str]) -> str:
    return f"{field} in [{','.join(_quote(v) for v in values)}]"


def _term_key(term: str) -> str:
    # A token longer than the term column (an unbroken run of one script can be) is stored by its
    # hash, on the document side and the query side alike, so it still matches itself.
    if len(term) <= 1000:
        return term
    return "#" + hashlib.blake2b(term.encode(), digest_size=16).hexdigest()


def _split(text: str) -> list[str]:
    return [text[i : i + _PART_CHARS] for i in range(0, len(text), _PART_CHARS)] or [""]


# ---------------------------------------------------------------- the index


class MilvusIndex:
    """:class:`rag.index.SearchIndex` on Milvus.  Reads see one version; writes are staged until :meth:`commit`."""

    def __init__(self, client, prefix: str, manifest: Manifest, state: dict | None, dense_index: str = "FLAT", ef_search: int = 128):
        self.client = client
        self.prefix = prefix
        self.manifest = manifest
        # The live version as read: its name and BM25 statistics (None for a new, empty index).
        self._state = state
        self._dense_index = dense_index
        self._ef_search = ef_search
        self._splitter = get_splitter(manifest.tokenizer)
        self._df_cache: dict[str, tuple[int, int] | None] = {}
        # Pages of the chunks just fetched: the answerer reads them next, and one query for all
        # of them costs one round trip instead of one per page.
        self._pages_cache: OrderedDict[tuple[str, int], Page | None] = OrderedDict()
        self._cache_lock = threading.Lock()  # the app's sessions share one index
        self._staged: dict | None = None

    # -- naming

    @property
    def version(self) -> str:
        return self._state["name"] if self._state else ""

    @property
    def _meta(self) -> str:
        return f"{self.prefix}_meta"

    @property
    def _pages(self) -> str:
        return f"{self.prefix}_pages"

    def _chunks_name(self, dimension: int) -> str:
        return f"{self.prefix}_chunks_d{dimension}"

    @property
    def _chunks(self) -> str:
        return self._chunks_name(self.manifest.dimension)

    def _gen_pages(self, sources: Collection[str] | None = None) -> list[tuple[str, int]]:
        live = self.manifest.sources
        return [(live[s]["gen"], int(live[s]["pages"])) for s in live if not sources or s in sources]

    def _gens(self, sources: Collection[str] | None = None) -> list[str]:
        live = self.manifest.sources
        names = live if not sources else [s for s in sources if s in live]
        return [live[s]["gen"] for s in names]

    # -- construction

    @classmethod
    def open(cls, client, prefix: str, embedder: str | None = None, dimension: int | None = None, **options) -> MilvusIndex:
        """Open the live version; refuses one built with another embedder when ``embedder`` is given."""
        manifest, state = read_live(client, prefix)
        if embedder is not None and (manifest.embedder != embedder or (dimension and manifest.dimension != dimension)):
            raise IncompatibleEmbedder(manifest.embedder, manifest.dimension, embedder)
        index = cls(client, prefix, manifest, state, **options)
        try:
            for name in (index._chunks, index._pages):
                _ensure_loaded(client, name)
        except Exception as exc:
            raise IndexIncompatible(
                f"Milvus の索引 {prefix} のコレクションを読み込めません（{_explain(index._uri(), exc)}）。`rag ingest --rebuild` で作り直してください"
            ) from None
        return index

    @classmethod
    def empty(cls, client, prefix: str, manifest: Manifest, **options) -> MilvusIndex:
        """A new, empty index; committing it replaces whatever is live (the old rows go one commit later)."""
        try:
            _, state = read_live(client, prefix)
        except (IndexNotFound, IndexIncompatible):  # nothing usable to replace; unreachable still raises
            state = None
        index = cls(client, prefix, manifest, None, **options)
        index._staged = {"full": True, "drop": set(), "add": {}, "previous": state, "vocab": Vocabulary({})}
        return index

    def close(self) -> None:
        # The client is shared by every index of the process (Milvus Lite: one server per file).
        pass

    def __len__(self) -> int:
        return self.manifest.chunk_count

    # -- reading

    def _df(self, terms: set[str]) -> dict[str, tuple[int, int]]:
        """(term id, document frequency) of each term in the live corpus; unknown terms are left out."""
        missing = [t for t in terms if t not in self._df_cache]
        if missing and self._state:
            found = self._df_in(self._state["df_layers"], missing)
            if len(self._df_cache) > 100_000:
                self._df_cache.clear()
            for t in missing:
                self._df_cache[t] = found.get(t)
        return {t: v for t in terms if (v := self._df_cache.get(t)) is not None}

    def sparse_search(self, query: str, k: int, sources: Collection[str] | None = None) -> list[tuple[str, float]]:
        if not self._state or self._state["n"] == 0:
            return []
        tokens = [_term_key(t) for t in self._splitter(query)]
        stats = self._df(set(tokens))
        weights = query_weights(tokens, {t: df for t, (_, df) in stats.items()}, self._state["n"])
        gens = self._gens(sources)
        if not weights or not gens:
            return []
        vector = {stats[t][0]: w for t, w in weights.items()}
        hits = self._search(vector, "sparse", k, gens, {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}})
        return [(h["entity"]["chunk_id"], float(h["distance"])) for h in hits if h["distance"] > 0]

    def dense_search(self, vector: np.ndarray, k: int, sources: Collection[str] | None = None) -> list[tuple[str, float]]:
        gens = self._gens(sources)
        if not self._state or not gens:
            return []
        params: dict = {"metric_type": "IP", "params": {}}
        if self._dense_index == "HNSW":
            params["params"] = {"ef": max(self._ef_search, k)}
        elif self._dense_index.startswith("IVF"):
            params["params"] = {"nprobe": 32}
        query = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        hits = self._search(query, "dense", k, gens, params)
        return [(h["entity"]["chunk_id"], float(h["distance"])) for h in hits]

    def _search(self, data, field: str, k: int, gens: list[str], params: dict) -> list[dict]:
        try:
            result = self.client.search(
                self._chunks,
                data=[data],
                anns_field=field,
                limit=k,
                filter=_in("gen", gens),
                output_fields=["chunk_id"],
                search_params=params,
            )
        except Exception as exc:
            raise MilvusUnavailable(_explain(self._uri(), exc)) from None
        return list(result[0]) if result else []

    def _uri(self) -> str:
        return getattr(self.client, "_rag_uri", "Milvus")

    def _query(self, collection: str, expr: str, fields: list[str], key: str | None = None, hi: int = 0) -> list[dict]:
        """All rows matching ``expr``.  One query returns at most ``_WINDOW`` rows, so bulk reads are
        split on a numeric ``key`` over ``[0, hi)`` (term ids, pages), halving a range that fills up.
        Not pymilvus' query iterator: Milvus Lite lacks the timestamp call it starts with and logs
        an error for every bulk read."""
        try:
            if key is None:
                return self._window(collection, expr, fields)
            out: list[dict] = []
            ranges = [(lo, min(lo + _RANGE, hi)) for lo in range(0, max(hi, 1), _RANGE)]
            while ranges:
                lo, up = ranges.pop()
                rows = self._window(collection, f"({expr}) and {key} >= {lo} and {key} < {up}", fields, strict=False)
                if rows is None:  # full: split
                    mid = (lo + up) // 2
                    ranges += [(lo, mid), (mid, up)]
                else:
                    out.extend(rows)
            return out
        except IndexError_:
            raise
        except Exception as exc:
            raise MilvusUnavailable(_explain(self._uri(), exc)) from None

    def _window(self, collection: str, expr: str, fields: list[str], strict: bool = True) -> list[dict] | None:
        rows = self.client.query(collection, filter=expr, output_fields=fields, limit=_WINDOW)
        if len(rows) < _WINDOW:
            return list(rows)
        if strict:
            raise IndexIncompatible(f"Milvus の索引から一度に読む行が多すぎます（{collection}）。`rag ingest --rebuild` で作り直してください")
        return None

    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]:
        gens = self._gens()
        if not ids or not gens:
            return []
        rows = self._query(self._chunks, f'{_in("chunk_id", list(ids))} and {_in("gen", gens)}', _CHUNK_FIELDS)
        by_id = {r["chunk_id"]: _chunk(r) for r in rows}
        self._prefetch_pages({(c.source, c.page) for c in by_id.values()})
        return [by_id[i] for i in ids if i in by_id]

    def _prefetch_pages(self, wanted: set[tuple[str, int]]) -> None:
        live = self.manifest.sources
        with self._cache_lock:
            missing = sorted(k for k in wanted if k not in self._pages_cache and k[0] in live)
        if not missing:
            return
        gens = {live[s]["gen"]: s for s, _ in missing}
        pages = sorted({p for _, p in missing})
        rows = self._query(self._pages, f'{_in("gen", list(gens))} and page in [{",".join(map(str, pages))}]', ["gen", "page", "part", "payload"])
        parts: dict[tuple[str, int], list[dict]] = {}
        for r in rows:
            parts.setdefault((gens[r["gen"]], int(r["page"])), []).append(r)
        for key in missing:
            self._remember(key, _page_from(parts[key]) if key in parts else None)

    def _remember(self, key: tuple[str, int], page: Page | None) -> None:
        with self._cache_lock:
            self._pages_cache[key] = page
            self._pages_cache.move_to_end(key)
            while len(self._pages_cache) > _PAGES_KEPT:
                self._pages_cache.popitem(last=False)

    def get_page(self, source: str, page: int) -> Page | None:
        key = (source, int(page))
        with self._cache_lock:
            if key in self._pages_cache:
                self._pages_cache.move_to_end(key)
                return self._pages_cache[key]
        info = self.manifest.sources.get(source)
        if info is None:
            return None
        rows = self._query(self._pages, f'gen == {_quote(info["gen"])} and page == {int(page)}', ["part", "payload"])
        found = _page_from(rows) if rows else None
        self._remember(key, found)
        return found

    def iter_chunks(self, sources: Collection[str] | None = None) -> Iterator[Chunk]:
        """Every chunk, by source, page and position (scheme extraction, baselines)."""
        gens = self._gens(sources)
        if not gens:
            return
        rows = []
        for gen, pages in self._gen_pages(sources):
            rows += self._query(self._chunks, f"gen == {_quote(gen)}", _CHUNK_FIELDS, key="page", hi=pages + 1)
        yield from sorted((_chunk(r) for r in rows), key=lambda c: (c.source, c.page, c.start))

    def iter_pages(self, sources: Collection[str] | None = None) -> Iterator[Page]:
        names = sorted(s for s in self.manifest.sources if not sources or s in sources)
        for source in names:
            for page in range(1, int(self.manifest.sources[source]["pages"]) + 1):
                found = self.get_page(source, page)
                if found is not None:
                    yield found

    # -- writing (staged; see the module docstring for the commit protocol)

    def _stage(self) -> dict:
        if self._staged is None:
            self._staged = {"full": False, "drop": set(), "add": {}, "previous": self._state, "vocab": Vocabulary({})}
        return self._staged

    def add_source(self, info: SourceInfo, pages: Sequence[Page], chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(chunks), self.manifest.dimension)
        stage = self._stage()
        # Tokenised here, once, into compact counts over the stage's own vocabulary (a Counter per
        # chunk would hold gigabytes at 10^5 chunks); the commit maps them to Milvus' term ids.
        terms = stage["vocab"].encode([_term_key(t) for t in self._splitter(indexable_text(c))] for c in chunks)
        stage["add"][info.source] = (info, list(pages), list(chunks), vectors, terms)

    def delete_source(self, source: str) -> None:
        stage = self._stage()
        stage["add"].pop(source, None)
        stage["drop"].add(source)

    def commit(self) -> None:
        """Write the staged sources as new generations, then switch the pointer (last)."""
        if self._staged is None:
            return
        stage, self._staged = self._staged, None
        self._ensure_collections()
        seq = time.time_ns()
        name = f"v{seq}"
        previous = stage["previous"]
        full = stage["full"] or previous is None
        sources = {} if full else {s: dict(v) for s, v in self.manifest.sources.items()}
        if full:
            n, total, avgdl, layers = 0, 0, None, []
            next_tid = (previous or {}).get("next_tid", 0)
        else:
            n, total, avgdl, layers = previous["n"], previous["total"], previous["avgdl"], previous["df_layers"]
            next_tid = previous["next_tid"]
        # The change in document frequency: minus what each removed or replaced generation added…
        change: Counter[str] = Counter()
        for source in sorted(stage["drop"] | set(stage["add"])):
            if source in sources:
                old = sources.pop(source)
                parts = self._query(self._meta, f'kind == "srcdf" and name == {_quote(old["gen"])}', ["tid", "payload"])
                change.subtract(json.loads("".join(r["payload"] for r in sorted(parts, key=lambda r: r["tid"])) or "{}"))
                n -= old["chunks"]
                total -= old["tokens"]
        # …plus what each added source brings (its chunks were tokenised by add_source).
        words = list(stage["vocab"].ids)  # the stage's term ids are 0, 1, … in insertion order
        staged = []
        for i, source in enumerate(sorted(stage["add"])):
            info, pages, chunks, vectors, terms = stage["add"][source]
            local_df = np.bincount(terms.ids, minlength=len(words))
            contribution = {words[t]: int(local_df[t]) for t in np.flatnonzero(local_df)}
            change.update(contribution)
            lengths = terms.lengths()
            gen = f"{name}_{i}"
            sources[source] = {
                "sha256": info.sha256,
                "title": info.title,
                "pages": info.pages,
                "chunks": len(chunks),
                "problems": list(info.problems),
                "gen": gen,
                "tokens": int(lengths.sum()),
            }
            n += len(chunks)
            total += int(lengths.sum())
            staged.append((gen, pages, chunks, vectors, terms, lengths, contribution))
        # New values for the touched terms only.  Term ids are never reused: rows of the replaced
        # version, still readable one commit longer, keep theirs.
        current = {} if full else self._df_in(layers, list(change))
        layer: dict[str, tuple[int, int]] = {}
        for term, delta in change.items():
            tid, count = current.get(term, (None, 0))
            if tid is None:
                tid, next_tid = next_tid, next_tid + 1
            layer[term] = (tid, count + delta)
        live_avgdl = total / n if n else 1.0
        if avgdl is None:
            avgdl = live_avgdl
        local_tid = np.array([layer[w][0] if w in layer else -1 for w in words], dtype=np.int64)
        for gen, pages, chunks, vectors, terms, lengths, contribution in staged:
            self._write_source(gen, pages, chunks, vectors, terms, lengths, avgdl, local_tid)
            # Read back only whole, when the source is removed or replaced: JSON parts, not a row per term.
            payload = json.dumps(contribution, ensure_ascii=False)
            self._insert(self._meta, [
                _meta_row(f"srcdf/{gen}/{p}", "srcdf", gen, tid=p, payload=part) for p, part in enumerate(_split(payload))
            ])
        if len(layers) + 1 > _DF_LAYERS:
            # Fold the layers into one snapshot now and then, so readers look in a few layers only.
            merged = self._df_in(layers, None, next_tid)
            merged.update(layer)
            layer = {t: v for t, v in merged.items() if v[1] > 0}
            layers = []
        layers = [*layers, name]
        self._insert(self._meta, [
            _meta_row(f"df/{name}/{tid}", "df", name, term=term, tid=tid, value=count) for term, (tid, count) in layer.items()
        ])
        manifest = Manifest(
            embedder=self.manifest.embedder,
            dimension=self.manifest.dimension,
            tokenizer=self.manifest.tokenizer,
            chunking=self.manifest.chunking,
            dense_index=self._dense_index.lower(),
            built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            sources=dict(sorted(sources.items())),
        )
        state = {"name": name, "n": n, "total": total, "avgdl": avgdl, "live_avgdl": live_avgdl, "next_tid": next_tid,
                 "df_layers": layers}
        payload = json.dumps({"manifest": asdict(manifest), "bm25": state}, ensure_ascii=False)
        self._insert(self._meta, [
            _meta_row(f"manifest/{name}/{p}", "manifest", name, tid=p, payload=part) for p, part in enumerate(_split(payload))
        ])
        # The switch: one row.  Until it exists, readers see the previous version only.
        self._insert(self._meta, [_meta_row(f"pointer/{seq:020d}", "pointer", name, value=seq)])
        self.manifest, self._state, self._df_cache = manifest, state, {}
        with self._cache_lock:
            self._pages_cache.clear()
        try:
            self._remove_old(keep_names={name} | ({previous["name"]} if previous else set()))
        except MilvusUnavailable as exc:
            # The new version is live; what is left over is invisible and the next commit removes it.
            log.warning("古い版の削除に失敗しました（次の取り込みで削除します）: %s", exc)

    def _write_source(self, gen, pages, chunks, vectors, terms, lengths, avgdl, local_tid) -> None:
        weights = doc_weights(terms.counts, lengths, terms.pairs, avgdl)
        tids = local_tid[terms.ids]
        ends = np.cumsum(terms.pairs)
        for lo in range(0, len(chunks), _BATCH):  # rows made a batch at a time: sparse dicts are large
            rows = []
            for i in range(lo, min(lo + _BATCH, len(chunks))):
                chunk, a, b = chunks[i], ends[i] - terms.pairs[i], ends[i]
                rows.append({
                    "pk": f"{gen}/{chunk.id}",
                    "chunk_id": chunk.id,
                    "gen": gen,
                    "source": chunk.source,
                    "page": chunk.page,
                    "heading": chunk.heading,
                    "text": chunk.text,
                    "start": chunk.start,
                    "end_": chunk.end,
                    "section": json.dumps(list(chunk.section), ensure_ascii=False),
                    "dense": vectors[i].tolist(),
                    "sparse": dict(zip(tids[a:b].tolist(), weights[a:b].tolist())),
                })
            self._insert(self._chunks, rows)
        page_rows = []
        for page in pages:
            payload = json.dumps({**asdict(page), "section": list(page.section)}, ensure_ascii=False)
            for p, part in enumerate(_split(payload)):
                page_rows.append({"pk": f"{gen}/{page.page}/{p}", "gen": gen, "page": page.page, "part": p, "payload": part, "vec": [0.0, 0.0]})
        self._insert(self._pages, page_rows)

    def _df_in(self, layers: list[str], terms: list[str] | None, next_tid: int = 0) -> dict[str, tuple[int, int]]:
        """(term id, document frequency) per term as the ``layers`` give it: the newest layer holding a
        term wins, and a 0 there means the term is gone.  ``terms=None``: every term (ids below ``next_tid``)."""
        if not layers:
            return {}
        rank = {name: i for i, name in enumerate(layers)}
        where = f'kind == "df" and {_in("name", layers)}'
        if terms is None:
            rows = self._query(self._meta, where, ["name", "term", "tid", "value"], key="tid", hi=next_tid)
        else:
            rows = []
            # Few enough terms a query that their rows (one per term and layer) fit one window.
            step = min(1_000, _WINDOW // (_DF_LAYERS + 1))
            for i in range(0, len(terms), step):
                rows += self._query(self._meta, f"{where} and {_in('term', terms[i : i + step])}", ["name", "term", "tid", "value"])
        newest: dict[str, tuple[int, int, int]] = {}
        for r in rows:
            at = rank[r["name"]]
            if r["term"] not in newest or newest[r["term"]][0] < at:
                newest[r["term"]] = (at, int(r["tid"]), int(r["value"]))
        return {term: (tid, count) for term, (_, tid, count) in newest.items() if count > 0}

    def _insert(self, collection: str, rows: list[dict]) -> None:
        try:
            for i in range(0, len(rows), _BATCH):
                self.client.insert(collection, rows[i : i + _BATCH])
        except Exception as exc:
            raise MilvusUnavailable(_explain(self._uri(), exc)) from None

    def _remove_old(self, keep_names: set[str]) -> None:
        """Drop rows no kept manifest refers to: replaced generations and what a killed commit left."""
        keep_gens: set[str] = set()
        keep_layers: set[str] = set()
        for name in keep_names:
            try:
                manifest, state = _read_manifest(self.client, self.prefix, name)
            except IndexError_:
                continue
            keep_gens |= {s["gen"] for s in manifest.sources.values()}
            keep_layers |= set(state["df_layers"])
        try:
            self.client.delete(self._chunks, filter=f'not {_in("gen", sorted(keep_gens))}' if keep_gens else "pk != ''")
            self.client.delete(self._pages, filter=f'not {_in("gen", sorted(keep_gens))}' if keep_gens else "pk != ''")
            self.client.delete(self._meta, filter=f'kind == "srcdf" and not {_in("name", sorted(keep_gens))}')
            self.client.delete(self._meta, filter=f'kind == "df" and not {_in("name", sorted(keep_layers))}')
            self.client.delete(self._meta, filter=f'kind == "manifest" and not {_in("name", sorted(keep_names))}')
            pointers = sorted(r["pk"] for r in self._query(self._meta, 'kind == "pointer"', ["pk"]))
            if len(pointers) > _KEEP_POINTERS:
                self.client.delete(self._meta, ids=pointers[:-_KEEP_POINTERS])
            for name in self.client.list_collections():
                # A rebuild with another embedder left the old dimension's chunks behind.
                if name.startswith(f"{self.prefix}_chunks_d") and name != self._chunks:
                    dims = {m.dimension for m in self._kept_manifests(keep_names)}
                    if name not in {self._chunks_name(d) for d in dims}:
                        self.client.drop_collection(name)
        except Exception as exc:
            raise MilvusUnavailable(_explain(self._uri(), exc)) from None

    def _kept_manifests(self, names: set[str]) -> list[Manifest]:
        out = []
        for name in names:
            try:
                out.append(_read_manifest(self.client, self.prefix, name)[0])
            except IndexError_:
                pass
        return out

    def _ensure_collections(self) -> None:
        from pymilvus import DataType, MilvusClient

        existing = set(self.client.list_collections())
        specs = {
            self._chunks: [
                ("pk", DataType.VARCHAR, {"max_length": 160, "is_primary": True}),
                ("chunk_id", DataType.VARCHAR, {"max_length": 64}),
                ("gen", DataType.VARCHAR, {"max_length": 64}),
                ("source", DataType.VARCHAR, {"max_length": 2048}),
                ("page", DataType.INT64, {}),
                ("heading", DataType.VARCHAR, {"max_length": _VARCHAR}),
                ("text", DataType.VARCHAR, {"max_length": _VARCHAR}),
                ("start", DataType.INT64, {}),
                ("end_", DataType.INT64, {}),
                ("section", DataType.VARCHAR, {"max_length": _VARCHAR}),
                ("dense", DataType.FLOAT_VECTOR, {"dim": self.manifest.dimension}),
                ("sparse", DataType.SPARSE_FLOAT_VECTOR, {}),
            ],
            self._pages: [
                ("pk", DataType.VARCHAR, {"max_length": 160, "is_primary": True}),
                ("gen", DataType.VARCHAR, {"max_length": 64}),
                ("page", DataType.INT64, {}),
                ("part", DataType.INT64, {}),
                ("payload", DataType.VARCHAR, {"max_length": _VARCHAR}),
                # Milvus wants a vector field in every collection; this one is never searched.
                ("vec", DataType.FLOAT_VECTOR, {"dim": 2}),
            ],
            self._meta: [
                ("pk", DataType.VARCHAR, {"max_length": 200, "is_primary": True}),
                ("kind", DataType.VARCHAR, {"max_length": 16}),
                ("name", DataType.VARCHAR, {"max_length": 64}),
                ("term", DataType.VARCHAR, {"max_length": 4096}),
                ("tid", DataType.INT64, {}),
                ("value", DataType.INT64, {}),
                ("payload", DataType.VARCHAR, {"max_length": _VARCHAR}),
                ("vec", DataType.FLOAT_VECTOR, {"dim": 2}),
            ],
        }
        for name, fields in specs.items():
            if name in existing:
                continue
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            for field_name, dtype, kwargs in fields:
                schema.add_field(field_name, dtype, **kwargs)
            index = self.client.prepare_index_params()
            if name == self._chunks:
                index.add_index("dense", index_type=self._dense_index, metric_type="IP", params=_dense_build_params(self._dense_index))
                # drop_ratio 0: keep every term, so scores equal bm25s's exactly.
                index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP", params={"drop_ratio_build": 0.0})
            else:
                index.add_index("vec", index_type="FLAT", metric_type="L2")
            try:
                self.client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
            except Exception as exc:
                raise MilvusUnavailable(_explain(self._uri(), exc)) from None


def _dense_build_params(kind: str) -> dict:
    if kind == "HNSW":
        return {"M": 32, "efConstruction": 80}
    if kind == "IVF_FLAT":
        return {"nlist": 1024}
    if kind == "IVF_PQ":
        return {"nlist": 1024, "m": 32, "nbits": 8}
    return {}


def _meta_row(pk: str, kind: str, name: str, *, term: str = "", tid: int = 0, value: int = 0, payload: str = "") -> dict:
    return {"pk": pk, "kind": kind, "name": name, "term": term, "tid": tid, "value": value, "payload": payload, "vec": [0.0, 0.0]}


def _page_from(rows: list[dict]) -> Page:
    data = json.loads("".join(r["payload"] for r in sorted(rows, key=lambda r: r["part"])))
    return Page(**{**data, "section": tuple(data["section"])})


_CHUNK_FIELDS = ["chunk_id", "source", "page", "heading", "text", "start", "end_", "section"]


def _chunk(row: dict) -> Chunk:
    return Chunk(
        row["chunk_id"], row["source"], int(row["page"]), row["heading"], row["text"], int(row["start"]), int(row["end_"]),
        section=tuple(json.loads(row["section"])),
    )


# ---------------------------------------------------------------- the live version


def read_live(client, prefix: str) -> tuple[Manifest, dict]:
    """The manifest the newest pointer names, and its BM25 statistics."""
    meta = f"{prefix}_meta"
    try:
        if not client.has_collection(meta):
            raise IndexNotFound(f"Milvus に索引がありません（コレクション {meta}）。`rag ingest` で作成してください")
        _ensure_loaded(client, meta)
        pointers = client.query(meta, filter='kind == "pointer"', output_fields=["name", "value"], limit=1000)
    except IndexError_:
        raise
    except Exception as exc:
        raise MilvusUnavailable(_explain(getattr(client, "_rag_uri", "Milvus"), exc)) from None
    if not pointers:
        raise IndexNotFound(f"Milvus に索引がありません（{prefix}）。`rag ingest` で作成してください")
    newest = max(pointers, key=lambda r: int(r["value"]))
    return _read_manifest(client, prefix, newest["name"])


def live_name(client, prefix: str) -> str | None:
    """The name of the live version, or None when there is none (cheap: one small query)."""
    try:
        return read_live(client, prefix)[1]["name"]
    except IndexNotFound:
        return None


def _read_manifest(client, prefix: str, name: str) -> tuple[Manifest, dict]:
    try:
        rows = client.query(
            f"{prefix}_meta", filter=f'kind == "manifest" and name == {_quote(name)}', output_fields=["tid", "payload"], limit=16_000
        )
    except Exception as exc:
        raise MilvusUnavailable(_explain(getattr(client, "_rag_uri", "Milvus"), exc)) from None
    if not rows:
        raise IndexIncompatible(f"Milvus の索引 {prefix} の manifest {name} がありません。`rag ingest --rebuild` で作り直してください")
    try:
        data = json.loads("".join(r["payload"] for r in sorted(rows, key=lambda r: r["tid"])))
        known = set(Manifest.__dataclass_fields__)
        manifest = Manifest(**{k: v for k, v in data["manifest"].items() if k in known})
        state = data["bm25"]
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexIncompatible(f"Milvus の索引 {prefix} の manifest を読めません（{exc}）。`rag ingest --rebuild` で作り直してください") from None
    if manifest.format_version != FORMAT_VERSION:
        raise IndexIncompatible(
            f"Milvus の索引 {prefix} の形式が古いか新しすぎます（形式 {manifest.format_version}、このバージョンは {FORMAT_VERSION}）。"
            "`rag ingest --rebuild` で作り直してください"
        )
    return manifest, state
