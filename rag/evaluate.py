"""Evaluation on known Q&A pairs: retrieval, answer accuracy, citations, abstention, latency.

Every figure is reported beside baselines measured in the same run on the same
machine (BM25 only, dense only, and the "vanilla" LangChain RAG a user would
otherwise build), so a number is always a ratio against a peer.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.normalize import comparable
from rag.schema import Answer

MAX_ANSWER_CHARS = 400  # after comparable(): a whole passage is not an answer
QA_TYPES = ("factoid", "list", "example", "paraphrase", "multi_page", "unanswerable", "followup")


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    answer: str
    must_include: tuple[str, ...]
    sources: tuple[tuple[str, int], ...]
    answerable: bool
    type: str
    history: tuple[str, ...] = ()  # earlier questions of the conversation, oldest first (follow-ups)
    document: str | None = None  # the document an unanswerable question is about, when it says


class QAFormatError(ValueError):
    pass


def load_qa(path: Path) -> list[QAItem]:
    items: list[QAItem] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            items.append(
                QAItem(
                    id=str(d["id"]),
                    question=d["question"],
                    answer=d.get("answer", ""),
                    must_include=tuple(d.get("must_include", ())),
                    sources=tuple((s["source"], int(s["page"])) for s in d.get("sources", ())),
                    answerable=bool(d.get("answerable", True)),
                    type=d.get("type", "factoid"),
                    history=tuple(d.get("history", ())),
                    document=d.get("document"),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise QAFormatError(f"{path}:{n}: 評価データの形式が正しくありません（{exc}）") from None
    return items


@dataclass
class QuestionResult:
    id: str
    question: str
    type: str
    answerable: bool
    found: bool
    passed: bool  # answerable: facts present and concise; unanswerable: abstained
    answer: str
    gold_pages: list[str]
    cited_pages: list[str]
    hit_pages: list[str]
    first_gold_rank: int | None  # 1-based rank of the first hit on a gold page
    missing_facts: list[str]
    latency_ms: float


@dataclass
class EvalRun:
    summary: dict
    rows: list[QuestionResult] = field(default_factory=list)


def _page(source: str, page: int) -> str:
    return f"{source} p.{page}"


def score_answer(item: QAItem, body: str, shown: str | None = None) -> tuple[bool, list[str]]:
    """(facts present and concise, missing facts) under the comparable() normalisation.

    Facts must be in the answer ``body``: a document title in the source list that
    happens to contain "2027年度" answers nothing.  Conciseness is measured on what is
    ``shown`` (body plus source list).
    """
    missing = [f for f in item.must_include if comparable(f) not in comparable(body)]
    return (not missing and len(comparable(shown if shown is not None else body)) <= MAX_ANSWER_CHARS), missing


def distinct_pages(pages: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """Ranked pages with repeats removed: recall and MRR are measured per page, not per chunk."""
    return list(dict.fromkeys(pages))


def judge(item: QAItem, answer: Answer, hit_pages: Sequence[tuple[str, int]], latency_ms: float) -> QuestionResult:
    gold = set(item.sources)
    hit_pages = distinct_pages(hit_pages)
    first = next((i for i, p in enumerate(hit_pages, start=1) if p in gold), None)
    rendered = answer.render()
    if item.answerable:
        ok, missing = score_answer(item, answer.text, rendered)
        passed = answer.found and ok
    else:
        passed, missing = not answer.found, []
    cited = [(c.source, c.page) for c in answer.citations] if answer.found else []
    return QuestionResult(
        id=item.id,
        question=item.question,
        type=item.type,
        answerable=item.answerable,
        found=answer.found,
        passed=passed,
        answer=rendered,
        gold_pages=[_page(*p) for p in item.sources],
        cited_pages=[_page(*p) for p in cited],
        hit_pages=[_page(*p) for p in hit_pages[:10]],
        first_gold_rank=first,
        missing_facts=missing,
        latency_ms=latency_ms,
    )


def _metrics(rows: list[QuestionResult], gold_of: dict[str, set[str]], k_used: int = 10) -> dict:
    answerable = [r for r in rows if r.answerable]
    unanswerable = [r for r in rows if not r.answerable]

    def recall(k: int) -> float | None:
        if not answerable or k > k_used:
            return None  # recall@10 of a run that retrieved 5 would only be recall@5 again
        return sum(r.first_gold_rank is not None and r.first_gold_rank <= k for r in answerable) / len(answerable)

    cited = [(r, p) for r in answerable if r.found for p in r.cited_pages]
    with_cites = [r for r in answerable if r.found and r.cited_pages]
    latencies = sorted(r.latency_ms for r in rows)
    return {
        "n": len(rows),
        "retrieval": {
            "recall@1": recall(1),
            "recall@3": recall(3),
            "recall@5": recall(5),
            "recall@10": recall(10),
            "mrr": (sum(1 / r.first_gold_rank for r in answerable if r.first_gold_rank) / len(answerable))
            if answerable
            else None,
        },
        "answer_accuracy": (sum(r.passed for r in answerable) / len(answerable)) if answerable else None,
        "citation_precision": (sum(p in gold_of[r.id] for r, p in cited) / len(cited)) if cited else None,
        "answers_with_correct_citation": (
            sum(any(p in gold_of[r.id] for p in r.cited_pages) for r in with_cites) / len(answerable)
        )
        if answerable
        else None,
        "abstention": {
            "unanswerable_correct": (sum(not r.found for r in unanswerable) / len(unanswerable)) if unanswerable else None,
            "answerable_wrongly_abstained": (sum(not r.found for r in answerable) / len(answerable)) if answerable else None,
        },
        "latency_ms": {
            "p50": statistics.median(latencies) if latencies else None,
            "p95": latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))] if latencies else None,
        },
    }


def summarise(rows: list[QuestionResult], k: int = 10) -> dict:
    gold_of = {r.id: set(r.gold_pages) for r in rows}
    summary = _metrics(rows, gold_of, k)
    by_type: dict[str, list[QuestionResult]] = defaultdict(list)
    for r in rows:
        by_type[r.type].append(r)
    summary["by_type"] = {t: _metrics(rs, gold_of, k) for t, rs in sorted(by_type.items())}
    return summary


ProgressFn = Callable[[int, int], None]


def run_eval(
    pipeline,
    items: Sequence[QAItem],
    *,
    k: int = 10,
    baselines: bool = True,
    use_llm: bool | None = False,
    progress: ProgressFn | None = None,
) -> EvalRun:
    """Ask every question through ``pipeline`` (a :class:`rag.pipeline.Pipeline`) and score it."""
    rows: list[QuestionResult] = []
    pipeline.ask("ウォームアップ", k=k, use_llm=False)  # first call loads the tokenizer; not a user's latency
    for n, item in enumerate(items):
        t0 = time.perf_counter()
        answer = pipeline.ask(item.question, history=item.history, k=k, use_llm=use_llm)
        latency = (time.perf_counter() - t0) * 1000
        rows.append(judge(item, answer, [(h.chunk.source, h.chunk.page) for h in answer.hits], latency))
        if progress:
            progress(n + 1, len(items))
    summary = summarise(rows, k)
    summary["k"] = k
    summary["baselines"] = run_baselines(pipeline, items, k=k) if baselines else {}
    # ragas needs an LLM judge; say plainly why its scores are absent rather than leave a gap.
    summary["ragas"] = {
        "status": "skipped",
        "reason": "LLMが設定されていないため、ragas（faithfulness・answer relevancy）は実行しませんでした"
        if not pipeline.settings.llm.enabled
        else "ragas による評価はこの版では未対応です",
    }
    return EvalRun(summary=summary, rows=rows)


# ------------------------------------------------------------------ baselines


def _compact(summary: dict) -> dict:
    return {key: summary[key] for key in ("retrieval", "answer_accuracy", "citation_precision", "abstention", "latency_ms")}


def run_baselines(pipeline, items: Sequence[QAItem], k: int = 10) -> dict:
    """Same questions, same machine, same run: what simpler systems achieve."""
    out: dict[str, dict] = {}
    titles = pipeline.titles()
    for mode, name in (("sparse", "bm25_only"), ("dense", "dense_only")):
        rows = []
        for item in items:
            t0 = time.perf_counter()
            hits = pipeline.retriever.search(item.question, k=k, mode=mode)
            answer = pipeline.offline.answer(item.question, hits, titles)
            rows.append(judge(item, answer, [(h.chunk.source, h.chunk.page) for h in hits], (time.perf_counter() - t0) * 1000))
        out[name] = _compact(summarise(rows, k))
    out.update(_vanilla_langchain(pipeline, items))
    return out


def _vanilla_langchain(pipeline, items: Sequence[QAItem]) -> dict:
    """The RAG a user would build from LangChain's defaults, answering with the retrieved text."""
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    corpus = Path(pipeline.settings.corpus_dir)
    docs = []
    for source in sorted(pipeline.index.manifest.sources):
        path = corpus / source
        if path.suffix.lower() != ".pdf" or not path.exists():
            continue
        for doc in PyPDFLoader(str(path)).load():
            doc.metadata["source_name"] = source
            docs.append(doc)
    if not docs:
        return {}
    splits = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    store = FAISS.from_documents(splits, pipeline.embedder)  # in memory only: nothing is pickled or loaded
    retrievers = {
        "vanilla_langchain_faiss": store.as_retriever(search_kwargs={"k": 4}),
        "vanilla_langchain_bm25": BM25Retriever.from_documents(splits, k=4),
    }
    out = {}
    for name, retriever in retrievers.items():
        rows = []
        for item in items:
            t0 = time.perf_counter()
            found = retriever.invoke(item.question)
            pages = [(d.metadata["source_name"], int(d.metadata.get("page", 0)) + 1) for d in found]
            # A chain with no LLM hands back its context: the top passage is the answer.
            text = found[0].page_content if found else ""
            answer = Answer(question=item.question, text=text, found=bool(found))
            rows.append(judge(item, answer, pages, (time.perf_counter() - t0) * 1000))
        out[name] = _compact(summarise(rows))
    return out


# ------------------------------------------------------------------ reports


def _fmt(value) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def summary_table(summary: dict) -> str:
    """Markdown table: this system and each baseline side by side."""
    systems = {"this system": _compact(summary), **summary.get("baselines", {})}
    header = "| system | R@1 | R@3 | R@5 | R@10 | MRR | answer acc. | citation prec. | unanswerable abstained | answerable abstained | p50 ms | p95 ms |"
    lines = [header, "|" + "---|" * 12]
    for name, s in systems.items():
        r = s["retrieval"]
        lines.append(
            f"| {name} | {_fmt(r['recall@1'])} | {_fmt(r['recall@3'])} | {_fmt(r['recall@5'])} | {_fmt(r['recall@10'])} "
            f"| {_fmt(r['mrr'])} | {_fmt(s['answer_accuracy'])} | {_fmt(s['citation_precision'])} "
            f"| {_fmt(s['abstention']['unanswerable_correct'])} | {_fmt(s['abstention']['answerable_wrongly_abstained'])} "
            f"| {_fmt(s['latency_ms']['p50'])} | {_fmt(s['latency_ms']['p95'])} |"
        )
    return "\n".join(lines)


def by_type_table(summary: dict) -> str:
    lines = ["| type | n | R@1 | R@5 | MRR | answer acc. | abstained correctly |", "|---|---|---|---|---|---|---|"]
    for t, s in summary["by_type"].items():
        r = s["retrieval"]
        lines.append(
            f"| {t} | {s['n']} | {_fmt(r['recall@1'])} | {_fmt(r['recall@5'])} | {_fmt(r['mrr'])} "
            f"| {_fmt(s['answer_accuracy'])} | {_fmt(s['abstention']['unanswerable_correct'])} |"
        )
    return "\n".join(lines)


def write_report(run: EvalRun, out_dir: Path, title: str = "評価結果") -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out_dir / "summary.json", "report": out_dir / "report.md", "chart": out_dir / "chart.png"}
    paths["summary"].write_text(json.dumps(run.summary, ensure_ascii=False, indent=2), encoding="utf-8")
    (out_dir / "questions.jsonl").write_text(
        "\n".join(json.dumps(asdict(r), ensure_ascii=False) for r in run.rows) + "\n", encoding="utf-8"
    )
    failed = [r for r in run.rows if not r.passed]
    md = [
        f"# {title}",
        "",
        f"質問数 {run.summary['n']}、検索件数 k={run.summary.get('k')}。",
        "",
        "## 全体（ベースラインと並べて）",
        "",
        summary_table(run.summary),
        "",
        "## 質問の種類別",
        "",
        by_type_table(run.summary),
        "",
        f"ragas: {run.summary.get('ragas', {}).get('reason', '—')}",
        "",
        f"## 不正解の質問（{len(failed)}件）",
        "",
    ]
    for r in failed:
        md.append(f"- **{r.id}** [{r.type}] {r.question} — 正解ページ: {', '.join(r.gold_pages) or 'なし'}; "
                  f"引用: {', '.join(r.cited_pages) or 'なし'}; 欠けた事実: {', '.join(r.missing_facts) or '—'}")
    paths["report"].write_text("\n".join(md) + "\n", encoding="utf-8")
    _chart(run.summary, paths["chart"])
    return paths


def _chart(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = list(summary["by_type"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    acc = [summary["by_type"][t]["answer_accuracy"] or 0 for t in types]
    r5 = [summary["by_type"][t]["retrieval"]["recall@5"] or 0 for t in types]
    abst = [summary["by_type"][t]["abstention"]["unanswerable_correct"] or 0 for t in types]
    x = range(len(types))
    ax1.bar([i - 0.27 for i in x], acc, width=0.27, label="answer accuracy")
    ax1.bar(list(x), r5, width=0.27, label="recall@5")
    ax1.bar([i + 0.27 for i in x], abst, width=0.27, label="abstained (unanswerable)")
    ax1.set_xticks(list(x), types, rotation=20)
    ax1.set_ylim(0, 1.05)
    ax1.set_title("by question type")
    ax1.legend(fontsize=8)
    systems = {"this system": summary, **summary.get("baselines", {})}
    names = list(systems)
    ax2.bar([i - 0.2 for i in range(len(names))], [systems[n]["retrieval"]["recall@1"] or 0 for n in names], width=0.4, label="recall@1")
    ax2.bar([i + 0.2 for i in range(len(names))], [systems[n]["retrieval"]["mrr"] or 0 for n in names], width=0.4, label="MRR")
    ax2.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax2.set_ylim(0, 1.05)
    ax2.set_title("against baselines (same run)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ regression gate


def check_floors(summary: dict, floors: dict) -> list[str]:
    """Each limit breached, as a readable line.

    Keys are dotted paths into the summary ("retrieval.recall@5"); a number is a floor,
    ``{"max": x}`` a ceiling (for rates that must stay low, and latencies).
    """
    breaches = []
    for key, limit in floors.items():
        if key.startswith("_"):
            continue
        value = summary
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(limit, dict):
            if value is None or value > limit["max"]:
                breaches.append(f"{key} = {_fmt(value)} が上限 {limit['max']} を超えました")
        elif value is None or value < limit:
            breaches.append(f"{key} = {_fmt(value)} が下限 {limit} を下回りました")
    return breaches
