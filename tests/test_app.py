"""The Streamlit app, page by page, through streamlit.testing.v1.AppTest (no browser).

The app reads RAG_INDEX_DIR / RAG_CORPUS_DIR like `rag serve`; tests point them
at the session's prebuilt index, or at temporary copies when the test writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pdfs import make_image_only_pdf, make_pdf
from rag.config import PROJECT_ROOT
from rag.index import read_manifest

APP = str(PROJECT_ROOT / "app.py")
MAIN_DOC = "digiden-sogo-senryaku-2023-2027.pdf"
OCR_DOC = "digiden-sogo-senryaku-zentaizo-ocr.pdf"
TIMEOUT = 60


def _clean_llm_env(monkeypatch) -> None:
    # The offline answerer is what these tests check; a developer's LLM settings must not leak in.
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "RAG_LLM_MODEL", "RAG_LLM__PROVIDER", "RAG_LLM__MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def shared_index(monkeypatch, default_settings):
    """The session's index of the shipped corpus; for tests that only read."""
    _clean_llm_env(monkeypatch)
    monkeypatch.setenv("RAG_INDEX_DIR", str(default_settings.index_dir))
    monkeypatch.setenv("RAG_CORPUS_DIR", str(default_settings.corpus_dir))
    return default_settings


@pytest.fixture
def own_index(monkeypatch, default_settings, tmp_path):
    """A private copy of corpus and index, for tests that upload (the repo's corpus is never touched)."""
    _clean_llm_env(monkeypatch)
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    corpus.mkdir()
    for pdf in Path(default_settings.corpus_dir).glob("*.pdf"):
        shutil.copy2(pdf, corpus / pdf.name)
    shutil.copytree(default_settings.index_dir, index, ignore=shutil.ignore_patterns(".lock"))
    monkeypatch.setenv("RAG_INDEX_DIR", str(index))
    monkeypatch.setenv("RAG_CORPUS_DIR", str(corpus))
    return corpus, index


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def _ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [e.label for e in at.expander] + [c.value for c in at.caption]
    return "\n".join(parts)


def _last_answer(at: AppTest):
    return at.session_state["chat.messages"][-1]["answer"]


# ------------------------------------------------------------------ chat


def test_chat_answers_with_page_citation(shared_index):
    at = _app()
    assert [t.value for t in at.title] == ["チャット"]
    _ask(at, "デジタル実装に取り組む地方公共団体の2027年度までの目標は？")
    text = _texts(at)
    assert "1,500団体" in text
    labels = [e.label for e in at.expander]
    assert any("p\\.2" in label for label in labels), labels  # the citation names its page
    assert "<mark>" in text  # the quoted sentence is highlighted in its page
    assert len(at.chat_message) == 2
    assert at.toggle and {t.label for t in at.toggle} == {"ページの画像を表示"}  # one per citation
    assert any(b.label == "PDFをダウンロード" for b in at.get("download_button"))

    # The page image is drawn on request.
    at.toggle[0].set_value(True).run()
    assert not at.exception
    assert len(at.get("image")) == 1


def test_followup_uses_the_conversation(shared_index):
    at = _app()
    _ask(at, "こども家庭センターの設置目標は？")
    _ask(at, "それはどの分野の施策？")
    answer = _last_answer(at)
    assert answer.standalone_question and "こども家庭センター" in answer.standalone_question
    assert len(at.chat_message) == 4

    new = next(b for b in at.button if b.label == "新しい会話")
    new.click().run()
    assert len(at.chat_message) == 0
    assert any("質問の例" in m.value for m in at.markdown)


def test_source_filter_limits_citations(shared_index):
    at = _app()
    at.multiselect[0].set_value([OCR_DOC]).run()
    _ask(at, "デジタル田園都市国家構想総合戦略の計画期間は？")
    answer = _last_answer(at)
    assert answer.citations
    assert {c.source for c in answer.citations} == {OCR_DOC}
    assert all("OCR版" in e.label for e in at.expander)
    assert any("検索対象" in c.value and "OCR版" in c.value for c in at.caption)

    # The choice survives a visit to another page.
    at.switch_page("rag/ui/documents.py").run()
    at.switch_page("rag/ui/chat.py").run()
    assert at.multiselect[0].value == [OCR_DOC]
    assert len(at.chat_message) == 2


def test_example_question_button_asks_it(shared_index):
    at = _app()
    example = next(b for b in at.button if b.label == "こども家庭センターの設置目標は？")
    example.click().run()
    assert not at.exception
    assert "1,741" in _texts(at)


@pytest.mark.parametrize("question", ["   ", "地方" * 1200])
def test_unusable_question_shows_a_warning(shared_index, question):
    at = _app()
    _ask(at, question)
    assert at.warning and ("空" in at.warning[0].value or "長すぎます" in at.warning[0].value)
    assert len(at.chat_message) == 0


def test_no_answer_lists_nearby_pages(shared_index):
    at = _app()
    _ask(at, "月面基地の建設予算はいくら？")
    answer = _last_answer(at)
    assert not answer.found
    text = _texts(at)
    assert "見つかりませんでした" in text and "関連しそうな箇所" in text


# ------------------------------------------------------------------ documents


def test_documents_page_lists_the_default_documents(shared_index):
    at = _app()
    at.switch_page("rag/ui/documents.py").run()
    assert not at.exception
    assert [t.value for t in at.title] == ["文書の管理"]
    table = at.dataframe[0].value
    assert sorted(table["ファイル名"]) == [MAIN_DOC, OCR_DOC]
    assert int(table.loc[table["ファイル名"] == MAIN_DOC, "ページ数"].iloc[0]) == 38
    assert [m.value for m in at.metric][0] == "2件"


def test_invalid_uploads_are_refused_and_nothing_is_indexed(own_index, tmp_path):
    corpus, index = own_index
    before_manifest = read_manifest(index)
    before_files = sorted(p.name for p in corpus.iterdir())
    encrypted = make_pdf(tmp_path / "enc.pdf", [["秘密"]], encrypt="pw").read_bytes()
    scanned = make_image_only_pdf(tmp_path / "scan.pdf").read_bytes()

    at = _app()
    at.switch_page("rag/ui/documents.py").run()
    at.file_uploader[0].set_value(
        [
            ("notes.pdf", b"this is plain text, not a PDF", "application/pdf"),
            ("encrypted.pdf", encrypted, "application/pdf"),
            ("scan.pdf", scanned, "application/pdf"),
        ]
    )
    at.form_submit_button[0].click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 3, errors
    assert "PDFではありません" in errors[0]
    assert "暗号化" in errors[1]
    assert "テキスト層がありません" in errors[2]
    assert not at.success
    assert sorted(p.name for p in corpus.iterdir()) == before_files
    assert read_manifest(index) == before_manifest


def test_valid_upload_is_saved_and_indexed(own_index, tmp_path):
    corpus, index = own_index
    pdf = make_pdf(tmp_path / "x.pdf", [["令和6年度 地域おこし協力隊の拡充について", "隊員数を1万人とする目標を掲げる。"]])
    at = _app()
    at.switch_page("rag/ui/documents.py").run()
    at.file_uploader[0].set_value(("../../協力隊.pdf", pdf.read_bytes(), "application/pdf"))
    at.form_submit_button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("追加しました" in s.value for s in at.success)
    assert (corpus / "協力隊.pdf").is_file()
    assert "協力隊.pdf" in read_manifest(index).sources
    assert "協力隊.pdf" in list(at.dataframe[0].value["ファイル名"])

    # The chat sees the new document without a restart.
    at.switch_page("rag/ui/chat.py").run()
    _ask(at, "地域おこし協力隊の隊員数の目標は？")
    assert any(c.source == "協力隊.pdf" for c in _last_answer(at).citations)


def test_incompatible_index_offers_a_rebuild(monkeypatch, tmp_path, default_settings):
    from rag.ingest import ingest

    _clean_llm_env(monkeypatch)
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    corpus.mkdir()
    shutil.copy2(Path(default_settings.corpus_dir) / OCR_DOC, corpus / OCR_DOC)  # one page: quick to rebuild
    ingest(default_settings.model_copy(update={"corpus_dir": corpus, "index_dir": index}))
    version = index / (index / "CURRENT").read_text().strip()
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["embedder"] = "some-other-model"
    (version / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("RAG_CORPUS_DIR", str(corpus))
    monkeypatch.setenv("RAG_INDEX_DIR", str(index))

    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("埋め込みモデル" in e.value for e in at.error)
    assert [b.label for b in at.button] == ["索引を作り直す"]
    assert not at.chat_input  # the chat stays closed until the index is usable

    at.button[0].click().run()
    assert not at.exception, at.exception
    assert read_manifest(index).embedder == "use-multilingual"
    assert [t.value for t in at.title] == ["チャット"]
    _ask(at, "デジタル田園都市国家構想総合戦略の計画期間は？")
    assert _last_answer(at).citations


def test_first_start_builds_the_index(monkeypatch, tmp_path, default_settings):
    _clean_llm_env(monkeypatch)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy2(Path(default_settings.corpus_dir) / OCR_DOC, corpus / OCR_DOC)  # one page: quick to build
    monkeypatch.setenv("RAG_CORPUS_DIR", str(corpus))
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    at = _app()
    assert read_manifest(tmp_path / "index").sources.keys() == {OCR_DOC}
    assert [t.value for t in at.title] == ["チャット"]
    assert any("索引を更新しました" in s.value for s in at.success)


def test_empty_corpus_invites_an_upload_that_creates_the_index(monkeypatch, tmp_path):
    _clean_llm_env(monkeypatch)
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    corpus.mkdir()
    monkeypatch.setenv("RAG_CORPUS_DIR", str(corpus))
    monkeypatch.setenv("RAG_INDEX_DIR", str(index))
    at = _app()
    assert any("まだ検索できる文書がありません" in i.value for i in at.info)
    assert at.chat_input[0].disabled

    at.switch_page("rag/ui/documents.py").run()
    pdf = make_pdf(tmp_path / "a.pdf", [["こども家庭センターを全国に設置する。"]])
    at.file_uploader[0].set_value(("a.pdf", pdf.read_bytes(), "application/pdf"))
    at.form_submit_button[0].click().run()
    assert not at.exception, at.exception
    assert list(read_manifest(index).sources) == ["a.pdf"]
    at.switch_page("rag/ui/chat.py").run()
    _ask(at, "こども家庭センターはどこに設置する？")
    assert _last_answer(at).citations[0].source == "a.pdf"


# ------------------------------------------------------------------ schemes


def test_scheme_page_finds_the_digiden_grant(shared_index):
    pytest.importorskip("rag.schemes", reason="rag.schemes is not in the tree yet")
    at = _app()
    at.switch_page("rag/ui/schemes.py").run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["交付金・補助金を探す"]
    at.text_input[0].set_value("デジタル田園都市国家構想交付金").run()
    names = list(at.dataframe[0].value["制度名"])
    assert "デジタル田園都市国家構想交付金" in names, names

    ask = next(b for b in at.button if b.label == "この制度についてチャットで聞く")
    ask.click().run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["チャット"]
    assert _last_answer(at).question.startswith(names[0])


# ------------------------------------------------------------------ evaluation


def test_eval_page_runs_a_small_qa_set(shared_index, tmp_path):
    lines = [
        {"id": "t1", "question": "デジタル実装に取り組む地方公共団体の2027年度までの目標は？", "must_include": ["1,500団体"],
         "sources": [{"source": MAIN_DOC, "page": 2}], "answerable": True, "type": "factoid"},
        {"id": "t2", "question": "こども家庭センターの設置目標は？", "must_include": ["1,741"],
         "sources": [{"source": MAIN_DOC, "page": 2}, {"source": MAIN_DOC, "page": 8}], "answerable": True, "type": "factoid"},
        {"id": "t3", "question": "月面基地の建設予算はいくら？", "sources": [], "answerable": False, "type": "unanswerable"},
    ]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")

    at = _app()
    at.switch_page("rag/ui/evaluation.py").run()
    assert not at.exception
    assert at.selectbox[0].value == "qa.jsonl"  # the repo's suite is the default
    at.selectbox[0].set_value("（ファイルをアップロード）").run()
    at.file_uploader[0].set_value(("qa.jsonl", qa.read_bytes(), "application/json"))
    at.run()
    next(b for b in at.button if b.label == "評価を実行").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["回答の正解率"] == "100.0%"
    assert metrics["記載なしの見送り"] == "100.0%"
    table = at.dataframe[-1].value
    assert list(table["ID"]) == ["t1", "t2", "t3"]
    assert all(v == "○ 正解" for v in table["判定"])
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")


# ------------------------------------------------------------------ LLM mode


def _llm_env(monkeypatch, url: str) -> None:
    monkeypatch.setenv("RAG_LLM__PROVIDER", "openai")
    monkeypatch.setenv("RAG_LLM__BASE_URL", url)
    monkeypatch.setenv("RAG_LLM__MODEL", "test-model")
    monkeypatch.setenv("RAG_LLM__API_KEY", "x")
    monkeypatch.setenv("RAG_LLM__TIMEOUT_S", "10")


def test_llm_mode_streams_an_answer_with_citations(shared_index, monkeypatch):
    from fake_openai_server import FakeChatServer, Reply

    with FakeChatServer(responder=lambda body: Reply("目標は2027年度までに1,500団体です[1]。")) as server:
        _llm_env(monkeypatch, server.openai_url)
        at = _app()
        mode = at.sidebar.radio[0]
        assert mode.value == "llm" and "LLM（test-model）" in mode.options[1]
        _ask(at, "デジタル実装に取り組む地方公共団体の2027年度までの目標は？")
    answer = _last_answer(at)
    assert answer.mode == "llm" and answer.found and answer.verified and answer.citations
    assert any("1,500団体" in m.value for m in at.markdown)
    assert any("p\\." in e.label for e in at.expander)

    # Switching to offline mode answers without the model.
    at.sidebar.radio[0].set_value("offline").run()
    _ask(at, "こども家庭センターの設置目標は？")
    assert _last_answer(at).mode == "offline"


def test_llm_unreachable_falls_back_with_a_note(shared_index, monkeypatch):
    from fake_openai_server import closed_port

    _llm_env(monkeypatch, f"http://127.0.0.1:{closed_port()}/v1")
    at = _app()
    _ask(at, "デジタル実装に取り組む地方公共団体の2027年度までの目標は？")
    answer = _last_answer(at)
    assert answer.mode == "offline" and answer.notes
    assert any("LLM" in i.value for i in at.info)
