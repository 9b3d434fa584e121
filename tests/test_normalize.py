from rag.normalize import comparable, normalize_chars, normalize_lines, normalize_page


def test_nfkc_and_radicals_supplement_become_ordinary_kanji():
    # ⻑ (U+2ED1) and ⻄ (U+2EC4) are CJK Radicals Supplement: NFKC alone leaves them.
    assert normalize_chars("⻑野県と⻄日本、⼈口（Kangxi）、ＡＢＣ１２３、ｶﾀｶﾅ") == "長野県と西日本、人口(Kangxi)、ABC123、カタカナ"


def test_circled_numbers_survive_nfkc_because_they_mark_list_items():
    assert normalize_chars("①地域の特性") == "①地域の特性"


def test_cid_codes_and_private_use_glyphs_are_dropped():
    lines, _ = normalize_lines("見出し\n\uf06c 補助上限額(cid:12)は750万円です。")
    assert lines == ["見出し", "・補助上限額は750万円です。"]


def test_letter_spaced_text_is_collapsed_but_ordinary_spaces_stay():
    lines, _ = normalize_lines("人 口 ビ ジ ョ ン の 策 定\nPDF export で 使う")
    assert lines[0] == "人口ビジョンの策定"
    assert "PDF export" in lines[1]


def test_lines_broken_mid_sentence_are_joined_but_not_after_sentence_end_or_before_bullets():
    raw = (
        "表題\n"
        "デジタル技術も活用し相談援助等を行うこども家庭センター設置市区町村:全\n"
        "国展開を目指す。\n"
        "- 次の項目\n"
        "短い見出し\n"
        "- 項目二"
    )
    lines, _ = normalize_lines(raw)
    assert lines == [
        "表題",
        "デジタル技術も活用し相談援助等を行うこども家庭センター設置市区町村:全国展開を目指す。",
        "- 次の項目",
        "短い見出し",
        "- 項目二",
    ]


def test_the_title_line_is_never_glued_to_the_body():
    lines, _ = normalize_lines("デジタル田園都市国家構想の実現に向けた新たな主要KPI\n" + "本文" * 20 + "\n" + "本文の続き")
    assert lines[0] == "デジタル田園都市国家構想の実現に向けた新たな主要KPI"


def test_printed_page_number_becomes_the_label():
    lines, label = normalize_lines("見出し\n本文です。\n12")
    assert lines == ["見出し", "本文です。"] and label == "12"


def test_numbers_at_line_start_are_not_taken_for_list_items():
    lines, _ = normalize_lines("見出し\n" + "光ファイバの世帯カバー率は2027年度までに達成(2020年度末で" * 1 + "\n99.3%)")
    assert lines[-1].endswith("(2020年度末で99.3%)")


def test_comparable_form_ignores_width_space_commas_and_case():
    assert comparable("１，５００ 団体\n（2027年度）KPI") == "1500団体(2027年度)kpi"


def test_normalize_page_of_empty_text_is_empty():
    assert normalize_page("  \n\n (cid:3) \n") == ""


def test_a_number_far_from_the_page_index_is_data_not_a_page_number():
    lines, label = normalize_lines("KPI\n目標年次\n2027", page_index=3)
    assert "\n".join(lines).endswith("2027") and label is None
    lines, label = normalize_lines("見出し\n本文です。\n9", page_index=15)
    assert label == "9"


def test_laid_out_text_keeps_its_line_breaks_and_its_cells():
    # rag.pdf_text has already joined wrapped lines and taken the page number off by position:
    # lines without 。 (slide items) stay apart, and a closing "12" is data, not a page label.
    raw = "スケジュール\n補助金交付候補者の採択\n交付申請・交付決定\n従業員規模\t補助上限額\n5人以下\t750万円\n人\t口\tビ\tジ\tョ\tン\n12"
    lines, label = normalize_lines(raw, page_index=12, laid_out=True)
    assert lines == [
        "スケジュール",
        "補助金交付候補者の採択",
        "交付申請・交付決定",
        "従業員規模\u3000補助上限額",
        "5人以下\u3000750万円",
        "人口ビジョン",  # characters spread a cell apart each are one word, not a row of cells
        "12",
    ]
    assert label is None
    # The same text read as plain extraction output is rejoined and loses its page number.
    plain, plain_label = normalize_lines(raw.replace("\t", " "), page_index=12)
    assert plain_label == "12" and len(plain) < len(lines) - 1
