"""Structure-aware reading: wrapped lines joined, letter-spaced cells joined, section paths.

Every example is written for the feature it checks (line lists made here, or PDFs
drawn here with reportlab); none comes from an evaluation set.
"""

from __future__ import annotations

from pathlib import Path

from reportlab.pdfgen import canvas

from pdfs import FONT
from rag.chunking import chunk_pages
from rag.config import ChunkingSettings
from rag.loaders import load_document
from rag.normalize import normalize_lines
from rag.schema import Chunk, Page
from rag.sections import document_section_paths, heading_style, section_paths, sections_run_on

# ------------------------------------------------------------------ headings


def test_numbered_titles_are_headings_and_sentences_rows_and_captions_are_not():
    for line in ["第2章 計画の内容", "1.事業の目的", "(1)補助金額", "（３）補助率", "① 対象経費", "イ　申請方法",
                 "(ア)対象者", "2-1.補助対象者", "2003\u3000助成額", "A-1 基本要件", "【重要事項】", "＜申請方法＞",
                 "１ はじめに", "ア．目的"]:
        assert heading_style(line) is not None, line
    for line in [
        "1.本補助金は、中小企業の生産性向上を支援するものです。",  # a sentence
        "(1)　3億円　300人",  # a table row
        "1　2　3　4",  # a header of numbers
        "1.事業の目的・・・・・・3",  # a table of contents
        "2020 ブロンズに塗装",  # a year in a photo caption
        "0 人",  # a chart axis
        "51 沖縄県北谷町 ○ ○",  # a row of check marks
        "2)に所属する研究者",  # the wrapped end of "(※2)"
        "この計画は、令和6年度から実施する予定であり、その内容は次のとおりとするものである",  # too long
    ]:
        assert heading_style(line) is None, line


def test_section_path_nests_by_style_and_a_sibling_replaces_its_predecessor():
    lines = [
        "第1章 総論",
        "1 計画の目的",
        "本文です。",
        "(1) 背景",
        "本文です。",
        "(2) 課題",
        "① 人口減少",
        "本文です。",
        "② 高齢化",
        "2 計画期間",
        "第2章 具体的な内容",
        "本文です。",
    ]
    paths = section_paths(lines)
    assert paths[2] == ("第1章 総論", "1 計画の目的")
    assert paths[4] == ("第1章 総論", "1 計画の目的", "(1) 背景")
    assert paths[7] == ("第1章 総論", "1 計画の目的", "(2) 課題", "① 人口減少")
    assert paths[8] == ("第1章 総論", "1 計画の目的", "(2) 課題", "② 高齢化")
    assert paths[9] == ("第1章 総論", "2 計画期間")
    assert paths[11] == ("第2章 具体的な内容",)


def test_four_digit_codes_and_iroha_items_nest_like_the_source_document():
    lines = ["2001\u3000対象事業", "本文。", "2003\u3000助成額", "イ　通常の場合", "本文。", "ロ　上限を超えた場合", "本文。"]
    paths = section_paths(lines)
    assert paths[4] == ("2003\u3000助成額", "イ\u3000通常の場合")
    assert paths[6] == ("2003\u3000助成額", "ロ\u3000上限を超えた場合")


def test_a_long_numbered_item_closes_the_heading_of_its_number_style():
    lines = [
        "2.　対象外の事業者",
        "・説明です。",
        "3.　次の補助金の交付決定を受けて補助事業を実施している事業者であって、完了していないもの",
        "・この行は3の説明です。",
    ]
    paths = section_paths(lines, ("2-2.補助対象外となる事業者",))
    assert paths[1] == ("2-2.補助対象外となる事業者", "2.　対象外の事業者")
    assert paths[3] == ("2-2.補助対象外となる事業者",)


def test_a_bracketed_title_labels_what_follows_but_never_encloses_numbered_sections():
    paths = section_paths(["1.目的", "【注意】", "本文。", "2.対象者", "本文。"])
    assert paths[2] == ("1.目的", "【注意】")
    assert paths[4] == ("2.対象者",)


def test_the_path_carries_over_to_the_next_page_with_its_styles():
    pages = [["第1章 総論", "1 目的", "(1) 背景", "本文の続きが次の頁へ"], ["続きの本文です。", "(2) 課題", "本文。"]]
    paths = document_section_paths(pages)
    assert paths[1][0] == ("第1章 総論", "1 目的", "(1) 背景")
    # (2) is recognised as the sibling of (1), read back from the carried heading.
    assert paths[1][1] == ("第1章 総論", "1 目的", "(2) 課題")


def test_slides_with_titles_of_their_own_do_not_inherit_sections():
    slides = [["補助金の概要", "① 対象者", "中小企業"], ["申請の流れ", "本文"], ["必要書類", "本文"], ["お問い合わせ", "本文"]]
    assert not sections_run_on([s[0] for s in slides])
    assert document_section_paths(slides)[1] == [(), ()]
    running = ["1.目的", "・本補助金は、", "中小企業の生産性向上を支援し、", "(2)補助率"]
    assert sections_run_on(running)


# ------------------------------------------------------------------ joining (text only)


def test_a_short_numbered_heading_is_not_glued_to_the_paragraph_below():
    raw = "\n".join(
        [
            "計画の概要について説明する",
            "１ はじめに",
            "急速な少子化の進行等に伴い、次代の社会を担う子どもたちが健やかに生まれ、育成される環",
            "境の整備を目的に、国・地方公共団体・事業主が一体となって取組を進めてきました。",
            "２ 目的",
        ]
    )
    lines, _ = normalize_lines(raw)
    assert "1 はじめに" in lines
    assert any(line.startswith("急速な少子化") and line.endswith("取組を進めてきました。") for line in lines)
    assert lines[-1] == "2 目的"


def test_letter_spaced_figures_and_labels_in_cells_are_joined_but_separate_cells_are_not():
    raw = "職員数\t1\t0\t.\t5\t%\n上限額\t3\t0\t0\t,\t0\t0\t0\t円\n目\t標\n月\t1\t2\t3\t4\n男性\t35\t81.4%"
    lines, _ = normalize_lines(raw, laid_out=True)
    assert lines[0] == "職員数\u300010.5%"
    assert lines[1] == "上限額\u3000300,000円"
    assert lines[2] == "目標"
    assert lines[3] == "月\u30001\u30002\u30003\u30004"  # month columns stay cells
    assert lines[4] == "男性\u300035\u300081.4%"


# ------------------------------------------------------------------ PDFs drawn like Word


def _word_like_pdf(path: Path, pages: list[list[tuple[float, str]]], size: float = 10.5, pitch: float = 20.5) -> Path:
    """Lines on a Word document grid: about twice the font size apart (x offsets given per line)."""
    c = canvas.Canvas(str(path), pagesize=(595, 842))
    for lines in pages:
        y = 780.0
        c.setFont(FONT, size)
        for x, text in lines:
            c.drawString(x, y, text)
            y -= pitch
        c.showPage()
    c.save()
    return path


_FULL = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろ"[:40]


def test_lines_wrapped_on_a_wide_word_grid_join_into_one_sentence(tmp_path):
    pdf = _word_like_pdf(
        tmp_path / "word.pdf",
        [
            [
                (57, "１．事業の目的"),
                (57, "本補助金は、中小企業等が行う既存事業と異なる事業への前向きな挑戦であって、新市場"),
                (57, "への進出を後押しすることで、企業規模の拡大と賃上げにつなげていくことを目的としま"),
                (57, "す。中小企業等が企業規模の拡大・付加価値向上を通じた生産性向上を図ることを期待し"),
                (57, "ており、補助対象となる事業の内容と経費は、この要領の定めるところによるものとし、"),
                (57, "詳しくは別に定める手引きを参照してください。"),
                (57, "２．補助対象者"),
                (57, "・申請時点で従業員が一名以上いる中小企業者であること。"),
                (57, "・直近の決算書を提出できること。"),
            ]
        ],
    )
    doc = load_document(pdf, "word.pdf")
    lines = doc.pages[0].text.split("\n")
    assert lines[0] == "1.事業の目的"
    assert lines[1].startswith("本補助金は、") and lines[1].endswith("参照してください。")
    assert lines[2] == "2.補助対象者"
    assert lines[3:] == ["・申請時点で従業員が一名以上いる中小企業者であること。", "・直近の決算書を提出できること。"]


def test_items_of_a_slide_spaced_like_a_word_grid_stay_apart(tmp_path):
    pdf = _word_like_pdf(
        tmp_path / "slide.pdf",
        [[(57, "申請の流れ"), (57, "事前準備"), (57, "電子申請"), (57, "審査と採択"), (57, "交付決定")]],
    )
    lines = load_document(pdf, "slide.pdf").pages[0].text.split("\n")
    assert lines == ["申請の流れ", "事前準備", "電子申請", "審査と採択", "交付決定"]


def test_chunks_carry_the_section_path_across_pages_and_take_its_innermost_heading(tmp_path):
    pdf = _word_like_pdf(
        tmp_path / "plan.pdf",
        [
            [
                (57, "第１章 総論"),
                (57, "１ 計画の目的"),
                (57, "この計画は、職員が仕事と子育てを両立できる職場をつくるために定めるものです。"),
                (57, "（１） 計画期間"),
                (57, "令和７年度から令和１１年度までの５年間とします。"),
            ],
            [
                (57, "期間中に必要に応じて見直しを行い、その結果は職員に周知し、次の計画に反映します。"),
                (57, "（２） 推進体制"),
                (57, "総務課が計画の推進を担当します。"),
            ],
        ],
    )
    doc = load_document(pdf, "plan.pdf")
    first, second = doc.pages
    # (Normalisation drops the meaningless space between 章 and 総.)
    assert first.heading == "第1章総論" and first.section == ()
    assert second.section == ("第1章総論", "1 計画の目的", "(1) 計画期間")
    assert second.heading == "(1) 計画期間"  # the page starts inside (1), not with its first line
    chunks = chunk_pages(doc.pages, ChunkingSettings(target_chars=50, max_chars=200, overlap_sentences=0))
    opening = next(c for c in chunks if c.page == 2 and c.start == 0)
    assert opening.section == ("第1章総論", "1 計画の目的", "(1) 計画期間")
    # A numbered heading never ends a chunk: it goes with the body below it.
    assert not any(c.text.endswith("(2) 推進体制") for c in chunks)
    # Every line's path, e.g. for a quote in the middle of a chunk.
    lines = second.text.split("\n")
    assert section_paths(lines, second.section)[-1] == ("第1章総論", "1 計画の目的", "(2) 推進体制")
    for c in chunks:
        page = first if c.page == 1 else second
        assert page.text[c.start : c.end] == c.text  # spans stay valid; no chunk spans two pages


def test_the_index_stores_and_loads_section_paths(tmp_path):
    import numpy as np

    from rag.index import LocalIndex, Manifest
    from rag.schema import SourceInfo

    page = Page("a.pdf", 1, "(1) 背景", "raw", "本文。", None, ("第1章 総論", "(1) 背景"))
    chunk = Chunk("id1", "a.pdf", 1, "(1) 背景", "本文。", 0, 3, ("第1章 総論", "(1) 背景"))
    index = LocalIndex.empty(tmp_path / "idx", Manifest(embedder="test", dimension=2, tokenizer="ngram", chunking={}))
    index.add_source(SourceInfo("a.pdf", "0" * 64, "a", 1, 1), [page], [chunk], np.ones((1, 2), dtype=np.float32))
    index.commit()
    reopened = LocalIndex.open(tmp_path / "idx")
    assert reopened.get_chunks(["id1"]) == [chunk]
    assert reopened.get_page("a.pdf", 1) == page
