"""The regression gate: the eval suite must not fall below the floors stored in eval/floors.json."""

import json

from conftest import ROOT
from rag.evaluate import check_floors, load_qa, run_eval, score_answer, write_report


def test_eval_suite_stays_above_its_floors(pipeline, tmp_path):
    items = load_qa(ROOT / "eval" / "qa.jsonl")
    assert len(items) >= 100
    run = run_eval(pipeline, items, k=10, baselines=False)
    paths = write_report(run, tmp_path / "out")
    assert json.loads(paths["summary"].read_text())["n"] == len(items)
    assert paths["chart"].stat().st_size > 1000 and "## 全体" in paths["report"].read_text()
    assert run.summary["ragas"]["status"] == "skipped" and "LLM" in run.summary["ragas"]["reason"]
    floors = json.loads((ROOT / "eval" / "floors.json").read_text())
    assert check_floors(run.summary, floors) == []


def test_eval_set_is_well_formed():
    items = load_qa(ROOT / "eval" / "qa.jsonl")
    types = [i.type for i in items]
    assert sum(t == "paraphrase" for t in types) >= 0.3 * len(items)
    assert sum(not i.answerable for i in items) >= 0.1 * len(items)
    for i in items:
        assert i.answerable == bool(i.sources) and (i.answerable or not i.must_include)


def test_scoring_rules():
    from rag.evaluate import QAItem

    item = QAItem("x", "q", "a", ("1,500団体", "2027年度"), (("f.pdf", 2),), True, "factoid")
    assert score_answer(item, "2027年度までに１５００ 団体とする。")[0]
    assert not score_answer(item, "2027年度までに1,000団体")[0]
    assert not score_answer(item, "2027年度までに1,500団体" + "。" * 400)[0]  # a passage is not an answer
    # A fact that only the source list carries (a title with "2027年度") does not count.
    assert not score_answer(item, "1,500団体とする。[1]", "1,500団体とする。[1]\n[1] 総合戦略（2023年度～2027年度） p.2")[0]


def test_floor_check_reports_each_breach():
    summary = {"answer_accuracy": 0.5, "retrieval": {"recall@5": 0.9}, "abstention": {"answerable_wrongly_abstained": 0.2}}
    limits = {"answer_accuracy": 0.6, "retrieval.recall@5": 0.8, "abstention.answerable_wrongly_abstained": {"max": 0.1}}
    breaches = check_floors(summary, limits)
    assert len(breaches) == 2 and "上限" in breaches[1]


def test_ranks_are_per_page_and_deep_recall_is_not_faked():
    from rag.evaluate import QAItem, distinct_pages, judge, summarise
    from rag.schema import Answer

    assert distinct_pages([("a", 1), ("a", 1), ("a", 2)]) == [("a", 1), ("a", 2)]
    item = QAItem("x", "q", "", ("f",), (("a", 2),), True, "factoid")
    row = judge(item, Answer("q", "f[1]", True), [("a", 1), ("a", 1), ("a", 2)], 1.0)
    assert row.first_gold_rank == 2
    assert summarise([row], k=5)["retrieval"]["recall@10"] is None
