"""The Milvus backend on a real Milvus Lite (pymilvus + milvus-lite, in process): the same scores
and answers as the local index, BM25 statistics that follow adds and removals, a killed ingest
that leaves the previous version answering, and one clear line for bad settings.

Not run here: a wrong token.  Milvus Lite has no authentication, and no Milvus server can be
started on this machine, so the refusal message for a bad token is not exercised by a test.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from conftest import ROOT  # noqa: E402
from rag.config import IndexSettings, Settings  # noqa: E402
from rag.index import IncompatibleEmbedder, IndexNotFound  # noqa: E402
from rag.index.backend import open_index  # noqa: E402
from rag.index.milvus import MilvusUnavailable, disconnect  # noqa: E402
from rag.ingest import ingest  # noqa: E402

# Written for these tests: words from the shipped strategy document, phrased as staff would.
QUERIES = [
    "デジタル実装に取り組む地方公共団体の数",
    "子育て支援と結婚の希望",
    "地方創生の交付金はどう使えるか",
    "観光 DX",
    "サテライトオフィス 転職なき移住",
]


def milvus_settings(db: Path, index_dir: Path, corpus: Path = ROOT / "corpus") -> Settings:
    return Settings(corpus_dir=corpus, index_dir=index_dir, index=IndexSettings(backend="milvus", milvus_uri=str(db)))


@pytest.fixture(scope="module")
def milvus_default(tmp_path_factory, default_settings):
    """The shipped corpus in Milvus Lite: the local index's own pages, chunks and vectors, so any
    difference below comes from the index and not from reading or embedding twice.  (Ingestion
    into Milvus is exercised on the small corpora further down and through the CLI.)"""
    from rag.index.milvus import MilvusIndex, collection_prefix, connect

    tmp = tmp_path_factory.mktemp("milvus")
    settings = milvus_settings(tmp / "rag.db", default_settings.index_dir)
    local = open_index(default_settings)
    client = connect(settings.index.milvus_uri, None)
    index = MilvusIndex.empty(client, collection_prefix("rag", settings.index_dir), local.manifest)
    vectors = local.vectors()
    row = 0
    chunks = list(local.iter_chunks())
    for info in local.manifest.source_infos():
        own = [c for c in chunks if c.source == info.source]
        rows = [i for i, c in enumerate(chunks) if c.source == info.source]
        index.add_source(info, list(local.iter_pages([info.source])), own, vectors[rows])
        row += len(own)
    index.commit()
    local.close()
    yield settings
    disconnect(settings.index.milvus_uri)


def _same_ranking(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> None:
    assert [round(s, 3) for _, s in a] == [round(s, 3) for _, s in b]
    # Chunks tied at the cut-off may be ordered either way; everything above it must match.
    if a:
        cut = a[-1][1] + 1e-4
        assert {i for i, s in a if s > cut} == {i for i, s in b if s > cut}


def test_scores_pages_and_chunks_equal_the_local_index(default_settings, milvus_default, embedder):
    local = open_index(default_settings)
    remote = open_index(milvus_default, embedder=embedder.name, dimension=embedder.dimension)
    assert {s: (v["sha256"], v["pages"], v["chunks"]) for s, v in local.manifest.sources.items()} == {
        s: (v["sha256"], v["pages"], v["chunks"]) for s, v in remote.manifest.sources.items()
    }
    one_source = [sorted(local.manifest.sources)[0]]
    for query in QUERIES:
        _same_ranking(local.sparse_search(query, 20), remote.sparse_search(query, 20))
        _same_ranking(local.sparse_search(query, 10, one_source), remote.sparse_search(query, 10, one_source))
        vector = embedder.embed_query_array(query)
        _same_ranking(local.dense_search(vector, 20), remote.dense_search(vector, 20))
        ids = [cid for cid, _ in local.sparse_search(query, 5)]
        assert remote.get_chunks(ids) == local.get_chunks(ids)
    assert remote.sparse_search("", 10) == local.sparse_search("", 10) == []
    source = one_source[0]
    for page in (1, 2, local.manifest.sources[source]["pages"]):
        assert remote.get_page(source, page) == local.get_page(source, page)
    assert remote.get_page(source, 10_000) is None
    assert list(remote.iter_chunks(one_source))[:3] == sorted(local.iter_chunks(one_source), key=lambda c: (c.page, c.start))[:3]
    local.close()


def test_same_answers_as_the_local_index(pipeline, milvus_default, embedder):
    from rag.evaluate import load_qa, run_eval
    from rag.pipeline import Pipeline

    items = load_qa(ROOT / "eval" / "qa.jsonl")
    on_milvus = Pipeline.load(milvus_default, embedder=embedder)
    local = run_eval(pipeline, items, k=10, baselines=False).summary
    remote = run_eval(on_milvus, items, k=10, baselines=False).summary
    for key in ("recall@1", "recall@5", "recall@10"):
        assert abs(local["retrieval"][key] - remote["retrieval"][key]) <= 0.01, key
    assert abs(local["answer_accuracy"] - remote["answer_accuracy"]) <= 0.01


def _bm25_reference(index, query: str) -> dict[str, float]:
    """BM25 (Lucene idf, k1 1.5, b 0.75) over the index's live chunks, written out plainly."""
    from rag.chunking import indexable_text
    from rag.tokenize import get_splitter

    split = get_splitter(index.manifest.tokenizer)
    docs = {c.id: split(indexable_text(c)) or [""] for c in index.iter_chunks()}
    n = len(docs)
    avgdl = index._state["avgdl"]  # the reference length the chunks were weighted with
    df: dict[str, int] = {}
    for tokens in docs.values():
        for t in set(tokens):
            df[t] = df.get(t, 0) + 1
    scores = {}
    for cid, tokens in docs.items():
        score = 0.0
        for t in split(query):
            if t in df:
                tf = tokens.count(t)
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                score += idf * tf / (tf + 1.5 * (1 - 0.75 + 0.75 * len(tokens) / avgdl))
        if score > 0:
            scores[cid] = score
    return scores


def _write(folder: Path, name: str, pages: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\f".join(pages), encoding="utf-8")


DOC_A = ["防災計画の概要。市は避難所を30か所に増やす。", "避難訓練は毎年9月に行う。防災無線を更新する。"]
DOC_B = ["子育て支援の計画。保育所の待機児童をゼロにする。", "避難所に授乳室を設ける。"]
DOC_C = ["観光振興の計画。避難所の案内を多言語にする。観光客向けの防災情報を出す。"]


def test_bm25_statistics_follow_added_and_removed_documents(tmp_path, embedder, tokenised, monkeypatch):
    from rag.chunking import indexable_text
    from rag.index.milvus import _term_key

    # Two document-frequency layers at most, so the removal below folds them into one.
    monkeypatch.setattr("rag.index.milvus._DF_LAYERS", 2)
    corpus = tmp_path / "docs"
    _write(corpus, "a.txt", DOC_A)
    _write(corpus, "b.txt", DOC_B)
    settings = milvus_settings(tmp_path / "stats.db", tmp_path / "idx", corpus)
    try:
        ingest(settings, embedder=embedder)
        _write(corpus, "c.txt", DOC_C)
        tokenised.clear()
        assert ingest(settings, embedder=embedder).count("added") == 1
        grown = open_index(settings)
        assert grown.manifest.chunk_count == grown._state["n"] == len(list(grown.iter_chunks()))
        # Only the added file's chunks were tokenised, and the commit's layer holds only their terms.
        added = [indexable_text(c) for c in grown.iter_chunks(["c.txt"])]
        assert sorted(tokenised) == sorted(added)
        split = grown._splitter
        layer = grown.client.query(grown._meta, filter=f'kind == "df" and name == "{grown.version}"', output_fields=["term"], limit=10_000)
        assert {r["term"] for r in layer} == {_term_key(t) for text in added for t in split(text)}
        assert len(grown._state["df_layers"]) == 2
        for query in ("避難所", "防災 観光", "保育所"):
            expected = _bm25_reference(grown, query)
            got = dict(grown.sparse_search(query, 50))
            assert got.keys() == expected.keys() and all(abs(got[c] - expected[c]) < 1e-4 for c in got), query

        (corpus / "a.txt").unlink()
        tokenised.clear()
        assert ingest(settings, embedder=embedder).count("removed") == 1
        assert tokenised == []  # a removal reads the removed generation's counts, never the chunks
        shrunk = open_index(settings)
        assert shrunk._state["df_layers"] == [shrunk.version]  # folded
        assert "a.txt" not in shrunk.manifest.sources and shrunk.get_page("a.txt", 1) is None
        assert shrunk.sparse_search("避難訓練 防災無線", 10) == [] or all(
            c.source != "a.txt" for c in shrunk.get_chunks([cid for cid, _ in shrunk.sparse_search("避難訓練 防災無線", 10)])
        )
        expected = _bm25_reference(shrunk, "避難所 防災")
        got = dict(shrunk.sparse_search("避難所 防災", 50))
        assert got.keys() == expected.keys() and all(abs(got[c] - expected[c]) < 1e-4 for c in got)
        # idf moved with the corpus: "避難所" was in 3 of the chunks' documents, now in 2.
        assert got != dict(grown.sparse_search("避難所 防災", 50))

        # A full rebuild scores exactly as the local index on the same files.
        ingest(settings, rebuild=True, embedder=embedder)
        rebuilt = open_index(settings)
        local_settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "local")
        ingest(local_settings, embedder=embedder)
        local = open_index(local_settings)
        for query in ("避難所", "観光 防災", "保育所 授乳室"):
            _same_ranking(local.sparse_search(query, 10), rebuilt.sparse_search(query, 10))
        local.close()
    finally:
        disconnect(settings.index.milvus_uri)


_KILL_AT_SWITCH = """
import sys, time
from pathlib import Path
from rag.config import IndexSettings, Settings
from rag.index.milvus import MilvusIndex
from rag.ingest import ingest

marker = Path(sys.argv[4])
insert = MilvusIndex._insert

def insert_then_stop_before_switch(self, collection, rows):
    # Everything of the new version is written; stop right before the pointer row.
    if rows and rows[0].get("kind") == "pointer":
        marker.write_text("at switch")
        time.sleep(120)
    insert(self, collection, rows)

MilvusIndex._insert = insert_then_stop_before_switch
settings = Settings(corpus_dir=Path(sys.argv[1]), index_dir=Path(sys.argv[2]),
                    index=IndexSettings(backend="milvus", milvus_uri=sys.argv[3]))
ingest(settings)
"""


def test_ingest_killed_before_the_switch_leaves_the_previous_version(tmp_path, embedder):
    from rag.pipeline import Pipeline

    corpus = tmp_path / "docs"
    _write(corpus, "budget.txt", ["令和6年度の防災予算は100億円とする。", "避難所の整備を進める。"])
    settings = milvus_settings(tmp_path / "kill.db", tmp_path / "idx", corpus)
    ingest(settings, embedder=embedder)
    first_chunks = open_index(settings).manifest.chunk_count
    disconnect(settings.index.milvus_uri)  # Milvus Lite: one process per file

    _write(corpus, "budget.txt", ["令和6年度の防災予算は200億円とする。", "避難所の整備を進める。"])
    _write(corpus, "extra.txt", ["観光の計画。"])
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILL_AT_SWITCH, str(corpus), str(settings.index_dir), settings.index.milvus_uri, str(marker)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the ingest never reached the switch"
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()

    index = open_index(settings)
    assert set(index.manifest.sources) == {"budget.txt"}
    # The new version's rows are in Milvus, but nothing points to them.
    rows = index.client.query(index._chunks, filter='pk != ""', output_fields=["count(*)"])[0]["count(*)"]
    assert rows > index.manifest.chunk_count
    answer = Pipeline.load(settings, embedder=embedder).ask("防災予算はいくら？")
    assert "100億円" in answer.text and "200億円" not in answer.text

    report = ingest(settings, embedder=embedder)
    assert report.count("updated") == 1 and report.count("added") == 1
    assert "200億円" in Pipeline.load(settings, embedder=embedder).ask("防災予算はいくら？").text
    index = open_index(settings)
    # The killed commit's rows are gone; the replaced version stays one commit for readers.
    rows = index.client.query(index._chunks, filter='pk != ""', output_fields=["count(*)"])[0]["count(*)"]
    assert rows == index.manifest.chunk_count + first_chunks
    disconnect(settings.index.milvus_uri)


def test_bad_settings_give_one_clear_line(milvus_default, embedder, tmp_path):
    unreachable = Settings(index=IndexSettings(backend="milvus", milvus_uri="http://127.0.0.1:9"))
    with pytest.raises(MilvusUnavailable) as err:
        open_index(unreachable)
    message = str(err.value)
    assert "\n" not in message and "接続できません" in message and "127.0.0.1:9" in message and "RAG_INDEX__MILVUS_URI" in message

    with pytest.raises(MilvusUnavailable, match="URI が正しくありません"):
        open_index(Settings(index=IndexSettings(backend="milvus", milvus_uri=str(tmp_path / "no-suffix"))))
    with pytest.raises(IndexNotFound, match="rag ingest"):
        open_index(milvus_settings(Path(milvus_default.index.milvus_uri), tmp_path / "never-built"))
    with pytest.raises(IncompatibleEmbedder, match="作り直して"):
        open_index(milvus_default, embedder="intfloat/multilingual-e5-small", dimension=384)


def test_a_refused_token_says_so_and_names_the_token_setting(tmp_path):
    """A Milvus server with authentication on cannot run here (it needs Docker, etcd and MinIO),
    and Milvus Lite has no authentication.  So a real gRPC server on 127.0.0.1 stands in for the
    server's authentication step only: like Milvus' AuthenticationInterceptor, it answers every
    call with UNAUTHENTICATED and Milvus' own words.  The client side is the real pymilvus."""
    from concurrent import futures

    import grpc

    refusal = "auth check failure, please check username and password are correct"

    class Refuse(grpc.ServerInterceptor):
        def intercept_service(self, continuation, details):
            return grpc.unary_unary_rpc_method_handler(lambda request, context: context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal))

    server = grpc.server(futures.ThreadPoolExecutor(2), interceptors=[Refuse()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        settings = Settings(index=IndexSettings(backend="milvus", milvus_uri=f"http://127.0.0.1:{port}", milvus_token="root:wrong"))
        with pytest.raises(MilvusUnavailable) as err:
            open_index(settings)
    finally:
        server.stop(None)
    message = str(err.value)
    assert "\n" not in message and "認証で拒否" in message and refusal in message and "RAG_INDEX__MILVUS_TOKEN" in message
    assert "接続できません" not in message


def test_cli_ingest_and_ask_on_milvus_give_the_local_answers(tmp_path, embedder):
    """`rag ingest --corpus DIR` then `rag ask --json -` with RAG_INDEX__BACKEND / RAG_INDEX__MILVUS_URI."""
    from rag.pipeline import Pipeline

    corpus = tmp_path / "docs"
    _write(corpus, "a.txt", DOC_A)
    _write(corpus, "b.txt", DOC_B)
    env = {**os.environ, "RAG_INDEX__BACKEND": "milvus", "RAG_INDEX__MILVUS_URI": str(tmp_path / "cli.db")}
    run = dict(cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    index_dir = str(tmp_path / "idx")
    done = subprocess.run([sys.executable, "-m", "rag", "ingest", "--corpus", str(corpus), "--index", index_dir], **run)
    assert done.returncode == 0, done.stderr
    questions = ["避難所は何か所に増やす？", "待機児童の目標は？", "避難訓練はいつ？"]
    done = subprocess.run([sys.executable, "-m", "rag", "ask", "--json", "-", "--index", index_dir], input="\n".join(questions), **run)
    assert done.returncode == 0, done.stderr
    remote = [json.loads(line) for line in done.stdout.splitlines()]

    local_settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "local")
    ingest(local_settings, embedder=embedder)
    local = Pipeline.load(local_settings, embedder=embedder)
    for question, got in zip(questions, remote, strict=True):
        expected = local.ask(question).to_json()
        assert got["answer"] == expected["answer"]
        assert [(h["source"], h["page"]) for h in got["hits"]] == [(h["source"], h["page"]) for h in expected["hits"]]

    # The same environment pointing at nothing: one line, exit 2.
    env["RAG_INDEX__MILVUS_URI"] = "http://127.0.0.1:9"
    done = subprocess.run([sys.executable, "-m", "rag", "ask", "避難所は？", "--index", index_dir], **{**run, "env": env})
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "接続できません" in done.stderr


def test_app_answers_from_milvus(monkeypatch, milvus_default):
    """The Streamlit app with RAG_INDEX__BACKEND=milvus: the chat answers with a page citation read from Milvus."""
    from streamlit.testing.v1 import AppTest

    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "RAG_LLM_MODEL", "RAG_LLM__PROVIDER", "RAG_LLM__MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAG_INDEX__BACKEND", "milvus")
    monkeypatch.setenv("RAG_INDEX__MILVUS_URI", milvus_default.index.milvus_uri)
    monkeypatch.setenv("RAG_INDEX_DIR", str(milvus_default.index_dir))
    monkeypatch.setenv("RAG_CORPUS_DIR", str(milvus_default.corpus_dir))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    at.chat_input[0].set_value("デジタル実装に取り組む地方公共団体の2027年度までの目標は？").run()
    assert not at.exception, at.exception
    answer = at.session_state["chat.messages"][-1]["answer"]
    assert "1,500団体" in answer.text and any(c.page == 2 for c in answer.citations)
    assert "<mark>" in "\n".join(m.value for m in at.markdown)  # the cited page's text came from Milvus
