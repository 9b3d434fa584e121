"""Scheme cards and the project matcher on the 交付金・補助金を探す page.

One row per scheme, one column per field; choosing a cell opens its page in the same
citation view as the chat (quoted line highlighted, page image, PDF).  The table
downloads as CSV that Excel opens (UTF-8 with BOM).  Below it, a consultant describes a
project and gets the schemes ranked with the card lines that decide each one.
"""

from __future__ import annotations

import csv
import io

import streamlit as st

from rag.render import escape_text
from rag.schema import Citation
from rag.ui import state

_VERDICT = {"fit": "✅ 合う", "no": "❌ 合わない", "unknown": "❓ 不明"}
_PURPOSE_NONE = "（指定しない）"


@st.cache_resource(show_spinner="制度カードを作成しています（文書ごとに初回のみ）…", max_entries=4)
def _cards(index_dir: str, version: str, _p) -> list:
    from pathlib import Path

    from rag.cards import cards_for_index

    return cards_for_index(_p, Path(index_dir))


def cards(p) -> list:
    """The live index's cards, built (or read from ``cards.json``) once per index version."""
    return _cards(str(p.index.index_dir.resolve()), p.index.version_dir.name if p.index.version_dir else "", p)


def _csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    # The BOM makes Excel read the file as UTF-8 instead of mangling the Japanese.
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _show_cell(p, card, name: str) -> None:
    from rag.ui.chat import _citation

    f = card.fields.get(name)
    if f is None:
        st.info(f"「{card.scheme}」の資料には「{name}」の記載がありません（推測で埋めていません）。")
        return
    st.markdown(f"**{escape_text(card.scheme)} — {escape_text(name)}**（確度 {f.confidence:.2f}）")
    _citation(Citation(1, card.source, f.page, name, f.quote, "", title=card.title, label=f.label), f"card-{card.source}-{name}")


def render_cards(p) -> list:
    from rag.cards import FIELDS, NOT_STATED, card_rows

    st.subheader("制度カード（公募要領・支給要領などの要点）")
    found = cards(p)
    if not found:
        st.caption("公募要領・支給要領・ガイドブックなど、制度の申請について書かれた資料が見つかりませんでした。")
        return found
    st.caption("表のセルを選ぶと、そのページの該当箇所を表示します。「記載なし」は資料に書かれていない項目です。")
    table = [
        {"制度名": c.scheme, **{n: (f"{f.value}（p.{f.page}）" if (f := c.fields.get(n)) else NOT_STATED) for n in FIELDS if n != "制度名"}}
        for c in found
    ]
    event = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-cell",
        key="schemes.cards",
    )
    cells = getattr(getattr(event, "selection", None), "cells", None) or []
    if cells:
        row, column = cells[0]
        if 0 <= row < len(found):
            _show_cell(p, found[row], column)
    st.download_button(
        "表をダウンロード（CSV・Excelで開けます）",
        data=_csv(card_rows(found)),
        file_name="scheme_cards.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
    )
    return found


def render_matcher(p, found: list) -> None:
    from rag.cards.values import yen
    from rag.cards.match import PURPOSES, Project, parse_project, rank

    if not found:
        return
    st.subheader("事業に合う制度を探す")
    sentence = st.text_input("事業の説明（1文でも可）", placeholder="例: 製造業、従業員30人、3,000万円で新しい加工機を導入したい", key="match.sentence")
    c1, c2, c3, c4 = st.columns(4)
    industry = c1.text_input("業種", key="match.industry")
    employees = c2.number_input("従業員数", min_value=0, value=None, step=1, key="match.employees")
    investment = c3.number_input("投資額（万円）", min_value=0, value=None, step=10, key="match.investment")
    purpose = c4.selectbox("目的", [_PURPOSE_NONE, *PURPOSES], key="match.purpose")
    project = parse_project(sentence) if sentence.strip() else Project()
    # Fields typed in the form win over what the sentence said.
    project.industry = industry.strip() or project.industry
    project.employees = int(employees) if employees is not None else project.employees
    project.investment = int(investment) * 10_000 if investment is not None else project.investment
    project.purpose = purpose if purpose != _PURPOSE_NONE else project.purpose
    if not any((project.industry, project.employees, project.investment, project.purpose)):
        st.caption("業種・従業員数・投資額・目的のいずれかを入れると、制度を合う順に並べます。")
        return
    for m in rank(found, project, p.page_text):
        head = {True: "合う可能性が高い", None: "判断できない条件あり", False: "条件に合わない"}[m.fits]
        amount = f"／見込み上限 {yen(m.expected_max)}" if m.expected_max else ""
        with st.expander(f"{m.card.scheme}　{head}{amount}", expanded=m.fits is True):
            for r in [*m.reasons, *m.expected_lines]:
                where = f"（{r.field} p.{r.page}）" if r.page else f"（{r.field}）"
                st.markdown(f"{_VERDICT[r.verdict]} {escape_text(r.text)}{escape_text(where)}")
                if r.quote:
                    st.markdown(f'<div class="rag-excerpt">{escape_text(r.quote)}</div>', unsafe_allow_html=True)
            if m.expected_max:
                st.markdown(f"**見込み上限額: {yen(m.expected_max)}**（投資額 × 補助率、上限額まで）")


def render(p) -> None:
    render_matcher(p, render_cards(p))


__all__ = ["render", "cards", "state"]
