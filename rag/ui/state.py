"""What every page shares: settings, the cached pipeline, index builds, messages between reruns.

The pipeline is loaded once per index version and shared by all sessions
(``st.cache_resource``).  The cache key includes the content of
``<index_dir>/CURRENT``, which :mod:`rag.index` replaces atomically on every
commit, so an upload or a re-index (in this app or from the CLI) is picked up
on the next rerun without restarting the server.

Loading runs in a background thread: the first page (and its chat box) is on
screen at once while the index and the embedding model load, and a question
asked meanwhile simply waits for them.  Only the manifest (a small JSON file)
is read on the page's own thread.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from rag.access import AccessPolicy
from rag.config import Settings, load_settings
from rag.index import IndexError_, IndexIncompatible, IndexNotFound, Manifest
from rag.index.backend import live_version, read_live_manifest

if TYPE_CHECKING:  # the heavy modules load in the background thread, not on import
    from rag.ingest import IngestReport, Progress
    from rag.pipeline import Pipeline

log = logging.getLogger(__name__)

APP_NAME = "政策文書アシスタント"

# Page scripts, relative to app.py (st.Page and st.switch_page take these paths).
PAGE_CHAT = "rag/ui/chat.py"
PAGE_DOCUMENTS = "rag/ui/documents.py"
PAGE_SCHEMES = "rag/ui/schemes.py"
PAGE_EVALUATION = "rag/ui/evaluation.py"

# Session-state keys.
K_SETTINGS = "rag.settings"
K_MESSAGES = "chat.messages"
K_PENDING = "chat.pending_question"
K_NEXT_ID = "chat.next_id"
K_FLASH = "ui.flash"
K_BUILD_TRIED = "ui.first_build_tried"
K_SIGNED_IN = "auth.key"  # the key's record (name, collections), never the key itself

# Widget keys whose values must survive a visit to another page (Streamlit
# forgets a widget's state when a run does not draw it).
W_SOURCES = "search.sources"
W_MODE = "search.mode"
W_K = "search.k"
PERSISTENT_WIDGETS = (W_SOURCES, W_MODE, W_K)

# Asked once after loading so the embedding model and the tokenizer are ready
# before the first real question (they load lazily, ~2 s).
WARMUP_QUESTION = "計画の目標"


# ------------------------------------------------------------------ settings


def settings() -> Settings:
    """Settings for this browser session, read once from the environment (``RAG_*``)."""
    if K_SETTINGS not in st.session_state:
        st.session_state[K_SETTINGS] = _read_settings()
    return st.session_state[K_SETTINGS]


def _read_settings() -> Settings:
    # The app's edge: the same reading of the environment as the CLI (RAG_*, RAG_CONFIG, OPENAI_*).
    return load_settings(environ=os.environ)


def keep_widget_state() -> None:
    """Stop Streamlit from discarding the chat options while another page is shown."""
    for key in PERSISTENT_WIDGETS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


# ------------------------------------------------------------------ pipeline


def index_version(s: Settings) -> str | None:
    """The live index version (local: content of CURRENT; Milvus: the newest pointer), or None when there is no index yet."""
    try:
        return live_version(s)
    except IndexError_:  # Milvus unreachable: shown where the pipeline is needed
        return None


_LOADER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rag-load")
_EMBEDDER_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _embedder_for(key: str):
    from rag.config import EmbedderSettings
    from rag.embeddings import load_embedder

    return load_embedder(EmbedderSettings.model_validate_json(key))


def embedder(s: Settings):
    """The embedding model, loaded once per process and shared by searches and re-indexing."""
    with _EMBEDDER_LOCK:  # two sessions must not load a large model twice at the same time
        return _embedder_for(s.embedder.model_dump_json())


def _load(s: Settings) -> Pipeline:
    from rag.pipeline import Pipeline

    p = Pipeline.load(s, embedder=embedder(s))
    try:
        p.ask(WARMUP_QUESTION, k=1, use_llm=False)
    except Exception:  # a failed warm-up only means the first question is slower
        log.warning("warm-up question failed", exc_info=True)
    return p


# A handful of versions: an old one stays only until no session asks for it.
@st.cache_resource(show_spinner=False, max_entries=4)
def _pipeline_future(index_dir: str, version: str, settings_key: str, _s: Settings) -> Future:
    return _LOADER.submit(_load, _s)


def _future(s: Settings) -> Future:
    version = index_version(s)
    if version is None:
        raise IndexNotFound(f"索引がありません（{s.index_dir}）")
    return _pipeline_future(str(Path(s.index_dir).resolve()), version, s.model_dump_json(), s)


def start_loading() -> None:
    """Begin loading the live index in the background (no-op when loaded or loading)."""
    try:
        _future(settings())
    except IndexError_:
        pass


def pipeline() -> Pipeline:
    """The pipeline for the live index, waiting for it if it is still loading.

    Raises IndexNotFound / IndexIncompatible.
    """
    future = _future(settings())
    if not future.done():
        with st.spinner("索引と言語モデルを準備しています…"):
            future.result()
    if future.exception() is not None and not isinstance(future.exception(), IndexError_):
        _pipeline_future.clear()  # a passing failure (I/O, memory) must not stick to this version
    return future.result()


def current_pipeline() -> Pipeline | None:
    """The pipeline, or None when there is no usable index (empty corpus)."""
    try:
        return pipeline()
    except IndexError_:
        return None


@st.cache_resource(show_spinner=False, max_entries=8)
def _manifest(index_dir: str, version: str, _s: Settings) -> Manifest:
    return read_live_manifest(_s)


def manifest() -> Manifest | None:
    """What the live index holds that this user may see (documents, pages, chunks), without waiting for the pipeline."""
    s = settings()
    version = index_version(s)
    if version is None:
        return None
    try:
        m = _manifest(str(Path(s.index_dir).resolve()), version, s)
    except IndexError_:
        return None
    allowed = policy()
    if allowed.collections is None:
        return m
    return dataclasses.replace(m, sources={k: v for k, v in m.sources.items() if allowed.allows(k)})


# ------------------------------------------------------------------ sign-in


def policy() -> AccessPolicy:
    """The documents this session may see: all without sign-in, else its key's collections (none before signing in)."""
    if not settings().app.sign_in:
        return AccessPolicy.everything()
    from rag.api.keys import KeyStore

    key = st.session_state.get(K_SIGNED_IN)
    # Read the record again on every run: a key revoked (or narrowed) meanwhile takes effect at once.
    current = KeyStore(settings().api.keys_db).by_name(key.name) if key is not None else None
    if current is None:
        st.session_state.pop(K_SIGNED_IN, None)
        return AccessPolicy(frozenset())
    return current.policy


def signed_in() -> bool:
    if not settings().app.sign_in:
        return True
    policy()  # drops a session whose key was revoked
    return st.session_state.get(K_SIGNED_IN) is not None


def sign_in_form() -> None:
    """The same keys as the API (`rag keys add`): a revoked or unknown key is refused."""
    from rag.api.keys import KeyStore

    st.title(APP_NAME)
    st.info("この画面を使うにはサインインが必要です。管理者から受け取った API キーを入力してください。", icon=":material/lock:")
    with st.form("sign-in"):
        key = st.text_input("API キー", type="password", key="auth.input")
        submitted = st.form_submit_button("サインイン", type="primary")
    if submitted:
        record = KeyStore(settings().api.keys_db).check(key.strip())
        st.session_state.pop("auth.input", None)
        if record is None:
            st.error("キーが正しくないか、無効にされています。管理者に確認してください。")
            return
        st.session_state[K_SIGNED_IN] = record
        st.rerun()


def sign_out() -> None:
    for k in (K_SIGNED_IN, K_MESSAGES, W_SOURCES):
        st.session_state.pop(k, None)


def finish_loading() -> None:
    """At the end of a run: wait for a background load so its failure can be shown (by a rerun)."""
    try:
        future = _future(settings())
    except IndexError_:
        return
    try:
        future.result()
    except IndexIncompatible:
        st.rerun()  # ensure_pipeline shows the explanation and the rebuild button
    except Exception:
        log.exception("loading the index failed")
        _pipeline_future.clear()


def ensure_pipeline() -> None:
    """Make sure there is a usable index, building it on first start with visible progress.

    Starts the pipeline loading in the background and returns at once.  When
    the corpus has nothing indexable yet, returns too (pages then invite the
    user to add documents).  An incompatible index stops the run with an
    explanation and a rebuild button.
    """
    s = settings()
    try:
        future = _future(s)
    except IndexNotFound:
        pass
    else:
        error = future.exception() if future.done() else None
        if error is None:
            return
        if isinstance(error, IndexIncompatible):
            _incompatible(error)
        if not isinstance(error, IndexNotFound):
            _pipeline_future.clear()
            st.error(f"索引を読み込めませんでした（{type(error).__name__}: {error}）。ページを再読み込みしてください。")
            st.stop()
    _first_build(s)


def _first_build(s: Settings) -> None:
    from rag.loaders import iter_corpus

    corpus = Path(s.corpus_dir)
    if st.session_state.get(K_BUILD_TRIED) or not corpus.is_dir() or not any(iter_corpus(corpus, s.ignore_names)):
        # Nothing to index (or it all failed once already this session): the
        # pages ask for documents instead of retrying on every rerun.
        return
    st.session_state[K_BUILD_TRIED] = True
    st.title(APP_NAME)
    st.info("初回の起動です。文書フォルダの資料を読み込んで索引を作成します。数十秒ほどお待ちください。")
    try:
        report = run_ingest(s, label="索引を作成しています")
    except FileNotFoundError as exc:
        st.error(f"{exc}。設定（RAG_CORPUS_DIR）を確認してください。")
        st.stop()
    except IndexError_ as exc:
        st.warning(f"{exc}")
        st.button("もう一度読み込む", on_click=lambda: None)
        st.stop()
    for level, text in describe_report(report):
        flash(level, text)
    if index_version(s) is not None:
        start_loading()
        st.rerun()  # draw the real page from the top now that the index exists


def _incompatible(exc: Exception) -> None:
    st.title(APP_NAME)
    st.error(
        "現在の設定ではこの索引を使えません。\n\n"
        f"{exc}\n\n"
        "索引を作り直すと、文書フォルダの資料を現在の設定で読み込み直します（文書の数によって数十秒〜数分かかります）。"
        "作り直しが終わるまで、この画面は使えません。"
    )
    if st.button("索引を作り直す", type="primary", icon=":material/build:"):
        try:
            report = run_ingest(settings(), rebuild=True, label="索引を作り直しています")
        except (FileNotFoundError, IndexError_) as err:
            st.error(str(err))
            st.stop()
        for level, text in describe_report(report):
            flash(level, text)
        st.rerun()
    st.stop()


# ------------------------------------------------------------------ indexing

_STAGES = {"load": "読み込み", "ocr": "文字認識（OCR）", "embed": "ベクトル化", "write": "保存"}


def run_ingest(s: Settings, *, rebuild: bool = False, label: str = "索引を更新しています", container=None) -> IngestReport:
    """``rag.ingest.ingest`` with a progress bar; only new or changed files are processed."""
    where = container if container is not None else st
    bar = where.progress(0.0, text=f"{label}…")

    def on_progress(ev: Progress) -> None:
        if ev.stage == "write" or not ev.total:
            bar.progress(1.0, text=f"{label}: 索引を保存しています…")
            return
        step = ev.done + (0.5 if ev.stage == "embed" else 0.0)
        bar.progress(
            min(step / ev.total, 0.99),
            text=f"{label}: {_STAGES.get(ev.stage, ev.stage)}中 {ev.source}（{ev.done + 1}/{ev.total}）",
        )

    from rag.ingest import ingest

    try:
        return ingest(s, rebuild=rebuild, progress=on_progress, embedder=embedder(s))
    finally:
        bar.empty()


def describe_report(report: IngestReport) -> list[tuple[str, str]]:
    """(level, Japanese message) lines for an ingest report; level is success/info/warning/error."""
    out: list[tuple[str, str]] = []
    if report.rebuilt_because:
        out.append(("info", f"索引を作り直しました（{report.rebuilt_because}）。"))
    labels = {"added": "追加", "updated": "更新", "removed": "削除"}
    changed = [f"{label} {n}件" for status, label in labels.items() if (n := report.count(status))]
    if changed:
        out.append(("success", f"索引を更新しました（{'・'.join(changed)}）。"))
    elif not report.failed and not report.reason:
        out.append(("info", "変更はありません。索引は最新です。"))
    for f in report.failed:
        out.append(("error", f"索引に追加できませんでした: {f.error}"))
    for f in report.files:
        if f.status in ("added", "updated") and f.problems:
            out.append(("warning", f"{f.source}: 一部のページを読み取れませんでした（{len(f.problems)}件）。文書の管理ページで確認できます。"))
    return out


# ------------------------------------------------------------------ messages across reruns


def flash(level: str, text: str) -> None:
    """Queue a message to show after the next rerun (st.rerun would drop it otherwise)."""
    st.session_state.setdefault(K_FLASH, []).append((level, text))


def show_flashes(container=None) -> None:
    where = container if container is not None else st
    for level, text in st.session_state.pop(K_FLASH, []):
        getattr(where, level if level in ("success", "info", "warning", "error") else "info")(text)


# ------------------------------------------------------------------ display helpers


def source_labels(m: Manifest | None) -> dict[str, str]:
    """Document titles for display; the file name is added where two documents share a title."""
    titles = {name: info.get("title") or name for name, info in (m.sources if m else {}).items()}
    seen: dict[str, int] = {}
    for t in titles.values():
        seen[t] = seen.get(t, 0) + 1
    return {src: (f"{t}（{src}）" if seen[t] > 1 else t) for src, t in titles.items()}


def format_built_at(value: str) -> str:
    try:
        when = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").astimezone()
    except (TypeError, ValueError):
        return value or "—"
    return when.strftime("%Y/%m/%d %H:%M")


@dataclass(frozen=True)
class IndexStatus:
    documents: int
    pages: int
    chunks: int
    embedder: str
    built_at: str


def index_status(m: Manifest) -> IndexStatus:
    return IndexStatus(len(m.sources), m.page_count, m.chunk_count, m.embedder, format_built_at(m.built_at))


def pdf_path(s: Settings, source: str) -> Path | None:
    """The file behind a source name, only if it lies inside the corpus folder."""
    corpus = Path(s.corpus_dir).resolve()
    path = (corpus / source).resolve()
    if corpus not in path.parents or not path.is_file():
        return None
    return path


@st.cache_data(show_spinner=False, max_entries=64)
def page_png(path: str, mtime_ns: int, page: int, marks: tuple[tuple[float, float, float, float], ...] = ()) -> bytes:
    """A rendered page, cached per file version (path + mtime), page and highlighted boxes."""
    from rag.render import render_page_png

    return render_page_png(Path(path), page, marks=marks)


def read_file_bytes(path: Path):
    """A zero-argument reader for st.download_button: the PDF is read only when the user clicks."""
    return lambda: path.read_bytes()


@st.cache_resource(show_spinner="制度の一覧を作成しています…", max_entries=4)
def _schemes(index_dir: str, version: str, _p: Pipeline) -> list:
    from rag.schemes import schemes_for_index

    return schemes_for_index(_p.index)


def schemes(p: Pipeline) -> list:
    """Schemes found in the documents this user may see, computed once per index version and policy."""
    # Keyed by the version this pipeline holds, not a fresh read of CURRENT, which may already be newer.
    index_dir = str(Path(p.settings.index_dir).resolve())
    allowed = policy()
    if allowed.collections is None:
        return _schemes(index_dir, p.index.version, p)
    return _visible_schemes(index_dir, p.index.version, tuple(allowed.visible(sorted(p.index.manifest.sources))), p)


@st.cache_resource(show_spinner="制度の一覧を作成しています…", max_entries=8)
def _visible_schemes(index_dir: str, version: str, sources: tuple[str, ...], _p: Pipeline) -> list:
    from rag.schemes import extract_schemes

    # An empty filter means "every page" to the index: ask it only for a non-empty one.
    return extract_schemes(_p.index.iter_pages(sources=sources)) if sources else []
