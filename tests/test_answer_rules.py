"""The offline answerer's reading rules on small passages written like the real PDFs' pages.

Each test gives the answerer pages as the index stores them (the page text and
the chunks cut from it) and checks the answer a reader would want: a table row
with its header, every row of a table asked for as a list, every step of a
flow, the sentence that explains the quoted one, and an honest abstention
when the question is about another edition of a scheme or about something
the document does not mention at all.  Nothing is mocked: ``page_text`` and
``cover`` are plain lookups of the pages given here.
"""

from __future__ import annotations

import functools

from rag.answer import ABSTENTION, OfflineAnswerer
from rag.patterns import years_in
from rag.query import named_document, prepare
from rag.schema import LOW_CONFIDENCE_NOTE, Chunk, Hit

MONO = "monozukuri.pdf"
JIZOKU = "jizokuka.pdf"
OTO = "otoineppu.pdf"
SENRYAKU = "senryaku.pdf"
COVERS = {
    SENRYAKU: "デジタル田園都市国家構想総合戦略",
    MONO: "ものづくり・商業・サービス生産性向上促進補助金\n第20次公募要領 概要版",
    JIZOKU: "小規模事業者持続化補助金\n<一般型通常枠>\nガイドブック",
    OTO: "北海道音威子府村人口ビジョン",
}


class _Pages:
    """The pages given, and the covers above: what an index would hand the answerer."""

    def __init__(self, pages: dict[tuple[str, int], str]):
        self.pages = pages

    def page_text(self, source: str, page: int) -> str | None:
        return self.pages.get((source, page))

    def cover(self, source: str) -> str:
        return COVERS.get(source, "")


@functools.lru_cache(maxsize=1)
def _embedder():
    from rag.config import EmbedderSettings
    from rag.embeddings import load_embedder

    return load_embedder(EmbedderSettings())


def _answerer(pages: dict[tuple[str, int], str]) -> OfflineAnswerer:
    # The bundled embedder, as in the product: the confidence the model was calibrated with reads it.
    return OfflineAnswerer(embedder=_embedder(), pages=_Pages(pages))


def _hits(pages: dict[tuple[str, int], str], chunks: dict[tuple[str, int], str] | None = None) -> list[Hit]:
    """One chunk per page (the whole page unless ``chunks`` cuts it shorter), ranked in the order given."""
    out = []
    for i, ((source, page), text) in enumerate(pages.items()):
        body = (chunks or {}).get((source, page), text)
        start = text.index(body)
        chunk = Chunk(Chunk.make_id(source, page, start), source, page, text.split("\n")[0], body, start, start + len(body))
        out.append(Hit(chunk, 1.0 / (1 + i)))
    return out


def _ask(pages, question, chunks=None):
    return _answerer(pages).answer(question, _hits(pages, chunks))


LIMITS = {
    (MONO, 6): "補助上限額・補助率等\n製品・サービス高付加価値化枠\n従業員規模\u3000補助上限額\u3000補助率\n"
    "5人以下\u3000750万円\n6~20人\u30001,000万円\n21~50人\u30001,500万円\n51人以上\u30002,500万円\n特例要件",
    (MONO, 18): "特例措置要件\n従業員規模\u3000上乗せ額\n5人以下\u3000各補助対象事業枠の補助上限額から最大\u3000100万円\n"
    "6~20人\u3000各補助対象事業枠の補助上限額から最大\u3000250万円",
}


def test_a_table_row_is_found_by_its_header_and_quoted_under_it():
    # 「5人以下　750万円」 has none of the question's words but 5人以下; its header has 補助上限額.
    answer = _ask(LIMITS, "ものづくり補助金（製品・サービス高付加価値化枠）で、従業員5人以下の事業者の補助上限額はいくらですか？")
    lines = answer.text.split("\n")
    assert answer.found and "750万円" in answer.text, answer.text
    assert [line.removesuffix("[1]") for line in lines[:2]] == ["従業員規模\u3000補助上限額\u3000補助率", "5人以下\u3000750万円"]
    assert answer.citations[0].page == 6


def test_a_list_question_over_a_table_reads_every_row_under_its_header():
    answer = _ask(LIMITS, "ものづくり補助金の製品・サービス高付加価値化枠について、従業員規模ごとの補助上限額を教えてください。")
    for figure in ("750万円", "1,000万円", "1,500万円", "2,500万円"):
        assert figure in answer.text, answer.text
    assert "特例要件" not in answer.text  # the line under the table is not a row of it


def test_a_list_question_answered_by_a_header_row_reads_the_rows_and_notes_do_not_end_the_table():
    pages = {
        (MONO, 9): "基本要件に関する注意事項\n・事業計画策定にあたっては、下表の基準値以上の目標値を設定してください。\n"
        "基本要件の種類\u3000基準値\u3000達成する時点\n①付加価値額の増加要件\u3000年平均成長率+3.0%以上\u3000最終年度\n"
        "②賃金の増加要件\u3000年平均成長率+2.0%以上\u3000最終年度\n・P9「都道府県別最低賃金年平均成長率」をご参照ください。\n"
        "③事業所内最低賃金水準要件\u3000最低賃金+30円以上\u3000毎年",
    }
    answer = _ask(pages, "ものづくり補助金の基本要件を挙げてください。")
    for figure in ("3.0%", "2.0%", "+30円"):
        assert figure in answer.text, answer.text


def test_rows_the_question_cannot_tell_apart_are_quoted_together():
    pages = {
        (JIZOKU, 3): "持続化補助金とは?\n補助率・補助上限額は?\n補助率\u30002/3\n補助上限\u300050万円\n"
        "インボイス特例\u300050万円上乗せ※\n賃金引上げ特例\u3000150万円上乗せ※\n上記特例の要件を\u3000200万円上乗せ※",
    }
    answer = _ask(pages, "持続化補助金の特例を使うと補助上限額はいくら上乗せされますか？")
    for figure in ("50万円上乗せ", "150万円上乗せ", "200万円上乗せ"):
        assert figure in answer.text, answer.text


def test_a_flow_question_reads_every_step_and_stops_where_the_numbering_starts_again():
    steps = ["申請の準備", "申請手続き", "申請内容の審査", "採択発表", "見積書等の提出", "交付決定", "補助事業の実施",
             "実績報告書の提出", "確定検査", "補助金の請求", "補助金の入金", "事業効果報告"]  # fmt: skip
    circled = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫"
    page = "「申請」から「事業完了」までの流れ\n" + "\n".join(f"{n} {s}" for n, s in zip(circled, steps))
    page += "\n① 申請の準備\n① 申請書類に不備があった場合、不採択となります。"
    answer = _ask({(JIZOKU, 8): page}, "持続化補助金の「申請」から「事業完了」までの流れを教えてください。")
    lines = answer.text.split("\n")
    assert [line.removesuffix("[1]") for line in lines[1:]] == [f"{n} {s}" for n, s in zip(circled, steps)], answer.text


def test_a_sentence_that_narrows_the_rule_before_it_is_never_quoted_alone():
    pages = {
        (JIZOKU, 5): "補助対象となる経費\n・経費の支払いは原則「銀行振込」となります。特に10万円(税抜)を超える支払い"
        "(一括、分割問わず)については、現金支払いの場合、補助対象外となります。",
    }
    answer = _ask(pages, "持続化補助金で、10万円を超える支払いを現金で払っても大丈夫ですか？")
    assert "銀行振込" in answer.text and "補助対象外" in answer.text, answer.text


def test_a_narrowing_sentence_on_a_line_of_its_own_is_quoted_after_the_rule_above_it():
    page = "主な注意事項\n・経費の支払いは原則「銀行振込」となります。\n特に10万円(税抜)を超える支払いを現金で行った場合、補助対象外となります。"
    chunk = page[page.index("特に") :]  # the passage starts with the narrowing sentence
    answer = _ask({(JIZOKU, 5): page}, "持続化補助金で、10万円を超える支払いを現金で払っても大丈夫ですか？", chunks={(JIZOKU, 5): chunk})
    assert answer.text.index("銀行振込") < answer.text.index("補助対象外"), answer.text


def test_a_variant_the_quoted_lines_name_is_answered_though_the_cover_names_another():
    pages = {(JIZOKU, 11): "<加点一覧>\n・地域資源型\n地域資源等を活用し、良いモノ・サービスを高く提供し、地域外への販売を行う計画に加点"}
    answer = _ask(pages, "持続化補助金の地域資源型とは？")
    assert answer.found and "地域資源等を活用し" in answer.text, answer.text


def test_the_sentence_that_explains_the_quoted_one_is_read_past_the_end_of_its_chunk():
    page = (
        "[総人口の推移]\n昭和 30年から昭和 40年までは人口 4,000 人前後で推移していますが、昭和 45 年には人口が大きく減少しています。"
        "これは、国道 40号建設工事の作業員が昭和 44年に道路が開通したことを受け村から撤退したことによるものと考えられます。"
    )
    first = page[: page.index("これは")]
    answer = _ask({(OTO, 10): page}, "音威子府村で昭和45年ごろに人口がガクッと減ったのはなぜですか？", chunks={(OTO, 10): first})
    assert "国道 40号" in answer.text, answer.text


def test_era_years_are_the_same_years_as_western_ones():
    assert years_in("昭和 45 年には") == {"1970"}
    assert years_in("平成元年の天北線の廃止") == {"1989"}
    assert years_in("2010年（平成22年）") == {"2010"}


SCHEDULE = {
    (MONO, 3): "スケジュール\n公募開始:2025年4月25日(金)\n申請締切\u3000:2025年7月25日(金)17:00まで【厳守】\n"
    "・あくまでも概要版になりますので、必ず、第20次公募要領をご確認の上で申請してください。",
}


def test_a_question_about_another_edition_of_the_scheme_is_declined():
    assert _ask(SCHEDULE, "ものづくり補助金第20次公募の申請締切はいつですか？").found
    declined = _ask(SCHEDULE, "ものづくり補助金の次回（第21次）公募の申請締切はいつですか？")
    assert declined.text.startswith(ABSTENTION), declined.text


def test_a_question_about_another_variant_than_the_cover_names_is_declined():
    pages = {(JIZOKU, 3): "持続化補助金とは?\n補助率・補助上限額は?\n補助率\u30002/3\n補助上限\u300050万円"}
    assert _ask(pages, "小規模事業者持続化補助金（一般型 通常枠）の補助上限額はいくらですか？").found
    declined = _ask(pages, "小規模事業者持続化補助金の創業型の補助上限額はいくらですか？")
    assert declined.text.startswith(ABSTENTION), declined.text


def test_passages_that_share_only_the_documents_name_are_not_a_confident_answer():
    pages = {
        (OTO, 7): "I.人口ビジョンについて\n・音威子府村においても、人口減少に伴う地域課題に対応するために「音威子府村人口ビジョン」を策定します。",
        (OTO, 10): "[総人口の推移]\n・音威子府村では、昭和 25 年には 4,185 人と人口のピークになっています。",
    }
    assert _ask(pages, "音威子府村の人口が最も多かったのはいつで、何人でしたか？").found
    # Nothing found mentions 村長: declined, or at most shown as related lines marked 「確度：低」.
    unsure = _ask(pages, "音威子府村の村長は誰ですか？")
    assert not unsure.found or unsure.low_confidence, unsure.text
    assert unsure.confidence < _ask(pages, "音威子府村の人口が最も多かったのはいつで、何人でしたか？").confidence


TOPICS = {
    MONO: frozenset({"物作り", "商業", "サービス", "生産", "性", "向上", "促進", "補助", "金", "第", "次", "公募", "要領", "概要", "版"}),
    JIZOKU: frozenset({"小", "規模", "事業", "者", "持続", "化", "補助", "金", "一般", "型", "通常", "枠", "ガイドブック"}),
}


def test_a_question_that_names_one_document_is_scoped_to_it_and_searches_without_the_name():
    assert named_document("ものづくり補助金の補助率はどうなっていますか？", TOPICS) == (MONO, "ものづくり補助金")
    assert named_document("持続化補助金で相見積もりが必要な場合は？", TOPICS) == (JIZOKU, "持続化補助金")
    # 補助金 alone is both documents' word; a one-word phrase is not a name.
    assert named_document("補助金の申請方法は？", TOPICS) is None
    query = prepare("ものづくり補助金の補助率はどうなっていますか？", topics=TOPICS)
    assert query.scope == MONO and "ものづくり" not in query.sparse_text(scoped=True) and "補助率" in query.sparse_text(scoped=True)
    # Searched beyond the named document (the user chose others), the name is a word like any other.
    assert "ものづくり補助金" in query.sparse_text(scoped=False)
    # Two documents named: the question is about both.
    assert named_document("ものづくり補助金と持続化補助金の補助率の違いは？", TOPICS) is None
    assert prepare("補助金の申請方法は？", topics=TOPICS).scope is None


def test_a_when_question_is_answered_by_the_dated_line_not_by_the_closest_wording():
    pages = {
        # Listed first, and closer in words: 「電子申請による受付」 says how, not when.
        (MONO, 4): "重要事項\nGビズIDプライムアカウントの準備\nものづくり補助金は、電子申請による受付です。\n"
        "GビズIDプライムアカウントの発行には一定期間を要するので、お早めにご準備ください。",
        (MONO, 3): "スケジュール\n公募開始\u3000:2025年4月25日(金)\n電子申請受付:2025年7月1日(火)17:00~\n"
        "申請締切\u3000:2025年7月25日(金)17:00まで【厳守】",
    }
    question = "ものづくり補助金のネット申請は、いつから受け付けが始まりますか？"
    answerer = _answerer(pages)
    ranking = answerer.rank(question, _hits(pages))
    assert ranking.hits[0].chunk.page == 3
    answer = answerer.answer(question, [], ranking=ranking)
    assert answer.text.startswith("電子申請受付:2025年7月1日"), answer.text
    assert answer.citations[0].page == 3


def test_a_measure_whose_dated_sub_item_stands_under_it_answers_a_when_question():
    # The measure has the question's words, its sub-item the date: quoted together, not declined.
    page = (
        "デジタル基盤整備\n・地方公共団体の基幹業務システムに係るガバメントクラウドの活用。\n"
        "- 先行事業の結果を踏まえ、移行ガイド等の整備を進め、2025年度までのガバメントクラウドシステム移行を支援"
    )
    answer = _ask({(SENRYAKU, 19): page}, "地方公共団体の基幹業務システムをガバメントクラウドに移すのはいつまで？")
    assert answer.found and "2025年度" in answer.text, answer.text


def test_office_hours_answer_a_when_question():
    pages = {(JIZOKU, 15): "お問合せ先\nお問合せ先:地域の商工会\n受付時間:9:00~12:00、13:00~17:00(土日祝日、年末年始除く)"}
    answer = _ask(pages, "持続化補助金のお問合せ先はいつ受け付けていますか？")
    assert answer.found and "9:00~12:00" in answer.text, answer.text


def test_a_word_that_only_contains_itsu_is_not_a_when_question():
    # 「どのくらいつくる」 holds いつ; the count answers it, dated or not.
    pages = {(SENRYAKU, 18): "デジタル基盤整備\n・地方にデータセンターを十数か所整備し、地方分散を進める。"}
    answer = _ask(pages, "地方にデータセンターをどのくらいつくる計画？")
    assert answer.found and "十数か所" in answer.text, answer.text


def test_a_long_measure_is_quoted_with_its_dated_sub_item_however_long_both_are():
    # The measure is excused from having no date because its sub-item is quoted with it: together
    # they run past the answer's budget, and the sub-item is trimmed around its date instead.
    measure = "・地方公共団体の基幹業務システムに係るガバメントクラウドの活用により、" + "各団体の調達・運用の負担を軽減し、" * 6 + "標準化を進める。"
    sub_item = "- 先行事業の結果を踏まえ、" + "移行ガイド等の整備を進め、" * 6 + "2025年度までのガバメントクラウドシステム移行を支援"
    assert len(measure) + len(sub_item) > 260  # the answer's budget (max_chars 200 + 60)
    page = f"デジタル基盤整備\n{measure}\n{sub_item}"
    answer = _ask({(SENRYAKU, 19): page}, "地方公共団体の基幹業務システムをガバメントクラウドに移すのはいつまで？")
    assert answer.found and "2025年度" in answer.text, answer.text


def test_a_question_term_no_retrieved_passage_has_is_marked_absent():
    pages = {(OTO, 3): "音威子府村の人口は令和2年に702人でした。\n村の高齢化率は40%を超えています。"}
    answerer = _answerer(pages)
    asked_elsewhere = answerer.rank(prepare("音威子府村の面積は何平方キロメートル？"), _hits(pages))
    assert "面積" in asked_elsewhere.view.absent
    assert asked_elsewhere.feature("absent_terms") > 0
    stated = answerer.rank(prepare("音威子府村の人口は何人？"), _hits(pages))
    assert not stated.view.absent and stated.feature("absent_terms") == 0


def test_an_answer_with_its_sources_stays_within_the_shown_length():
    # Every row of a table asked for as a list, under a shown length that cannot hold them
    # all with the source list: the last rows give way, the header and the first rows stay.
    pages = {(MONO, 6): LIMITS[(MONO, 6)]}

    def answer(shown: int):
        answerer = _answerer(pages)
        answerer.composer.settings = answerer.settings.model_copy(update={"max_shown_chars": shown})
        return answerer.answer("従業員規模ごとの補助上限額は？", _hits(pages))

    unbounded = answer(10_000)
    lines = unbounded.text.removesuffix("[1]").split("\n")
    assert len(lines) >= 4, unbounded.text
    shown = len(unbounded.render()) - len(lines[-1])  # one row too short for all of them
    fitted = answer(shown + len(LOW_CONFIDENCE_NOTE) + 2)
    assert fitted.found and len(fitted.render()) <= shown, fitted.render()
    kept = fitted.text.removesuffix("[1]").split("\n")
    assert 2 <= len(kept) < len(lines) and lines[: len(kept)] == kept, (fitted.text, unbounded.text)
