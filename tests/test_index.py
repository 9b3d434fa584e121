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


def test_bm25_scored_at_query_time_equals_bm25s_from_token_strings(default_settings):
    """The index's path (counts stored at add time, scored per query from segments) must equal
    the simple one, bitwise: bm25s fed every chunk's token strings."""
    index = LocalIndex.open(default_settings.index_dir)
    queries = ["デジタル実装 地方公共団体 2027年度", "こども家庭センター", "転職なき移住 テレワーク", "5G 人口カバー率"]
    _assert_bm25_equals_bm25s_from_strings(index, queries)


def test_a_table_of_contents_is_recognised_by_its_dot_leaders():
    from rag.retrieve import is_contents

    toc = "目次\nスケジュール・・・・・・・・2重要事項・・・・・・・・3補助上限額・補助率等・・・・・・5"
    assert is_contents(toc)
    assert not is_contents("補助率は2分の1です。中小企業は・・・要件を満たす場合2/3。")


# ------------------------------------------------------------------ incremental commits
# Small text corpora written for these tests: several topics sharing some words, so that
# document frequencies change when one file comes or goes.

_DOCS = {
    "a.txt": ["防災計画の概要。市は避難所を30か所に増やす。", "避難訓練は毎年9月に行う。防災無線を更新する。"],
    "b.txt": ["子育て支援の計画。保育所の待機児童をゼロにする。", "避難所に授乳室を設ける。"],
    "c.txt": ["観光振興の計画。避難所の案内を多言語にする。", "観光客向けの防災情報を出す。"],
    "d.txt": ["交通計画。デマンド交通を全域に広げる。", "高齢者の移動を支える。"],
}


def _write_doc(folder, name, pages):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\f".join(pages), encoding="utf-8")


def _assert_bm25_equals_bm25s_from_strings(index, queries):
    import bm25s

    from rag.chunking import indexable_text
    from rag.tokenize import get_splitter

    split = get_splitter(index.manifest.tokenizer)
    reference = bm25s.BM25()
    reference.index([split(indexable_text(c)) or [""] for c in index.iter_chunks()], show_progress=False)
    # bm25s always adds the empty token; the index holds it only when a chunk has no token.
    assert set(reference.vocab_dict) - {""} == set(index._vocab) - {""}
    scored = 0
    for query in queries:
        known = [t for t in split(query) if t in reference.vocab_dict]
        if known:  # bm25s refuses an empty query
            expected = reference.get_scores(known)
            assert np.array_equal(expected, index._bm25.scores([index._vocab[t] for t in known])), query
            scored += expected.max() > 0
    assert scored >= 2


def _assert_dense_rows_aligned(index, embedder):
    # A chunk's own vector finds that chunk first: FAISS rows and chunk rows are in step.
    from rag.chunking import indexable_text

    chunks = list(index.iter_chunks())
    vectors = embedder.embed_array([indexable_text(c) for c in chunks])
    for chunk, vector in zip(chunks, vectors):
        assert index.dense_search(vector, 1)[0][0] == chunk.id


def test_a_commit_tokenises_only_the_added_chunks_and_bm25_stays_exact(tmp_path, embedder, tokenised):
    import sqlite3

    from rag.chunking import indexable_text
    from rag.ingest import ingest
    from rag.tokenize import get_splitter

    corpus = tmp_path / "docs"
    for name in ("a.txt", "b.txt"):
        _write_doc(corpus, name, _DOCS[name])
    # Exact search up to 5 chunks, HNSW above: the steps below cross the threshold (rebuild),
    # extend an HNSW index (additions only) and remove rows from it (rebuild).
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "idx", index={"exact_search_max_chunks": 5})
    hnsw = (5, 32, 128)
    ingest(settings, embedder=embedder)
    assert LocalIndex.open(settings.index_dir, hnsw=hnsw).manifest.dense_index == "flat"
    seen = tokenised
    queries = ["避難所 防災", "観光 多言語", "保育所", "交通 移動"]

    for name in ("c.txt", "d.txt"):
        seen.clear()
        _write_doc(corpus, name, _DOCS[name])
        ingest(settings, embedder=embedder)
        index = LocalIndex.open(settings.index_dir, hnsw=hnsw)
        new_texts = [indexable_text(c) for c in index.iter_chunks([name])]
        assert sorted(seen) == sorted(new_texts), "only the added file's chunks are tokenised"
        assert index.manifest.dense_index == "hnsw"
        _assert_bm25_equals_bm25s_from_strings(index, queries)
        _assert_dense_rows_aligned(index, embedder)

    # A changed file and a removed one: only the changed file's new chunks are tokenised, and
    # terms that only the removed file had leave the vocabulary.
    seen.clear()
    _write_doc(corpus, "a.txt", ["防災計画の概要。市は避難所を40か所に増やす。", "津波避難タワーを建てる。"])
    (corpus / "b.txt").unlink()
    ingest(settings, embedder=embedder)
    index = LocalIndex.open(settings.index_dir, hnsw=hnsw)
    assert sorted(seen) == sorted(indexable_text(c) for c in index.iter_chunks(["a.txt"]))
    assert set(index.manifest.sources) == {"a.txt", "c.txt", "d.txt"}
    _assert_bm25_equals_bm25s_from_strings(index, queries)
    _assert_dense_rows_aligned(index, embedder)
    split = get_splitter(index.manifest.tokenizer)
    live = {t for c in index.iter_chunks() for t in split(indexable_text(c))}
    db = sqlite3.connect(index.version_dir / "chunks.sqlite")
    stored = {t for (t,) in db.execute("SELECT term FROM terms")}
    db.close()
    assert stored == live and "c:保育" not in stored
    assert index.sparse_search("保育", 5) == []


def test_many_small_commits_merge_segments_and_bm25_stays_exact(tmp_path):
    """One commit per file, then removals: segments stay few, deleted rows never score, and
    every score still equals bm25s's on the live chunks."""
    from rag.config import IndexSettings
    from rag.index import Manifest
    from rag.index.bm25_segments import MAX_SEGMENTS, Stats
    from rag.schema import Chunk, SourceInfo

    topics = ["避難所", "保育所", "観光", "交通", "水道", "図書館", "農業", "漁業", "商店街", "医療", "介護", "教育"]

    def add(index, name, topic, extra="", commit=True):
        texts = [f"{topic}の計画。{topic}を見直す。{extra}", f"{topic}と防災の連携。", "共通の方針。"]
        chunks = [Chunk(Chunk.make_id(name, i, 0), name, i + 1, "", t, 0, len(t)) for i, t in enumerate(texts)]
        vectors = np.random.default_rng(len(name)).normal(size=(len(chunks), 8)).astype(np.float32)
        index.add_source(SourceInfo(name, "0" * 64, name, 3, len(chunks)), [], chunks, vectors)
        if commit:
            index.commit()

    manifest = Manifest(embedder="test", dimension=8, tokenizer=IndexSettings().tokenizer, chunking={})
    index = LocalIndex.empty(tmp_path / "idx", manifest)
    for i, topic in enumerate(topics):
        add(index, f"f{i:02d}.txt", topic)
    for name, topic in (("g1.txt", "公園"), ("g2.txt", "河川"), ("g3.txt", "道路")):  # one segment of three
        add(index, name, topic, commit=False)
    index.commit()
    queries = ["避難所 防災", "観光 計画", "医療 介護", "共通 方針"]
    stats = Stats.read(index.version_dir / "bm25")
    assert len(stats.segments) == MAX_SEGMENTS  # twelve commits, merged down
    _assert_bm25_equals_bm25s_from_strings(index, queries)

    # Removing most of a segment's files rebuilds it without them; replacing a file moves it.
    for name in ("f00.txt", "f01.txt", "f02.txt", "f05.txt", "g1.txt", "g2.txt"):
        index.delete_source(name)
    add(index, "f03.txt", "交通", "バスを増やす。")
    index = LocalIndex.open(tmp_path / "idx")
    gone = {"f00.txt", "f01.txt", "f02.txt", "f05.txt"}
    assert set(index.manifest.sources) == {f"f{i:02d}.txt" for i in range(len(topics))} - gone | {"g3.txt"}
    stats = Stats.read(index.version_dir / "bm25")
    assert all(s.rows() - s.live_rows() <= s.live_rows() for s in stats.segments)
    _assert_bm25_equals_bm25s_from_strings(index, queries + ["交通 バス", "道路 公園"])
    assert index.sparse_search("避難所", 5) == []
    top = index.sparse_search("交通 バス", 3)
    assert index.get_chunks([top[0][0]])[0].source == "f03.txt"
    assert {index.get_chunks([cid])[0].source for cid, _ in index.sparse_search("防災", 20, sources={"f04.txt"})} == {"f04.txt"}

    # The newest terms leave with their file, then new terms take their ids.
    add(index, "h1.txt", "鉄道駅舎改築工事設計業務")  # more new terms than h2 brings
    index.delete_source("h1.txt")
    index.commit()
    add(index, "h2.txt", "港")
    index = LocalIndex.open(tmp_path / "idx")
    _assert_bm25_equals_bm25s_from_strings(index, queries + ["港 計画", "鉄道駅舎 防災"])
    assert index.sparse_search("駅舎", 5) == []


def test_an_index_of_the_previous_format_is_refused_then_rebuilt_by_ingest(tmp_path, embedder):
    from rag.index import FORMAT_VERSION
    from rag.ingest import ingest

    corpus = tmp_path / "docs"
    _write_doc(corpus, "a.txt", _DOCS["a.txt"])
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "idx")
    ingest(settings, embedder=embedder)
    version = settings.index_dir / (settings.index_dir / CURRENT).read_text()
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION - 1  # as an index written before term counts were stored
    (version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexIncompatible) as info:
        LocalIndex.open(settings.index_dir)
    assert "rag ingest" in str(info.value) and "\n" not in str(info.value)

    report = ingest(settings, embedder=embedder)
    assert report.count("added") == 1
    assert LocalIndex.open(settings.index_dir).sparse_search("避難訓練", 1)
