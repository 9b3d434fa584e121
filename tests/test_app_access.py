"""The Streamlit app with sign-in (the API's keys): each key sees only its collections; documents are added and removed per collection."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pdfs import make_pdf
from rag.config import PROJECT_ROOT
from rag.index import read_manifest
from test_api import FORBIDDEN, SECRET_LINES

APP = str(PROJECT_ROOT / "app.py")
OCR_DOC = "digiden-sogo-senryaku-zentaizo-ocr.pdf"  # one page: quick to index


@pytest.fixture
def signed_app(monkeypatch, tmp_path, default_settings, embedder):
    from rag.api.keys import KeyStore
    from rag.ingest import ingest

    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "RAG_LLM_MODEL", "RAG_LLM__PROVIDER", "RAG_LLM__MODEL"):
        monkeypatch.delenv(name, raising=False)
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    (corpus / "naibu").mkdir(parents=True)
    shutil.copy2(Path(default_settings.corpus_dir) / OCR_DOC, corpus / OCR_DOC)
    make_pdf(corpus / "naibu" / "kyoku-hi.pdf", [SECRET_LINES])
    assert not ingest(default_settings.model_copy(update={"corpus_dir": corpus, "index_dir": index}), embedder=embedder).failed
    keys = KeyStore(tmp_path / "keys.sqlite3")
    monkeypatch.setenv("RAG_CORPUS_DIR", str(corpus))
    monkeypatch.setenv("RAG_INDEX_DIR", str(index))
    monkeypatch.setenv("RAG_API__KEYS_DB", str(tmp_path / "keys.sqlite3"))
    monkeypatch.setenv("RAG_APP__SIGN_IN", "true")
    return {"corpus": corpus, "index": index, "keys": keys}


def _signed_in(key: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert not at.chat_input and "サインイン" in "\n".join(i.value for i in at.info)
    at.text_input[0].input(key)
    at.form_submit_button[0].click().run()
    assert not at.exception, at.exception
    return at


def _page_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.label for e in at.expander]
    parts += [str(d.value) for d in at.dataframe] + [t.value for t in at.title] + [str(s.options) for s in at.selectbox]
    parts += [str(s.options) for s in at.multiselect]
    return "\n".join(parts)


def test_sign_in_limits_every_page_to_the_keys_collections(signed_app):
    at = _signed_in("rag_not-a-key")
    assert any("正しくない" in e.value for e in at.error) and not at.chat_input

    at = _signed_in(signed_app["keys"].add("koukai", ["default"]))
    assert at.chat_input
    at.chat_input[0].set_value("青鯨プロジェクトの予算はいくらですか？").run()
    answer = at.session_state["chat.messages"][-1]["answer"]
    seen = [answer.render(), _page_text(at)]
    at.switch_page("rag/ui/documents.py").run()
    seen.append(_page_text(at))
    assert list(at.dataframe[0].value["ファイル名"]) == [OCR_DOC]
    assert "読み取り専用" in _page_text(at) and not at.file_uploader
    at.switch_page("rag/ui/schemes.py").run()
    assert not at.exception, at.exception
    seen.append(_page_text(at))
    for text in seen:
        for marker in FORBIDDEN:
            assert marker not in text, (marker, text[:300])
    # The evaluation page answers questions over every document: a limited key is not offered it.
    try:
        at.switch_page("rag/ui/evaluation.py").run()
    except Exception:  # noqa: BLE001 - an unregistered page may be refused outright
        pass
    assert "評価" not in [t.value for t in at.title]

    # A key for naibu does see it (so the checks above can fail), and can write there.
    at = _signed_in(signed_app["keys"].add("naibu", ["naibu"], can_write=True))
    at.chat_input[0].set_value("青鯨プロジェクトの予算はいくらですか？").run()
    assert "七億三千万円" in at.session_state["chat.messages"][-1]["answer"].render()
    at.switch_page("rag/ui/documents.py").run()
    assert list(at.dataframe[0].value["ファイル名"]) == ["naibu/kyoku-hi.pdf"]
    assert at.selectbox(key="upload.collection").options == ["naibu"]


def test_upload_into_a_collection_and_remove_with_confirmation(signed_app, tmp_path):
    corpus, index = signed_app["corpus"], signed_app["index"]
    at = _signed_in(signed_app["keys"].add("naibu", ["naibu"], can_write=True))
    at.switch_page("rag/ui/documents.py").run()
    pdf = make_pdf(tmp_path / "up.pdf", [["庁内限定 白鷺計画", "白鷺計画の説明会は2032年2月14日に開く。"]])
    at.file_uploader[0].set_value(("shirasagi.pdf", pdf.read_bytes(), "application/pdf"))
    at.form_submit_button[0].click().run()
    assert not at.exception, at.exception
    assert any("追加しました" in s.value for s in at.success), [e.value for e in at.error]
    assert (corpus / "naibu" / "shirasagi.pdf").is_file() and "naibu/shirasagi.pdf" in read_manifest(index).sources

    at.selectbox(key="remove.choice").select("naibu/shirasagi.pdf").run()
    next(b for b in at.button if b.label == "取り除く…").click().run()
    assert any("shirasagi.pdf" in w.value and "よろしいですか" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "やめる").click().run()
    assert "naibu/shirasagi.pdf" in read_manifest(index).sources  # cancelling changes nothing

    next(b for b in at.button if b.label == "取り除く…").click().run()
    next(b for b in at.button if b.label == "取り除く").click().run()
    assert not at.exception, at.exception
    assert "naibu/shirasagi.pdf" not in read_manifest(index).sources
    assert not (corpus / "naibu" / "shirasagi.pdf").exists()
    assert (corpus / "naibu" / "kyoku-hi.pdf").exists() and "naibu/kyoku-hi.pdf" in read_manifest(index).sources
    assert any("取り除きました" in s.value for s in at.success)
