"""`rag bench`: speed and memory figures (not a test; prints what it measures).

Each phase runs in its own process so its peak memory (max RSS) is its own.
Phases: cold ingest of the default corpus; ingest of a synthetic 2,000-page
corpus (the default PDF copied under new names); re-ingest with nothing
changed; warm query latency over the eval questions; then, on a synthetic
100,000-chunk index, the build (chunks written per second), query latency and
adding one 50-page PDF (the incremental case).  ``milvus=True`` (``rag bench
--milvus``) runs the 100,000-chunk phases on Milvus Lite as well.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rag.config import PROJECT_ROOT, IndexSettings, Settings


_MILVUS_LITE_QUESTIONS = 40


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ingest(corpus: Path, index: Path) -> dict:
    from rag.ingest import ingest

    t0 = time.perf_counter()
    report = ingest(Settings(corpus_dir=corpus, index_dir=index))
    seconds = time.perf_counter() - t0
    pages = sum(f.pages for f in report.files)
    chunks = sum(f.chunks for f in report.files)
    return {"seconds": round(seconds, 2), "files": len(report.files), "pages": pages, "chunks": chunks,
            "changed": report.changed, "peak_rss_mb": round(_peak_mb())}


def _queries(settings: Settings, qa: Path, k: int, limit: int | None = None) -> dict:
    from rag.evaluate import load_qa
    from rag.pipeline import Pipeline

    pipeline = Pipeline.load(settings)
    questions = [item.question for item in load_qa(qa)][:limit]
    pipeline.ask(questions[0], k=k)  # warm-up: tokenizer and BLAS start-up are not per-query costs
    latencies = []
    for q in questions:
        t0 = time.perf_counter()
        pipeline.ask(q, k=k)
        latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    return {"questions": len(questions), "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1), "peak_rss_mb": round(_peak_mb())}


def _synthetic_build(settings: Settings, n_chunks: int) -> dict:
    """Build an index of ``n_chunks`` chunks made from the default corpus's chunks, varied so BM25 and the
    dense index do real work.  Only the default PDF's own chunks are embedded: the figure is the index's."""
    import numpy as np

    from rag.chunking import chunk_pages, indexable_text
    from rag.embeddings import load_embedder
    from rag.index import Manifest
    from rag.index.backend import empty_index
    from rag.loaders import load_document
    from rag.schema import Chunk, SourceInfo

    embedder = load_embedder(settings.embedder)
    doc = load_document(PROJECT_ROOT / "corpus" / "digiden-sogo-senryaku-2023-2027.pdf", "base.pdf")
    base_chunks = chunk_pages(doc.pages, settings.chunking)
    base_vectors = embedder.embed_array([indexable_text(c) for c in base_chunks])
    rng = np.random.default_rng(0)
    manifest = Manifest(embedder=embedder.name, dimension=embedder.dimension, tokenizer=settings.index.tokenizer, chunking={})
    t0 = time.perf_counter()
    idx = empty_index(settings, manifest)
    per_source = 5_000
    made = 0
    words = ["地域", "移住", "交付金", "医療", "教育", "交通", "観光", "防災", "人材", "データ"]
    while made < n_chunks:
        name = f"synthetic-{made // per_source:03d}.pdf"
        chunks, vectors = [], []
        for i in range(min(per_source, n_chunks - made)):
            base = base_chunks[(made + i) % len(base_chunks)]
            text = f"{base.text}（事例{made + i}・{random.Random(made + i).choice(words)}）"
            chunks.append(Chunk(Chunk.make_id(name, i, 0), name, i + 1, base.heading, text, 0, len(text)))
            v = base_vectors[(made + i) % len(base_chunks)] + rng.normal(0, 0.05, embedder.dimension).astype(np.float32)
            vectors.append(v / np.linalg.norm(v))
        idx.add_source(SourceInfo(name, "0" * 64, name, len(chunks), len(chunks)), [], chunks, np.vstack(vectors))
        made += len(chunks)
    idx.commit()
    build_seconds = time.perf_counter() - t0
    kind = idx.manifest.dense_index
    idx.close()
    return {"chunks": n_chunks, "build_seconds": round(build_seconds, 1), "chunks_per_second": round(n_chunks / build_seconds),
            "dense_index": kind, "peak_rss_mb": round(_peak_mb())}


def _add_pdf(settings: Settings, pdf: Path) -> dict:
    """Add one PDF to the live index as ``rag ingest`` does for a new file: read, chunk, embed, then open
    the index, add and commit.  The model is loaded before the clock starts (ingest loads it once per run)."""
    from rag.chunking import chunk_pages, indexable_text
    from rag.embeddings import load_embedder
    from rag.index.backend import open_index
    from rag.ingest import sha256_file
    from rag.loaders import load_document
    from rag.schema import SourceInfo

    embedder = load_embedder(settings.embedder)
    t0 = time.perf_counter()
    doc = load_document(pdf, pdf.name)
    chunks = chunk_pages(doc.pages, settings.chunking)
    vectors = embedder.embed_array([indexable_text(c) for c in chunks])
    t1 = time.perf_counter()
    index = open_index(settings, embedder=embedder.name, dimension=embedder.dimension)
    t2 = time.perf_counter()
    info = SourceInfo(pdf.name, sha256_file(pdf), doc.title, doc.page_count, len(chunks), tuple(doc.problems))
    index.add_source(info, doc.pages, chunks, vectors)
    index.commit()
    t3 = time.perf_counter()
    total = len(index)
    index.close()
    return {"pages": doc.page_count, "chunks": len(chunks), "index_chunks": total, "read_embed_seconds": round(t1 - t0, 1),
            "open_seconds": round(t2 - t1, 1), "add_commit_seconds": round(t3 - t2, 1), "total_seconds": round(t3 - t0, 1),
            "peak_rss_mb": round(_peak_mb())}


def _fifty_page_pdf(out: Path) -> Path:
    """A 50-page PDF from the default corpus's 38-page one (its pages, then the first 12 again)."""
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(PROJECT_ROOT / "corpus" / "digiden-sogo-senryaku-2023-2027.pdf")
    writer = PdfWriter()
    for page in [*reader.pages, *reader.pages][:50]:
        writer.add_page(page)
    with open(out, "wb") as fh:
        writer.write(fh)
    return out


def _run_phase(phase: str, **kwargs) -> dict:
    """Run one phase in a fresh interpreter so its peak RSS is measured alone."""
    cmd = [sys.executable, "-m", "rag.bench", "--phase", phase, "--args", json.dumps({k: str(v) for k, v in kwargs.items()})]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"phase {phase} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_bench(skip_large: bool = False, n_chunks: int = 100_000, milvus: bool = False) -> dict:
    qa = PROJECT_ROOT / "eval" / "qa.jsonl"
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}",
        "load_average_before": _load_average(),
    }
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        tmp = Path(tmp)
        corpus = PROJECT_ROOT / "corpus"
        results["cold_ingest_default"] = _run_phase("ingest", corpus=corpus, index=tmp / "default")
        results["reingest_no_change"] = _run_phase("ingest", corpus=corpus, index=tmp / "default")
        results["query_default"] = _run_phase("queries", index=tmp / "default", qa=qa)
        big = tmp / "corpus2000"
        big.mkdir()
        pdf = corpus / "digiden-sogo-senryaku-2023-2027.pdf"
        for i in range(53):  # 53 x 38 = 2,014 pages
            shutil.copy(pdf, big / f"copy-{i:02d}.pdf")
        results["ingest_2000_pages"] = _run_phase("ingest", corpus=big, index=tmp / "big")
        results["reingest_2000_no_change"] = _run_phase("ingest", corpus=big, index=tmp / "big")
        if not skip_large:
            added = _fifty_page_pdf(tmp / "added-50-pages.pdf")
            for backend in ("local", "milvus") if milvus else ("local",):
                where = {"index": tmp / f"synthetic-{backend}", "backend": backend, "milvus_uri": tmp / "bench-milvus.db"}
                # Built, queried and extended in separate processes: each figure is that process's own memory.
                results[f"{backend}_build_{n_chunks}_chunks"] = _run_phase("synthetic", n=n_chunks, **where)
                # Milvus Lite answers a question in seconds at this size (its engine is Python): the
                # first questions of the set give its median without an hour of waiting.
                limit = _MILVUS_LITE_QUESTIONS if backend == "milvus" else None
                results[f"{backend}_query_{n_chunks}_chunks"] = _run_phase("queries", qa=qa, limit=limit, **where)
                results[f"{backend}_add_50_page_pdf_to_{n_chunks}"] = _run_phase("add_pdf", pdf=added, **where)
        results["load_average_after"] = _load_average()
    return results


def _load_average() -> str:
    # Other work on the machine moves every figure here; the report carries it alongside.
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _phase_settings(args: dict) -> Settings:
    index = IndexSettings(backend=args.get("backend", "local"), milvus_uri=args.get("milvus_uri") or IndexSettings().milvus_uri)
    return Settings(index_dir=Path(args["index"]), index=index)


def _main_phase(phase: str, args: dict) -> None:
    if phase == "ingest":
        result = _ingest(Path(args["corpus"]), Path(args["index"]))
    elif phase == "queries":
        limit = int(args["limit"]) if args.get("limit", "None") != "None" else None
        result = _queries(_phase_settings(args), Path(args["qa"]), 10, limit)
    elif phase == "synthetic":
        result = _synthetic_build(_phase_settings(args), int(args["n"]))
    elif phase == "add_pdf":
        result = _add_pdf(_phase_settings(args), Path(args["pdf"]))
    else:
        raise SystemExit(f"unknown phase {phase}")
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", required=True)
    parser.add_argument("--args", default="{}")
    ns = parser.parse_args()
    _main_phase(ns.phase, json.loads(ns.args))
