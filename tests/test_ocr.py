"""Japanese OCR at ingest (rag.ocr): scans made inside the test from real text PDFs.

Tesseract costs seconds a page on this machine, so the suite reads a handful of
pages (two scanned at 200 dpi through the real ingest, one each at 150 dpi,
300 dpi and 200 dpi with noise and skew, one vertical page, one scanned page
inside a text PDF); every page and every question is measured by
`rag bench --ocr` (README, docs/decisions.md).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.config import OcrSettings, Settings
from rag.ocr.cleanup import fix_confusions, join_words, page_lines, spaces_between_japanese
from rag.ocr.tesseract import INSTALL_HINT, Word, missing

ROOT = Path(__file__).resolve().parent.parent
MAIN_PDF = ROOT / "corpus" / "digiden-sogo-senryaku-2023-2027.pdf"
DEV_PDFS = ROOT.parent / "shared" / "devpdfs"
FONT = Path("/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf")
# Dense text pages of the shipped strategy PDF (a KPI slide and a policy slide).
SCANNED_PAGES = (2, 6)

needs_tesseract = pytest.mark.skipif(
    missing("jpn+jpn_vert") is not None, reason=f"Tesseract がありません: {INSTALL_HINT}"
)


# ------------------------------------------------------------------ clean-up (no Tesseract needed)


@pytest.mark.parametrize(
    "raw, fixed",
    [
        ("デ一タ連携基盤", "データ連携基盤"),  # 一 after katakana is the long-vowel mark
        ("統ー的な基準", "統一的な基準"),  # ー between kanji is the kanji one
        ("第ー期", "第一期"),
        ("人ロ減少と窓ロ", "人口減少と窓口"),  # ロ after kanji is 口
        ("プ口グラム", "プログラム"),  # 口 beside katakana is ロ
        ("地域の協カと能カ", "地域の協力と能力"),  # カ after kanji is 力
        ("力ードとリ力バリー", "カードとリカバリー"),  # 力 beside katakana is カ
        ("2O23年度に1,O00団体、1O%", "2023年度に1,000団体、10%"),  # O inside a number is 0
        ("く主要KPI>", "<主要KPI>"),
    ],
)
def test_look_alike_characters_follow_their_neighbours(raw, fixed):
    assert fix_confusions(raw) == fixed


@pytest.mark.parametrize(
    "kept",
    ["コロナ禍", "ロードマップ", "カメラ", "一人一台", "Oita県", "OECD", "人口減少", "協力隊"],
)
def test_right_characters_are_left_alone(kept):
    # ロ before katakana, カ at a word start, 一 after kanji, O in a word, 口/力 between kanji: nothing to fix.
    assert fix_confusions(kept) == kept


def _w(text: str, left: int, width: int, line: int = 1) -> Word:
    return Word(text, left, 0, width, 40, 90.0, (1, 1, line))


def test_words_join_without_spaces_except_between_separate_latin_words():
    words = [_w("デジ", 0, 80), _w("タル", 82, 80), _w("202", 170, 60), _w("1", 232, 20), _w("年度", 255, 80),
             _w("KPI", 400, 60), _w("and", 480, 60)]
    assert join_words(words) == "デジタル2021年度KPI and"
    raw = " ".join(w.text for w in words)
    assert spaces_between_japanese(raw) == 1 and spaces_between_japanese(join_words(words)) == 0


def test_lines_follow_tesseract_line_numbers():
    words = [_w("地方の", 0, 100, 1), _w("人ロ", 110, 60, 1), _w("移住", 0, 60, 2)]
    assert page_lines(words) == ["地方の人口", "移住"]
    assert page_lines(words, spaces=True, confusions=False) == ["地方の 人ロ", "移住"]


# ------------------------------------------------------------------ Tesseract on scans made here


@pytest.fixture(scope="module")
def scanned_corpus(tmp_path_factory, embedder):
    """An image-only copy of two dense pages of the shipped PDF (200 dpi), ingested with OCR."""
    from rag.ingest import ingest
    from rag.ocr.fidelity import image_only_pdf

    if missing("jpn+jpn_vert"):
        pytest.skip(f"Tesseract がありません: {INSTALL_HINT}")
    base = tmp_path_factory.mktemp("ocr")
    corpus = base / "corpus"
    corpus.mkdir()
    image_only_pdf(MAIN_PDF, corpus / "scan.pdf", 200, pages=SCANNED_PAGES)
    settings = Settings(corpus_dir=corpus, index_dir=base / "index", ocr=OcrSettings(dpi=200))
    report = ingest(settings, embedder=embedder)
    return settings, report


def _reference(pages=SCANNED_PAGES) -> dict[int, str]:
    from rag.loaders import load_document

    doc = load_document(MAIN_PDF, MAIN_PDF.name)
    return {p.page: p.text for p in doc.pages if p.page in pages}


@needs_tesseract
def test_an_image_only_pdf_is_ingested_with_ocr_and_reads_like_its_text_layer(scanned_corpus, embedder):
    from rag.index import LocalIndex
    from rag.ocr.fidelity import char_accuracy

    settings, report = scanned_corpus
    (f,) = report.files
    assert f.status == "added" and f.error is None
    assert sorted(f.ocr_pages) == [1, 2]
    assert all(0.5 < c <= 1.0 for c in f.ocr_pages.values())
    index = LocalIndex.open(settings.index_dir, embedder=embedder.name, dimension=embedder.dimension)
    ref = _reference()
    for n, original in enumerate(SCANNED_PAGES, start=1):
        page = index.get_page("scan.pdf", n)
        assert char_accuracy(ref[original], page.text) >= 0.95, (original, page.text[:200])
        assert spaces_between_japanese(page.text) == 0


@needs_tesseract
def test_citations_of_an_ocr_page_say_ocr_in_text_and_json(scanned_corpus, embedder):
    from rag.pipeline import Pipeline

    settings, _ = scanned_corpus
    pipeline = Pipeline.load(settings, embedder=embedder)
    answer = pipeline.ask("サテライトオフィス等を設置した地方公共団体の2027年度までの目標は？")
    assert answer.found and answer.citations
    c = answer.citations[0]
    assert c.ocr and 0.5 < c.ocr_confidence <= 1.0
    assert "「OCR」" in answer.render()
    data = answer.to_json()["citations"][0]
    assert data["ocr"] is True and data["ocr_confidence"] == round(c.ocr_confidence, 3)


@needs_tesseract
def test_the_quote_is_highlighted_on_the_page_image(scanned_corpus, embedder):
    from PIL import Image

    from rag.ocr.highlight import quote_boxes
    from rag.pipeline import Pipeline
    from rag.render import render_page_png

    settings, _ = scanned_corpus
    pipeline = Pipeline.load(settings, embedder=embedder)
    result = pipeline.ocr_page("scan.pdf", 1)
    boxes = quote_boxes(result, "2030年度までに全ての地方公共団体がデジタル実装に取り組むことを見据え")
    assert boxes and all(0 <= left < 1 and 0 <= top < 0.3 for left, top, _, _ in boxes)  # near the top of the slide
    assert quote_boxes(result, "この文はページにない") == []
    plain = Image.open(io.BytesIO(render_page_png(Path(settings.corpus_dir) / "scan.pdf", 1)))
    marked = Image.open(io.BytesIO(render_page_png(Path(settings.corpus_dir) / "scan.pdf", 1, marks=boxes)))
    yellow = lambda im: sum(1 for r, g, b in im.convert("RGB").getdata() if r - b > 60 and g - b > 50)  # noqa: E731
    assert yellow(marked) > 1000 > yellow(plain)
    assert pipeline.ocr_page("scan.pdf", 99) is None


@needs_tesseract
def test_a_reingest_reads_the_cache_instead_of_ocr(scanned_corpus):
    from rag.ocr.pages import PageOcr

    settings, _ = scanned_corpus
    pdf = Path(settings.corpus_dir) / "scan.pdf"
    # Not knowing the file hash forces a render: the page image hash alone finds the earlier result.
    outcome = PageOcr(settings.ocr, settings.ocr_cache_file).read(pdf, None, [1, 2])
    assert (outcome.recognised, outcome.cached) == (0, 2)
    assert sorted(outcome.pages) == [1, 2]
    # No pickle: the cache is SQLite with JSON values.
    import sqlite3

    db = sqlite3.connect(settings.ocr_cache_file)
    (data,) = db.execute("SELECT data FROM results LIMIT 1").fetchone()
    assert json.loads(data)["words"]


@needs_tesseract
def test_an_uploaded_scan_is_accepted_when_ocr_runs_and_refused_without_it(scanned_corpus, tmp_path):
    from rag.ocr.pages import PageOcr
    from rag.uploads import UploadError, save_upload

    settings, _ = scanned_corpus
    data = (Path(settings.corpus_dir) / "scan.pdf").read_bytes()
    with pytest.raises(UploadError, match="テキスト層がありません"):
        save_upload(data, "scan.pdf", tmp_path / "without")
    # The same bytes were OCR'd at ingest: the upload check finds them by file hash in the cache.
    saved = save_upload(data, "scan.pdf", tmp_path / "with", ocr=PageOcr(settings.ocr, settings.ocr_cache_file))
    assert saved.status == "saved" and saved.pages == 2 and (tmp_path / "with" / "scan.pdf").is_file()


@needs_tesseract
@pytest.mark.parametrize("dpi, noise, skew, floor", [(150, 0.0, 0.0, 0.90), (300, 0.0, 0.0, 0.95), (200, 0.01, 1.0, 0.93)])
def test_character_accuracy_at_other_resolutions_and_a_poor_scan(dpi, noise, skew, floor):
    from rag.loaders import make_page
    from rag.ocr.cleanup import page_text
    from rag.ocr.fidelity import char_accuracy, png_bytes, scan_page
    from rag.ocr.pages import recognise

    page = SCANNED_PAGES[0]
    image = scan_page(MAIN_PDF, page, dpi, noise=noise, skew_deg=skew, seed=1)
    result = recognise(png_bytes(image), dpi, OcrSettings())
    text = make_page("x.pdf", page, page_text(result.words)).text
    assert char_accuracy(_reference()[page], text) >= floor


@needs_tesseract
@pytest.mark.skipif(not DEV_PDFS.is_dir(), reason="../shared/devpdfs がありません（発行元の PDF はリポジトリに含めません）")
def test_a_development_document_scanned_at_200_dpi():
    from rag.loaders import load_document, make_page
    from rag.ocr.cleanup import page_text
    from rag.ocr.fidelity import char_accuracy, png_bytes, scan_page
    from rag.ocr.pages import recognise

    pdf = DEV_PDFS / "d1_ikuji_jitan.pdf"
    doc = load_document(pdf, pdf.name)
    page = next(p for p in doc.pages if len(p.text) >= 300)
    result = recognise(png_bytes(scan_page(pdf, page.page, 200)), 200, OcrSettings())
    # Lower than the strategy slides (measured 0.74 on this page): the scan also has the words
    # drawn inside the figures, which the text layer lacks, and they land between its lines.
    assert char_accuracy(page.text, make_page("x.pdf", page.page, page_text(result.words)).text) >= 0.7


@needs_tesseract
@pytest.mark.skipif(not FONT.is_file(), reason="日本語フォント（fonts-ipaexfont-gothic）がありません")
def test_vertical_text_is_read_with_the_vertical_model():
    from PIL import Image, ImageDraw, ImageFont

    from rag.ocr.cleanup import page_text
    from rag.ocr.fidelity import char_accuracy, png_bytes
    from rag.ocr.pages import recognise

    columns = ["地域の人口減少に対応するため", "移住と定住の支援を強化し", "子育て世代の転入を促進する",
               "令和六年度から新たな補助金を", "創設して空き家の改修を支援する"]
    font = ImageFont.truetype(str(FONT), 40)
    image = Image.new("L", (900, 900), 255)
    draw = ImageDraw.Draw(image)
    for c, column in enumerate(columns):  # right to left, top to bottom
        for i, ch in enumerate(column):
            draw.text((800 - 90 * c, 60 + 52 * i), ch, font=font, fill=0)
    result = recognise(png_bytes(image), 200, OcrSettings())
    assert result.languages == "jpn_vert"
    assert char_accuracy("".join(columns), page_text(result.words)) >= 0.95


@needs_tesseract
def test_a_scanned_page_inside_a_text_pdf_is_ocrd_and_the_text_pages_are_not(tmp_path):
    import pypdf

    from rag.loaders import load_document
    from rag.ocr.fidelity import image_only_pdf
    from rag.ocr.pages import PageOcr

    scan = image_only_pdf(MAIN_PDF, tmp_path / "scan.pdf", 200, pages=[6])
    writer = pypdf.PdfWriter()
    original = pypdf.PdfReader(MAIN_PDF)
    writer.add_page(original.pages[0])
    writer.add_page(pypdf.PdfReader(scan).pages[0])
    writer.add_page(original.pages[2])
    mixed = tmp_path / "mixed.pdf"
    with mixed.open("wb") as fh:
        writer.write(fh)
    plain = load_document(mixed, "mixed.pdf")
    assert [p.page for p in plain.pages] == [1, 3] and "p.2: テキストがありません" in plain.problems[0]
    ocr = PageOcr(OcrSettings(dpi=200), tmp_path / "cache.sqlite")
    doc = load_document(mixed, "mixed.pdf", ocr, "sha-of-mixed")
    assert [p.page for p in doc.pages] == [1, 2, 3] and doc.ocr_pages == [2] and not doc.problems
    assert "サテライトオフィス等を設置した地方公共団体" in doc.pages[1].text
    # The text pages are exactly what they were without OCR.
    assert [doc.pages[0], doc.pages[2]] == plain.pages


def test_the_page_limit_is_a_setting_and_says_what_was_not_read(tmp_path):
    from pdfs import make_image_only_pdf

    from rag.loaders import DocumentError, load_document
    from rag.ocr.pages import PageOcr

    path = make_image_only_pdf(tmp_path / "scan.pdf", pages=3)
    ocr = PageOcr(OcrSettings(max_pages_per_file=0), tmp_path / "cache.sqlite")
    outcome = ocr.read(path, None, [1, 2, 3])
    assert outcome.pages == {} and outcome.recognised == 0
    assert outcome.problems == ["p.1〜p.3（3ページ）: OCRの上限（1ファイル0ページ、ocr.max_pages_per_file）を超えたため読み取りませんでした"]
    if missing("jpn+jpn_vert") is None:
        with pytest.raises(DocumentError, match="テキスト層がありません"):
            load_document(path, "scan.pdf", ocr)


def test_without_tesseract_scans_are_refused_as_before_with_one_line_on_what_to_install(tmp_path):
    from pdfs import make_image_only_pdf

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    make_image_only_pdf(corpus / "scan.pdf")
    # Only the virtualenv's scripts on PATH: no tesseract binary to find.
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "RAG_CORPUS_DIR": str(corpus),
           "RAG_INDEX_DIR": str(tmp_path / "index")}
    out = subprocess.run([sys.executable, "-m", "rag", "ingest"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[0] == "✗ scan.pdf: テキスト層がありません（スキャン画像のみのPDF）。OCRで文字を付けたPDFにしてから追加してください"
    assert lines[-1] == f"注意: {INSTALL_HINT}"
