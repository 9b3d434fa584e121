"""Evaluation page: run the Q&A evaluation suite (:mod:`rag.evaluate`) against the live index.

The same ``run_eval`` as ``rag eval``; this page picks the QA file, shows
the headline metrics, a chart per question type and every question's result.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import streamlit as st

from rag.config import PROJECT_ROOT
from rag.ui import common, state

EVAL_DIR = PROJECT_ROOT / "eval"
DEFAULT_QA = "qa.jsonl"
UPLOADED = "（ファイルをアップロード）"
K_RUN = "eval.run"

TYPE_LABELS = {
    "factoid": "事実",
    "list": "列挙",
    "example": "事例",
    "paraphrase": "言い換え",
    "multi_page": "複数ページ",
    "unanswerable": "資料に記載なし",
}


def _pct(value) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _ms(value) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _qa_files() -> list[str]:
    files = sorted(p.name for p in EVAL_DIR.glob("*.jsonl")) if EVAL_DIR.is_dir() else []
    if DEFAULT_QA in files:
        files.remove(DEFAULT_QA)
        files.insert(0, DEFAULT_QA)
    return files


def _load_items(choice: str, upload) -> list:
    from rag.evaluate import load_qa

    if choice != UPLOADED:
        return load_qa(EVAL_DIR / choice)
    # load_qa reads a path; the upload only exists in memory.
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        path = Path(tmp) / "qa.jsonl"
        path.write_bytes(upload.getvalue())
        return load_qa(path)


def _run(p, items: list, k: int, baselines: bool) -> None:
    from rag.evaluate import run_eval

    bar = st.progress(0.0, text=f"評価しています…（0/{len(items)}）")

    def on_progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"評価しています…（{done}/{total}）")

    if baselines:
        bar.progress(0.0, text="比較用の方式（ベースライン）も測るため、時間がかかります…")
    run = run_eval(p, items, k=k, baselines=baselines, progress=on_progress)
    bar.empty()
    st.session_state[K_RUN] = {"run": run, "k": k, "n": len(items)}


def _summary(summary: dict) -> None:
    r = summary["retrieval"]
    a = summary["abstention"]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("回答の正解率", _pct(summary["answer_accuracy"]), help="記載のある質問で、必要な事実を含む簡潔な回答を返した割合")
    c2.metric("出典の正確さ", _pct(summary["citation_precision"]), help="回答に付けた出典ページのうち、正解ページだった割合")
    c3.metric("Recall@5", _pct(r["recall@5"]), help="正解ページが検索結果の上位5件に入った割合")
    c4.metric("MRR", "—" if r["mrr"] is None else f"{r['mrr']:.3f}", help="正解ページが検索結果の何番目に出たか（1位なら1.0）の平均")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("記載なしの見送り", _pct(a["unanswerable_correct"]), help="資料に記載のない質問で「見つかりませんでした」と答えた割合")
    c2.metric("誤った見送り", _pct(a["answerable_wrongly_abstained"]), help="記載のある質問なのに回答を見送った割合（低いほど良い）")
    c3.metric("応答時間（中央値）", _ms(summary["latency_ms"]["p50"]))
    c4.metric("応答時間（95%）", _ms(summary["latency_ms"]["p95"]))


def _by_type(summary: dict) -> None:
    by_type = summary.get("by_type") or {}
    if not by_type:
        return
    import pandas as pd

    st.subheader("質問の種類別")
    # Unanswerable questions have no accuracy or recall (abstaining is the right answer): chart the rest.
    scored = {t: v for t, v in by_type.items() if v["answer_accuracy"] is not None}
    if scored and any((v["answer_accuracy"] or v["retrieval"]["recall@5"]) for v in scored.values()):
        chart = pd.DataFrame(
            {
                "回答の正解率": [100 * (v["answer_accuracy"] or 0.0) for v in scored.values()],
                "Recall@5": [100 * (v["retrieval"]["recall@5"] or 0.0) for v in scored.values()],
            },
            index=[TYPE_LABELS.get(t, t) for t in scored],
        )
        # With horizontal=True the value axis is the horizontal one, labelled by y_label.
        st.bar_chart(chart, horizontal=True, stack=False, x_label="", y_label="割合（%）", height=280)
    rows = [
        {
            "種類": TYPE_LABELS.get(t, t),
            "問数": v["n"],
            "回答の正解率": _pct(v["answer_accuracy"]),
            "Recall@5": _pct(v["retrieval"]["recall@5"]),
            "MRR": "—" if v["retrieval"]["mrr"] is None else f"{v['retrieval']['mrr']:.3f}",
            "記載なしの見送り": _pct(v["abstention"]["unanswerable_correct"]),
        }
        for t, v in by_type.items()
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
    if "unanswerable" in by_type:
        st.caption("「資料に記載なし」の質問は、回答を見送る（「見つかりませんでした」と答える）のが正解です。")


def _missing_documents(p, items: list) -> list[str]:
    """Documents the QA file cites as answers that this index does not hold."""
    indexed = set(p.index.manifest.sources)
    return sorted({src for item in items for src, _ in item.sources if src not in indexed})


def _baselines(summary: dict) -> None:
    base = summary.get("baselines") or {}
    if not base:
        return
    names = {
        "bm25_only": "BM25のみ",
        "dense_only": "ベクトル検索のみ",
        "vanilla_langchain_faiss": "LangChain標準（FAISS）",
        "vanilla_langchain_bm25": "LangChain標準（BM25）",
    }
    rows = [{"方式": "このシステム", **_compact_row(summary)}]
    rows += [{"方式": names.get(n, n), **_compact_row(s)} for n, s in base.items()]
    st.subheader("比較（同じ質問・同じマシン）")
    st.dataframe(rows, hide_index=True, width="stretch")


def _compact_row(s: dict) -> dict:
    return {
        "Recall@1": _pct(s["retrieval"]["recall@1"]),
        "Recall@5": _pct(s["retrieval"]["recall@5"]),
        "MRR": "—" if s["retrieval"]["mrr"] is None else f"{s['retrieval']['mrr']:.3f}",
        "回答の正解率": _pct(s["answer_accuracy"]),
        "出典の正確さ": _pct(s["citation_precision"]),
    }


def _questions(rows: list) -> None:
    st.subheader("質問ごとの結果")
    only_failed = st.toggle("不正解だけを表示", key="eval.only_failed")
    shown = [r for r in rows if not (only_failed and r.passed)]
    table = [
        {
            "判定": "○ 正解" if r.passed else "× 不正解",
            "ID": r.id,
            "種類": TYPE_LABELS.get(r.type, r.type),
            "質問": r.question,
            "回答": r.answer,
            "正解ページ": ", ".join(r.gold_pages) or "（記載なし）",
            "引用ページ": ", ".join(r.cited_pages) or "—",
            "時間(ms)": round(r.latency_ms),
        }
        for r in shown
    ]
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "質問": st.column_config.TextColumn(width="medium"),
            "回答": st.column_config.TextColumn(width="large"),
            "時間(ms)": st.column_config.NumberColumn(format="%d"),
        },
    )


def render() -> None:
    st.set_page_config(layout="wide")  # the per-question table needs the width
    st.title("評価")
    st.caption("正解付きの質問集で、検索と回答の品質を測ります。索引や設定を変えたときの確認に使います。")
    p = state.current_pipeline()
    if p is None:
        common.no_documents_notice()
        return

    files = _qa_files()
    c1, c2 = st.columns([3, 1])
    choice = c1.selectbox("質問集", [*files, UPLOADED], key="eval.file", help=f"{EVAL_DIR} の *.jsonl、またはアップロードしたファイル")
    k = c2.number_input("検索件数 k", min_value=1, max_value=50, value=10, key="eval.k")
    upload = None
    if choice == UPLOADED:
        upload = st.file_uploader("質問集（JSON Lines）", type=["jsonl"], key="eval.upload")
    baselines = st.checkbox(
        "比較用の方式（BM25のみ・ベクトル検索のみ・LangChain標準）も測る",
        key="eval.baselines",
        help="同じ質問で単純な方式の成績も測り、並べて表示します。時間が数倍かかります。",
    )
    if st.button("評価を実行", type="primary", icon=":material/play_arrow:", disabled=choice == UPLOADED and upload is None):
        from rag.evaluate import QAFormatError

        try:
            items = _load_items(choice, upload)
        except (QAFormatError, OSError, UnicodeDecodeError) as exc:
            st.error(f"質問集を読み込めませんでした: {exc}")
            items = []
        if items:
            _run(p, items, int(k), baselines)
            st.session_state[K_RUN]["missing"] = _missing_documents(p, items)
        elif choice:
            st.warning("質問集に質問がありません。")

    result = st.session_state.get(K_RUN)
    if not result:
        return
    run = result["run"]
    st.divider()
    st.markdown(f"**結果**（{result['n']}問、検索件数 k={result['k']}）")
    if result.get("missing"):
        st.warning(
            "この質問集の正解ページがある文書のうち、索引にないものがあります: "
            + "、".join(result["missing"])
            + "。その質問は検索・回答ともに不正解として数えられます（別の文書群向けの質問集の可能性があります）。",
            icon=":material/warning:",
        )
    _summary(run.summary)
    _by_type(run.summary)
    _baselines(run.summary)
    _questions(run.rows)
    st.download_button(
        "結果をダウンロード（JSON）",
        data=json.dumps(
            {"summary": run.summary, "questions": [asdict(r) for r in run.rows]}, ensure_ascii=False, indent=2
        ),
        file_name="eval-result.json",
        mime="application/json",
        icon=":material/download:",
        on_click="ignore",
    )


if __name__ == "__main__":
    render()
