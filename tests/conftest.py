from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# A model that is not on disk must fail at once, never try the network for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(Path(__file__).parent))

from rag.config import Settings  # noqa: E402


@pytest.fixture(scope="session")
def default_settings(tmp_path_factory) -> Settings:
    """The shipped corpus indexed once into a temporary folder, with default settings."""
    from rag.ingest import ingest

    index_dir = tmp_path_factory.mktemp("index") / "default"
    settings = Settings(corpus_dir=ROOT / "corpus", index_dir=index_dir)
    report = ingest(settings)
    assert not report.failed, report.failed
    return settings


@pytest.fixture(scope="session")
def embedder():
    from rag.embeddings import load_embedder
    from rag.config import EmbedderSettings

    return load_embedder(EmbedderSettings())


@pytest.fixture(scope="session")
def pipeline(default_settings, embedder):
    from rag.pipeline import Pipeline

    return Pipeline.load(default_settings, embedder=embedder)


@pytest.fixture(scope="session")
def lodo_cases(tmp_path_factory):
    """Every development question retrieved and scored once, shared by the held-out gates (answers, cards).

    The development PDFs live in ../shared (they belong to their publishers and are never
    committed); without them every gate that needs them is skipped with the reason.
    """
    from rag.lodo import collect, load_devsets

    missing = [p for p in (SHARED / "devpdfs", SHARED / "realpdfs") if not p.is_dir()]
    if missing:
        pytest.skip(f"development PDFs not present: {', '.join(map(str, missing))}")
    devsets, notes = load_devsets()
    assert not notes, notes
    return devsets, collect(Settings(), devsets, tmp_path_factory.mktemp("lodo"))


@pytest.fixture
def tokenised(monkeypatch) -> list[str]:
    """Every text an index tokenises from now on, recorded on its way through the real splitter."""
    import rag.index.local
    import rag.index.milvus

    seen: list[str] = []
    real = rag.index.local.get_splitter

    def get_splitter(name):
        split = real(name)

        def counted(text):
            seen.append(text)
            return split(text)

        return counted

    for module in (rag.index.local, rag.index.milvus):
        monkeypatch.setattr(module, "get_splitter", get_splitter)
    return seen
