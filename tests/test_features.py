"""The answerer's named features, each on examples written for it (none is an eval item).

A feature is a pure function of a parsed question and a candidate line; these tests build
both by hand and check that each feature fires on the evidence it names and not on a
near miss.  The model file's handling (JSON only, refused when its features differ) and
the calibration and threshold fitting are tested on small made-up numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from rag.answering import features as f
from rag.answering.model import AnswerModel, ModelError, load_model, untrained
from rag.answering.train import Judged, choose_thresholds, fit_calibration
from rag.query import Asks, key_terms, prepare, resolve_followup, swap_topic


@dataclass
class Line:
    """A candidate line as the features see it."""

    text: str
    head: tuple[str, ...] = ()
    header: bool = False
    figure: str = ""
    hit_rank: int = 0
    dense: float | None = None
    page: int = 3
    contents: bool = False
    cover: str = ""
    passage: str = ""
    topic: frozenset[str] = frozenset()
    heading: str = ""

    @property
    def terms(self):
        return f.words(self.text)

    @property
    def bigrams(self):
        return f.char_bigrams(self.text)

    @property
    def column(self):
        return f.words("\n".join(self.head))

    @property
    def caption(self):
        return frozenset()

    @property
    def heading_words(self):
        return f.words(self.heading)


def view(question: str) -> f.QuestionView:
    terms = key_terms(question)
    v = f.QuestionView(Asks.of(question), terms, {t: {t} for t in terms})
    v.weights = {t: 1.0 for t in terms}
    v.bigrams = f.char_bigrams("".join(terms))
    return v


def test_coverage_counts_the_sentence_its_header_and_its_section_apart():
    q = view("研修の受講料の上限はいくら？")
    assert f.own_coverage(q, Line("研修の受講料は1人5万円を上限とする。")) == pytest.approx(1.0)
    row = Line("一般職員\u30005万円", head=("区分\u3000受講料の上限",))
    assert f.own_coverage(q, row) < f.term_coverage(q, row)
    under = Line("1人5万円とする。", heading="3 研修の受講料の上限")
    assert f.section_coverage(q, under) > 0.5 and f.own_coverage(q, under) == 0


def test_the_kind_of_number_asked_for():
    q = view("補助率は何%ですか？")
    assert f.kind_of_number(q, Line("補助率は2/3以内とする。")) == 1.0
    assert f.kind_of_number_missing(q, Line("補助対象経費は設備費とする。")) == 1.0
    # The figure may stand on the line under its label.
    assert f.kind_of_number(q, Line("補助率", figure="1/2")) == 1.0
    amount = view("上限額はいくら？")
    assert f.kind_of_number(amount, Line("上限は300万円です。")) == 1.0
    assert f.kind_of_number_missing(amount, Line("上限は30%です。")) == 1.0
    assert f.kind_of_number_missing(view("対象者は誰？"), Line("上限は30%です。")) == 0.0


def test_a_date_answers_when():
    q = view("申請の締切はいつですか？")
    for dated in ("締切は令和8年3月31日(火)17:00です。", "受付は10月下旬を予定。", "年度末までに提出する。"):
        assert f.date_for_when(q, Line(dated)) == 1.0, dated
    assert f.date_missing_for_when(q, Line("申請は電子申請で受け付けます。")) == 1.0
    assert f.date_for_when(view("申請方法は？"), Line("締切は3月31日です。")) == 0.0


def test_years_are_compared_as_western_years():
    q = view("2019年度の職員数は？")
    assert f.year_match(q, Line("令和元年度の職員数は52人。")) == 1.0
    assert f.year_missing(q, Line("平成30年度の職員数は50人。")) == 1.0


def test_places_and_names():
    assert f.named_place_missing(view("北海道の事例は？"), Line("長野県伊那市では移動診療車を導入。")) == 1.0
    assert f.place_for_where(view("どこで実施した？"), Line("長野県伊那市で実施した。")) == 1.0
    assert f.name_for_name(view("その制度の名称は？"), Line("「地域未来投資促進税制」を活用する。")) == 1.0


def test_targets_over_todays_figures():
    q = view("何人まで増やす目標ですか？")
    assert f.target_for_goal(q, Line("2027年度までに1万人とする。")) == 1.0
    assert f.target_for_goal(q, Line("現在は5千人である。")) == 0.0


def test_fragments_cut_at_a_line_end():
    q = view("書類の保存期間は？")
    assert f.starts_mid_sentence(q, Line("は、補助事業の完了後5年間保存すること。")) == 1.0
    assert f.starts_mid_sentence(q, Line("補助事業者は、書類を5年間保存すること。")) == 0.0
    assert f.ends_mid_sentence(q, Line("補助事業者は、補助事業に関する帳簿及び証拠書類を整理し、閲")) == 1.0
    assert f.ends_mid_sentence(q, Line("補助事業者は、補助事業に関する帳簿を5年間保存すること。")) == 0.0


def test_a_lead_in_and_a_list_question():
    assert f.lead_in(view("問い合わせ先は？"), Line("ご不明な点は、下記までご連絡ください。")) == 1.0
    assert f.lead_in(view("問い合わせ先は？"), Line("電話 03-0000-0000")) == 0.0
    assert f.heads_a_list(view("対象経費をすべて挙げて"), Line("補助対象経費は次のとおりとする。")) == 1.0


def test_a_line_of_names_is_not_an_answer():
    names = Line("機械装置費・システム構築費・建物費・運搬費・技術導入費・知的財産権等関連経費・外注費・専門家経費")
    assert f.list_of_names(view("建物費の上限は？"), names) > 0.5
    assert f.list_of_names(view("建物費の上限は？"), Line("建物費は、補助対象経費総額の1/2を上限とする。")) == 0.0
    passage = "\n".join(["保育コース", "介護コース", "IT基礎コース", "簿記コース", "研修の受講料は5万円。"])
    assert f.name_list_passage(view("受講料は？"), Line("研修の受講料は5万円。", passage=passage)) == pytest.approx(0.8)


def test_only_the_documents_name_in_common():
    q = view("音威子府村の村長は誰？")
    topic = f.words("音威子府村人口ビジョン")
    assert f.only_title_words(q, Line("音威子府村の人口は減少している。", topic=topic)) == 1.0
    assert f.only_title_words(q, Line("村長は〇〇である。", topic=topic)) == 0.0


def test_an_edition_the_document_is_not_about():
    cover = "ものづくり補助金\n第20次公募要領"
    assert f.other_edition(view("第21次公募の締切は？"), Line("締切は5月8日。", cover=cover)) == 1.0
    assert f.other_edition(view("第20次公募の締切は？"), Line("締切は5月8日。", cover=cover)) == 0.0
    guide = "持続化補助金\n<一般型通常枠>\nガイドブック"
    assert f.other_edition(view("創業型の上限額は？"), Line("上限は50万円。", cover=guide)) == 1.0


def test_shape_and_place_in_the_document():
    q = view("何か")
    assert f.long_sentence(q, Line("あ" * 600)) == 1.0 and f.long_sentence(q, Line("あ" * 100)) == 0.0
    assert f.bare_short_line(q, Line("概要")) == 1.0 and f.bare_short_line(q, Line("5人以下\u3000750万円", head=("従業員\u3000上限額",))) == 0.0
    assert f.cover_page(q, Line("x", page=1)) == 1.0 and f.contents_page(q, Line("x", contents=True)) == 1.0
    assert f.passage_rank(q, Line("x", hit_rank=0)) == 1.0 and f.dense_missing(q, Line("x")) == 1.0


def test_every_feature_is_described_and_returns_a_number():
    q = view("補助上限額はいくらですか？")
    line = Line("補助上限額は1,500万円です。", figure="(賃上げ特例 2,000万円)")
    assert set(f.LABELS) == set(f.FEATURES)  # each has the words a user is shown
    for name, fn in f.FEATURES.items():
        assert f.DESCRIPTIONS[name], name
        assert isinstance(fn(q, line), float), name


# ------------------------------------------------------------------ the model file


def test_the_model_is_plain_json_and_refuses_other_features(tmp_path):
    model = untrained()
    path = tmp_path / "m.json"
    model.save(path)
    data = json.loads(path.read_text())
    assert set(data["weights"]) == set(f.FEATURES)
    back = load_model(path)
    assert back.weights == pytest.approx(model.weights) and back.calibration == model.calibration
    data["weights"]["a_feature_this_version_lacks"] = 1.0
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="rag train"):
        load_model(path)
    for broken in ("not json", "[]", json.dumps({**json.loads(model.to_json()), "bias": float("nan")}).replace("NaN", "NaN")):
        path.write_text(broken)
        with pytest.raises(ModelError, match="rag train"):
            load_model(path)
    unknown = json.loads(model.to_json())
    unknown["calibration"]["a_signal_this_version_lacks"] = 1.0
    path.write_text(json.dumps(unknown))
    with pytest.raises(ModelError, match="rag train"):
        load_model(path)
    upside_down = {**json.loads(model.to_json()), "decline_below": 0.9, "low_below": 0.5}
    path.write_text(json.dumps(upside_down))
    with pytest.raises(ModelError, match="rag train"):
        load_model(path)


def test_one_weak_candidate_is_not_a_sure_answer():
    from rag.answering.model import margin

    # Alone, a candidate's lead is measured against the model's no-evidence baseline.
    assert margin([0.2], bias=-1.0) < 1.0 and margin([0.99], bias=-1.0) > 5.0
    assert margin([0.6, 0.59], bias=-5.0) < 0.1


def test_the_shipped_model_loads_and_is_fitted():
    model = load_model()
    assert model.fitted_on.get("documents"), "rag/data/answer_model.json should come from `rag train`"
    assert 0 < model.decline_below <= model.low_below < 1


def test_explanations_are_the_weighted_features():
    names = list(f.FEATURES)
    model = AnswerModel(names, [1.0 if n == "kind_of_number" else -2.0 if n == "lead_in" else 0.0 for n in names], 0.0)
    row = np.array([1.0 if n in ("kind_of_number", "lead_in") else 0.0 for n in names])
    assert model.contributions(row) == [("lead_in", -2.0), ("kind_of_number", 1.0)]


def test_calibration_follows_how_often_answers_were_right():
    names = list(f.FEATURES)
    rng = np.random.default_rng(0)
    z = rng.normal(size=400)
    right = rng.random(400) < 1 / (1 + np.exp(-(2 * z - 0.5)))
    judged = [Judged(float(x), 0.0, np.zeros(len(names)), bool(r), True) for x, r in zip(z, right)]
    cal = fit_calibration(judged, names)
    assert cal["score"] == pytest.approx(2.0, abs=0.5) and cal["bias"] == pytest.approx(-0.5, abs=0.4)
    model = AnswerModel(names, [0.0] * len(names), 0.0, calibration=cal)
    # Of the answers shown with about 0.8, about 8 in 10 were right.
    shown = np.array([model.confidence(j.score, j.margin, j.row) for j in judged])
    high = (shown > 0.7) & (shown < 0.9)
    assert high.sum() > 20 and abs(right[high].mean() - shown[high].mean()) < 0.12


def test_the_decline_threshold_keeps_wrong_declines_within_budget():
    names = list(f.FEATURES)
    row = np.zeros(len(names))
    judged = [Judged(x / 10, 0.0, row, True, True) for x in range(-10, 40)]
    judged += [Judged(x / 10, 0.0, row, False, False) for x in range(-30, 0)]
    model = AnswerModel(names, [0.0] * len(names), 0.0)
    decline, low = choose_thresholds(judged, model)
    answerable = [model.confidence(j.score) for j in judged if j.answerable]
    assert sum(p < decline for p in answerable) / len(answerable) <= 0.04
    unanswerable = [model.confidence(j.score) for j in judged if not j.answerable]
    assert sum(p < decline for p in unanswerable) >= 20 and low >= max(decline, 0.5)


# ------------------------------------------------------------------ follow-ups keep their frame


@pytest.mark.parametrize(
    "previous, question, expected",
    [
        ("図書館の開館時間は何時までですか？", "公民館は？", "公民館の開館時間は何時までですか？"),
        ("第3回公募の締切はいつ？", "第4回は？", "第4回公募の締切はいつ？"),
        ("正職員の時間外勤務の上限は月何時間？", "会計年度任用職員の場合は？", "会計年度任用職員の時間外勤務の上限は月何時間？"),
        ("通勤手当の月額の上限はいくら？", "日額だと？", "通勤手当の日額の上限はいくら？"),
        # An attribute takes the place of the attribute asked before, not of the subject.
        ("ものづくり補助金の補助上限額は？", "締切は？", "ものづくり補助金の締切は？"),
        ("育成事業の初回の申請期限はいつ？", "2回目以降は？", "育成事業の2回目以降の申請期限はいつ？"),
    ],
)
def test_a_follow_up_that_swaps_the_topic_keeps_the_frame(previous, question, expected):
    assert resolve_followup(question, [previous]) == expected
    assert prepare(question, [previous]).asks == Asks.of(expected)


def test_a_new_question_is_not_a_follow_up():
    assert swap_topic("電子申請の方法は？", "締切はいつ？") is None  # it asks something of its own
    assert swap_topic("5Gとは？", "光ファイバの目標は？") is None  # a definition
    assert resolve_followup("5Gとは？", ["光ファイバの目標は？"]) == "5Gとは？"
