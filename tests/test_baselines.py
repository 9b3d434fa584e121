"""The plain RRF window baseline: right page first, windows inside pages, rows scored like the eval."""

from __future__ import annotations

from pathlib import Path

from pdfs import make_pdf
from pypdf import PdfReader

from rag.baselines import page_windows, rrf_window_baseline
from rag.evaluate import QAItem

ROOT = Path(__file__).resolve().parent.parent

# Each page long enough for several 350-character windows, so a window could cross a page if cut wrongly.
FILLER = "本計画は地方公共団体の取組を支援するための基本的な方針を定めるものである。"
PAGES = [
    ["第1章 総論"] + [FILLER] * 14,
    ["第2章 子育て支援"] + [FILLER] * 6 + ["こども家庭センターを令和8年度までに全国1,741市町村に設置する。"] + [FILLER] * 6,
    ["第3章 デジタル人材"] + [FILLER] * 6 + ["デジタル推進人材を2026年度末までに230万人育成する。"] + [FILLER] * 6,
]


def _item(question: str, fact: str, page: int, answerable: bool = True) -> QAItem:
    return QAItem(
        id=f"q{page}",
        question=question,
        answer=fact,
        must_include=(fact,) if answerable else (),
        sources=(("plan.pdf", page),) if answerable else (),
        answerable=answerable,
        type="factoid" if answerable else "unanswerable",
    )


def test_windows_never_span_pages(tmp_path):
    pdf = make_pdf(tmp_path / "plan.pdf", PAGES)
    texts = [p.extract_text() for p in PdfReader(pdf).pages]
    windows = page_windows(tmp_path, ["plan.pdf"])
    assert {w.page for w in windows} == {1, 2, 3}
    for w in windows:
        assert 0 < len(w.text) <= 350
        assert w.text in texts[w.page - 1]
    # Stitched back per page, the windows give each page's text exactly: nothing lost, nothing borrowed.
    for number, text in enumerate(texts, start=1):
        assert "".join(w.text for w in windows if w.page == number) == text
    assert len([w for w in windows if w.page == 2]) >= 2


def test_windows_of_the_shipped_corpus_stay_on_their_page():
    source = "digiden-sogo-senryaku-2023-2027.pdf"
    texts = [p.extract_text() or "" for p in PdfReader(ROOT / "corpus" / source).pages]
    windows = page_windows(ROOT / "corpus", [source])
    assert windows
    assert all(w.text in texts[w.page - 1] for w in windows)


def test_ranks_the_page_holding_the_answer_first(tmp_path, embedder):
    make_pdf(tmp_path / "plan.pdf", PAGES)
    items = [
        _item("こども家庭センターは何市町村に設置しますか？", "1,741市町村", 2),
        _item("デジタル推進人材は何万人育成しますか？", "230万人", 3),
    ]
    rows = rrf_window_baseline(tmp_path, ["plan.pdf"], items, k=10, embedder=embedder)
    assert [r.first_gold_rank for r in rows] == [1, 1]
    assert rows[0].hit_pages[0] == "plan.pdf p.2"
    assert rows[1].hit_pages[0] == "plan.pdf p.3"
    # Ranked pages are distinct even though each page has several windows.
    assert all(len(r.hit_pages) == len(set(r.hit_pages)) == 3 for r in rows)
    # The answer is the top window's text, judged like the product's answers.
    assert rows[1].passed and "230万人" in rows[1].answer


def test_never_abstains_so_unanswerable_questions_fail(tmp_path, embedder):
    make_pdf(tmp_path / "plan.pdf", PAGES)
    rows = rrf_window_baseline(tmp_path, ["plan.pdf"], [_item("月面基地の建設費は？", "", 0, answerable=False)], embedder=embedder)
    assert rows[0].found and not rows[0].passed
