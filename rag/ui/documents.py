"""Documents page: what is indexed, what could not be read, adding PDFs to a collection, removing one.

Uploads go through :func:`rag.uploads.save_upload` (validation and safe
saving) into the collection's folder, then :func:`rag.ingest.ingest` indexes
only the new files.  Removal goes through :func:`rag.uploads.remove_source`.
The index is swapped atomically, so other users keep searching the old
version meanwhile.  With sign-in on, only the key's collections are shown,
and only a key allowed to write may add or remove.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from rag.access import DEFAULT_COLLECTION, CollectionError, check_collection, collection_of
from rag.index import IndexError_
from rag.loaders import iter_corpus
from rag.ocr import PageOcr
from rag.uploads import SavedUpload, UploadError, remove_source, save_upload
from rag.ui import state


def _document_table(m) -> None:
    infos = m.source_infos() if m else []
    status = state.index_status(m) if m else None
    c1, c2, c3 = st.columns(3)
    c1.metric("文書", f"{len(infos):,}件")
    c2.metric("ページ", f"{status.pages:,}" if status else "0")
    c3.metric("チャンク（検索単位）", f"{status.chunks:,}" if status else "0")
    if not infos:
        st.info("索引に入っている文書はまだありません。下の「PDFを追加」から登録してください。")
        return
    ocr = _ocr_pages(m)
    rows = [
        {
            "タイトル": i.title,
            "コレクション": collection_of(i.source),
            "ファイル名": i.source,
            "ページ数": i.pages,
            "チャンク数": i.chunks,
            "OCR": f"{len(ocr[i.source])}ページ" if ocr.get(i.source) else "—",
            "読み取りの注意": f"{len(i.problems)}件" if i.problems else "なし",
        }
        for i in infos
    ]
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={
            "タイトル": st.column_config.TextColumn(width="large"),
            "ファイル名": st.column_config.TextColumn(width="medium"),
            "ページ数": st.column_config.NumberColumn(format="%d"),
            "チャンク数": st.column_config.NumberColumn(format="%d"),
        },
    )
    for i in infos:
        if ocr.get(i.source):
            pages = "、".join(f"p.{n}" for n in ocr[i.source])
            st.caption(f"「OCR」{i.title}: 文字のない画像のページ（{pages}）を文字認識で読み取りました。引用文に読み取りの誤りがある可能性があります。")
        if i.problems:
            with st.expander(f"{i.title}: 読み取れなかったページ（{len(i.problems)}件）", icon=":material/warning:"):
                st.markdown("\n".join(f"- {x}" for x in i.problems))
                st.caption("画像だけのページは文字を検索できません。OCRで文字を付けたPDFに差し替えると検索できるようになります。")


def _ocr_pages(m) -> dict[str, list[int]]:
    """Source → pages read by OCR, from the OCR cache beside the index (rag.ocr.store)."""
    from rag.ocr import OcrStore

    store = OcrStore.open_if_exists(state.settings().ocr_cache_file) if m else None
    if store is None:
        return {}
    try:
        return {name: store.pages_of(info["sha256"]) for name, info in m.sources.items()}
    finally:
        store.close()


def _not_indexed(m) -> None:
    """Files in the corpus folder that the index does not contain (failed to load, or added by hand)."""
    s = state.settings()
    corpus = Path(s.corpus_dir)
    if not corpus.is_dir():
        return
    indexed = set(m.sources) if m else set()
    missing = [src for _, src in iter_corpus(corpus, s.ignore_names) if src not in indexed and state.policy().allows(src)]
    if missing:
        st.warning(
            "文書フォルダにあるのに索引に入っていないファイルがあります: "
            + "、".join(missing)
            + "。サイドバーの「再索引」で読み込むか、読み込めない理由を確認できます。",
            icon=":material/report:",
        )


def _collections(m) -> list[str]:
    """The collections this user may add to: their key's, or (no sign-in) every folder in use plus ``default``."""
    allowed = state.policy()
    if allowed.collections is not None:
        return sorted(allowed.collections)
    return sorted({DEFAULT_COLLECTION, *(collection_of(src) for src in (m.sources if m else {}))})


def _upload_form(m) -> None:
    s = state.settings()
    limit = s.app.max_upload_mb
    st.subheader("PDFを追加")
    ocr = PageOcr(s.ocr, s.ocr_cache_file)
    if ocr.unavailable:
        ocr = None
        st.caption(
            f"PDFは1ファイル{limit} MBまで。文字を検索できるPDF（テキスト付き）が対象です。"
            "パスワード付きのPDFや、スキャン画像だけのPDFは追加できません。"
        )
    else:
        st.caption(
            f"PDFは1ファイル{limit} MBまで。パスワード付きのPDFは追加できません。"
            "文字のない画像のページ（スキャン）は文字認識（OCR）で読み取ります（1ページ数秒かかります）。"
        )
    with st.form("upload", clear_on_submit=True, border=True):
        options = _collections(m)
        collection = st.selectbox(
            "コレクション", options, key="upload.collection",
            help="文書フォルダの中のフォルダです。キーは、許されたコレクションの文書だけを見られます。",
        )
        if state.policy().collections is None:
            new = st.text_input("新しいコレクション（任意。入力するとこちらに追加）", key="upload.new_collection", max_chars=64)
            collection = new.strip() or collection
        files = st.file_uploader(
            "追加するPDFファイル（複数選択できます）",
            type=["pdf"],
            accept_multiple_files=True,
            max_upload_size=limit,
        )
        submitted = st.form_submit_button("追加して索引に反映", type="primary", icon=":material/upload_file:")
    if not submitted:
        return
    if not files:
        st.warning("ファイルが選ばれていません。PDFを選んでから「追加して索引に反映」を押してください。")
        return
    try:
        name = check_collection(collection)
        if not state.policy().allows_collection(name):
            raise CollectionError("このキーではそのコレクションに追加できません。")
    except CollectionError as exc:
        st.error(str(exc))
        return
    folder = Path(s.corpus_dir) if name == DEFAULT_COLLECTION else Path(s.corpus_dir) / name
    saved: list[SavedUpload] = []
    for f in files:
        try:
            with st.spinner(f"{f.name} を確認しています…"):
                result = save_upload(f.getvalue(), f.name, folder, max_upload_mb=limit, ocr=ocr)
        except UploadError as exc:
            st.error(f"追加できませんでした — {exc}", icon=":material/block:")
            continue
        except OSError as exc:
            st.error(f"{f.name}: 保存できませんでした（{exc}）。文書フォルダの書き込み権限を確認してください。")
            continue
        if result.status == "duplicate":
            st.info(result.message(), icon=":material/content_copy:")
        else:
            saved.append(result)
    if not saved:
        return
    try:
        report = state.run_ingest(s, label="追加したPDFを索引に反映しています")
    except (FileNotFoundError, IndexError_) as exc:
        st.error(f"ファイルは保存しましたが、索引に反映できませんでした: {exc}")
        return
    failed = {f.source: f.error for f in report.failed}
    for r in saved:
        if r.path.resolve().relative_to(Path(s.corpus_dir).resolve()).as_posix() in failed:
            st.error(f"索引に追加できませんでした — {failed[r.source]}")
        else:
            st.success(r.message(), icon=":material/check_circle:")
            for problem in r.problems:
                st.caption(f"注意: {problem}")


K_REMOVING = "documents.removing"


def _remove_form(m) -> None:
    """Remove one document, after an explicit confirmation naming it."""
    s = state.settings()
    labels = state.source_labels(m)
    if not labels:
        return
    st.subheader("文書を取り除く")
    st.caption("文書フォルダと索引の両方から取り除きます。索引は1回で切り替わり、途中の状態が検索されることはありません。")
    pending = st.session_state.get(K_REMOVING)
    confirming = pending in labels
    # Drawn (disabled) while confirming too, so the choice survives a cancel.
    choice = st.selectbox(
        "取り除く文書", list(labels), format_func=lambda src: f"{labels[src]}（{src}）", key="remove.choice", disabled=confirming
    )
    if not confirming:
        if st.button("取り除く…", icon=":material/delete:"):
            st.session_state[K_REMOVING] = choice
            st.rerun()
        return
    st.warning(f"「{labels[pending]}」（{pending}）を取り除きます。元に戻すには、PDFをもう一度追加してください。よろしいですか？", icon=":material/warning:")
    c1, c2 = st.columns(2)
    if c2.button("やめる", width="stretch"):
        st.session_state.pop(K_REMOVING, None)
        st.rerun()
    if c1.button("取り除く", type="primary", width="stretch", icon=":material/delete_forever:"):
        st.session_state.pop(K_REMOVING, None)
        try:
            remove_source(Path(s.corpus_dir), pending, lambda: state.run_ingest(s, label="文書を索引から取り除いています"))
        except FileNotFoundError:
            state.flash("error", f"{pending}: 文書フォルダにファイルが見つかりません。サイドバーの「再索引」で一覧を更新してください。")
        except (OSError, IndexError_) as exc:
            state.flash("error", f"{pending}: 取り除けませんでした（{exc}）。文書はそのまま残っています。")
        else:
            state.flash("success", f"「{labels[pending]}」を取り除きました。")
        st.rerun()


def render() -> None:
    st.set_page_config(layout="wide")  # room for the document table
    st.title("文書の管理")
    st.caption("検索の対象になっている資料の一覧と、資料の追加・削除です。")
    listing = st.container()
    st.divider()
    if state.policy().writable:
        _upload_form(state.manifest())
        st.divider()
        _remove_form(state.manifest())
    else:
        st.caption("このキーは読み取り専用のため、文書の追加・削除はできません。")
    # Drawn last so that a just-finished upload is already in the list.
    m = state.manifest()
    with listing:
        st.subheader("登録されている文書")
        _document_table(m)
        _not_indexed(m)


if __name__ == "__main__":
    render()
