"""Chat page: ask the documents, read the answer with its cited pages.

Everything about finding and composing the answer is ``Pipeline.ask`` /
``Pipeline.ask_stream`` — the same calls the CLI makes.  This page keeps the
conversation, passes the earlier standalone questions as ``history`` for
follow-ups, and shows the evidence.
"""

from __future__ import annotations

import logging

import streamlit as st

from rag.query import QuestionError, validate_question
from rag.ocr.highlight import quote_boxes
from rag.render import RenderError, answer_html, escape_text, highlight_html, markdown_escape
from rag.schema import Answer, Citation
from rag.ui import common, state

log = logging.getLogger(__name__)

EXAMPLE_QUESTIONS = (
    "デジタル実装に取り組む地方公共団体の2027年度までの目標は？",
    "こども家庭センターの設置目標は？",
    "地方への移住を支援する取組は？",
    "デジタル田園都市国家構想交付金はどんな事業に使える？",
)
MODE_OFFLINE, MODE_LLM = "offline", "llm"
AVATAR_USER = ":material/person:"
AVATAR_ASSISTANT = ":material/account_balance:"
EXCERPT_CONTEXT_CHARS = 180
HEADING_CHARS = 40  # a citation's title line stays on one or two lines


# ------------------------------------------------------------------ conversation state


def _messages() -> list[dict]:
    return st.session_state.setdefault(state.K_MESSAGES, [])


def _next_id() -> int:
    n = st.session_state.get(state.K_NEXT_ID, 0) + 1
    st.session_state[state.K_NEXT_ID] = n
    return n


def _history() -> list[str]:
    """Earlier questions of this conversation as the pipeline resolved them (oldest first)."""
    return [
        m["answer"].standalone_question or m["answer"].question
        for m in _messages()
        if m["role"] == "assistant" and m.get("answer") is not None
    ]


def _new_conversation() -> None:
    st.session_state[state.K_MESSAGES] = []
    st.session_state.pop(state.K_PENDING, None)


def _queue(question: str) -> None:
    st.session_state[state.K_PENDING] = question


# ------------------------------------------------------------------ sidebar


def _sidebar(m, s, starting: bool = False) -> tuple[list[str], bool, int]:
    labels = state.source_labels(m)
    options = list(labels)
    # Drop documents that left the index since they were chosen; a multiselect
    # refuses values that are not among its options.
    st.session_state[state.W_SOURCES] = [x for x in st.session_state.get(state.W_SOURCES, []) if x in labels]
    st.session_state.setdefault(state.W_K, max(3, min(30, s.retrieval.k)))
    with st.sidebar:
        st.button(
            "新しい会話",
            icon=":material/add_comment:",
            on_click=_new_conversation,
            width="stretch",
            disabled=not (_messages() or starting),
            help="これまでのやり取りを消して、最初から質問します。",
        )
        st.markdown("**検索の設定**")
        st.multiselect(
            "検索する文書",
            options,
            format_func=lambda src: labels.get(src, src),
            key=state.W_SOURCES,
            placeholder="すべての文書",
            help="選んだ文書だけから回答します。何も選ばなければすべての文書が対象です。",
        )
        if s.llm.enabled:
            st.session_state.setdefault(state.W_MODE, MODE_LLM)
            st.radio(
                "回答方式",
                (MODE_OFFLINE, MODE_LLM),
                format_func=lambda m: "オフライン（資料の文を引用）" if m == MODE_OFFLINE else f"LLM（{s.llm.model}）",
                key=state.W_MODE,
                help="オフラインは資料の文をそのまま引用します。LLMは資料をもとに文章で回答し、出典を付けます。",
            )
            use_llm = st.session_state[state.W_MODE] == MODE_LLM
        else:
            st.caption("回答方式: オフライン（資料の文をそのまま引用）")
            use_llm = False
        st.slider(
            "検索する箇所の数",
            min_value=3,
            max_value=30,
            key=state.W_K,
            help="回答の根拠として検索する文書中の箇所の数です。多いほど幅広く探しますが、関係の薄い箇所も増えます。",
        )
    return list(st.session_state[state.W_SOURCES]), use_llm, int(st.session_state[state.W_K])


# ------------------------------------------------------------------ rendering


def _user_bubble(text: str) -> None:
    with st.chat_message("user", avatar=AVATAR_USER):
        st.markdown(f'<div class="rag-user">{escape_text(text)}</div>', unsafe_allow_html=True)


def render_answer(answer: Answer, msg_id: int, scope: str = "") -> None:
    """An answer with its notes and citations (inside the current chat message)."""
    if answer.found:
        if answer.mode == "offline":
            st.markdown(f'<div class="rag-answer">{answer_html(answer.text)}</div>', unsafe_allow_html=True)
        else:
            # LLM answers are Markdown; "$" is escaped so that amounts are never typeset as math.
            st.markdown(answer.text.replace("$", r"\$"))
    else:
        st.markdown(f'<div class="rag-answer rag-abstain">{escape_text(answer.text)}</div>', unsafe_allow_html=True)
        st.caption("言い回しを変える、または検索する文書の指定を外すと見つかることがあります。")
    if answer.found and answer.low_confidence:
        # The calibrated confidence is in the middle band: say so, and point at the other pages found.
        others = sorted({f"p.{h.chunk.page}" for h in answer.hits[:5]} - {f"p.{c.page}" for c in answer.citations})
        more = f"（関連ページ: {'、'.join(others)}）" if others else ""
        st.warning(f"確度：低 — この引用が答えになっているか、原文で確認してください{more}。", icon=":material/help:")
    if not answer.verified:
        st.warning("この回答は資料の記載で裏付けられていません（有効な出典がありません）。必ず原文で確認してください。", icon=":material/gpp_maybe:")
    for note in answer.notes:
        st.info(note, icon=":material/info:")
    if answer.citations:
        st.markdown("**出典**" if answer.found else "**関連しそうな箇所**")
        for c in answer.citations:
            _citation(c, msg_id)
    meta = ["オフライン回答" if answer.mode == "offline" else "LLM回答"]
    if answer.confidence is not None and answer.found:
        meta.append(f"確度 {answer.confidence:.0%}")
    if scope:
        meta.append(scope)
    if answer.timings_ms.get("total") is not None:
        meta.append(f"{answer.timings_ms['total'] / 1000:.2f}秒")
    st.markdown(f'<div class="rag-meta">{escape_text("・".join(meta))}</div>', unsafe_allow_html=True)


def _citation(c: Citation, msg_id: int) -> None:
    s = state.settings()
    p = state.current_pipeline()  # loaded: there is an answer
    title = c.title or c.source
    heading = c.heading if len(c.heading) <= HEADING_CHARS else c.heading[: HEADING_CHARS - 1] + "…"
    label = f"[{c.marker}] {title}　{c.page_display()}" + (f"｜{heading}" if heading else "")
    with st.expander(markdown_escape(label), icon=":material/description:"):
        page = p.index.get_page(c.source, c.page) if p else None
        ocr = p.ocr_page(c.source, c.page) if (p and c.ocr) else None
        if c.ocr:
            conf = f"（読み取りの信頼度 {c.ocr_confidence:.0%}）" if c.ocr_confidence is not None else ""
            st.caption(f"「OCR」このページは文字のない画像のため、文字認識で読み取りました{conf}。引用文に読み取りの誤りがある可能性があります。ページの画像で確認してください。")
        if page is not None:
            hl = highlight_html(page.text, c.quote, context_chars=EXCERPT_CONTEXT_CHARS)
            st.markdown(f'<div class="rag-excerpt">{hl.html}</div>', unsafe_allow_html=True)
            if not hl.found:
                st.caption("引用した文の位置をページ内で特定できませんでした。")
        else:
            st.markdown(f'<div class="rag-excerpt"><mark>{escape_text(c.quote)}</mark></div>', unsafe_allow_html=True)
            st.caption("このページは現在の索引にありません（文書が更新・削除された可能性があります）。")
        path = state.pdf_path(s, c.source)
        if path is None:
            st.caption("元のファイルが文書フォルダに見つかりません。")
            return
        if path.suffix.lower() != ".pdf":
            return
        left, right = st.columns([3, 2], vertical_alignment="center")
        show = left.toggle("ページの画像を表示", key=f"page-image-{msg_id}-{c.marker}")
        right.download_button(
            "PDFをダウンロード",
            data=state.read_file_bytes(path),
            file_name=path.name,
            mime="application/pdf",
            key=f"download-{msg_id}-{c.marker}",
            icon=":material/download:",
            on_click="ignore",
            width="stretch",
        )
        if show:
            try:
                marks = tuple(quote_boxes(ocr, c.quote)) if ocr is not None else ()
                png = state.page_png(str(path), path.stat().st_mtime_ns, c.page, marks)
            except (RenderError, OSError) as exc:
                st.warning(str(exc))
            else:
                st.image(png, caption=f"{title} {c.page_display()}", width="stretch")


def _welcome() -> None:
    st.markdown(
        "登録した政府資料をもとに、**出典のページを示して**回答します。"
        "資料に記載がない場合は、推測で答えずにその旨をお知らせします。"
    )
    st.markdown("**質問の例**")
    cols = st.columns(2)
    for i, q in enumerate(EXAMPLE_QUESTIONS):
        cols[i % 2].button(q, key=f"example-{i}", on_click=_queue, args=(q,), width="stretch", icon=":material/chat_bubble_outline:")


# ------------------------------------------------------------------ asking


def _ask(question: str, sources: list[str], use_llm: bool, k: int, scope: str) -> None:
    try:
        validate_question(question)
    except QuestionError as exc:
        st.warning(str(exc), icon=":material/edit_note:")
        return
    _user_bubble(question)
    history = _history()
    msg_id = _next_id()
    with st.chat_message("assistant", avatar=AVATAR_ASSISTANT):
        try:
            p = state.pipeline()  # waits here if the index is still loading after a cold start
            if use_llm:
                answer = _stream(p, question, history, sources, k, state.policy())
            else:
                with st.spinner("資料を検索しています…"):
                    answer = p.ask(question, history=history, sources=sources or None, k=k, use_llm=False, policy=state.policy())
        except QuestionError as exc:
            st.warning(str(exc), icon=":material/edit_note:")
            return
        except Exception as exc:  # an answer must never end the page with a traceback
            log.exception("answering failed")
            st.error(f"回答を作成できませんでした（{type(exc).__name__}: {exc}）。しばらくしてからもう一度お試しください。")
            return
        render_answer(answer, msg_id, scope)
    _messages().append({"role": "user", "text": question})
    _messages().append({"role": "assistant", "answer": answer, "id": msg_id, "scope": scope})


def _stream(p, question: str, history: list[str], sources: list[str], k: int, policy) -> Answer:
    final: list[Answer] = []

    def pieces():
        for item in p.ask_stream(question, history=history, sources=sources or None, k=k, use_llm=True, policy=policy):
            if isinstance(item, Answer):
                final.append(item)
            else:
                yield item

    live = st.empty()
    with live.container():
        with st.spinner("資料を検索しています…"):
            first = _peek(pieces())
        st.write_stream(first)
    live.empty()  # replaced by the checked answer (markers validated, sources attached)
    return final[-1]


def _peek(gen):
    """Run the generator up to its first piece (retrieval happens here), then hand back the rest."""
    try:
        head = next(gen)
    except StopIteration:
        return iter(())

    def chained():
        yield head
        yield from gen

    return chained()


# ------------------------------------------------------------------ page


def render() -> None:
    s = state.settings()
    m = state.manifest()
    # Read the question first (the box is pinned to the bottom wherever it is
    # created) so the sidebar already knows a conversation is starting.
    typed = st.chat_input(
        "資料について質問を入力してください（例: こども家庭センターの設置目標は？）",
        submit_mode="disable",
        disabled=m is None or not m.sources,
    )
    question = typed or st.session_state.pop(state.K_PENDING, None)
    sources, use_llm, k = _sidebar(m, s, starting=question is not None)
    st.title("チャット")
    if m is None or not m.sources:
        common.no_documents_notice()
        return
    labels = state.source_labels(m)
    scope = "検索対象: " + ("、".join(labels.get(x, x) for x in sources) if sources else "すべての文書")
    if sources:
        st.caption(scope)

    for m in _messages():
        if m["role"] == "user":
            _user_bubble(m["text"])
        else:
            with st.chat_message("assistant", avatar=AVATAR_ASSISTANT):
                render_answer(m["answer"], m["id"], m.get("scope", ""))

    if not _messages() and not question:
        _welcome()
    if question is not None:
        _ask(question, sources, use_llm, k, scope)


if __name__ == "__main__":
    render()
