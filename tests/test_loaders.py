import json

import pytest

from conftest import ROOT, SHARED
from pdfs import make_image_only_pdf, make_pdf
from rag.loaders import NO_TEXT_PAGE, DocumentError, load_document

CORPUS = ROOT / "corpus"


def test_default_corpus_pdf_has_one_page_object_per_pdf_page_with_headings():
    doc = load_document(CORPUS / "digiden-sogo-senryaku-2023-2027.pdf", "digiden-sogo-senryaku-2023-2027.pdf")
    assert doc.page_count == 38
    assert [p.page for p in doc.pages] == list(range(1, 39))
    by_page = {p.page: p for p in doc.pages}
    assert by_page[2].heading == "デジタル田園都市国家構想の実現に向けた新たな主要KPI"
    assert "1,500団体" in by_page[2].text
    assert by_page[2].raw_text and by_page[2].label == "2"


def test_headings_match_the_corpus_page_map():
    pages_file = SHARED / "corpus" / "pages.jsonl"
    if not pages_file.exists():
        pytest.skip("../shared/corpus/pages.jsonl is not beside the checkout")
    titles = {
        row["page"]: row["title"]
        for row in map(json.loads, pages_file.read_text(encoding="utf-8").splitlines())
        if row["doc"] == "digiden-sogo-senryaku-2023-2027"
    }
    doc = load_document(CORPUS / "digiden-sogo-senryaku-2023-2027.pdf", "x.pdf")
    from rag.normalize import comparable

    same = sum(comparable(p.heading) == comparable(titles[p.page]) for p in doc.pages)
    assert same >= 36, f"only {same}/38 headings match the page map"


def test_text_file_pages_split_on_form_feed(tmp_path):
    path = tmp_path / "memo.txt"
    path.write_text("一ページ目の見出し\n本文。\f二ページ目\n本文。\f\f", encoding="utf-8")
    doc = load_document(path, "memo.txt")
    assert [p.page for p in doc.pages] == [1, 2]
    assert doc.page_count == 4 and len(doc.problems) == 2
    no_ff = tmp_path / "one.md"
    no_ff.write_text("# 題\n本文です。", encoding="utf-8")
    assert [p.page for p in load_document(no_ff, "one.md").pages] == [1]


def _error(path, name):
    with pytest.raises(DocumentError) as info:
        load_document(path, name)
    message = str(info.value)
    assert message.startswith(f"{name}: ") and "\n" not in message
    return message


def test_corrupt_pdf_is_one_clear_line(tmp_path):
    good = make_pdf(tmp_path / "good.pdf", [["見出し", "本文です。"]])
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(good.read_bytes()[:300])
    assert "壊れ" in _error(broken, "broken.pdf")


def test_encrypted_pdf_is_refused(tmp_path):
    path = make_pdf(tmp_path / "locked.pdf", [["秘密の見出し", "本文です。"]], encrypt="secret")
    assert "パスワード" in _error(path, "locked.pdf")


def test_pdf_without_text_layer_says_ocr(tmp_path):
    path = make_image_only_pdf(tmp_path / "scan.pdf")
    assert "OCR" in _error(path, "scan.pdf")


def test_blank_page_is_reported_and_skipped(tmp_path):
    path = make_pdf(tmp_path / "blank.pdf", [["見出し", "本文です。"], [], ["三ページ目", "本文。"]])
    doc = load_document(path, "blank.pdf")
    assert [p.page for p in doc.pages] == [1, 3]
    assert doc.problems == [f"p.2: {NO_TEXT_PAGE}"]


def test_empty_file_non_utf8_text_and_unknown_extension(tmp_path):
    (tmp_path / "empty.pdf").write_bytes(b"")
    assert "空" in _error(tmp_path / "empty.pdf", "empty.pdf")
    (tmp_path / "sjis.txt").write_bytes("行政文書".encode("cp932") + b"\x80\xff")
    assert "UTF-8" in _error(tmp_path / "sjis.txt", "sjis.txt")
    (tmp_path / "slides.pptx").write_bytes(b"PK\x03\x04")
    assert "対応していない形式" in _error(tmp_path / "slides.pptx", "slides.pptx")
    (tmp_path / "fake.pdf").write_text("not a pdf", encoding="utf-8")
    assert "PDFではありません" in _error(tmp_path / "fake.pdf", "fake.pdf")
