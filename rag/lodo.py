"""Leave-one-document-out: the headline figure, on documents the answerer was not fitted on.

The development sets (``eval/lodo.toml``) pair a corpus folder with Q&A files.  Each
corpus is indexed once and every question retrieved and scored once
(:class:`rag.answering.train.Case`); then, for each document, the weights, calibration
and thresholds are fitted on the other documents' questions and that document's
questions are answered with them.  The mean over documents is what the README leads with.
"""

from __future__ import annotations

import statistics
import sys
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.config import PROJECT_ROOT, Settings
from rag.evaluate import QAItem, QuestionResult, _fmt, _metrics, load_qa

DEVSETS_FILE = PROJECT_ROOT / "eval" / "lodo.toml"


@dataclass(frozen=True)
class DevSet:
    name: str
    corpus: Path
    qa: tuple[Path, ...]


def load_devsets(path: Path = DEVSETS_FILE, root: Path = PROJECT_ROOT) -> tuple[list[DevSet], list[str]]:
    """The sets whose corpus and Q&A are present, and one note per set or file left out."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    sets, notes = [], []
    for entry in data.get("set", []):
        corpus = (root / entry["corpus"]).resolve()
        if not corpus.is_dir():
            notes.append(f"{entry['name']}: 文書フォルダがないため除きました（{corpus}）")
            continue
        qa = []
        for name in entry["qa"]:
            file = (root / name).resolve()
            if file.is_file():
                qa.append(file)
            else:
                notes.append(f"{entry['name']}: 質問ファイルがないため除きました（{file}）")
        if qa:
            sets.append(DevSet(entry["name"], corpus, tuple(qa)))
    return sets, notes


def document_of(item: QAItem, sources: Sequence[str], named: str | None, fallback: str) -> str:
    """The document a question is held out with: its first gold page's file; for an unanswerable
    question the document it says (``document``), the one its id is numbered after (d3-… → d3_…),
    the one it names, else the set's most asked-about document."""
    if item.sources:
        return item.sources[0][0]
    if item.document in sources:
        return item.document
    for part in item.id.split("-"):
        owners = [s for s in sources if Path(s).name.startswith(part + "_")]
        if len(owners) == 1:
            return owners[0]
    return named or fallback


def _about(item: QAItem, sources: Sequence[str]) -> bool:
    """The question is about a document of this corpus (or does not say which it is about)."""
    said = [s for s, _ in item.sources] or ([item.document] if item.document else [])
    return not said or said[0] in sources


def collect(
    settings: Settings, devsets: Sequence[DevSet], index_root: Path, progress: Callable[[str], None] | None = None
):
    """Index each set's corpus (incrementally) and retrieve and score every question once."""
    from rag.answering.model import untrained
    from rag.answering.train import Case, label
    from rag.ingest import ingest
    from rag.pipeline import Pipeline
    from rag.query import named_document

    cases = []
    embedder = None
    for ds in devsets:
        set_settings = settings.model_copy(update={"corpus_dir": ds.corpus, "index_dir": index_root / ds.name})
        report = ingest(set_settings, embedder=embedder)
        for f in report.failed:
            print(f"✗ {f.error}", file=sys.stderr)
        # Word coverage alone orders the candidates here; every fold re-scores them with its own weights.
        pipeline = Pipeline.load(set_settings, embedder=embedder, model=untrained())
        embedder = pipeline.embedder
        sources = sorted(pipeline.index.manifest.sources)
        items = [item for file in ds.qa for item in load_qa(file) if _about(item, sources)]
        asked = Counter(i.sources[0][0] for i in items if i.sources)
        fallback = asked.most_common(1)[0][0] if asked else ds.name
        if progress:
            progress(f"{ds.name}: {len(items)}問")
        for item in items:
            found = pipeline.retrieve(item.question, item.history, k=settings.retrieval.k)
            named = named_document(item.question, pipeline.topics())
            document = document_of(item, sources, named[0] if named else None, fallback)
            candidates = found.ranking.candidates if found.ranking else []
            cases.append(Case(item, f"{ds.name}/{document}", pipeline, found, label(item, candidates)))
    return cases


def baseline_rows(cases, devsets: Sequence[DevSet], k: int = 10) -> dict[str, list[QuestionResult]]:
    """The plain RRF baseline (:mod:`rag.baselines`) on the same questions, grouped by held-out document."""
    from rag.baselines import rrf_window_baseline

    rows: dict[str, list[QuestionResult]] = {}
    document_of = {c.item.id: c.document for c in cases}
    for ds in devsets:
        mine = [c for c in cases if c.document.startswith(ds.name + "/")]
        if not mine:
            continue
        sources = sorted(mine[0].pipeline.index.manifest.sources)
        for row in rrf_window_baseline(ds.corpus, sources, [c.item for c in mine], k=k, embedder=mine[0].pipeline.embedder):
            rows.setdefault(document_of[row.id], []).append(row)
    return rows


_KEYS = (
    ("retrieval", "recall@1"),
    ("retrieval", "recall@5"),
    ("retrieval", "mrr"),
    ("answer_accuracy",),
    ("abstention", "unanswerable_correct"),
    ("abstention", "answerable_wrongly_abstained"),
)


def _get(summary: dict, path: tuple[str, ...]):
    for part in path:
        summary = summary.get(part) if isinstance(summary, dict) else None
    return summary


def per_document(rows: dict[str, list[QuestionResult]]) -> dict:
    """``per_document`` (document → n, retrieval, answer accuracy, abstention) and their ``mean``."""
    docs = {}
    for doc, rs in rows.items():
        m = _metrics(rs, {r.id: set(r.gold_pages) for r in rs})
        docs[doc] = {
            "n": m["n"],
            "retrieval": {k: m["retrieval"][k] for k in ("recall@1", "recall@5", "mrr")},
            "answer_accuracy": m["answer_accuracy"],
            "abstention": dict(m["abstention"]),
        }
    mean: dict = {"n": sum(d["n"] for d in docs.values()), "retrieval": {}, "abstention": {}}
    for path in _KEYS:
        values = [v for d in docs.values() if (v := _get(d, path)) is not None]
        target = mean
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = statistics.fmean(values) if values else None
    return {"per_document": docs, "mean": mean}


def table(result: dict, baseline: dict | None = None) -> str:
    """Markdown: one row per held-out document, then the mean; the baseline's page recall beside it."""
    head = "| document | n | R@1 | R@5 | MRR | answer acc. | unanswerable declined | answerable declined |"
    sep = "|---|---|---|---|---|---|---|---|"
    if baseline:
        head += " RRF baseline R@1 / R@5 |"
        sep += "---|"
    lines = [head, sep]
    rows = list(result["per_document"].items()) + [("**mean**", result["mean"])]
    for doc, d in rows:
        r, a = d["retrieval"], d["abstention"]
        line = (
            f"| {doc} | {d['n']} | {_fmt(r['recall@1'])} | {_fmt(r['recall@5'])} | {_fmt(r['mrr'])} | {_fmt(d['answer_accuracy'])} "
            f"| {_fmt(a['unanswerable_correct'])} | {_fmt(a['answerable_wrongly_abstained'])} |"
        )
        if baseline:
            b = baseline["mean"] if doc == "**mean**" else baseline["per_document"].get(doc)
            line += f" {_fmt(b['retrieval']['recall@1'])} / {_fmt(b['retrieval']['recall@5'])} |" if b else " — |"
        lines.append(line)
    return "\n".join(lines)


def reliability(shown: Sequence[tuple[float, bool, bool]], bins: int = 5) -> list[dict]:
    """Answers grouped by the confidence shown: how many, and how many of them were right."""
    out = []
    for i in range(bins):
        lo, hi = i / bins, (i + 1) / bins
        group = [(p, ok) for p, ok, answerable in shown if lo <= p < hi or (i == bins - 1 and p == 1.0)]
        out.append(
            {
                "from": lo,
                "to": hi,
                "n": len(group),
                "mean_confidence": statistics.fmean(p for p, _ in group) if group else None,
                "accuracy": statistics.fmean(ok for _, ok in group) if group else None,
            }
        )
    return out


def reliability_chart(bins: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    xs = [b["mean_confidence"] for b in bins if b["n"]]
    ys = [b["accuracy"] for b in bins if b["n"]]
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    ax.plot(xs, ys, marker="o", label="held-out documents")
    for b in bins:
        if b["n"]:
            ax.annotate(str(b["n"]), (b["mean_confidence"], b["accuracy"]), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xlabel("confidence shown")
    ax.set_ylabel("share of answers right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_title("reliability (leave-one-document-out)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
