"""Which further lines an answer quotes: the pair features, the model's file, the composer using it.

The pages are written for these tests, like the real PDFs' pages (a table with its header,
a list under a lead-in).  Candidates are cut from them by the product's own
:func:`rag.answering.candidates.candidates`; nothing is mocked.
"""

from __future__ import annotations

import json

import pytest

from rag.answering import support
from rag.answering.candidates import candidates
from rag.answering.composing import Composer
from rag.answering.features import QuestionView, char_bigrams
from rag.answering.model import AnswerModel, ModelError, untrained
from rag.answering.scoring import Ranking
from rag.answering.train import with_support
from rag.config import AnswerSettings
from rag.query import Asks, key_terms
from rag.schema import Chunk, Hit

SOURCE = "hojokin.pdf"
TABLE = (
    "補助上限額・補助率\n"
    "従業員規模\u3000補助上限額\u3000補助率\n"
    "5人以下\u3000750万円\u30001/2\n"
    "6~20人\u30001,000万円\u30002/3\n"
    "申請の締切\n"
    "申請は電子申請で受け付けます。\n"
    "締切は2026年7月25日(金)17:00です。"
)
LIST = "支援の内容\n次の取組を支援します。\n・空き家の改修\n・移住者の住まい探し\n・地域おこし協力隊の受入れ"


class _Pages:
    def __init__(self, pages: dict[int, str]):
        self.pages = pages

    def page_text(self, source: str, page: int) -> str | None:
        return self.pages.get(page) if source == SOURCE else None

    def cover(self, source: str) -> str:
        return "地域振興補助金 公募要領"


def _candidates(pages: dict[int, str], order: list[str]):
    """The candidates of ``pages`` (one chunk a page), ranked in ``order`` (those named), scores falling."""
    hits = []
    for i, (page, text) in enumerate(pages.items()):
        chunk = Chunk(Chunk.make_id(SOURCE, page, 0), SOURCE, page, text.split("\n")[0], text, 0, len(text))
        hits.append(Hit(chunk, 1.0 / (1 + i)))
    found = {c.text: c for c in candidates(hits, _Pages(pages))}
    ranked = [found[t] for t in order]
    for i, c in enumerate(ranked):
        c.score = 0.9 - 0.1 * i
    return hits, ranked


def _view(question: str) -> QuestionView:
    terms = key_terms(question)
    v = QuestionView(Asks.of(question), terms, {t: {t} for t in terms})
    v.weights = {t: 1.0 for t in terms}
    v.bigrams = char_bigrams("".join(terms))
    return v


def _pair(question: str, pages: dict[int, str], order: list[str]) -> support.Pair:
    _, ranked = _candidates(pages, order)
    return support.pairs(_view(question), ranked[:1], ranked, lambda c: pages[c.page])[0]


def test_rows_of_one_table_and_their_place_on_the_page():
    row = _pair("補助上限額は？", {6: TABLE}, ["5人以下\u3000750万円\u30001/2", "6~20人\u30001,000万円\u30002/3"])
    assert support.same_table(row) == 1.0 and support.same_page(row) == 1.0 and support.same_passage(row) == 1.0
    assert support.nearness(row) == 1.0 and support.below_best(row) == 1.0
    # A row's second figure is one the best row does not have.
    assert support.adds_new_number(row) == 1.0
    far = _pair("締切は？", {6: TABLE}, ["従業員規模\u3000補助上限額\u3000補助率", "締切は2026年7月25日(金)17:00です。"])
    assert support.same_table(far) == 0.0 and support.below_best(far) == 1.0 and support.nearness(far) == pytest.approx(0.2)
    above = _pair("補助上限額は？", {6: TABLE}, ["6~20人\u30001,000万円\u30002/3", "5人以下\u3000750万円\u30001/2"])
    assert support.below_best(above) == 0.0 and support.nearness(above) == 1.0


def test_a_line_on_another_page_has_no_distance():
    pair = _pair("締切は？", {6: TABLE, 7: LIST}, ["次の取組を支援します。", "締切は2026年7月25日(金)17:00です。"])
    assert support.same_page(pair) == 0.0 and pair.distance is None and support.nearness(pair) == 0.0


def test_the_kind_of_figure_asked_for_held_by_the_further_line_only():
    amount = _pair("補助上限額はいくら？", {6: TABLE}, ["従業員規模\u3000補助上限額\u3000補助率", "5人以下\u3000750万円\u30001/2"])
    assert support.adds_kind_of_number(amount) == 1.0 and support.adds_number(amount) == 1.0
    # Once an amount is quoted, the next row's amount is a new figure but not a new kind of one.
    second = _pair("補助上限額はいくら？", {6: TABLE}, ["5人以下\u3000750万円\u30001/2", "6~20人\u30001,000万円\u30002/3"])
    assert support.adds_kind_of_number(second) == 0.0 and support.adds_new_number(second) == 1.0
    assert support.adds_kind_of_number(_pair("対象は誰？", {6: TABLE}, ["従業員規模\u3000補助上限額\u3000補助率", "5人以下\u3000750万円\u30001/2"])) == 0.0


def test_items_of_one_list_and_what_they_repeat():
    pair = _pair("どのような取組を支援する？", {7: LIST}, ["・空き家の改修", "・移住者の住まい探し"])
    assert support.same_bullet(pair) == 1.0 and support.list_question(pair) == 1.0
    assert support.repeats_chosen(pair) < 0.5
    lead = _pair("どのような取組を支援する？", {7: LIST}, ["次の取組を支援します。", "・空き家の改修"])
    assert support.same_bullet(lead) == 0.0


def _model(weights: dict[str, float], bias: float, threshold: float = 0.5) -> AnswerModel:
    full = {n: 0.0 for n in support.PAIR_FEATURES} | weights
    return with_support(untrained(), support.SupportModel(full, bias, threshold))


APPLY = (
    "申請の方法\n申請は電子申請で受け付けます。\n申請には事業計画書が必要です。\n"
    "提出先は事務局です。\n期限\n2026年7月25日(金)17:00まで"
)


def _compose(model: AnswerModel, question: str, order: list[str], settings: AnswerSettings | None = None, pages=None):
    pages = pages or {6: APPLY}
    hits, ranked = _candidates(pages, order)
    ranking = Ranking(hits, ranked, _view(question), 0.9, model)
    return Composer(settings or AnswerSettings(further_lines=2), _Pages(pages)).compose(question, ranking, hits, {})


def test_the_composer_quotes_the_line_the_model_finds_likely_and_not_the_others():
    order = ["申請は電子申請で受け付けます。", "提出先は事務局です。", "2026年7月25日(金)17:00まで"]
    question = "申請はいつまで受け付けますか？"
    # The dated line brings no word of the question, and stands three lines under the quote:
    # neither the fixed rule (a model without a pair model) nor the reading around the best line quotes it.
    assert "2026年7月25日" not in _compose(untrained(), question, order).text
    # A model that finds a further line likely only when it holds a figure the quote does not.
    answer = _compose(_model({"adds_new_number": 6.0}, -3.0), question, order)
    assert "2026年7月25日" in answer.text and "提出先" not in answer.text
    # Under a threshold it does not reach, nothing further is quoted; with no lines allowed, none either.
    assert "2026年7月25日" not in _compose(_model({"adds_new_number": 6.0}, -3.0, threshold=0.99), question, order).text
    assert "2026年7月25日" not in _compose(_model({"adds_new_number": 6.0}, -3.0), question, order, AnswerSettings(further_lines=0)).text


def test_a_further_line_comes_from_the_best_lines_page_only_unless_told_otherwise():
    # The figure the quote lacks stands on another page: quoting it would cite a page the
    # answer's own line does not come from.  One sentence for the fixed rule, so only the pair
    # model could add it.
    pages = {
        6: "申請の方法\n申請は電子申請で受け付けます。\n申請には事業計画書が必要です。\n提出先は事務局です。",
        9: "参考\n前回の締切は2025年7月25日でした。",
    }
    order = ["申請は電子申請で受け付けます。", "申請には事業計画書が必要です。", "提出先は事務局です。", "前回の締切は2025年7月25日でした。"]
    question = "申請はいつまで受け付けますか？"
    model = _model({"adds_new_number": 6.0}, -3.0)
    same_page = AnswerSettings(max_sentences=1, further_lines=2)
    assert "2025年7月25日" not in _compose(model, question, order, same_page, pages=pages).text
    anywhere = AnswerSettings(max_sentences=1, further_lines=2, further_same_page=False)
    assert "2025年7月25日" in _compose(model, question, order, anywhere, pages=pages).text


def test_the_further_line_model_is_stored_as_json_beside_its_feature_names(tmp_path):
    model = _model({"same_table": 1.5, "score_share": 2.0}, -2.0, 0.1)
    path = tmp_path / "model.json"
    model.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data["support"]["weights"]) == set(support.PAIR_FEATURES)
    again = AnswerModel.from_json(path.read_text(encoding="utf-8"))
    assert again.further.weights == model.further.weights and again.further.threshold == 0.1
    # A file whose pair features differ from this version's is refused, not misread.
    del data["support"]["weights"]["same_table"]
    with pytest.raises(ModelError, match="引用を添える"):
        AnswerModel.from_json(json.dumps(data))
    # A file written before the pair model loads, and the composer's fixed rule decides.
    del data["support"]
    assert AnswerModel.from_json(json.dumps(data)).further is None


def test_the_confidence_shown_follows_the_completed_answers_and_declining_the_best_line():
    import numpy as np

    from rag.answering.features import FEATURES
    from rag.answering.train import Judged, choose_thresholds, fit_calibration, fit_shown

    names = list(FEATURES)
    row = np.zeros(len(names))
    rng = np.random.default_rng(1)
    z = rng.normal(size=400)
    # The best line answers with probability σ(z); a further line completes some answers it left short.
    right = rng.random(400) < 1 / (1 + np.exp(-z))
    completed = right | (rng.random(400) < 0.3)
    judged = [Judged(float(x), 0.0, row, bool(r), True) for x, r in zip(z, right)]
    model = AnswerModel(names, [0.0] * len(names), 0.0, calibration=fit_calibration(judged, names))
    decline, _ = choose_thresholds(judged, model)
    declined = {i for i, j in enumerate(judged) if model.evidence(j.score) < decline}
    model.shown = fit_shown(judged, list(completed), names)
    # Declining reads the evidence, which the completed answers do not move…
    assert {i for i, j in enumerate(judged) if model.evidence(j.score) < decline} == declined
    # …and of the answers shown with about 0.5–0.7, about as many were right once completed.
    shown = np.array([model.confidence(j.score) for j in judged])
    mid = (shown > 0.5) & (shown < 0.7)
    assert mid.sum() > 30 and abs(completed[mid].mean() - shown[mid].mean()) < 0.1
    assert all(model.confidence(j.score) > model.evidence(j.score) for j in judged)
    # With no further lines quoted no answer changes, and the calibration is what is shown.
    assert fit_shown(judged, [j.right for j in judged], names) is None
