"""Reading card fields from a document's structure: layout, values, features, the fitted choice.

Every page here is written for these tests (a town's 公募要領 and a benefit leaflet in the
shapes real ones take: numbered sections, slide titles, tables of words, notes, worked
examples), so what each line should be read as is known.  Cells of a table row are apart
by the ideographic space, as the loaders write them.
"""

from __future__ import annotations

import json

import pytest

from rag.cards import compose
from rag.cards import fields as fd
from rag.cards.features import DIRECTION, FEATURES, Cited, FieldView, candidates
from rag.cards.layout import layout
from rag.cards.model import CardModel, CardModelError
from rag.schema import Page

SEP = "\u3000"


def pages(*texts: list[str]) -> list[Page]:
    return [Page("t.pdf", n, lines[0], "\n".join(lines), "\n".join(lines)) for n, lines in enumerate(texts, 1)]


def view(field: str, *texts: list[str], cited: list[Cited] | None = None) -> FieldView:
    return FieldView(field, layout(pages(*texts)), cited or [])


def at(v: FieldView, text: str) -> int:
    return next(i for i, ln in enumerate(v.layout.lines) if ln.text == text)


def feature(v: FieldView, name: str, text: str) -> float:
    return FEATURES[name](v, at(v, text))


# ------------------------------------------------------------------ layout


def test_a_table_of_words_has_its_header_row():
    doc = layout(pages(["対象となる経費", f"経費区分{SEP}内容", f"①設備費{SEP}機械の購入", f"②広報費{SEP}チラシの作成"]))
    rows = {ln.text: ln.head for ln in doc.lines}
    assert rows[f"②広報費{SEP}チラシの作成"] == (f"経費区分{SEP}内容",)
    assert rows["対象となる経費"] == ()


def test_a_page_of_entries_ending_in_page_numbers_is_a_contents_page_without_dot_leaders():
    doc = layout(pages(["目次", "・補助率　P.2", "・対象者　P.3", "・対象経費　P.4"], ["補助率", "補助率は1/2です。"]))
    assert all(ln.contents for ln in doc.lines if ln.page == 1)
    assert not any(ln.contents for ln in doc.lines if ln.page == 2)


def test_a_short_first_line_is_the_page_title_even_as_a_question():
    doc = layout(pages(["補助金の対象者とは?", "町内の中小企業が対象です。"], ["・町内に事業所があること。", "本文です。"]))
    assert doc.lines[1].title == "補助金の対象者とは?"
    assert doc.lines[3].title == ""  # an item is no title


# ------------------------------------------------------------------ values read around a line


def test_a_line_that_introduces_a_list_is_read_with_its_items():
    doc = layout(pages(["6. 対象外経費", "以下の経費は補助対象外です。", "・事務所の家賃", "・飲食費"]))
    shown = compose.cell("対象外経費", doc, 1)
    assert "事務所の家賃" in shown.value and "飲食費" in shown.value
    assert shown.quote == "以下の経費は補助対象外です。"


def test_or_less_after_a_quantity_does_not_introduce_a_list():
    doc = layout(pages(["支給額が最低限度額以下のとき", "支給されません。"]))
    assert not compose.introduces(doc.lines[0])
    assert compose.introduces(layout(pages(["次の要件を満たすこと。"])).lines[0])


def test_a_heading_that_only_names_the_field_quotes_the_line_under_it():
    doc = layout(pages(["(1)補助金額", "上限 500万円", "(2)補助率", "1/2"]))
    shown = compose.cell("補助率", doc, 2)
    assert shown.value.endswith("1/2") and shown.quote == "1/2" and shown.line.page == 1


def test_a_numbered_section_goes_on_over_the_page_break():
    doc = layout(pages(["5. 経費", "5-2.補助対象外となる経費"], ["・土地の購入費", "・通信費", "6. 申請"]))
    shown = compose.cell("対象外経費", doc, 1)
    assert "土地の購入費" in shown.value and "通信費" in shown.value and "申請" not in shown.value
    assert shown.line.page == 2  # the quoted line is the first item, on the next page


def test_notes_under_numbered_items_and_examples_are_not_items():
    doc = layout(pages([
        "(2)支給要件", "① 毎月、被保険者であること", "・「被保険者」とは雇用保険の被保険者をいいます", "② 時短勤務をしていること",
        "例1:4月から時短勤務の場合", "4月分から支給されます",
    ]))
    value = compose.cell("主な要件", doc, 0).value
    assert "毎月、被保険者であること" in value and "時短勤務をしていること" in value
    assert "とは" not in value and "4月分" not in value


def test_a_header_row_named_for_the_field_reads_its_row_labels():
    doc = layout(pages(["補助対象となる経費", f"補助対象経費科目{SEP}活用事例", f"①機械装置等費{SEP}製造装置の購入", f"②広報費{SEP}チラシ作成"]))
    shown = compose.cell("補助対象経費", doc, 1)
    assert "機械装置等費、広報費" in shown.value
    assert shown.quote.startswith("①機械装置等費")


def test_a_ceiling_by_head_count_shows_every_band():
    doc = layout(pages(["補助上限額", f"従業員規模{SEP}補助上限額", f"5人以下{SEP}100万円", f"6~20人{SEP}300万円"]))
    assert compose.cell("補助上限額", doc, 3).value == "5人以下 100万円／6～20人 300万円"


# ------------------------------------------------------------------ names and evidence


def test_a_floor_is_not_named_as_a_ceiling_and_specific_names_are_names():
    assert not fd.names("補助上限額", "最低限度額以下のとき")
    assert fd.names("補助上限額", "支給限度額：471,393円") and fd.names_specifically("補助上限額", "支給限度額：471,393円")
    assert fd.names("補助上限額", "賃金月額の上限額") and not fd.names_specifically("補助上限額", "賃金月額の上限額")


def test_evidence_asks_for_the_kind_of_value():
    assert fd.evidence("補助率", "中小企業1/2、小規模事業者2/3") and not fd.evidence("補助率", "4/25から7/25まで")
    assert fd.evidence("申請期間", "訓練終了日の翌日から2か月以内", context="提出時期")
    assert not fd.evidence("申請期間", "2か月以内に完了すること")
    # An invitation to ask someone is no contact; a number, or a line under the contact heading, is.
    assert not fd.evidence("問い合わせ先", "出産手当金は加入している健康保険へお問い合わせください。")
    assert fd.evidence("問い合わせ先", "商工観光課 電話 0123-45-6789")
    assert fd.evidence("問い合わせ先", "お問合せはコールバック予約システムで受け付けます。", context="【お問合せ先】")
    # Excluded businesses are not excluded costs, unless the heading is about costs.
    assert not fd.evidence("対象外経費", "みなし大企業は補助対象外です。", heading="2-2.補助対象外となる事業者")
    assert fd.evidence("対象外経費", "パソコン等は補助対象外となります。", heading="補助対象となる経費")


# ------------------------------------------------------------------ features


def test_a_name_as_label_or_topic_is_the_fields_statement_a_modifier_is_not():
    v = view("対象者", ["補助対象者は、町内の中小企業者です。", "補助対象者の要件は公募開始日に満たしてください。", "補助対象者　中小企業者"])
    assert feature(v, "label_names", "補助対象者は、町内の中小企業者です。") == 1.0
    assert feature(v, "label_names", "補助対象者　中小企業者") == 1.0
    assert feature(v, "label_names", "補助対象者の要件は公募開始日に満たしてください。") == 0.0


def test_what_a_list_introduces_and_what_a_line_states():
    v = view("主な要件", ["以下の全ての要件を満たす方が補助対象者になり得ます。", "・資本金5億円以上の法人の子会社でないこと。"])
    assert feature(v, "introduces_named", "以下の全ての要件を満たす方が補助対象者になり得ます。") == 1.0
    w = view("対象者", ["以下の全ての要件を満たす方が補助対象者になり得ます。", "下記に該当する法人、個人事業が対象です。"])
    assert feature(w, "introduces_named", "以下の全ての要件を満たす方が補助対象者になり得ます。") == 0.0
    assert feature(w, "states_field", "下記に該当する法人、個人事業が対象です。") == 1.0


def test_worked_examples_lookup_charts_and_rate_formulas():
    v = view("補助率", [
        "支給額", "支給額は、原則として次のとおりです。", f"各月の賃金額{SEP}×{SEP}10%",
        "例①:賃金が20万円の場合", "支給率は10%となります。",
    ])
    assert feature(v, "rate_formula", f"各月の賃金額{SEP}×{SEP}10%") == 1.0
    assert feature(v, "example", "支給率は10%となります。") == 1.0
    assert feature(v, "example", f"各月の賃金額{SEP}×{SEP}10%") == 0.0
    chart = view("補助率", ["支給率早見表", f"賃金率{SEP}支給率"] + [f"{100 - n}.00%{SEP}{n}.00%" for n in range(10)])
    assert feature(chart, "long_table", f"95.00%{SEP}5.00%") == 1.0 and feature(chart, "example", f"95.00%{SEP}5.00%") == 1.0


def test_a_part_of_the_requirements_is_a_sub_heading_the_first_titled_page_is_first():
    v = view("主な要件", ["1. 目的", "本補助金の目的です。"], ["5. 補助対象要件", "(1) 新事業要件", "新しい市場に進出すること。"])
    assert feature(v, "sub_heading", "(1) 新事業要件") == 1.0 and feature(v, "sub_heading", "5. 補助対象要件") == 0.0
    assert feature(v, "first_named", "新しい市場に進出すること。") == 1.0
    assert feature(v, "first_named", "本補助金の目的です。") == 0.0


def test_only_lines_the_document_names_the_field_at_are_candidates():
    # The answerer's quote alone does not make a candidate: a field nothing names stays 記載なし.
    v = view("補助率", ["事業の概要", "設備投資の経費の一部を補助します（上限額の1/2以内）。"],
             cited=[Cited(1, "設備投資の経費の一部を補助します（上限額の1/2以内）。", 0.9)])
    assert candidates(v) == []
    named = view("補助率", ["補助率", "補助対象経費の1/2以内"], cited=[Cited(1, "補助対象経費の1/2以内", 0.9)])
    found = {named.layout.lines[i].text: row for i, row in candidates(named)}
    assert set(found) == {"補助率", "補助対象経費の1/2以内"}  # the heading, read with the line under it, and the line
    assert found["補助対象経費の1/2以内"][list(FEATURES).index("answer_quote")] == pytest.approx(0.9)


def test_a_heading_alone_is_no_value():
    v = view("問い合わせ先", ["お問い合わせ", "受付時間 9:00~17:00"])
    assert all(v.layout.lines[i].text != "お問い合わせ" for i, _ in candidates(v))


# ------------------------------------------------------------------ the model and its fit


def test_every_feature_has_a_direction():
    assert set(DIRECTION) == set(FEATURES)


def test_model_json_round_trip_and_refusal():
    weights = {n: 0.5 * d for n, d in DIRECTION.items()}
    model = CardModel(weights, -1.0, 0.2, {"documents": ["a", "b"]})
    again = CardModel.from_json(model.to_json())
    assert again.weights == pytest.approx(weights) and again.threshold == pytest.approx(0.2)
    data = json.loads(model.to_json())
    data["weights"]["a_feature_this_version_lacks"] = 1.0
    with pytest.raises(CardModelError, match="特徴量"):
        CardModel.from_json(json.dumps(data))
    data = json.loads(model.to_json())
    data["threshold"] = float("nan")
    with pytest.raises(CardModelError):
        CardModel.from_json(json.dumps(data))


def test_the_fit_keeps_each_weight_on_its_side_and_the_threshold_keeps_unstated_fields_empty():
    from rag.cards.train import Group, choose_threshold, fit_card_model

    names = list(FEATURES)

    def row(**on):
        return tuple(float(on.get(n, 0.0)) for n in names)

    groups = []
    for d in "abc":
        # Right lines carry their label and, by coincidence of these documents, a worked-example mark too.
        groups.append(Group(d, "補助率", True, (row(label_names=1, example=1), row(line_names=1)), (1, 0)))
        groups.append(Group(d, "申請期間", True, (row(label_names=1), row(named_near=1, example=1)), (1, 0)))
        groups.append(Group(d, "対象者", False, (row(named_near=1),), (0,)))
    model = fit_card_model(groups)
    assert model.weights["example"] <= 0.0  # evidence against may not turn into evidence for
    assert model.weights["label_names"] > model.weights["named_near"]
    assert model.probability(list(row(named_near=1))) < model.threshold <= model.probability(list(row(label_names=1)))
    # Taking the best candidate: a right value gains 1; a value for an unstated field costs 2.
    assert choose_threshold([(0.9, True, True), (0.6, False, False), (0.3, True, True)]) == pytest.approx(0.75)
