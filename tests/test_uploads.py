"""rag.uploads: names are made safe, bad files are refused with a clear message, nothing is overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdfs import make_image_only_pdf, make_pdf
from rag.uploads import MAX_STEM_BYTES, UploadError, safe_filename, save_upload


@pytest.fixture(scope="module")
def good_pdf(tmp_path_factory) -> bytes:
    path = make_pdf(tmp_path_factory.mktemp("pdf") / "good.pdf", [["地域交通のリ・デザインを進める。"], ["二ページ目の本文。"]])
    return path.read_bytes()


@pytest.fixture(scope="module")
def other_pdf(tmp_path_factory) -> bytes:
    return make_pdf(tmp_path_factory.mktemp("pdf") / "other.pdf", [["別の内容の資料です。"]]).read_bytes()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../x.pdf", "x.pdf"),
        ("..\\..\\Windows\\x.pdf", "x.pdf"),
        ("/etc/passwd", "passwd.pdf"),
        ("C:\\Users\\me\\資料.PDF", "資料.pdf"),
        ("ｆｕｌｌ／ｗｉｄｔｈ．ｐｄｆ", "width.pdf"),  # NFKC turns ／ into a separator, which is then stripped
        ("総合戦略（2023年度～2027年度）.pdf", "総合戦略(2023年度~2027年度).pdf"),
        ("a\x00b\x1fc\x7f.pdf", "abc.pdf"),
        ("evil\u202egpj.exe.pdf", "evilgpj.exe.pdf"),  # bidi override removed
        ('a<b>c:d"e|f?g*h.pdf', "a_b_c_d_e_f_g_h.pdf"),
        ("  report .pdf", "report.pdf"),
        (".hidden.pdf", "hidden.pdf"),
        ("notes.txt", "notes.txt.pdf"),
        ("CON.pdf", "CON_.pdf"),
        ("lpt1", "lpt1_.pdf"),
        ("", "無題の文書.pdf"),
        ("???.pdf", "___.pdf"),
        ("..", "無題の文書.pdf"),
    ],
)
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected


def test_safe_filename_limits_length_and_keeps_japanese():
    name = safe_filename("地方創生" * 200 + ".pdf")
    assert name.endswith(".pdf") and name.startswith("地方創生")
    assert len(name[:-4].encode("utf-8")) <= MAX_STEM_BYTES
    name.encode("utf-8").decode("utf-8")  # cut on a character boundary


def test_save_strips_directories_and_stays_inside_corpus(tmp_path, good_pdf):
    corpus = tmp_path / "corpus"
    result = save_upload(good_pdf, "../../x.pdf", corpus)
    assert result.status == "saved"
    assert result.path == (corpus / "x.pdf").resolve()
    assert result.path.read_bytes() == good_pdf
    assert not (tmp_path / "x.pdf").exists()
    assert result.pages == 2
    # no temporary files left behind
    assert sorted(p.name for p in corpus.iterdir()) == ["x.pdf"]


def test_collision_gets_a_suffix_and_never_overwrites(tmp_path, good_pdf, other_pdf):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "資料.pdf").write_bytes(other_pdf)
    first = save_upload(good_pdf, "資料.pdf", corpus)
    assert first.source == "資料 (2).pdf"
    assert (corpus / "資料.pdf").read_bytes() == other_pdf  # untouched
    assert "資料 (2).pdf" in first.message()


def test_identical_content_is_reported_not_duplicated(tmp_path, good_pdf):
    corpus = tmp_path / "corpus"
    save_upload(good_pdf, "a.pdf", corpus)
    again = save_upload(good_pdf, "a.pdf", corpus)
    renamed = save_upload(good_pdf, "別名.pdf", corpus)
    assert again.status == renamed.status == "duplicate"
    assert again.source == renamed.source == "a.pdf"
    assert "既にあります" in again.message()
    assert sorted(p.name for p in corpus.iterdir()) == ["a.pdf"]


def test_oversize_is_refused(tmp_path, good_pdf):
    big = good_pdf + b"\n%" + b"0" * (1024 * 1024)
    with pytest.raises(UploadError, match="大きすぎます"):
        save_upload(big, "big.pdf", tmp_path / "corpus", max_upload_mb=1)
    assert not (tmp_path / "corpus").exists() or not any((tmp_path / "corpus").iterdir())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "空のファイル"),
        (b"PK\x03\x04 this is a zip, not a PDF", "PDFではありません"),
        (b"<html>%PDF-1.7</html>", "PDFではありません"),
        (b"%PDF-1.7\n garbage that is not a PDF body", "PDFを読み込めません"),
    ],
)
def test_not_a_pdf_is_refused(tmp_path, data, message):
    with pytest.raises(UploadError, match=message):
        save_upload(data, "x.pdf", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_encrypted_pdf_is_refused(tmp_path):
    data = make_pdf(tmp_path / "enc.pdf", [["秘密の資料"]], encrypt="secret").read_bytes()
    corpus = tmp_path / "corpus"
    with pytest.raises(UploadError, match="暗号化"):
        save_upload(data, "enc.pdf", corpus)
    assert not corpus.exists() or list(corpus.iterdir()) == []


def test_textless_pdf_is_refused(tmp_path):
    data = make_image_only_pdf(tmp_path / "scan.pdf").read_bytes()
    corpus = tmp_path / "corpus"
    with pytest.raises(UploadError, match="テキスト層がありません"):
        save_upload(data, "scan.pdf", corpus)
    assert not corpus.exists() or list(corpus.iterdir()) == []


def test_partly_textless_pdf_is_saved_with_problems(tmp_path):
    data = make_pdf(tmp_path / "mixed.pdf", [["本文のあるページ"], []]).read_bytes()
    result = save_upload(data, "mixed.pdf", tmp_path / "corpus")
    assert result.status == "saved"
    assert any("OCR" in p for p in result.problems)


def test_symlink_with_the_same_name_is_not_followed(tmp_path, good_pdf, other_pdf):
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(other_pdf)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "x.pdf").symlink_to(outside)
    result = save_upload(good_pdf, "x.pdf", corpus)
    assert result.source == "x (2).pdf"
    assert outside.read_bytes() == other_pdf
    assert Path(corpus / "x.pdf").is_symlink()
