"""政策文書アシスタント — the Streamlit app (`rag serve`, or `streamlit run app.py`).

This file is only the frame: settings, the shared pipeline (built on first
start), navigation and the index panel.  Each page lives in ``rag/ui/``.
"""

from __future__ import annotations

import streamlit as st

from rag.ui import common, state

st.set_page_config(
    page_title=state.APP_NAME,
    page_icon=":material/account_balance:",
    layout="centered",
    initial_sidebar_state="expanded",
)
# Also in .streamlit/config.toml; set here too because `rag serve` may start from another folder.
st.set_option("client.toolbarMode", "viewer")
common.inject_css()
state.keep_widget_state()
# Builds the index on first start; stops with guidance if it is unusable; otherwise
# starts loading it in the background so the page is drawn meanwhile.
state.ensure_pipeline()
if not state.signed_in():
    # With app.sign_in on, nothing (not even the document list) is drawn before a valid key.
    state.sign_in_form()
    st.stop()

pages = [
    st.Page(state.PAGE_CHAT, title="チャット", icon=":material/forum:", url_path="chat", default=True),
    st.Page(state.PAGE_DOCUMENTS, title="文書の管理", icon=":material/folder_open:", url_path="documents"),
    st.Page(state.PAGE_SCHEMES, title="交付金・補助金を探す", icon=":material/savings:", url_path="schemes"),
]
if state.policy().collections is None:
    # The evaluation answers questions over every document: not for a key limited to some collections.
    pages.append(st.Page(state.PAGE_EVALUATION, title="評価", icon=":material/fact_check:", url_path="evaluation"))
page = st.navigation(pages, position="top")
with st.sidebar:
    st.markdown(f"### {state.APP_NAME}")
    st.caption("登録した政府資料から、出典ページ付きで回答します。")
    if state.settings().app.sign_in:
        st.button("サインアウト", icon=":material/logout:", on_click=state.sign_out, width="stretch")
state.show_flashes()
page.run()
common.index_panel()
state.finish_loading()  # a load that failed in the background is reported on a rerun
