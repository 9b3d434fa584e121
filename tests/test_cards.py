"""Scheme cards: parsers on written examples, then cards from PDFs made here, the cache, the CLI and the matcher.

The PDFs below are written for these tests (a small town's 公募要領 with known terms, and a
plan that describes no scheme), so every expected value and page is known.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from pdfs import make_pdf
from rag.cards import values as cv
from rag.config import Settings

SCHEME = "sakura_koubo.pdf"
PLAN = "sakura_plan.pdf"


def scheme_pages(ceiling_small: str = "100万円") -> list[list[str]]:
    return [
        ["さくら町設備導入支援補助金", "公募要領（第2回）", "さくら町商工観光課", "令和7年5月"],
        ["1. 補助対象者", "本補助金の補助対象者は、町内に事業所を有する中小企業者です。",
         "製造業その他　常時使用する従業員の数　20人以下", "商業・サービス業　常時使用する従業員の数　5人以下"],
        ["2. 補助上限額と補助率", "補助上限額は従業員数に応じて次のとおりです。",
         f"従業員5人以下　補助上限額　{ceiling_small}", "従業員6~20人　補助上限額　300万円", "補助率は2/3とします。"],
        ["3. 補助対象経費", "補助対象経費は、機械装置費、システム導入費、専門家経費です。",
         "4. 補助対象外経費", "汎用性の高いパソコン及び車両の購入費は補助対象外です。"],
        ["5. 申請期間", "申請の受付は令和7年6月2日から令和7年7月31日までです。",
         "6. 問い合わせ先", "さくら町商工観光課　電話 0123-45-6789"],
    ]


PLAN_PAGES = [
    ["さくら町観光振興計画", "令和7年3月"],
    ["1. 計画の趣旨", "本計画は、町の観光資源を生かし、交流人口の拡大を図るための基本方針を定めるものです。"],
    ["2. 基本目標", "観光入込客数を令和11年度までに年間50万人とします。", "町内の宿泊者数を増やします。"],
]


# ------------------------------------------------------------------ parsers


def test_amounts_are_read_in_yen_whatever_the_notation():
    assert cv.amounts("上限 750万円、グローバル枠 3,000万円") == [7_500_000, 30_000_000]
    assert cv.amounts("支給限度額：471,393円") == [471_393]
    assert cv.amounts("合計6.7億円") == [670_000_000]
    assert cv.amounts("補助上限 ５０万円") == [500_000]


def test_rates_are_fractions_and_dates_are_not_rates():
    assert cv.rates("中小企業1/2、小規模事業者2/3") == [Fraction(1, 2), Fraction(2, 3)]
    assert cv.rates("補助率 ２／３（赤字事業者は３／４）") == [Fraction(2, 3), Fraction(3, 4)]
    assert cv.rates("補助対象経費総額の3分の1") == [Fraction(1, 3)]
    assert cv.rates("賃金額 × 10％") == [Fraction(1, 10)]
    assert cv.rates("4/25 から 7/25 まで") == []


def test_head_count_bands_pair_with_their_ceilings():
    rows = cv.band_amounts(["5人以下 750万円", "6～20人 1,000万円", "51人以上 2,500万円", "補助率 1/2"])
    assert [(r.band.label(), r.amount) for r in rows] == [("5人以下", 7_500_000), ("6～20人", 10_000_000), ("51人以上", 25_000_000)]
    assert rows[1].band.contains(20) and not rows[1].band.contains(21)
    # A floor–ceiling row with a raised ceiling in brackets: the ceiling is the last amount before the bracket.
    (row,) = cv.band_amounts(["従業員数20人以下 750万円～2,500万円（3,000万円）"])
    assert row.amount == 25_000_000


def test_dates_and_relative_deadlines():
    assert cv.dates("応募締切：令和8年3月26日（木）18:00") == ["2026-03-26"]
    assert cv.dates("申請締切：2025年7月25日（金）") == ["2025-07-25"]
    assert cv.periods("訓練終了日の翌日から２か月以内") == ["2か月以内"]
    assert cv.phones("電話番号：０５０－３８２１－７０１３") == ["050-3821-7013"]


# ------------------------------------------------------------------ cards from real PDFs


@pytest.fixture(scope="module")
def town(tmp_path_factory, embedder):
    from rag.ingest import ingest

    root = tmp_path_factory.mktemp("cards")
    corpus = root / "corpus"
    corpus.mkdir()
    make_pdf(corpus / SCHEME, scheme_pages())
    make_pdf(corpus / PLAN, PLAN_PAGES)
    settings = Settings(corpus_dir=corpus, index_dir=root / "index")
    assert not ingest(settings, embedder=embedder).failed
    return settings


def _pipeline(settings, embedder):
    from rag.pipeline import Pipeline

    return Pipeline.load(settings, embedder=embedder)


@pytest.fixture(scope="module")
def town_cards(town, embedder):
    from rag.cards import cards_for_index

    built = []
    cards = cards_for_index(_pipeline(town, embedder), Path(town.index_dir), progress=built.append)
    return cards, built


def test_only_the_document_that_describes_a_scheme_gets_a_card(town_cards):
    cards, built = town_cards
    assert sorted(built) == sorted([PLAN, SCHEME])
    assert [c.source for c in cards] == [SCHEME]


def test_card_fields_carry_the_value_the_page_and_the_line(town_cards):
    (card,) = town_cards[0]
    f = card.fields
    assert "設備導入支援補助金" in card.scheme and "第2回" in card.scheme
    assert f["制度名"].page == 1
    assert f["実施機関"].page == 1 and "商工観光課" in f["実施機関"].value
    assert f["補助率"].page == 3 and "2/3" in f["補助率"].quote
    ceiling = f["補助上限額"]
    assert ceiling.page == 3
    # Broken down by head count, every row with its amount.
    assert "5人以下 100万円" in ceiling.value and "6～20人 300万円" in ceiling.value
    assert f["補助対象経費"].page == 4 and "機械装置費" in f["補助対象経費"].quote
    assert f["対象外経費"].page == 4 and "パソコン" in f["対象外経費"].quote
    assert f["申請期間"].page == 5 and "7月31日" in f["申請期間"].quote
    assert f["問い合わせ先"].page == 5 and "0123-45-6789" in f["問い合わせ先"].quote
    for field in f.values():
        if field is not None:
            assert 0.0 <= field.confidence <= 1.0 and field.quote


def test_a_field_the_document_does_not_state_is_not_filled(town_cards):
    (card,) = town_cards[0]
    # The town's 公募要領 states no requirement such as 賃上げ: shown as 記載なし, not guessed.
    assert card.fields["主な要件"] is None
    assert card.to_json()["fields"]["主な要件"] is None


def test_cards_are_cached_beside_the_index_and_rebuilt_only_for_a_changed_document(town, town_cards, embedder, tmp_path):
    import shutil

    from rag.cards import CARDS_FILE, cards_for_index
    from rag.ingest import ingest

    cache = Path(town.index_dir) / CARDS_FILE
    data = json.loads(cache.read_text(encoding="utf-8"))
    assert set(data["cards"]) == {SCHEME, PLAN}
    # A copy of the corpus and index, so the other tests keep the original.
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(town.corpus_dir, corpus)
    shutil.copytree(town.index_dir, index)
    settings = Settings(corpus_dir=corpus, index_dir=index)
    built = []
    again = cards_for_index(_pipeline(settings, embedder), index, progress=built.append)
    assert built == [] and again[0].to_json() == town_cards[0][0].to_json()
    make_pdf(corpus / SCHEME, scheme_pages(ceiling_small="150万円"))
    assert not ingest(settings, embedder=embedder).failed
    changed = cards_for_index(_pipeline(settings, embedder), index, progress=built.append)
    assert built == [SCHEME]
    assert "5人以下 150万円" in changed[0].fields["補助上限額"].value


def test_rag_schemes_cards_json(town, town_cards, capsys):
    from rag.cli import main

    assert main(["schemes", "--cards", "--json", "--index", str(town.index_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["source"] for c in out] == [SCHEME]
    fields = out[0]["fields"]
    assert set(fields) >= {"補助上限額", "補助率", "申請期間", "対象外経費", "問い合わせ先"}
    assert fields["主な要件"] is None
    assert set(fields["補助率"]) >= {"value", "page", "quote", "confidence"}


def test_card_rows_for_csv_say_kisai_nashi(town_cards):
    from rag.cards import FIELDS, card_rows

    (row,) = card_rows(town_cards[0])
    assert row["主な要件"] == "記載なし" and row["主な要件（頁）"] is None
    assert all(name in row for name in FIELDS)


# ------------------------------------------------------------------ matcher


def test_matcher_ranks_with_reasons_pages_and_expected_amount(town, town_cards, embedder):
    from rag.cards.match import Project, parse_project, rank

    (card,) = town_cards[0]
    page_text = _pipeline(town, embedder).page_text
    project = parse_project("製造業、従業員12人、600万円で新しい加工機械を導入したい")
    assert (project.industry, project.employees, project.investment, project.purpose) == ("製造業", 12, 6_000_000, "設備投資")
    (m,) = rank([card], project, page_text)
    assert m.fits is True
    # 6~20人 → 300万円 ceiling; 600万円 × 2/3 = 400万円, capped at 300万円.
    assert m.ceiling == 3_000_000 and m.rate == Fraction(2, 3) and m.expected_max == 3_000_000
    assert {r.field for r in m.expected_lines} == {"補助上限額", "補助率"}
    assert all(r.page for r in m.expected_lines)
    assert any(r.verdict == "fit" and r.field == "対象者" and r.page == 2 for r in m.reasons)
    # Small investment: the rate decides, not the ceiling.
    (small,) = rank([card], Project(industry="製造業", employees=3, investment=900_000, purpose="設備投資"), page_text)
    assert small.expected_max == 600_000


def test_matcher_excludes_a_project_the_stated_limits_exclude(town, town_cards, embedder):
    from rag.cards.match import Project, rank

    (card,) = town_cards[0]
    page_text = _pipeline(town, embedder).page_text
    (m,) = rank([card], Project(industry="小売業", employees=8, investment=5_000_000, purpose="設備投資"), page_text)
    assert m.fits is False
    assert any(r.verdict == "no" and r.field == "対象者" and r.page == 2 for r in m.reasons)


def test_matcher_flags_unstated_conditions_instead_of_assuming_them():
    from rag.cards import CardField, SchemeCard
    from rag.cards.match import Project, rank

    bare = SchemeCard("x.pdf", "x", "研修助成金", {"制度名": CardField("研修助成金", 1, "研修助成金", 0.9), "補助対象経費": CardField("受講料", 2, "受講料", 0.8)})
    full = SchemeCard("y.pdf", "y", "設備補助金", {
        "対象者": CardField("20人以下", 2, "製造業 20人以下", 0.8),
        "補助上限額": CardField("500万円", 3, "補助上限額 500万円", 0.8),
        "補助率": CardField("1/2", 3, "補助率 1/2", 0.8),
        "補助対象経費": CardField("機械装置費", 4, "機械装置費", 0.8),
    })
    ranked = rank([bare, full], Project(industry="製造業", employees=10, investment=4_000_000, purpose="設備投資"))
    assert [m.card.scheme for m in ranked] == ["設備補助金", "研修助成金"]
    assert ranked[0].expected_max == 2_000_000
    unknown = {r.field for r in ranked[1].reasons if r.verdict == "unknown"}
    assert {"対象者", "補助上限額", "補助率"} <= unknown
    assert ranked[1].expected_max is None and ranked[1].fits is not True
    # A training project matches the training scheme's costs, not the equipment one.
    training = rank([bare, full], Project(purpose="人材育成"))
    assert training[0].card.scheme == "研修助成金"


# ------------------------------------------------------------------ the app page


def test_scheme_page_shows_the_card_table_csv_and_matcher(town, town_cards, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from rag.config import PROJECT_ROOT

    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "RAG_LLM__PROVIDER", "RAG_LLM__MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAG_INDEX_DIR", str(town.index_dir))
    monkeypatch.setenv("RAG_CORPUS_DIR", str(town.corpus_dir))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    at.switch_page("rag/ui/schemes.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["制度名"]) == [town_cards[0][0].scheme]
    assert "（p.3）" in table["補助率"][0] and table["主な要件"][0] == "記載なし"
    assert any("CSV" in b.label for b in at.get("download_button"))
    at.text_input(key="match.sentence").set_value("製造業、従業員12人、600万円で加工機械を導入したい").run()
    assert not at.exception, at.exception
    labels = [e.label for e in at.expander]
    assert any("合う可能性が高い" in label and "300万円" in label for label in labels), labels


def test_rag_ingest_makes_the_cards_and_schemes_reads_them_without_rebuilding(tmp_path, capsys):
    from rag.cards import CARDS_FILE
    from rag.cli import main

    corpus, index = tmp_path / "corpus", tmp_path / "index"
    corpus.mkdir()
    make_pdf(corpus / SCHEME, scheme_pages())
    assert main(["ingest", "--corpus", str(corpus), "--index", str(index)]) == 0
    captured = capsys.readouterr()
    assert f"制度カードのために読んでいます: {SCHEME}" in captured.err and "制度カード: 1件" in captured.out
    cached = json.loads((index / CARDS_FILE).read_text(encoding="utf-8"))["cards"][SCHEME]["card"]
    assert cached["fields"]["補助上限額"]["page"] >= 1
    # Shown from the cache: nothing is read again.
    assert main(["schemes", "--cards", "--json", "--index", str(index)]) == 0
    captured = capsys.readouterr()
    assert "カードを作成" not in captured.err
    assert json.loads(captured.out)[0]["fields"]["補助上限額"] == cached["fields"]["補助上限額"]
    # An unchanged corpus is not read again either.
    assert main(["ingest", "--corpus", str(corpus), "--index", str(index)]) == 0
    assert "制度カード" not in capsys.readouterr().err
