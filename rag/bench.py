"""`rag bench`: speed and memory figures (not a test; prints what it measures).

Each phase runs in its own process so its peak memory (max RSS) is its own.
Phases: cold ingest of the default corpus; ingest of a synthetic 2,000-page
corpus (the default PDF copied under new names); re-ingest with nothing
changed; warm query latency over the eval questions; query latency on a
synthetic 100,000-chunk index.
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

from rag.config import PROJECT_ROOT, Settings


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


def _queries(index: Path, qa: Path, k: int) -> dict:
    from rag.evaluate import load_qa
    from rag.pipeline import Pipeline

    pipeline = Pipeline.load(Settings(index_dir=index))
    questions = [item.question for item in load_qa(qa)]
    pipeline.ask(questions[0], k=k)  # warm-up: tokenizer and BLAS start-up are not per-query costs
    latencies = []
    for q in questions:
        t0 = time.perf_counter()
        pipeline.ask(q, k=k)
        latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    return {"questions": len(questions), "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1), "peak_rss_mb": round(_peak_mb())}


def _synthetic_build(index: Path, n_chunks: int) -> dict:
    """Build an index of ``n_chunks`` chunks made from the default corpus's chunks, varied so BM25 and FAISS do real work."""
    import numpy as np

    from rag.chunking import chunk_pages, indexable_text
    from rag.config import ChunkingSettings
    from rag.embeddings import load_embedder
    from rag.config import EmbedderSettings
    from rag.index import LocalIndex, Manifest
    from rag.loaders import load_document
    from rag.schema import Chunk, SourceInfo

    embedder = load_embedder(EmbedderSettings())
    doc = load_document(PROJECT_ROOT / "corpus" / "digiden-sogo-senryaku-2023-2027.pdf", "base.pdf")
    base_chunks = chunk_pages(doc.pages, ChunkingSettings())
    base_vectors = embedder.embed_array([indexable_text(c) for c in base_chunks])
    rng = np.random.default_rng(0)
    manifest = Manifest(embedder=embedder.name, dimension=embedder.dimension, tokenizer="hybrid", chunking={})
    t0 = time.perf_counter()
    idx = LocalIndex.empty(index, manifest, hnsw=(50_000, 32, 128))
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
    return {"chunks": n_chunks, "build_seconds": round(build_seconds, 1), "dense_index": kind, "peak_rss_mb": round(_peak_mb())}


def _run_phase(phase: str, **kwargs) -> dict:
    """Run one phase in a fresh interpreter so its peak RSS is measured alone."""
    cmd = [sys.executable, "-m", "rag.bench", "--phase", phase, "--args", json.dumps({k: str(v) for k, v in kwargs.items()})]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"phase {phase} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_bench(skip_large: bool = False, n_chunks: int = 100_000) -> dict:
    qa = PROJECT_ROOT / "eval" / "qa.jsonl"
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}",
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
            # Built and queried in separate processes: the query figure is a warm reader's memory.
            results[f"build_{n_chunks}_chunks"] = _run_phase("synthetic", index=tmp / "synthetic", n=n_chunks)
            results[f"query_{n_chunks}_chunks"] = _run_phase("queries", index=tmp / "synthetic", qa=qa)
    return results


def _main_phase(phase: str, args: dict) -> None:
    if phase == "ingest":
        result = _ingest(Path(args["corpus"]), Path(args["index"]))
    elif phase == "queries":
        result = _queries(Path(args["index"]), Path(args["qa"]), 10)
    elif phase == "synthetic":
        result = _synthetic_build(Path(args["index"]), int(args["n"]))
    else:
        raise SystemExit(f"unknown phase {phase}")
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", required=True)
    parser.add_argument("--args", default="{}")
    ns = parser.parse_args()
    _main_phase(ns.phase, json.loads(ns.args))
