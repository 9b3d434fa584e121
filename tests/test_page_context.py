"""Reading around a quoted line, on page text laid out the way the PDF engine extracts slides."""

from rag import page_context as pc

SLIDE = """\
<モデル地域ビジョンの例>
・スマートシティ AiCT (福島県会津若松市) ■ 「デジ活」中山間地域 自動草刈機の導入 ■ 産学官協創都市 スマート農業 (高知県・高知大学)
【介護・福祉×交通】
群馬県前橋市における取組
- デイサービス事業所は、送迎業務をタクシー事業者に委託し、介護人材確保と介護サービス充実。
- 物流DXを実現している物流事業者の割合:2025年度に70%
(2021年度は31%)
・施設整備の支援等
移住や二地域居住等に活用する集合住宅やシェアハウス
地域の交流促進の拠点となるコミュニティセンター
<国家試験>
- ・ITパスポート試験
- ・基本情報技術者試験
施策の方向
- 1 地方に仕事をつくる
スタートアップ・エコシステムの確立等
- 2 人の流れをつくる
「転職なき移住」の推進等
<次の見出し>"""


def _at(sentence):
    return pc.locate(SLIDE, sentence)


def test_slide_boxes_are_separate_quotable_units():
    units = pc.sentences(SLIDE.splitlines()[1])
    assert units == ["・スマートシティ AiCT (福島県会津若松市)", "「デジ活」中山間地域 自動草刈機の導入", "産学官協創都市 スマート農業 (高知県・高知大学)"]


def test_the_place_of_an_example_is_its_caption_above():
    lines, at = _at("デイサービス事業所は")
    assert pc.place_caption(lines, at) == ["群馬県前橋市における取組"]
    # The generic words are no place: a caption that only says 都道府県 is not one.
    assert not pc.PLACE.search("都道府県が官民連携型プラットフォームを形成")


def test_a_kpi_carries_its_baseline_from_the_line_below():
    lines, at = _at("物流DXを実現している")
    assert pc.figure_below(lines, at, lines[at].lstrip("- ")) == "(2021年度は31%)"


def test_unmarked_short_lines_under_a_measure_are_its_items():
    lines, at = _at("・施設整備の支援等")
    assert pc.introduces_list(lines, at, "・施設整備の支援等")
    assert pc.list_items(lines, at, "・施設整備の支援等") == [
        "移住や二地域居住等に活用する集合住宅やシェアハウス",
        "地域の交流促進の拠点となるコミュニティセンター",
    ]


def test_items_under_a_heading_stop_at_the_next_heading():
    lines, at = _at("<国家試験>")
    assert pc.list_items(lines, at, "<国家試験>") == ["- ・ITパスポート試験", "- ・基本情報技術者試験"]


def test_a_numbered_list_skips_each_items_explanation():
    lines, at = _at("施策の方向")
    assert pc.list_items(lines, at, "施策の方向") == ["- 1 地方に仕事をつくる", "- 2 人の流れをつくる"]


def test_reading_on_after_a_heading_stops_at_the_next_one():
    after = pc.sentences_after(SLIDE, "<モデル地域ビジョンの例>")
    assert after[0] == "・スマートシティ AiCT (福島県会津若松市)"
    assert "【介護・福祉×交通】" not in after


def test_a_regional_example_is_not_continued_into_the_next_regions():
    # "取組 (県市)" followed by another "取組 (県市)" is a sibling, not more about the first.
    after = pc.sentences_after(SLIDE, "・スマートシティ AiCT (福島県会津若松市)")
    assert not any("高知" in s for s in after)


def test_places_are_named_places_not_words_that_contain_a_prefecture_character():
    found = lambda t: [m.group(0) for m in pc.PLACE.finditer(t)]  # noqa: E731
    assert found("デジタル田園都市国家構想交付金") == []
    assert found("各府省と国道の整備、全都道府県で") == []
    assert found("横浜市では") == ["横浜市"] and found("(茨城県つくば市)") == ["茨城県つくば市"]
    assert pc.place_tail("取組 (福島県会津若松市)") and pc.place_tail("(加賀市、茅野市、吉備中央町)")
    assert not pc.place_tail("全国展開(1,741市区町村)") and not pc.place_tail("(都市部)")


def test_a_sentence_is_located_where_its_chunk_is_not_where_it_first_appears():
    page = "地域交通の再構築 ■ 過疎対策\n地域交通の再構築\n路線バスをデマンド交通に転換した。"
    lines, at = pc.locate(page, "地域交通の再構築", near=page.index("\n") + 1)
    assert at == 1
    assert pc.sentences_after(page, "地域交通の再構築", near=page.index("\n") + 1) == ["路線バスをデマンド交通に転換した。"]


def test_circled_items_keep_counting_past_the_notes_under_them():
    text = (
        "次の①～③のいずれかに当たる日までを対象とします。\n"
        "① 申請者が転居した日\n"
        "・「転居」とは、住民票を移すことをいいます。\n"
        "② 事業を廃止した日\n"
        "③ 本人が申し出た日\n"
        "・申出書は窓口で受け付けます。\n"
        "① 提出先の一覧\n"
    )
    lines = text.split("\n")
    items = pc.list_items(lines, 0, lines[0])
    assert items == ["① 申請者が転居した日", "② 事業を廃止した日", "③ 本人が申し出た日"]


def test_a_bullet_list_still_ends_where_another_marker_begins():
    lines = ["主な対象は次のとおり。", "・中小企業", "・小規模事業者", "① 申請の流れ", "② 審査"]
    assert pc.list_items(lines, 0, lines[0]) == ["・中小企業", "・小規模事業者"]

