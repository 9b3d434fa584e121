"""Each way a public-sector PDF hides its text from plain extraction, reproduced with reportlab.

Every test builds the problem into a small PDF, checks (where it is cheap) that
plain extraction really shows the problem, and then checks that the loader
gives what a reader sees: the title first, each heading once, vertical text
joined, no private-use glyphs, blank pages reported rather than indexed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pypdf
import pytest
from reportlab.pdfgen import canvas

from pdfs import FONT, make_pdf
from rag.loaders import NO_TEXT_PAGE, DocumentError, load_document
from rag.normalize import collapse_overprint, comparable, join_vertical_runs

SLIDE = (780, 540)
BOLD_OFFSETS = ((0, 0), (0.3, 0), (0, 0.3), (0.3, 0.3))


# ------------------------------------------------------------ drawing helpers


def _draw(c: canvas.Canvas, x: float, y: float, text: str, size: float = 14, font: str = FONT) -> None:
    c.setFont(font, size)
    c.drawString(x, y, text)


def _bold(c: canvas.Canvas, x: float, y: float, text: str, size: float = 24) -> None:
    """Bold the way many office PDFs fake it: the same glyphs printed four times, 0.3 pt apart."""
    for dx, dy in BOLD_OFFSETS:
        _draw(c, x + dx, y + dy, text, size)


def _vertical(c: canvas.Canvas, x: float, top: float, text: str, size: float = 20) -> None:
    """縦書き as drawn by most producers: one character per string, going down."""
    for i, ch in enumerate(text):
        _draw(c, x, top - size * (i + 1), ch, size)


def _lines_of(doc, page: int = 1) -> list[str]:
    return next(p for p in doc.pages if p.page == page).text.split("\n")


def _plain_pypdf(path: Path, page: int = 0) -> str:
    return pypdf.PdfReader(path).pages[page].extract_text()


def _add_to_unicode(path: Path, base_font: str, mapping: dict[str, str]) -> None:
    """Give a simple font a /ToUnicode map, as symbol fonts (Wingdings) carry to private-use code points."""
    from pypdf.generic import NameObject, StreamObject

    writer = pypdf.PdfWriter(clone_from=str(path))
    lines = [f"<{ord(src):02X}> <{ord(dst):04X}>" for src, dst in mapping.items()]
    cmap = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def\n"
        "1 begincodespacerange <00> <FF> endcodespacerange\n"
        f"{len(lines)} beginbfchar\n" + "\n".join(lines) + "\nendbfchar\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end\n"
    )
    stream = StreamObject()
    stream.set_data(cmap.encode("ascii"))
    ref = writer._add_object(stream)
    for page in writer.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            if font.get("/BaseFont") == f"/{base_font}":
                font[NameObject("/ToUnicode")] = ref
    with path.open("wb") as fh:
        writer.write(fh)


# ------------------------------------------------------------------- problems


def test_overprinted_bold_heading_comes_out_once(tmp_path):
    path = tmp_path / "bold.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    _bold(c, 40, 480, "人口の減少について")
    _draw(c, 40, 420, "本文の一行目です。")
    _bold(c, 40, 360, "移動の縮小", size=14)
    _draw(c, 40, 330, "本文の二行目です。")
    c.showPage()
    c.save()
    assert _plain_pypdf(path).count("人口の減少について") == 4  # the problem is real

    doc = load_document(path, "bold.pdf")
    page = doc.pages[0]
    assert page.heading == "人口の減少について"
    assert _lines_of(doc) == ["人口の減少について", "本文の一行目です。", "移動の縮小", "本文の二行目です。"]
    assert page.raw_text.count("移動の縮小") == 1


def test_overprint_further_apart_than_a_glyph_tolerance_is_still_one_line(tmp_path):
    # Some producers offset the copies by a whole point: no longer "the same glyph", but the same line.
    path = tmp_path / "bold2.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    for dx in (0, 1.0, 2.0):
        _draw(c, 40 + dx, 480, "時代のトレンドと課題", 24)
    _draw(c, 40, 420, "本文です。")
    c.showPage()
    c.save()
    assert _lines_of(load_document(path, "b.pdf")) == ["時代のトレンドと課題", "本文です。"]


def test_vertical_text_is_joined_into_one_line(tmp_path):
    path = tmp_path / "tategaki.pdf"
    c = canvas.Canvas(str(path), pagesize=(595, 842))
    _draw(c, 60, 780, "国の人口推移と時代のトレンド", 16)
    _vertical(c, 60, 700, "時代のトレンド", 22)
    for i, line in enumerate(["人口の減少", "2014年の総人口は1億2,708万人です。", "晩婚化の進行", "平均初婚年齢が上がっています。"]):
        _draw(c, 160, 680 - 24 * i, line, 12)
    c.showPage()
    c.save()
    assert "時\n代\nの" in _plain_pypdf(path)  # one character per line

    lines = _lines_of(load_document(path, "t.pdf"))
    # The label on the left is read before the box it labels, as one line.
    assert lines == [
        "国の人口推移と時代のトレンド",
        "時代のトレンド",
        "人口の減少",
        "2014年の総人口は1億2,708万人です。",
        "晩婚化の進行",
        "平均初婚年齢が上がっています。",
    ]


def test_columns_of_vertical_text_read_right_to_left(tmp_path):
    path = tmp_path / "ribbon.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    _draw(c, 40, 480, "基本要件", 24)
    _vertical(c, 400, 420, "未達成の場合", 12)  # written first: the right-hand column
    _vertical(c, 386, 420, "返還義務あり", 12)
    c.showPage()
    c.save()
    # Like a wrapped line, the second column (written second, to the left) continues the first.
    assert _lines_of(load_document(path, "r.pdf")) == ["基本要件", "未達成の場合返還義務あり"]


def test_spaces_between_every_character_are_removed(tmp_path):
    path = tmp_path / "spaced.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    _draw(c, 40, 480, "補 助 金 の 概 要", 24)  # real spaces, as Word's justification leaves them
    text = c.beginText(40, 420)
    text.setFont(FONT, 14)
    text.setCharSpace(8)  # or letter-spacing with no space characters at all
    text.textOut("申請の受付期間")
    c.drawText(text)
    c.showPage()
    c.save()
    assert "補 助 金" in _plain_pypdf(path)

    assert _lines_of(load_document(path, "s.pdf")) == ["補助金の概要", "申請の受付期間"]


def test_slide_title_drawn_after_the_body_comes_first_and_the_slide_number_is_a_label(tmp_path):
    path = tmp_path / "slide.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    _draw(c, 760, 15, "7", 10)  # PowerPoint writes the slide number first...
    _draw(c, 40, 400, "・申請は電子申請のみです。", 16)
    _draw(c, 40, 370, "・締切は7月25日17時です。", 16)
    _draw(c, 40, 480, "スケジュール", 28)  # ...and the title last
    c.showPage()
    c.save()
    plain = _plain_pypdf(path).strip().split("\n")
    assert plain[0] == "7" and plain[-1] == "スケジュール"  # the problem is real

    doc = load_document(path, "slide.pdf")
    page = doc.pages[0]
    assert page.heading == "スケジュール"
    assert page.label == "7" and page.page == 1
    assert _lines_of(doc) == ["スケジュール", "・申請は電子申請のみです。", "・締切は7月25日17時です。"]


def test_two_panels_are_read_one_after_the_other_and_a_table_row_by_row(tmp_path):
    path = tmp_path / "panels.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    _draw(c, 40, 500, "特例措置要件", 24)
    left = ["(1)大幅な賃上げに係る", "補助上限額の引上げ。", "給与支給総額を", "年6%以上増加。"]
    right = ["(2)最低賃金引上げに係る", "補助率の引上げ。", "地域の最低賃金", "+50円以内の従業員", "が30%以上いること。"]
    for i, line in enumerate(left):
        _draw(c, 40, 440 - 40 * i, line, 18)  # the left panel's lines are far apart...
    for i, line in enumerate(right):
        _draw(c, 420, 440 - 26 * i, line, 18)  # ...the right panel's close together
    # A table across the slide below them, written row by row: label, value, label, value.
    rows = [("補助率", "2/3"), ("補助上限", "50万円"), ("特例", "インボイス特例")]
    for i, (label, value) in enumerate(rows):
        _draw(c, 40, 200 - 30 * i, label, 14)
        _draw(c, 560, 200 - 30 * i, value, 14)
    c.showPage()
    c.save()

    page = load_document(path, "p.pdf").pages[0]
    # The right panel's first line runs to the panel's edge and goes on below: one phrase.
    # The short lines keep their breaks: "が30%以上…" starts with a particle, but so do
    # items like "はじめに", and its line above stops short of the edge.  Cells are a tab apart.
    joined = [f"{right[0]}{right[1]}", *right[2:]]
    assert page.raw_text.split("\n") == ["特例措置要件", *left, *joined, *(f"{a}\t{b}" for a, b in rows)]
    assert page.text.split("\n")[-3:] == [f"{a}\u3000{b}" for a, b in rows]  # an ideographic space between cells


def test_short_items_starting_with_a_particle_are_not_glued_together(tmp_path):
    path = make_pdf(tmp_path / "toc.pdf", [["目次", "はじめに", "地域の魅力向上", "にぎわいの創出", "ともに支え合う地域"]])
    assert _lines_of(load_document(path, "toc.pdf")) == ["目次", "はじめに", "地域の魅力向上", "にぎわいの創出", "ともに支え合う地域"]


def test_wrapped_lines_join_into_one_paragraph_while_items_and_cells_stay_apart(tmp_path):
    """Line breaks are decided from the layout: a line that runs to its block's edge goes on below.

    Read from the text alone, a slide's short items ("公募開始" / "申請受付") and a
    paragraph's wrapped lines look the same; plain extraction glues them or breaks the sentence.
    """
    path = tmp_path / "layout.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    _draw(c, 40, 500, "補助対象経費", 24)
    wrapped = ["機械装置・システム構築費以外の経費は、総額で", "500万円までを補助上限額とし、グローバル枠の", "場合は1,000万円までとします。"]
    for i, line in enumerate(wrapped):  # 22 characters at 14 pt fill the box; the last line stops short
        _draw(c, 40, 440 - 18 * i, line, 14)
    steps = ["公募開始", "電子申請受付開始", "申請締切", "採択発表"]
    for i, line in enumerate(steps):  # a flow of short boxes, as closely spaced as the paragraph
        _draw(c, 40, 370 - 18 * i, line, 14)
    # A table: label and value a column apart; a long value wraps inside its own column.
    _draw(c, 40, 260, "補助上限額", 14)
    _draw(c, 200, 260, "750万円", 14)
    _draw(c, 40, 236, "海外旅費", 14)
    _draw(c, 200, 236, "海外渡航及び宿泊等に要する経費で、事業に", 14)
    _draw(c, 200, 218, "必要なものに限ります。", 14)
    c.showPage()
    c.save()

    plain = _plain_pypdf(path)
    assert "総額で\n500万円" in plain  # pypdf breaks the sentence where the line did

    lines = _lines_of(load_document(path, "layout.pdf"))
    assert lines == [
        "補助対象経費",
        "機械装置・システム構築費以外の経費は、総額で500万円までを補助上限額とし、グローバル枠の場合は1,000万円までとします。",
        *steps,
        "補助上限額\u3000750万円",
        "海外旅費\u3000海外渡航及び宿泊等に要する経費で、事業に必要なものに限ります。",
    ]


def test_a_row_label_centred_on_a_two_line_cell_stays_in_its_row(tmp_path):
    """「インボイス特例」 is centred on a cell of two lines: the figure and a note under it.

    Level with neither line, it was read as a line of its own, apart from its figure.
    """
    path = tmp_path / "centred.pdf"
    c = canvas.Canvas(str(path), pagesize=(540, 780))
    _draw(c, 180, 740, "補助率・補助上限額は？", 18)
    _draw(c, 80, 700, "補助率", 10)
    _draw(c, 180, 700, "2/3（赤字事業者は3/4）", 10)
    _draw(c, 75, 680, "補助上限", 10)
    _draw(c, 180, 680, "50万円", 10)
    for y, label, figure, note in ((643, "インボイス特例", "50万円上乗せ※", "P.5"), (605, "賃金引上げ特例", "150万円上乗せ※", "P.6")):
        _draw(c, 60, y, label, 10.6)
        _draw(c, 295, y + 7, figure, 10)  # half a line above the label...
        _draw(c, 182, y - 6, f"※ただし、要件（{note}参照）を満たしている場合に限る", 10)  # ...its note half a line below
    c.showPage()
    c.save()

    lines = _lines_of(load_document(path, "centred.pdf"))
    assert lines[3:] == [
        "インボイス特例\u300050万円上乗せ※",
        "・ただし、要件(P.5参照)を満たしている場合に限る",
        "賃金引上げ特例\u3000150万円上乗せ※",
        "・ただし、要件(P.6参照)を満たしている場合に限る",
    ]


def test_private_use_and_dingbat_bullets_become_the_japanese_bullet(tmp_path):
    path = tmp_path / "bullets.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    _draw(c, 40, 480, "補助対象となる経費", 24)
    for i, (glyph, text) in enumerate([("l", "機械装置等費"), ("n", "広報費"), ("l", "ウェブサイト関連費")]):
        _draw(c, 40, 420 - 30 * i, glyph, 14, font="Courier")
        _draw(c, 60, 420 - 30 * i, text, 14)
    _draw(c, 40, 300, "注意", 14)
    _draw(c, 80, 300, "p", 14, font="Courier")  # a private-use arrow in the middle of a line
    _draw(c, 100, 300, "見積書が必要です", 14)
    c.showPage()
    c.save()
    # Wingdings' "l" (●) and "p" (arrow) come out as U+F06C / U+F0E0; ⚫ (U+26AB) is used as a bullet too.
    _add_to_unicode(path, "Courier", {"l": "\uf06c", "n": "\u26ab", "p": "\uf0e0"})
    assert "\uf06c" in _plain_pypdf(path)

    page = load_document(path, "b.pdf").pages[0]
    # (normalisation may glue the last item and the note together, as it rejoins wrapped lines)
    assert page.text.startswith("補助対象となる経費\n・機械装置等費\n・広報費\n・ウェブサイト関連費")
    assert "注意見積書が必要です" in page.text
    assert not any("\ue000" <= ch <= "\uf8ff" or ch == "\u26ab" for ch in page.text)


def test_halfwidth_katakana_and_fullwidth_digits_are_normalised(tmp_path):
    path = make_pdf(tmp_path / "width.pdf", [["ｶﾞｲﾄﾞﾌﾞｯｸ", "補助上限は５０万円（P.２参照）", "2０２5年6月13日"]])
    assert "ｶﾞｲﾄﾞ" in _plain_pypdf(path)
    assert _lines_of(load_document(path, "w.pdf")) == ["ガイドブック", "補助上限は50万円(P.2参照)", "2025年6月13日"]


def test_blank_and_image_only_pages_are_reported_not_indexed(tmp_path):
    path = tmp_path / "blank.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    _draw(c, 40, 480, "一ページ目の見出し", 24)
    c.showPage()
    c.showPage()  # blank
    c.rect(50, 50, 600, 400, fill=1)  # a scanned picture: no text layer
    c.showPage()
    _draw(c, 40, 480, "四ページ目の見出し", 24)
    _draw(c, 380, 20, "巻頭２", 10)  # and a page whose only text is its printed label
    c.showPage()
    _draw(c, 380, 20, "巻頭３", 10)
    c.showPage()
    c.save()

    doc = load_document(path, "blank.pdf")
    assert [p.page for p in doc.pages] == [1, 4]
    assert doc.pages[1].label == "巻頭2"
    assert doc.problems == [f"p.{n}: {NO_TEXT_PAGE}" for n in (2, 3, 5)]


def test_encrypted_pdf_is_refused_but_an_owner_password_only_pdf_is_read(tmp_path):
    from reportlab.lib.pdfencrypt import StandardEncryption

    locked = make_pdf(tmp_path / "locked.pdf", [["秘密の見出し", "本文です。"]], encrypt="secret")
    with pytest.raises(DocumentError) as info:
        load_document(locked, "locked.pdf")
    assert "パスワード" in str(info.value)

    path = tmp_path / "owner.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE, encrypt=StandardEncryption("", ownerPassword="owner", canModify=0))
    _draw(c, 40, 480, "編集だけ禁止の資料", 24)
    c.showPage()
    c.save()
    assert load_document(path, "owner.pdf").pages[0].heading == "編集だけ禁止の資料"


def test_page_labels_of_the_pdf_win_over_a_printed_number(tmp_path):
    path = tmp_path / "labels.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    for n in range(1, 4):
        _draw(c, 40, 480, f"第{n}節の見出し", 24)
        _draw(c, 760, 15, str(n + 10), 10)
        c.showPage()
    c.save()
    assert [p.label for p in load_document(path, "l.pdf").pages] == ["11", "12", "13"]
    writer = pypdf.PdfWriter(clone_from=str(path))
    writer.set_page_label(0, 2, style="/r")
    with path.open("wb") as fh:
        writer.write(fh)
    assert [p.label for p in load_document(path, "l.pdf").pages] == ["i", "ii", "iii"]


def test_pypdf_fallback_repairs_overprint_and_vertical_text(tmp_path, monkeypatch):
    import rag.pdf_text

    path = tmp_path / "fallback.pdf"
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    _bold(c, 40, 480, "人口の減少について")
    _vertical(c, 40, 440, "時代のトレンド")
    c.showPage()
    c.save()

    def broken(*args, **kwargs):
        raise rag.pdf_text.PdfTextError("pdfium cannot open this file")

    monkeypatch.setattr(rag.pdf_text, "iter_page_texts", broken)
    assert _lines_of(load_document(path, "f.pdf")) == ["人口の減少について", "時代のトレンド"]


def test_a_page_pdfium_cannot_read_falls_back_to_pypdf(tmp_path, monkeypatch):
    import rag.pdf_text

    path = make_pdf(tmp_path / "damaged.pdf", [["一ページ目", "本文です。"], ["二ページ目", "本文です。"]])
    real = rag.pdf_text.page_text

    def fails_on_page_two(page, number):
        if number == 2:
            raise ValueError("damaged content stream")
        return real(page, number)

    monkeypatch.setattr(rag.pdf_text, "page_text", fails_on_page_two)
    doc = load_document(path, "d.pdf")
    assert [p.heading for p in doc.pages] == ["一ページ目", "二ページ目"]
    assert not doc.problems


def test_text_level_repairs_leave_ordinary_text_alone():
    assert collapse_overprint("人口の減少人口の減少人口の減少人口の減少") == "人口の減少"
    assert collapse_overprint("① 出生率の人口置換水準を達成 ① 出生率の人口置換水準を達成 出生率の人口置換水準を達成") == (
        "① 出生率の人口置換水準を達成"
    )
    assert collapse_overprint("森森森森とととと") == "森と"
    for ordinary in ["ドキドキ", "ここまで", "1,000 1,000", "補助率 2/3", "いろいろ", "人口の減少について"]:
        assert collapse_overprint(ordinary) == ordinary
    assert join_vertical_runs(["見出し", "時", "代", "の", "流", "れ", "本文です。"]) == ["見出し", "時代の流れ", "本文です。"]
    assert join_vertical_runs(["有", "無", "本文"]) == ["有", "無", "本文"]  # two cells, not vertical text


# ------------------------------------------------------------------- scale


def _slides(path: Path, pages: int) -> Path:
    c = canvas.Canvas(str(path), pagesize=SLIDE)
    for n in range(1, pages + 1):
        _draw(c, 760, 15, str(n), 10)
        for i in range(6):
            _draw(c, 40, 420 - 28 * i, f"・第{n}スライドの{i + 1}番目の項目について説明する文です。", 14)
        for i in range(4):
            _draw(c, 420, 250 - 22 * i, f"区分{i}", 12)
            _draw(c, 560, 250 - 22 * i, f"{(i + 1) * 250}万円", 12)
        _bold(c, 40, 480, f"第{n}章 補助事業の概要")
        c.showPage()
    c.save()
    return path


def test_fifty_slides_load_in_seconds_one_page_at_a_time(tmp_path, monkeypatch):
    import pypdfium2 as pdfium

    path = _slides(tmp_path / "fifty.pdf", 50)
    open_pages, most = 0, 0
    real_get_page, real_close = pdfium.PdfDocument.get_page, pdfium.PdfPage.close

    def get_page(self, index):
        nonlocal open_pages, most
        open_pages += 1
        most = max(most, open_pages)
        return real_get_page(self, index)

    def close(self):
        nonlocal open_pages
        open_pages -= 1
        return real_close(self)

    monkeypatch.setattr(pdfium.PdfDocument, "get_page", get_page)
    monkeypatch.setattr(pdfium.PdfPage, "close", close)
    start = time.perf_counter()
    doc = load_document(path, "fifty.pdf")
    elapsed = time.perf_counter() - start
    print(f"\n50-page slide PDF loaded in {elapsed:.2f} s")
    assert elapsed < 10
    assert most == 1  # never more than one pdfium page alive
    assert [p.page for p in doc.pages] == list(range(1, 51))
    assert all(p.heading == f"第{p.page}章補助事業の概要" and p.label == str(p.page) for p in doc.pages)
    assert "区分0\u3000250万円" in doc.pages[0].text


def test_comparable_page_text_keeps_every_character_of_a_plain_page(tmp_path):
    # An ordinary document (one column, nothing tricky) reads exactly as before.
    lines = ["第1章 総則", "この要領は、補助金の交付に関し必要な事項を定める。", "第2条 定義", "補助事業とは、次に掲げるものをいう。"]
    path = make_pdf(tmp_path / "plain.pdf", [lines])
    page = load_document(path, "plain.pdf").pages[0]
    assert comparable(page.text) == comparable("".join(lines))
