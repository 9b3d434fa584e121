"""`rag api` end to end: a real server process on 127.0.0.1, real keys, a real index of real PDFs.

The corpus is made here: three pages of the shipped PDF directly in the corpus
(collection ``default``), a made PDF in ``koukai/`` and a made "庁内限定" PDF in
``naibu/``.  The keys are created with `rag keys add`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from pdfs import make_pdf
from rag.api.keys import KeyStore
from rag.config import PROJECT_ROOT

SECRET_LINES = [
    "庁内限定 青鯨プロジェクト計画（案）",
    "青鯨プロジェクトの予算は七億三千万円とし、鯨骨再生交付金を充てる。",
    "青鯨プロジェクトの開始は2031年4月である。",
]
# Strings that exist only in the forbidden document (never in a question the tests send).
FORBIDDEN = ["七億三千万", "2031年4月", "鯨骨再生交付金", "kyoku-hi", "naibu"]
PUBLIC_LINES = ["公開資料 子育て支援の案内", "子育て応援交付金は、市町村が行う子育て支援事業に交付する。", "申請の締切は2026年9月30日である。"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    pypdf = pytest.importorskip("pypdf")
    root = tmp_path_factory.mktemp("api")
    corpus = root / "corpus"
    (corpus / "koukai").mkdir(parents=True)
    (corpus / "naibu").mkdir()
    reader = pypdf.PdfReader(PROJECT_ROOT / "corpus" / "digiden-sogo-senryaku-2023-2027.pdf")
    writer = pypdf.PdfWriter()
    for n in range(3):
        writer.add_page(reader.pages[n])
    with open(corpus / "senryaku.pdf", "wb") as fh:
        writer.write(fh)
    make_pdf(corpus / "koukai" / "kosodate.pdf", [PUBLIC_LINES])
    make_pdf(corpus / "naibu" / "kyoku-hi.pdf", [SECRET_LINES])
    env = {
        **os.environ,
        "RAG_CORPUS_DIR": str(corpus),
        "RAG_INDEX_DIR": str(root / "index"),
        "RAG_API__KEYS_DB": str(root / "keys.sqlite3"),
        "RAG_API__RATE_PER_MINUTE": "100",
        "RAG_API__RELOAD_CHECK_S": "0.2",
        "RAG_APP__MAX_UPLOAD_MB": "1",
    }
    rag = [sys.executable, "-m", "rag"]
    subprocess.run([*rag, "ingest"], env=env, check=True, capture_output=True)

    def add_key(*args: str) -> str:
        out = subprocess.run([*rag, "keys", "add", *args], env=env, check=True, capture_output=True, text=True).stdout
        return out.strip().splitlines()[-1]

    store = KeyStore(root / "keys.sqlite3")  # the same file the CLI writes; most keys made here to save start-ups
    keys = {
        "public": add_key("public", "--collections", "default,koukai"),
        "writer": add_key("writer", "--collections", "naibu", "--write"),
        "revoked": add_key("old"),
        "naibu": store.add("naibu-reader", ["naibu"]),
        "all": store.add("admin"),
        "defwriter": store.add("defwriter", ["default"], can_write=True),
        **{name: store.add(name) for name in ("burst", "hammer1", "hammer2")},
    }
    subprocess.run([*rag, "keys", "revoke", "old"], env=env, check=True, capture_output=True)
    port = _free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([*rag, "api", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            log.flush()
            pytest.fail(f"rag api did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.3)
    yield {"base": base, "keys": keys, "env": env, "corpus": corpus, "root": root, "rag": rag}
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def _client(api, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api['keys'][key]}"} if key else {}
    return httpx.Client(base_url=api["base"], headers=headers, timeout=60)


def _assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    # Messages are for users: Japanese.
    assert any("\u3040" <= ch <= "\u30ff" for ch in err["message"]), err["message"]


def test_keys_cli_prints_key_once_and_lists_hashes_only(api):
    out = subprocess.run([*api["rag"], "keys", "list"], env=api["env"], check=True, capture_output=True, text=True).stdout
    assert "public\tdefault,koukai\t読み取り" in out
    assert "old\t" in out and "無効" in out
    stored = (api["root"] / "keys.sqlite3").read_bytes()
    for key in api["keys"].values():
        assert key.startswith("rag_") and key.encode() not in stored and key not in out


def test_missing_wrong_and_revoked_keys_get_401(api):
    with httpx.Client(base_url=api["base"], timeout=30) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        _assert_error(c.get("/v1/documents"), 401, "invalid_api_key")
        _assert_error(c.get("/v1/documents", headers={"Authorization": "Bearer rag_wrong"}), 401, "invalid_api_key")
        _assert_error(c.post("/v1/ask", json={"question": "予算は？"}, headers={"Authorization": f"Bearer {api['keys']['revoked']}"}), 401, "invalid_api_key")
        _assert_error(c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "予算は？"}]}), 401, "invalid_api_key")
        assert c.get("/openapi.json").json()["paths"]["/v1/ask"]


def test_the_docs_pages_load_nothing_from_outside(api):
    """LGWAN networks have no internet: /docs and /redoc must get every script and style from the API."""
    import re

    with httpx.Client(base_url=api["base"], timeout=30) as c:
        for page in ("/docs", "/redoc"):
            html = c.get(page).text
            assets = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html)
            urls = [a or b for a, b in assets]
            assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], (page, urls)
            for url in urls:
                assert c.get(url).status_code == 200, url


def test_ask_returns_the_cli_json_with_citations(api):
    with _client(api, "public") as c:
        r = c.post("/v1/ask", json={"question": "子育て応援交付金の申請の締切はいつですか？"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"question", "answer", "found", "confidence", "citations", "hits", "timings_ms"}
    assert body["found"] and "2026年9月30日" in body["answer"]
    assert body["citations"][0]["source"] == "koukai/kosodate.pdf"


def _everything_a_key_can_read(c: httpx.Client, base_doc: str) -> list[str]:
    """Every endpoint that returns document content, with questions aimed at the forbidden document."""
    questions = ["青鯨プロジェクトの予算はいくらですか？", "青鯨プロジェクトはいつ開始しますか？", "庁内限定の計画の交付金は？"]
    bodies = []
    for q in questions:
        bodies.append(c.post("/v1/ask", json={"question": q, "k": 100}).text)
        bodies.append(c.post("/v1/ask", json={"question": "その予算は？", "history": [q]}).text)
        bodies.append(c.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": q}]}).text)
        bodies.append(c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": q}], "stream": True}).text)
    bodies.append(c.post("/v1/ask", json={"question": questions[0], "sources": [base_doc]}).text)
    bodies.append(c.get("/v1/documents").text)
    bodies.append(c.get("/v1/collections").text)
    bodies.append(c.get("/v1/schemes").text)
    bodies.append(c.get("/v1/schemes", params={"keyword": "交付金"}).text)
    bodies.append(c.get(f"/v1/documents/{base_doc}/pages/1").text)
    bodies.append(c.get(f"/v1/documents/{base_doc}/file").text)
    return bodies


def test_no_text_from_a_forbidden_collection_reaches_the_caller(api):
    secret_doc = "naibu/kyoku-hi.pdf"
    with _client(api, "public") as c:
        bodies = _everything_a_key_can_read(c, secret_doc)
    for body in bodies:
        for marker in FORBIDDEN:
            assert marker not in body, (marker, body[:500])
    # The same calls with a key for that collection do return its text: the check above can fail.
    with _client(api, "naibu") as c:
        seen = "\n".join(_everything_a_key_can_read(c, secret_doc))
    for marker in ["七億三千万", "2031年4月", "鯨骨再生交付金", "naibu/kyoku-hi.pdf"]:
        assert marker in seen, marker
    # ...and nothing of the public documents reaches the naibu key.
    assert "kosodate" not in seen and "2026年9月30日" not in seen and "senryaku.pdf" not in seen


def test_documents_and_page_text_follow_the_key(api):
    with _client(api, "public") as c:
        docs = {d["source"]: d["collection"] for d in c.get("/v1/documents").json()["documents"]}
        assert docs == {"senryaku.pdf": "default", "koukai/kosodate.pdf": "koukai"}
        page = c.get("/v1/documents/koukai/kosodate.pdf/pages/1").json()
        assert "子育て応援交付金" in page["text"]
        pdf = c.get("/v1/documents/senryaku.pdf/file")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
        _assert_error(c.get("/v1/documents/koukai/kosodate.pdf/pages/9"), 404, "unknown_page")


TRAVERSALS = ["../corpus/naibu/kyoku-hi.pdf", "..%2Fnaibu%2Fkyoku-hi.pdf", "koukai/../naibu/kyoku-hi.pdf", "/etc/passwd", "../../../../etc/passwd", "naibu\\kyoku-hi.pdf", "%2e%2e/%2e%2e/etc/passwd"]


def test_path_traversal_in_every_parameter_is_refused(api):
    with _client(api, "public") as c:
        for bad in TRAVERSALS:
            r = c.post("/v1/ask", json={"question": "予算は？", "sources": [bad]})
            _assert_error(r, 404, "unknown_document")
            for url in (f"/v1/documents/{bad}/file", f"/v1/documents/{bad}/pages/1"):
                r = c.get(url)
                assert r.status_code == 404, (url, r.text)
                assert "root:" not in r.text and "七億三千万" not in r.text
            assert c.get("/v1/schemes", params={"keyword": bad, "area": bad}).status_code == 200
    # The writer may write to naibu only: every traversal aims outside it.
    outside = [b.replace("naibu", "koukai").replace("kyoku-hi", "kosodate").replace("koukai/../koukai", "naibu/../koukai") for b in TRAVERSALS]
    outside += ["senryaku.pdf", "naibu/../senryaku.pdf", "../senryaku.pdf", "naibu/../../corpus/senryaku.pdf"]
    with _client(api, "writer") as c:
        for bad in outside:
            assert c.delete(f"/v1/documents/{bad}").status_code == 404, bad
            r = c.post("/v1/documents", params={"filename": "x.pdf", "collection": bad}, content=b"%PDF-1.4")
            _assert_error(r, 404, "unknown_collection")
        assert (api["corpus"] / "koukai" / "kosodate.pdf").exists()
        # A traversal in the file name is sanitised into a plain name inside the collection.
        data = make_pdf(api["root"] / "made.pdf", [["パス横断の試験用の文書です。"]]).read_bytes()
        r = c.post("/v1/documents", params={"filename": "../../../evil.pdf", "collection": "naibu"}, content=data)
        assert r.status_code == 201, r.text
        assert r.json()["source"] == "naibu/evil.pdf" and (api["corpus"] / "naibu" / "evil.pdf").exists()
        assert not (api["root"] / "evil.pdf").exists() and not (api["corpus"] / "evil.pdf").exists()
        assert c.delete("/v1/documents/naibu/evil.pdf").status_code == 200


def test_oversized_body_long_question_and_unknown_collection(api):
    with _client(api, "public") as c:
        _assert_error(c.post("/v1/ask", json={"question": "あ" * 100_000}), 413, "body_too_large")
        _assert_error(c.post("/v1/ask", json={"question": "あ" * 5_000}), 400, "invalid_question")
        _assert_error(c.post("/v1/ask", json={"question": ""}), 400, "invalid_question")
        _assert_error(c.post("/v1/ask", json={"k": 3}), 422, "invalid_request")
        _assert_error(c.post("/v1/ask", content=b"{not json", headers={"Content-Type": "application/json"}), 422, "invalid_request")
    with _client(api, "writer") as c:
        _assert_error(c.post("/v1/documents", params={"filename": "a.pdf", "collection": "koukai"}, content=b"%PDF-1.4"), 404, "unknown_collection")
        _assert_error(c.post("/v1/documents", params={"filename": "a.pdf", "collection": "naibu"}, content=b"%PDF" + b"0" * 1_100_000), 413, "body_too_large")
        _assert_error(c.post("/v1/documents", params={"filename": "a.pdf", "collection": "naibu"}, content=b"not a pdf"), 400, "invalid_document")
    with _client(api, "public") as c:
        _assert_error(c.post("/v1/documents", params={"filename": "a.pdf", "collection": "koukai"}, content=b"%PDF-1.4"), 403, "read_only_key")


def test_openai_client_gets_a_cited_answer(api):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{api['base']}/v1", api_key=api["keys"]["public"])
    assert [m.id for m in client.models.list()] == ["seisaku-rag"]
    q = "子育て応援交付金の申請の締切はいつですか？"
    done = client.chat.completions.create(model="seisaku-rag", messages=[{"role": "system", "content": "日本語で"}, {"role": "user", "content": q}])
    text = done.choices[0].message.content
    assert "2026年9月30日" in text and "[1]" in text and "出典" in text
    citations = done.model_extra["citations"]
    assert citations[0]["source"] == "koukai/kosodate.pdf" and citations[0]["marker"] == 1
    pieces, extra = [], None
    for chunk in client.chat.completions.create(model="seisaku-rag", messages=[{"role": "user", "content": q}], stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if (chunk.model_extra or {}).get("citations"):
            extra = chunk.model_extra["citations"]
    assert len(pieces) > 1 and "".join(pieces) == text
    assert extra == citations
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{api['base']}/v1", api_key="rag_nope").chat.completions.create(model="x", messages=[{"role": "user", "content": q}])


@contextlib.contextmanager
def _asking_meanwhile(api, key: str, question: dict):
    """Ask ``question`` over and over in a thread while the block runs; yields the status codes."""
    results: list[int] = []
    stop = threading.Event()

    def ask():
        with _client(api, key) as c:
            while not stop.is_set():
                results.append(c.post("/v1/ask", json=question).status_code)
                time.sleep(0.15)  # stay under the per-key rate limit: this test is about the index switch

    t = threading.Thread(target=ask)
    t.start()
    try:
        yield results
    finally:
        stop.set()
        t.join()


def test_write_key_adds_and_removes_a_document_atomically(api):
    data = make_pdf(api["root"] / "new.pdf", [["庁内限定 白鷺計画", "白鷺計画の説明会は2032年2月14日に開く。"]]).read_bytes()
    q = {"question": "白鷺計画の説明会はいつですか？"}
    with _client(api, "writer") as w, _client(api, "naibu") as r, _client(api, "all") as admin:
        added = w.post("/v1/documents", params={"filename": "shirasagi.pdf", "collection": "naibu"}, content=data)
        assert added.status_code == 201, added.text
        assert added.json()["source"] == "naibu/shirasagi.pdf"
        # The other process-wide reader sees it once the new index version is live.
        deadline = time.time() + 10
        while "2032年2月14日" not in r.post("/v1/ask", json=q).text:
            assert time.time() < deadline
            time.sleep(0.2)
        again = w.post("/v1/documents", params={"filename": "copy.pdf", "collection": "naibu"}, content=data)
        assert again.json()["status"] == "duplicate"
        # The same bytes in a collection the uploader cannot see are not reported (that would name the file).
        secret = (api["corpus"] / "naibu" / "kyoku-hi.pdf").read_bytes()
        with _client(api, "defwriter") as d:
            other = d.post("/v1/documents", params={"filename": "k.pdf", "collection": "default"}, content=secret)
            assert other.status_code == 201 and other.json()["status"] == "saved", other.text
            assert "naibu" not in other.text and "kyoku-hi" not in other.text
            assert d.delete("/v1/documents/k.pdf").status_code == 200
        # Removal: while it runs, every answer is either the old or the new index, never an error.
        with _asking_meanwhile(api, "hammer1", q) as results:
            removed = w.delete("/v1/documents/naibu/shirasagi.pdf")
            time.sleep(0.5)
        assert removed.status_code == 200, removed.text
        assert results and set(results) == {200}
        assert "2032年2月14日" not in r.post("/v1/ask", json=q).text
        assert "naibu/shirasagi.pdf" not in admin.get("/v1/documents").text
        assert not (api["corpus"] / "naibu" / "shirasagi.pdf").exists()


def test_reingest_while_serving_switches_the_index_without_failed_requests(api, embedder):
    from rag.config import Settings
    from rag.ingest import ingest

    env = api["env"]
    settings = Settings(corpus_dir=Path(env["RAG_CORPUS_DIR"]), index_dir=Path(env["RAG_INDEX_DIR"]))
    make_pdf(api["corpus"] / "koukai" / "tsuika.pdf", [["公開資料 追加", "川霧補助金の上限は四百万円である。"]])
    q = {"question": "川霧補助金の上限はいくらですか？"}
    with _asking_meanwhile(api, "hammer2", q) as results:
        report = ingest(settings, embedder=embedder)
        assert [f.source for f in report.files if f.status == "added"] == ["koukai/tsuika.pdf"]
        with _client(api, "public") as c:
            deadline = time.time() + 15
            while "四百万円" not in c.post("/v1/ask", json=q).text:
                assert time.time() < deadline
                time.sleep(0.2)
    assert results and set(results) == {200}


def test_rate_limit_gives_429_with_retry_after(api):
    with _client(api, "burst") as c:
        codes = [c.get("/v1/collections") for _ in range(110)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and codes[0].status_code == 200
    assert int(limited[0].headers["Retry-After"]) >= 1
    _assert_error(limited[0], 429, "rate_limited")
    # Another key is not affected.
    with _client(api, "public") as c:
        assert c.get("/v1/collections").status_code == 200
