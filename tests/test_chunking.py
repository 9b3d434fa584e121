from rag import page_context as pc
from rag.chunking import _SENTENCE, chunk_page, chunk_pages, indexable_text
from rag.config import ChunkingSettings
from rag.loaders import load_document
from rag.schema import Page

from conftest import ROOT

CORPUS_PDF = ROOT / "corpus" / "digiden-sogo-senryaku-2023-2027.pdf"


def _page(text: str, n: int = 1) -> Page:
    heading = text.split("\n", 1)[0]
    return Page(source="x.pdf", page=n, heading=heading, raw_text=text, text=text)


def test_chunks_of_the_real_corpus_are_page_bound_spans_of_their_page():
    doc = load_document(CORPUS_PDF, CORPUS_PDF.name)
    pages = {p.page: p for p in doc.pages}
    chunks = chunk_pages(doc.pages, ChunkingSettings())
    assert len(chunks) > len(doc.pages)
    for c in chunks:
        page = pages[c.page]
        assert page.text[c.start : c.end] == c.text
        assert c.source == page.source
        # The heading is the innermost numbered or bracketed section at the chunk's start;
        # before the page's first such heading it is the page's heading.
        assert c.heading == (c.section[-1] if c.section and c.section != page.section else page.heading)
    assert len({c.id for c in chunks}) == len(chunks)


def test_chunk_ids_are_stable_across_runs():
    doc = load_document(CORPUS_PDF, CORPUS_PDF.name)
    first = [c.id for c in chunk_pages(doc.pages, ChunkingSettings())]
    second = [c.id for c in chunk_pages(doc.pages, ChunkingSettings())]
    assert first == second


def test_sentences_are_never_cut_and_overlap_is_whole_sentences():
    sentences = [f"これは{i}番目の文で、内容を少し長めに書いてあります。" for i in range(30)]
    page = _page("見出し\n" + "".join(sentences))
    chunks = chunk_page(page, ChunkingSettings(target_chars=120, max_chars=300, overlap_sentences=1))
    assert len(chunks) > 3
    for c in chunks[1:]:
        assert c.text.endswith("。")
    for a, b in zip(chunks, chunks[1:]):
        last_sentence = a.text.split("。")[-2] + "。"
        assert b.text.startswith(last_sentence)


def test_a_full_stop_inside_brackets_does_not_end_the_sentence():
    # Split at 「(税抜き。」, the second half reads as a rule of its own: 「グローバル枠の場合は、1,000万円)までを補助上限額とします。」
    rule = "★:機械装置・システム構築費以外の経費は、総額で500万円(税抜き。グローバル枠の場合は、1,000万円)までを補助上限額とします。"
    quoted = "「地方に仕事をつくる。」を掲げる。"
    assert pc.sentences(rule + quoted + "次の文。") == [rule, quoted, "次の文。"]
    # A run of quoted slogans is one sentence each, as before.
    slogans = ["「地方に仕事をつくる。」", "「人の流れをつくる。」", "「結婚・出産・子育ての希望をかなえる。」"]
    assert pc.sentences("".join(slogans)) == slogans
    page = _page("補助対象経費\n" + rule + "\n・:上限額=補助対象経費総額の2分の1")
    chunks = chunk_page(page, ChunkingSettings(target_chars=50, max_chars=200, overlap_sentences=0))
    assert any(c.text.endswith(rule) for c in chunks)


def test_unclosed_brackets_still_split_sentences_and_lose_no_text():
    line = "注(税抜き。次の文です。" + "(" * 3000 + "終わり"
    pieces = [m.group(0) for m in _SENTENCE.finditer(line) if m.group(0)]
    assert pieces[:2] == ["注(税抜き。", "次の文です。"]
    assert "".join(pieces) == line


def test_a_heading_travels_with_the_body_that_follows():
    body = "本文の文です。" * 12
    page = _page("ページ見出し\n" + body + "\n小見出し\n" + body)
    chunks = chunk_page(page, ChunkingSettings(target_chars=90, max_chars=200, overlap_sentences=0))
    for c in chunks:
        assert not c.text.endswith("小見出し")
    assert any(c.text.startswith("小見出し") for c in chunks)


def test_bullets_split_as_units():
    page = _page("KPI\n- 光ファイバの世帯カバー率:99.9%(2027年度)\n- 5Gの人口カバー率:95%(2023年度)")
    chunks = chunk_page(page, ChunkingSettings(target_chars=50, max_chars=80, overlap_sentences=0))
    assert any("光ファイバ" in c.text and "5G" not in c.text for c in chunks)


def test_indexable_text_carries_the_page_heading():
    page = _page("地域交通のリ・デザイン\n" + "本文です。" * 200)
    chunks = chunk_page(page, ChunkingSettings())
    assert all(indexable_text(c).startswith("地域交通のリ・デザイン") for c in chunks)
