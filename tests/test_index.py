import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from rag.config import Settings
from rag.index import CURRENT, IncompatibleEmbedder, IndexIncompatible, IndexNotFound, LocalIndex


def test_index_files_hold_no_pickle(default_settings):
    version = default_settings.index_dir / (default_settings.index_dir / CURRENT).read_text()
    names = {p.name for p in version.rglob("*") if p.is_file()}
    assert {"manifest.json", "chunks.sqlite", "dense.faiss"} <= names
    for path in version.rglob("*.npy"):
        np.load(path, allow_pickle=False)  # raises if the array needed pickle
    assert not [n for n in names if n.endswith((".pkl", ".pickle"))]


def test_loading_and_searching_never_unpickles(default_settings, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading the index")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    index = LocalIndex.open(default_settings.index_dir)
    assert index.sparse_search("こども家庭センター", 3)
    assert index.dense_search(np.ones(index.manifest.dimension, dtype=np.float32) / 20, 3)


def test_an_index_built_with_another_embedder_is_refused_with_one_line(default_settings):
    with pytest.raises(IncompatibleEmbedder) as info:
        LocalIndex.open(default_settings.index_dir, embedder="intfloat/multilingual-e5-small", dimension=384)
    message = str(info.value)
    assert "rag ingest" in message and "use-multilingual" in message and "\n" not in message


def test_an_older_format_is_refused(tmp_path, default_settings):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(default_settings.index_dir, copy)
    version = copy / (copy / CURRENT).read_text()
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["format_version"] = 0
    (version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexIncompatible, match="rag ingest"):
        LocalIndex.open(copy)


def test_missing_index_says_what_to_do(tmp_path):
    with pytest.raises(IndexNotFound, match="rag ingest"):
        LocalIndex.open(tmp_path / "nothing")


def test_source_filter_applies_to_sparse_and_dense(default_settings, embedder):
    index = LocalIndex.open(default_settings.index_dir)
    only = ["digiden-sogo-senryaku-zentaizo-ocr.pdf"]
    sparse = index.get_chunks([cid for cid, _ in index.sparse_search("デジタル 移住 地方", 20, only)])
    dense = index.get_chunks([cid for cid, _ in index.dense_search(embedder.embed_query_array("地方への移住"), 20, only)])
    assert sparse and dense
    assert {c.source for c in sparse + dense} == set(only)


def test_exact_search_switches_to_hnsw_above_the_threshold(tmp_path, default_settings, embedder):
    from rag.ingest import ingest

    settings = Settings(
        corpus_dir=default_settings.corpus_dir,
        index_dir=tmp_path / "hnsw",
        index={"exact_search_max_chunks": 10},
    )
    ingest(settings, embedder=embedder)
    index = LocalIndex.open(settings.index_dir, hnsw=(10, 32, 128))
    assert index.manifest.dense_index == "hnsw"
    exact = LocalIndex.open(default_settings.index_dir)
    query = embedder.embed_query_array("こども家庭センターの設置")
    approx_ids = [cid for cid, _ in index.dense_search(query, 5)]
    exact_ids = [cid for cid, _ in exact.dense_search(query, 5)]
    assert len(set(approx_ids) & set(exact_ids)) >= 4


def test_ask_on_a_missing_index_folder_is_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "質問", "--index", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "rag ingest" in result.stderr and "Traceback" not in result.stderr


def test_bm25_from_token_ids_scores_exactly_like_bm25s_own_token_path(default_settings):
    """The memory-lean id path must equal the simple one (bm25s fed token strings)."""
    import bm25s

    from rag.chunking import indexable_text
    from rag.index import bm25_corpus
    from rag.tokenize import get_splitter

    index = LocalIndex.open(default_settings.index_dir)
    chunks = list(index.iter_chunks())
    splitter = get_splitter(index.manifest.tokenizer)
    reference = bm25s.BM25()
    reference.index([splitter(indexable_text(c)) or [""] for c in chunks], show_progress=False)
    lean = bm25s.BM25()
    lean.index(bm25_corpus(chunks, splitter), show_progress=False)
    for query in ["デジタル実装 地方公共団体 2027年度", "こども家庭センター", "転職なき移住 テレワーク", "5G 人口カバー率"]:
        tokens = splitter(query)
        expected = reference.get_scores([t for t in tokens if t in reference.vocab_dict])
        actual = lean.get_scores([t for t in tokens if t in lean.vocab_dict])
        assert expected.max() > 0 and np.allclose(expected, actual)


def test_a_table_of_contents_is_recognised_by_its_dot_leaders():
    from rag.retrieve import is_contents

    toc = "目次\nスケジュール・・・・・・・・2重要事項・・・・・・・・3補助上限額・補助率等・・・・・・5"
    assert is_contents(toc)
    assert not is_contents("補助率は2分の1です。中小企業は・・・要件を満たす場合2/3。")
