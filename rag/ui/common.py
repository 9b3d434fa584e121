"""Pieces of UI used on several pages: the stylesheet, the index panel, the empty-corpus notice."""

from __future__ import annotations

import streamlit as st

from rag.index import IndexError_
from rag.ui import state

_CSS = """
<style>
.rag-answer { font-size: 1.02rem; line-height: 1.85; }
.rag-answer sup.rag-cite, .rag-cite {
  font-size: 0.72em; font-weight: 600; color: #1c5fb8; margin-left: 1px; vertical-align: super;
}
.rag-abstain { color: #5a5f6b; }
.rag-excerpt {
  font-size: 0.92rem; line-height: 1.75; padding: 0.6rem 0.85rem; border-left: 3px solid #c9d3e3;
  background: #f7f9fc; border-radius: 4px; max-height: 22rem; overflow-y: auto;
}
.rag-excerpt mark { background: #ffe58a; padding: 0 1px; border-radius: 2px; }
.rag-user { white-space: normal; line-height: 1.7; }
.rag-meta { font-size: 0.8rem; color: #6b7280; margin-top: 0.2rem; }
/* Streamlit's file uploader has fixed English texts; show Japanese ones instead
   (the size limit is stated in the caption above the uploader). */
[data-testid="stFileUploaderDropzone"] button [data-testid="stMarkdownContainer"] p { font-size: 0; }
[data-testid="stFileUploaderDropzone"] button [data-testid="stMarkdownContainer"] p::after {
  content: "ファイルを選択"; font-size: 0.875rem;
}
[data-testid="stFileUploaderDropzoneInstructions"] span { font-size: 0; }
[data-testid="stFileUploaderDropzoneInstructions"] span::after {
  content: "またはここにドラッグ＆ドロップ"; font-size: 0.85rem;
}
</style>
"""


def inject_css() -> None:
    st.html(_CSS)


def index_panel() -> None:
    """Sidebar: what is indexed, when, with which model, and a re-index button."""
    s = state.settings()
    m = state.manifest()
    with st.sidebar:
        st.divider()
        st.markdown("**索引の状態**")
        if m is None:
            st.caption("索引はまだありません。")
        else:
            info = state.index_status(m)
            st.caption(
                f"文書 {info.documents:,}件・{info.pages:,}ページ・{info.chunks:,}チャンク  \n"
                f"埋め込みモデル: {info.embedder}  \n"
                f"最終更新: {info.built_at}"
            )
        progress_area = st.container()
        if st.button(
            "再索引",
            icon=":material/sync:",
            width="stretch",
            help="文書フォルダで追加・変更・削除されたファイルだけを読み込み直します。処理中も今の索引で検索できます。",
        ):
            try:
                report = state.run_ingest(s, container=progress_area)
            except (FileNotFoundError, IndexError_) as exc:
                state.flash("error", str(exc))
            else:
                for level, text in state.describe_report(report):
                    state.flash(level, text)
            st.rerun()


def no_documents_notice() -> None:
    s = state.settings()
    st.info(
        f"まだ検索できる文書がありません（文書フォルダ: {s.corpus_dir}）。"
        "「文書の管理」ページからPDFを追加してください。",
        icon=":material/folder_open:",
    )
    st.page_link(state.PAGE_DOCUMENTS, label="文書の管理へ", icon=":material/upload_file:")
