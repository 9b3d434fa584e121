"""Scheme finder: name boundaries on synthetic pages, then the real corpus end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rag.normalize import comparable
from rag.schema import Page
from rag.schemes import (
    KINDS,
    Scheme,
    SchemeMention,
    canonical_name,
    extract_schemes,
    page_area,
    schemes_for_index,
    search_schemes,
)

ROOT = Path(__file__).resolve().parent.parent
MAIN = "digiden-sogo-senryaku-2023-2027.pdf"
SHARED_TEXT = ROOT.parent / "shared" / "corpus" / "digiden-sogo-senryaku-2023-2027.txt"
PARTICLE_START = tuple("をにがはとのでもへやより")


def page(text: str, heading: str = "地方に仕事をつくる (デジタルの力を活用した地方の社会課題解決①)", number: int = 1,
         raw: str | None = None, source: str = "doc.pdf") -> Page:
    body = heading + "\n" + text
    return Page(source=source, page=number, heading=heading, raw_text=body if raw is None else raw, text=body)


def names(*texts: str) -> list[str]:
    return sorted(s.name for s in extract_schemes([page(t, number=i) for i, t in enumerate(texts, 1)]))


# ------------------------------------------------------------------ boundaries


@pytest.mark.parametrize(
    "text, expected",
    [
        ("・地方の取組についてはデジタル田園都市国家構想交付金等により支援", ["デジタル田園都市国家構想交付金"]),
        ("・拡充した地方拠点強化税制等について、活用を促進", ["地方拠点強化税制"]),
        ("- ・2022年度デジタル田園都市国家構想交付金の採択", ["デジタル田園都市国家構想交付金"]),
        ("・地方大学・地域産業創生交付金により、研究開発を支援", ["地方大学・地域産業創生交付金"]),
        ("・新たなユニバーサルサービス交付金制度を創設", ["ユニバーサルサービス交付金制度"]),
        ("●国土交通省「日本版MaaS 推進・支援事業」※2", ["日本版MaaS推進・支援事業"]),
        ("● 中山間地域等直接支払交付金経済産業省 ● 地域新MaaS創出推進事業", ["中山間地域等直接支払交付金"]),
        ("総務省 ● 過疎地域等集落ネットワーク圏形成支援事業「デジ活」中山間地域の登録", ["過疎地域等集落ネットワーク圏形成支援事業"]),
        ("・「子ども子育て新制度」の着実な実施", ["子ども子育て新制度"]),
        ("・企業版ふるさと納税を活用したことのある地方公共団体", ["企業版ふるさと納税"]),
        ("・地方創生推進交付金・地方大学・地域産業創生交付金を活用", ["地方創生推進交付金", "地方大学・地域産業創生交付金"]),
        ("- ・時間単位の年次有給休暇制度の導入促進", ["時間単位の年次有給休暇制度"]),
        # An actor before の is who uses the scheme, not part of its name.
        ("・地方公共団体の地方拠点強化税制の活用", ["地方拠点強化税制"]),
    ],
)
def test_name_boundaries(text, expected):
    assert names(text) == sorted(expected)


@pytest.mark.parametrize(
    "text",
    [
        "・事業者への助成金等による支援",  # bare scheme word
        "・光ファイバ整備を補助金により支援",
        "・交付金の活用により取組を支援",
        "・各種支援制度も用いて後押し",  # only generic qualifiers
        "・新たに基金を創設し、継続的に支援",
        "・基金補助金 (令和3年度補正予算) 等を通じて整備を支援",
        "・制度の活用を促進。税制改正を要望",  # the scheme word does not close the compound
        "補助金総額 1億円 補助区分 補助金額・補助率",
        "・5G導入を促進する税制を措置",
        "<認定制度の概要>",
        "・運航管理システムの制度・技術の確立",
    ],
)
def test_generic_mentions_are_not_schemes(text):
    assert names(text) == []


def test_table_cell_glued_by_normalisation_is_not_a_name():
    # The PDF has two cells 「多数機運航」「制度の施行」; normalisation drops the space between them.
    p = page("人口密度の高い地域、多数機運航制度の施行", raw="重要施策分野\n人口密度の高い地域、多数機運航 制度の施行")
    assert extract_schemes([p]) == []
    wrapped = page("多数機運航制度の施行", raw="重要施策分野\n多数機運航\n制度の施行")  # a line wrap is not a cell
    assert [s.name for s in extract_schemes([wrapped])] == ["多数機運航制度"]


def test_variants_merge_and_count():
    schemes = extract_schemes(
        [
            page("・「地方創生推進交付金」の活用", number=1),
            page("・地方創生推進交付金等により支援。また地方創生推進交付金を拡充", number=2),
            page("・選定時の加点要素として追加地方創生推進交付金における申請の枠外", number=3),
            page("・地域少子化対策重点推進交付金について支援", number=3),
        ]
    )
    assert [s.name for s in schemes] == ["地方創生推進交付金", "地域少子化対策重点推進交付金"]
    top = schemes[0]
    assert top.kind == "交付金"
    assert top.mention_count == 4  # p.2 names it in two sentences: two mentions
    assert top.pages == [("doc.pdf", 1), ("doc.pdf", 2), ("doc.pdf", 3)]
    assert all("地方創生推進交付金" in m.context for m in top.mentions)


def test_canonical_name():
    assert canonical_name("「地方創生推進交付金」等") == "地方創生推進交付金"
    assert canonical_name("日本版ＭａａＳ 推進・支援事業") == "日本版MaaS推進・支援事業"
    assert canonical_name("2022年度デジタル田園都市国家構想交付金") == "デジタル田園都市国家構想交付金"


def test_area_from_heading_and_slide_topic():
    assert page_area(page("本文")) == "地方に仕事をつくる"
    topic = Page("d.pdf", 34, "重要施策分野", "", "重要施策分野\n地方創生テレワーク\n- ▶ 企業等の導入を継続・促進。")
    assert page_area(topic) == "地方創生テレワーク"
    no_topic = Page("d.pdf", 35, "重要施策分野", "", "重要施策分野\n- ・関係省庁が連携して、取組を支援する。")
    assert page_area(no_topic) == "重要施策分野"


def test_context_is_the_sentence_trimmed():
    long_tail = "、".join(["地域の実情に応じた取組を支援"] * 20)
    [s] = extract_schemes([page(f"前文です。・地方拠点強化税制について{long_tail}。次の文。")])
    [m] = s.mentions
    assert m.context.startswith("地方拠点強化税制について")
    assert len(m.context) <= 122 and m.context.endswith("…")
    assert "前文" not in m.context and "次の文" not in m.context


def test_search_by_keyword_and_area():
    schemes = extract_schemes(
        [
            page("・地域少子化対策重点推進交付金により結婚支援の取組を支援", heading="結婚・出産・子育ての希望をかなえる (③)", number=8),
            page("・地方拠点強化税制により企業の地方移転を推進", heading="人の流れをつくる (②)", number=6),
        ]
    )
    assert [s.name for s in search_schemes(schemes, keyword="少子化")] == ["地域少子化対策重点推進交付金"]
    assert [s.name for s in search_schemes(schemes, keyword="結婚")] == ["地域少子化対策重点推進交付金"]  # via context
    assert [s.name for s in search_schemes(schemes, keyword="税制\u3000移転")] == ["地方拠点強化税制"]  # full-width space
    assert [s.name for s in search_schemes(schemes, keyword="税制 移転")] == ["地方拠点強化税制"]
    assert search_schemes(schemes, keyword="税制 結婚") == []
    assert [s.name for s in search_schemes(schemes, area="人の流れ")] == ["地方拠点強化税制"]
    assert [s.name for s in search_schemes(schemes, keyword="交付金", area="子育て")] == ["地域少子化対策重点推進交付金"]
    assert search_schemes(schemes) == schemes


def test_public_types():
    m = SchemeMention("a.pdf", 3, "見出し", "文")
    s = Scheme(name="地方拠点強化税制", kind="税制", area="x", summary="文", mentions=[m, m])
    assert s.pages == [("a.pdf", 3)] and s.mention_count == 2
    assert "税制" in KINDS and "交付金" in KINDS


# ------------------------------------------------------------------ the real corpus


@pytest.fixture(scope="module")
def corpus(default_settings):
    from rag.index import LocalIndex

    index = LocalIndex.open(default_settings.index_dir)
    try:
        pages = list(index.iter_pages())
        schemes = schemes_for_index(index)
    finally:
        index.close()
    return pages, schemes, {s.name: s for s in schemes}


def _shared_pages_with(word: str) -> set[int]:
    pages = SHARED_TEXT.read_text(encoding="utf-8").split("\f")
    return {i for i, text in enumerate(pages, 1) if word in comparable(text)}


def test_digiden_kofukin_on_every_page_that_names_it(corpus):
    pages, _, by_name = corpus
    name = "デジタル田園都市国家構想交付金"
    scheme = by_name[name]
    expected = {(p.source, p.page) for p in pages if name in comparable(p.text)}
    assert len(expected) >= 5
    assert set(scheme.pages) == expected
    main_pages = {n for s, n in scheme.pages if s == MAIN}
    # Read off the source text (pages split at form feeds): p.6 (人の流れ), p.9 (子育て), p.35 (教育DX), p.38.
    assert {6, 9, 35, 38} <= main_pages
    if SHARED_TEXT.is_file():
        assert main_pages == _shared_pages_with(name)
    assert scheme.kind == "交付金"
    assert scheme.mention_count >= len(expected)
    assert name in scheme.summary


def test_shoushika_kofukin_on_p8_under_child_rearing(corpus):
    _, _, by_name = corpus
    scheme = by_name["地域少子化対策重点推進交付金"]
    assert (MAIN, 8) in scheme.pages
    p8 = next(m for m in scheme.mentions if m.page == 8)
    assert p8.area == "結婚・出産・子育ての希望をかなえる"
    assert scheme.area == "結婚・出産・子育ての希望をかなえる"
    assert "結婚支援" in p8.context


def test_known_schemes_found(corpus):
    _, _, by_name = corpus
    assert by_name["地方拠点強化税制"].kind == "税制"
    assert (MAIN, 6) in by_name["地方拠点強化税制"].pages
    assert by_name["企業版ふるさと納税"].kind == "税制"
    for name in ("人材開発支援助成金", "地域女性活躍推進交付金", "地方大学・地域産業創生交付金", "地方創生移住支援事業",
                 "中山間地域等直接支払交付金", "ユニバーサルサービス交付金制度"):
        assert name in by_name, name


def test_no_garbage_names(corpus):
    _, schemes, by_name = corpus
    assert len(schemes) >= 10
    for s in schemes:
        assert len(s.name) >= 4, s.name
        assert not s.name.startswith(PARTICLE_START), s.name
        assert not re.search(r"[。、\s「」()（）]", s.name), s.name
        assert not s.name.endswith("等"), s.name
        assert s.name.endswith(s.kind) or s.kind == "税制", s.name
        assert s.name not in {"交付金", "補助金", "助成金", "支援事業", "税制", "制度", "基金", "認定制度", "新制度"}
        assert s.mentions and all(m.context for m in s.mentions)
    for generic in ("補助金等", "制度の活用", "税制改正", "交付金の活用", "各種支援制度", "基金補助金", "多数機運航制度"):
        assert generic not in by_name
    counts = [s.mention_count for s in schemes]
    assert counts == sorted(counts, reverse=True)


def test_search_on_corpus(corpus):
    _, schemes, _ = corpus
    found = [s.name for s in search_schemes(schemes, keyword="少子化")]
    assert found[0] == "地域少子化対策重点推進交付金"
    by_area = search_schemes(schemes, area="結婚・出産・子育て")
    assert "地域少子化対策重点推進交付金" in [s.name for s in by_area]
    assert "人材開発支援助成金" not in [s.name for s in by_area]
    slides = [s.name for s in search_schemes(schemes, area="重要施策分野")]  # the running heading also counts
    assert "地域少子化対策重点推進交付金" in slides


# ------------------------------------------------------------------ CLI


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rag", "schemes", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_cli_json(default_settings):
    proc = _run("--index", str(default_settings.index_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert isinstance(data, list) and data
    first = data[0]
    assert {"name", "kind", "area", "summary", "mentions", "pages"} <= set(first)
    assert {"source", "page", "heading", "context"} <= set(first["mentions"][0])
    names_out = [d["name"] for d in data]
    assert "デジタル田園都市国家構想交付金" in names_out and "地方拠点強化税制" in names_out


def test_cli_table_and_filters(default_settings):
    proc = _run("--index", str(default_settings.index_dir), "--keyword", "少子化")
    assert proc.returncode == 0, proc.stderr
    assert "地域少子化対策重点推進交付金" in proc.stdout and "p.8, p.34" in proc.stdout
    assert "地方拠点強化税制" not in proc.stdout
    proc = _run("--index", str(default_settings.index_dir), "--json", "--area", "人の流れ")
    assert "地方拠点強化税制" in [d["name"] for d in json.loads(proc.stdout)]


def test_cli_missing_index(tmp_path):
    proc = _run("--index", str(tmp_path / "none"))
    assert proc.returncode == 2
    assert "索引" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
