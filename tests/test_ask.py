import json
import subprocess
import sys

import pytest

from rag.answer import ABSTENTION
from rag.normalize import comparable
from rag.query import QuestionError, resolve_followup, validate_question

KPI_QUESTION = "デジタル実装に取り組む地方公共団体の2027年度までの目標は？"


def test_the_canonical_question_gets_1500_with_its_page(pipeline):
    answer = pipeline.ask(KPI_QUESTION)
    assert answer.found
    assert "1500団体" in comparable(answer.text)
    assert ("digiden-sogo-senryaku-2023-2027.pdf", 2) in {(c.source, c.page) for c in answer.citations}
    assert "[1]" in answer.text and "p.2" in answer.render()
    assert len(answer.text) <= 260


def test_every_quoted_sentence_is_on_its_cited_page(pipeline):
    for question in [KPI_QUESTION, "こども家庭センターの設置目標は？", "光ファイバの世帯カバー率の目標は？"]:
        answer = pipeline.ask(question)
        for c in answer.citations:
            page = pipeline.index.get_page(c.source, c.page)
            assert comparable(c.quote) in comparable(page.text)


def test_a_question_the_documents_do_not_answer_abstains_and_lists_nearby_pages(pipeline):
    answer = pipeline.ask("横浜市の令和6年度の下水道使用料はいくら？")
    assert not answer.found and answer.text == ABSTENTION
    assert "関連しそうな箇所" in answer.render()


def test_source_filter_limits_hits(pipeline):
    only = "digiden-sogo-senryaku-zentaizo-ocr.pdf"
    answer = pipeline.ask("転職なき移住", sources=[only])
    assert answer.hits and {h.chunk.source for h in answer.hits} == {only}


def test_at_least_ten_ranked_hits(pipeline):
    assert len(pipeline.ask(KPI_QUESTION).hits) >= 10


def test_english_question_is_answered_anyway(pipeline):
    answer = pipeline.ask("What is the KPI for 5G population coverage?")
    assert any("5G" in h.chunk.text for h in answer.hits[:3])


@pytest.mark.parametrize("bad, needle", [("", "空"), ("   \n\t", "空"), ("あ" * 100_000, "長すぎ"), ("\x00\x01\x02", "文字がありません")])
def test_bad_questions_are_clear_errors(bad, needle):
    with pytest.raises(QuestionError, match=needle):
        validate_question(bad)


def test_control_characters_inside_a_question_are_ignored(pipeline):
    answer = pipeline.ask("こども家庭\x07センターの\x1b設置目標は？")
    assert answer.found and "1741" in comparable(answer.text)


def test_followup_carries_the_previous_topic():
    standalone = resolve_followup("それはいつまで？", ["サテライトオフィスを設置した地方公共団体の目標は？"])
    assert "サテライト" in standalone and standalone.endswith("それはいつまで？")
    assert resolve_followup("光ファイバの世帯カバー率の目標は？", ["前の質問"]) == "光ファイバの世帯カバー率の目標は？"


def test_followup_through_the_pipeline(pipeline):
    answer = pipeline.ask("他の目標は？", history=["光ファイバの世帯カバー率の目標は？"])
    assert answer.standalone_question and "光ファイバ" in answer.standalone_question


def _rag(*args, stdin=None, index):
    return subprocess.run(
        [sys.executable, "-m", "rag", "ask", *args, "--index", str(index)],
        input=stdin, capture_output=True, text=True, timeout=300,
    )


def test_cli_json_fields(default_settings):
    result = _rag(KPI_QUESTION, "--json", index=default_settings.index_dir)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"question", "answer", "found", "citations", "hits", "timings_ms"} <= set(data)
    assert data["found"] and data["citations"][0]["page"] == 2
    assert {"source", "page", "heading", "quote"} <= set(data["citations"][0])
    assert len(data["hits"]) >= 10 and {"source", "page", "chunk_id", "score"} <= set(data["hits"][0])
    assert {"retrieve", "answer", "total"} <= set(data["timings_ms"])


def test_cli_batch_mode_one_json_per_line(default_settings):
    questions = f"{KPI_QUESTION}\nこども家庭センターの設置目標は？\n\n火星探査の予算は？\n"
    result = _rag("-", stdin=questions, index=default_settings.index_dir)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["found"] for r in rows] == [True, True, False]


def test_cli_plain_output_and_bad_input(default_settings):
    plain = _rag(KPI_QUESTION, index=default_settings.index_dir)
    assert plain.returncode == 0 and "出典:" in plain.stdout and "p.2" in plain.stdout
    empty = _rag("  ", index=default_settings.index_dir)
    assert empty.returncode == 2 and "質問が空です" in empty.stderr and "Traceback" not in empty.stderr
    unknown = _rag(KPI_QUESTION, "--source", "nope.pdf", index=default_settings.index_dir)
    assert unknown.returncode == 2 and "nope.pdf" in unknown.stderr


def test_a_short_new_question_is_not_taken_for_a_followup():
    assert resolve_followup("5Gとは？", ["光ファイバの世帯カバー率は？"]) == "5Gとは？"


def test_cli_rejects_bad_k_and_bad_config(default_settings, tmp_path):
    bad_k = _rag("質問", "--k", "0", index=default_settings.index_dir)
    assert bad_k.returncode == 2 and "1〜100" in bad_k.stderr
    config = tmp_path / "bad.toml"
    config.write_text("[retrieval]\nk = 'many'\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "rag", "--config", str(config), "ask", "質問", "--index", str(default_settings.index_dir)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "retrieval.k" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_heading_that_echoes_the_question_is_followed_by_what_it_heads(pipeline):
    # p.31 captions the example "再エネ需給による地域間連携 (神奈川県横浜市)"; the answer is the line under it.
    answer = pipeline.ask("再エネ需給による地域間連携の事例で、横浜市はどこから再エネ電気を調達している？")
    assert answer.found and "東北13市町村" in answer.text


def test_one_box_of_a_flattened_slide_is_quoted_without_its_neighbours(pipeline):
    # p.1 is a slide whose boxes ("… (長野県伊那市) ■ … (福島県喜多方市)") extract as one line.
    answer = pipeline.ask("長野県伊那市の遠隔医療の取組は？")
    assert answer.found and "移動診療車" in answer.text
    assert "喜多" not in answer.text and "京都市" not in answer.text


@pytest.mark.parametrize(
    "question",
    ["地域おこし協力隊の隊員数を何人にする目標？", "保育士の給与を月にいくら引き上げる計画？"],
)
def test_a_sentence_without_the_kind_of_number_asked_for_is_no_answer(pipeline, question):
    # The documents discuss each subject, but never give this rate, head count or amount:
    # the answerer declines, or at most shows a related line marked 「確度：低」.
    answer = pipeline.ask(question)
    assert not answer.found or answer.low_confidence, answer.render()


def test_the_kind_of_number_asked_for_is_answered_when_it_is_there(pipeline):
    answer = pipeline.ask("光ファイバの世帯カバー率は何%にする目標？")
    assert answer.found and "99.9%" in answer.text


@pytest.mark.parametrize(
    "question, needles",
    [
        # The place is the caption above the example's description (p.32).
        ("デイサービスの送り迎えをタクシー会社に任せている市は？", ["群馬県前橋市"]),
        # …or the examples listed under the measure (p.15).
        ("キャッシュレスのデジタル地域通貨の事例として挙がっている自治体は？", ["深谷市", "飛騨市"]),
        # The 2021 baseline is the line under the 2025 KPI (p.10).
        ("物流DXを実現している物流事業者の割合は、2021年度にどれくらいだった？", ["31%"]),
        # "この場合、月4.2万円まで無償。" only makes sense with the sentence before it (p.8).
        ("住民税非課税世帯の0～2歳児の保育料は、月いくらまで無償？", ["4.2万円", "0歳~2歳児"]),
        # A target question gets the target, not today's count (p.24: 現在、21,000人を突破).
        ("デジタル推進委員は何人まで増やす目標？", ["5万人"]),
        # Examples laid out as short unmarked lines under the measure (p.6).
        ("デジタル田園都市国家構想交付金では、二地域居住等のためにどのような施設整備を支援する？", ["シェアハウス", "コミュニティセンター"]),
        # A 400-character flattened slide line shares many words; the clean sentence answers (p.18).
        ("お店などの会社がマイナンバーカードで本人確認をするとき、手数料はかかる？", ["当面無料化"]),
        # "いつまで？" answered by a measure with no date: the date is in the sub-item under it (p.18).
        ("市役所の基幹システムを国の共通クラウドに移すのはいつまで？", ["2025年度"]),
        # Two-part question: the target sentence is not crowded out by a run-on line (p.30).
        ("SDGs未来都市の選定目標と、現在までの選定数は？", ["210都市", "154都市"]),
        # The box is captioned "北海道更別村 / コミュニティナース" above its description (p.24).
        ("北海道更別村では、住民のデジタルサービス利用のサポートを誰が担っている？", ["北海道更別村", "コミュニティナース"]),
    ],
)
def test_the_answer_carries_what_the_question_asks_for(pipeline, question, needles):
    answer = pipeline.ask(question)
    assert answer.found
    for needle in needles:
        assert needle in answer.text, (needle, answer.text)
    assert len(answer.text) <= 400


def test_passages_follow_their_best_sentence(default_settings, embedder, pipeline):
    # One scoring orders the passages and picks the answer: the page listed first is the
    # page of the best sentence, and the rest follow their own best sentences.
    from rag.pipeline import Pipeline

    question = "デジタル化に取り組む市町村を、まず2024年度までにいくつにする計画？"
    fused = Pipeline.load(default_settings.model_copy(update={"retrieval": default_settings.retrieval.model_copy(update={"sentence_rerank": False})}), embedder=embedder)
    found = pipeline.retrieve(question)
    first_seen = list(dict.fromkeys(c.hit.chunk.id for c in found.ranking.candidates))
    assert [h.chunk.id for h in found.hits][: len(first_seen)] == first_seen
    answer = pipeline.ask(question)
    assert (answer.citations[0].source, answer.citations[0].page) == (answer.hits[0].chunk.source, answer.hits[0].chunk.page)
    # Reordering, not re-retrieving: the same passages as the fused ranking.
    assert sorted(h.chunk.id for h in answer.hits) == sorted(h.chunk.id for h in fused.ask(question).hits)


@pytest.mark.parametrize(
    "question",
    [
        "デジタル化に取り組む市町村を、まず2024年度までにいくつにする計画？",
        "スマホの5G電波が届く人口の割合は、2023年度と2025年度にそれぞれ何%を目指す？",
        "こども家庭センターの設置目標は？",
    ],
)
def test_the_passage_listed_first_is_the_one_the_answer_quotes(pipeline, question):
    # One scoring orders the passages and picks the answer: they cannot disagree.
    answer = pipeline.ask(question)
    assert answer.found
    first = answer.hits[0].chunk
    assert (first.source, first.page) == (answer.citations[0].source, answer.citations[0].page)


def test_lines_read_from_several_directions_are_quoted_once(pipeline):
    answer = pipeline.ask("キャッシュレスのデジタル地域通貨の事例として挙がっている自治体は？")
    body = [line.rstrip("[0123456789]") for line in answer.text.splitlines()]
    assert len(body) == len(set(body)), answer.text


def test_synonym_keys_are_words_not_parts_of_longer_katakana_words():
    from rag.query import synonym_groups

    assert synonym_groups("集落ネットワーク圏とは") == []
    assert synonym_groups("ビジネスコンテストの支援は") == []
    assert [k for k, _ in synonym_groups("ネットで申請できる？")] == ["ネット"]


def test_the_kind_of_number_is_read_from_the_question():
    from rag.query import Asks as _Asks

    def wants(question, text):
        return any(u.search(text) for u in _Asks.of(question).units)

    assert wants("補助率は？", "補助率は2/3") and not wants("補助率は？", "補助の対象は中小企業")
    assert _Asks.of("応募の倍率は？").units == ()  # 倍率 is a ratio like 3倍, not a percentage
    assert wants("何万人を目指す？", "5万人(2027年度まで)")
    assert wants("上限額はいくら？", "上限 50万円")



def test_question_words_are_not_topic_words():
    from rag.query import key_terms

    # どのような → 何の: asking "which kind" says nothing about the topic.
    assert "何の" not in key_terms("活用イメージとしてどのような例が紹介されていますか？")
    assert {"活用", "イメージ", "例"} <= set(key_terms("活用イメージとしてどのような例が紹介されていますか？"))
