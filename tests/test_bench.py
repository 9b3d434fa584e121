"""`rag bench`'s 100,000-chunk phases at a small size, on both backends.

Speed is the benchmark's business, not a test's; what is checked here is that each phase
measures what it says on a real index: the synthetic build has the chunks it reports, the
query phase answers the questions it counts, and the PDF the incremental phase adds is in
the index and searchable afterwards (on Milvus Lite too).
"""

from __future__ import annotations

import pytest

from conftest import ROOT
from pdfs import make_pdf
from rag.bench import _add_pdf, _phase_settings, _queries, _synthetic_build
from rag.index.backend import open_index


@pytest.mark.parametrize("backend", ["local", "milvus"])
def test_the_index_phases_build_answer_and_add_a_pdf(tmp_path, backend):
    if backend == "milvus":
        pytest.importorskip("milvus_lite")
    settings = _phase_settings({"index": str(tmp_path / "idx"), "backend": backend, "milvus_uri": str(tmp_path / "bench.db")})
    try:
        assert _synthetic_build(settings, 300)["chunks"] == 300
        answered = _queries(settings, ROOT / "eval" / "qa.jsonl", 10, limit=3)
        assert answered["questions"] == 3 and answered["p95_ms"] >= answered["p50_ms"] > 0

        pdf = tmp_path / "drone.pdf"
        make_pdf(pdf, [["物流の見出し", "山間部の集落へドローン配送を実証する。"], ["二ページ目", "配送の拠点を道の駅に置く。"]])
        added = _add_pdf(settings, pdf)
        assert added["pages"] == 2 and added["index_chunks"] == 300 + added["chunks"]
        index = open_index(settings)
        assert len(index) == added["index_chunks"]
        hits = index.get_chunks([cid for cid, _ in index.sparse_search("ドローン配送 集落", 3)])
        assert hits and hits[0].source == "drone.pdf"
    finally:
        if backend == "milvus":
            from rag.index.milvus import disconnect

            disconnect(settings.index.milvus_uri)
