"""rag.render: PDF pages as PNG, quotes highlighted in escaped HTML."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from pdfs import make_pdf
from rag.config import PROJECT_ROOT
from rag.render import RenderError, answer_html, find_quote, highlight_html, markdown_escape, render_page_png

CORPUS_PDF = PROJECT_ROOT / "corpus" / "digiden-sogo-senryaku-2023-2027.pdf"


def test_renders_a_page_as_png():
    png = render_page_png(CORPUS_PDF, 2, width_px=600)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert abs(image.width - 600) <= 2
    # Not a blank page: the text makes some pixels dark.
    assert image.convert("L").getextrema()[0] < 100


def test_render_is_safe_from_several_threads():
    with ThreadPoolExecutor(4) as pool:
        pngs = list(pool.map(lambda n: render_page_png(CORPUS_PDF, n, width_px=300), [1, 2, 3, 4, 5, 6]))
    assert all(p.startswith(b"\x89PNG") for p in pngs)


def test_render_errors_are_readable(tmp_path):
    with pytest.raises(RenderError, match="ページ目はありません"):
        render_page_png(CORPUS_PDF, 999)
    with pytest.raises(RenderError, match="見つかりません"):
        render_page_png(tmp_path / "missing.pdf", 1)
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.7 nonsense")
    with pytest.raises(RenderError, match="開けません"):
        render_page_png(bad, 1)


def test_renders_a_generated_pdf(tmp_path):
    path = make_pdf(tmp_path / "a.pdf", [["一ページ目"], ["二ページ目"]])
    assert render_page_png(path, 2, width_px=200).startswith(b"\x89PNG")


def test_highlight_marks_the_quote_and_escapes_the_rest():
    text = "見出し <script>alert(1)</script>\n目標は1,500団体とする。\n次の行 & $x$"
    h = highlight_html(text, "目標は1,500団体とする。")
    assert h.found
    assert "<mark>目標は1,500団体とする。</mark>" in h.html
    assert "&lt;script&gt;" in h.html and "<script>" not in h.html
    assert "&amp;" in h.html and "$" not in h.html  # no Markdown math
    assert "\n" not in h.html  # a blank line would end Streamlit's raw-HTML block


def test_highlight_tolerates_whitespace_and_ellipsis():
    text = "デジタル実装に取り組む\n地方公共団体を1,500団体とする。その他の記述。"
    assert highlight_html(text, "地方公共団体を 1,500団体とする。").found
    h = highlight_html(text, "…地方公共団体を1,500団体…")
    assert h.found and "<mark>地方公共団体を1,500団体</mark>" in h.html


def test_highlight_context_cuts_to_lines_around_the_quote():
    lines = [f"行{i}の本文です。" for i in range(200)]
    text = "\n".join(lines)
    h = highlight_html(text, "行100の本文です。", context_chars=20)
    assert h.html.startswith("…<br>") and h.html.endswith("<br>…")
    assert "行0の" not in h.html and "<mark>行100の本文です。</mark>" in h.html


def test_highlight_without_match_returns_escaped_text():
    h = highlight_html("a < b", "存在しない引用")
    assert not h.found and h.html == "a &lt; b"
    assert find_quote("abc", "") == []


def test_answer_html_marks_citations():
    html = answer_html("目標は1,500団体<b>とする。[1]\n- 別の文[2]")
    assert '<sup class="rag-cite">[1]</sup>' in html and "&lt;b&gt;" in html
    assert html.count("<br>") == 1


def test_markdown_escape():
    assert markdown_escape("[1] *太字* p.2\n見出し") == r"\[1\] \*太字\* p\.2 見出し"
