"""Scheme finder: the grants and subsidies (交付金・補助金…) the documents mention, with every page.

The list comes from :mod:`rag.schemes` (extracted from the index once per
index version); this page filters, sorts and shows it, and hands a question
about one scheme to the chat page.
"""

from __future__ import annotations

import streamlit as st

from rag.render import escape_text, highlight_html
from rag.schema import Citation
from rag.ui import common, state

ALL_AREAS = "すべての分野"
ALL_KINDS = "すべての種類"
SORT_MENTIONS, SORT_MATCH, SORT_NAME = "言及の多い順", "キーワードとの一致順", "名前順"
MAX_DETAILS = 40  # expanders beyond this make the page slow to draw; the table still lists all


def _page_display(p, source: str, page: int) -> str:
    found = p.index.get_page(source, page)
    return Citation(0, source, page, "", "", "", label=found.label if found else None).page_display()


def _pages_text(pages: list[tuple[str, int]], labels: dict[str, str], multi_doc: bool) -> str:
    """「p.1, 6, 9」, grouped per document when the index holds several."""
    by_doc: dict[str, list[int]] = {}
    for src, page in pages:
        by_doc.setdefault(src, []).append(page)
    parts = []
    for src, numbers in by_doc.items():
        text = "p." + ", ".join(str(n) for n in numbers)
        parts.append(f"{labels.get(src, src)} {text}" if multi_doc else text)
    return "／".join(parts)


def _ask_in_chat(name: str) -> None:
    st.session_state[state.K_PENDING] = f"{name}の概要と対象は？"
    st.switch_page(state.PAGE_CHAT)


def _details(p, scheme, labels: dict[str, str], n: int) -> None:
    kind = f"・{scheme.kind}" if scheme.kind else ""
    with st.expander(f"{scheme.name}（言及 {scheme.mention_count}回{kind}）", icon=":material/savings:"):
        if scheme.summary:
            st.markdown(f'<div class="rag-answer">{escape_text(scheme.summary)}</div>', unsafe_allow_html=True)
        if scheme.area:
            st.caption(f"分野: {scheme.area}")
        st.markdown("**記載のあるページ**")
        for m in scheme.mentions:
            where = f"{labels.get(m.source, m.source)}　{_page_display(p, m.source, m.page)}"
            heading = f"｜{m.heading}" if m.heading else ""
            st.markdown(f"<div class='rag-meta'>{escape_text(where + heading)}</div>", unsafe_allow_html=True)
            if m.context:
                hl = highlight_html(m.context, scheme.name)
                st.markdown(f'<div class="rag-excerpt">{hl.html}</div>', unsafe_allow_html=True)
        if st.button("この制度についてチャットで聞く", key=f"ask-scheme-{n}", icon=":material/forum:"):
            _ask_in_chat(scheme.name)


def render() -> None:
    st.set_page_config(layout="wide")  # room for the scheme table
    st.title("交付金・補助金を探す")
    st.caption("資料に出てくる交付金・補助金などの制度の一覧です。キーワードや分野で絞り込み、記載のあるページを確認できます。")
    p = state.current_pipeline()
    if p is None:
        common.no_documents_notice()
        return
    from rag.ui import scheme_cards

    scheme_cards.render(p)
    st.subheader("資料に出てくる制度名")
    try:
        from rag.schemes import search_schemes

        schemes = state.schemes(p)
    except ImportError as exc:
        st.error("制度の一覧を作る機能を読み込めませんでした。管理者に連絡してください。")
        st.caption(f"詳細: {exc}")
        return
    if not schemes:
        st.info("登録されている資料には、交付金・補助金などの制度名が見つかりませんでした。")
        return

    areas = sorted({a for s in schemes for a in (s.area, *getattr(s, "areas", ())) if a})
    kinds = sorted({s.kind for s in schemes if s.kind})
    keyword = st.text_input(
        "キーワード",
        placeholder="例: 交付金、移住、子育て（スペースで区切ると、すべてを含む制度）",
        key="schemes.keyword",
    )
    c1, c2, c3 = st.columns([3, 2, 2])
    area = c1.selectbox("分野", [ALL_AREAS, *areas], key="schemes.area")
    kind = c2.selectbox("種類", [ALL_KINDS, *kinds], key="schemes.kind")
    order = c3.selectbox("並び順", [SORT_MENTIONS, SORT_MATCH, SORT_NAME], key="schemes.order")

    found = search_schemes(schemes, keyword=keyword.strip(), area="" if area == ALL_AREAS else area)
    if kind != ALL_KINDS:
        found = [s for s in found if s.kind == kind]
    if order == SORT_MENTIONS:
        found = sorted(found, key=lambda s: (-s.mention_count, s.name))
    elif order == SORT_NAME:
        found = sorted(found, key=lambda s: s.name)
    # SORT_MATCH keeps search_schemes' order: names that contain the keyword first.
    st.caption(f"{len(found)}件（全{len(schemes)}件）")
    if not found:
        st.info("条件に合う制度がありません。キーワードを短くするか、分野を「すべての分野」にしてください。")
        return

    labels = state.source_labels(p.index.manifest)
    multi_doc = len({src for s in schemes for src, _ in s.pages}) > 1
    rows = [
        {
            "制度名": s.name,
            "種類": s.kind,
            "言及": s.mention_count,
            "掲載ページ": _pages_text(s.pages, labels, multi_doc),
            "分野": s.area,
            "概要": s.summary,
        }
        for s in found
    ]
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={
            "制度名": st.column_config.TextColumn(width="medium"),
            "種類": st.column_config.TextColumn(width="small"),
            "言及": st.column_config.NumberColumn(format="%d回", width="small"),
            "掲載ページ": st.column_config.TextColumn(width="medium"),
            "概要": st.column_config.TextColumn(width="large"),
        },
    )
    st.subheader("制度ごとの詳細")
    for n, s in enumerate(found[:MAX_DETAILS]):
        _details(p, s, labels, n)
    if len(found) > MAX_DETAILS:
        st.caption(f"詳細は上位{MAX_DETAILS}件まで表示しています。キーワードで絞り込むと他の制度も表示できます。")


if __name__ == "__main__":
    render()
