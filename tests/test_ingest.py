import os
import subprocess
import sys

import pytest

from pdfs import make_pdf
from rag.config import Settings
from rag.index import CURRENT, LocalIndex, read_manifest
from rag.ingest import ingest


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    make_pdf(folder / "a.pdf", [["移住支援の見出し", "地方への移住を支援する交付金を創設する。"], ["二ページ目", "テレワークを推進する。"]])
    make_pdf(folder / "b.pdf", [["防災の見出し", "ドローンを活用した地域防災力の向上を図る。"]])
    (folder / "SOURCE.md").write_text("出典の説明（索引しない）", encoding="utf-8")
    return folder


def _settings(corpus, tmp_path):
    return Settings(corpus_dir=corpus, index_dir=tmp_path / "index")


def test_first_ingest_then_nothing_changes(corpus, tmp_path, embedder):
    settings = _settings(corpus, tmp_path)
    report = ingest(settings, embedder=embedder)
    assert {f.source: (f.status, f.pages) for f in report.files} == {"a.pdf": ("added", 2), "b.pdf": ("added", 1)}
    manifest = read_manifest(settings.index_dir)
    assert set(manifest.sources) == {"a.pdf", "b.pdf"}
    assert manifest.embedder == embedder.name and manifest.dimension == embedder.dimension
    assert len(manifest.sources["a.pdf"]["sha256"]) == 64
    current = (settings.index_dir / CURRENT).read_text()

    again = ingest(settings)  # no embedder passed: an unchanged corpus must not need one
    assert not again.changed and {f.status for f in again.files} == {"unchanged"}
    assert (settings.index_dir / CURRENT).read_text() == current


def test_added_changed_and_removed_files_are_processed_alone(corpus, tmp_path, embedder):
    settings = _settings(corpus, tmp_path)
    ingest(settings, embedder=embedder)
    index = LocalIndex.open(settings.index_dir)
    b_ids = [c.id for c in index.iter_chunks(["b.pdf"])]
    index.close()

    make_pdf(corpus / "c.pdf", [["観光の見出し", "観光DXを推進し旅行者の満足度を高める。"]])
    make_pdf(corpus / "a.pdf", [["移住支援の見出し", "移住支援金は最大100万円とする。"]])
    report = ingest(settings, embedder=embedder)
    status = {f.source: f.status for f in report.files}
    assert status == {"a.pdf": "updated", "b.pdf": "unchanged", "c.pdf": "added"}

    index = LocalIndex.open(settings.index_dir)
    assert [c.id for c in index.iter_chunks(["b.pdf"])] == b_ids
    texts = " ".join(c.text for c in index.iter_chunks())
    assert "100万円" in texts and "テレワーク" not in texts
    hits = index.sparse_search("旅行者 観光DX", 3)
    assert index.get_chunks([hits[0][0]])[0].source == "c.pdf"
    index.close()

    (corpus / "b.pdf").unlink()
    report = ingest(settings, embedder=embedder)
    assert {f.source: f.status for f in report.files}["b.pdf"] == "removed"
    assert "b.pdf" not in read_manifest(settings.index_dir).sources


def test_a_broken_file_is_reported_and_the_rest_is_indexed_and_nothing_is_lost(corpus, tmp_path, embedder):
    settings = _settings(corpus, tmp_path)
    ingest(settings, embedder=embedder)
    # b.pdf gets damaged in place; its previous version must stay searchable.
    (corpus / "b.pdf").write_bytes((corpus / "b.pdf").read_bytes()[:200])
    make_pdf(corpus / "locked.pdf", [["秘密", "本文。"]], encrypt="pw")
    make_pdf(corpus / "d.pdf", [["交通の見出し", "地域交通のリ・デザインを進める。"]])
    report = ingest(settings, embedder=embedder)
    by = {f.source: f for f in report.files}
    assert by["b.pdf"].status == "failed" and "壊れ" in by["b.pdf"].error
    assert by["locked.pdf"].status == "failed" and "パスワード" in by["locked.pdf"].error
    assert by["d.pdf"].status == "added"
    manifest = read_manifest(settings.index_dir)
    assert {"a.pdf", "b.pdf", "d.pdf"} <= set(manifest.sources) and "locked.pdf" not in manifest.sources
    index = LocalIndex.open(settings.index_dir)
    assert any("ドローン" in c.text for c in index.iter_chunks(["b.pdf"]))


def test_a_crash_while_writing_leaves_the_previous_index_live(corpus, tmp_path, embedder, monkeypatch):
    settings = _settings(corpus, tmp_path)
    ingest(settings, embedder=embedder)
    before = (settings.index_dir / CURRENT).read_text()
    versions_before = sorted(p.name for p in settings.index_dir.iterdir())

    # Fault injection: the BM25 writer dies half-way, as a killed process or a full disk would.
    def boom(self, path, *args):
        path.mkdir()
        (path / "stats.json").write_text("{", encoding="utf-8")
        raise OSError("disk full")

    monkeypatch.setattr(LocalIndex, "_write_bm25", boom)
    make_pdf(corpus / "e.pdf", [["新しい文書", "新しい本文です。"]])
    with pytest.raises(OSError):
        ingest(settings, embedder=embedder)
    assert (settings.index_dir / CURRENT).read_text() == before
    assert sorted(p.name for p in settings.index_dir.iterdir()) == versions_before
    index = LocalIndex.open(settings.index_dir)
    assert set(index.manifest.sources) == {"a.pdf", "b.pdf"} and index.sparse_search("移住", 1)


def test_cli_prints_pages_and_chunks_then_says_nothing_changed(corpus, tmp_path):
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage")
    args = [sys.executable, "-m", "rag", "ingest", "--corpus", str(corpus), "--index", str(tmp_path / "idx")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 1, first.stderr
    assert "a.pdf: 追加（2ページ、" in first.stdout and "チャンク）" in first.stdout
    assert "broken.pdf" in first.stderr and "Traceback" not in first.stderr
    assert len([line for line in first.stderr.splitlines() if "broken.pdf" in line]) == 1

    (corpus / "broken.pdf").unlink()
    second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "変更はありません" in second.stdout


def test_an_injected_embedder_is_what_the_index_records_and_checks(corpus, tmp_path, embedder):
    settings = _settings(corpus, tmp_path)
    ingest(settings, embedder=embedder)
    again = ingest(settings, embedder=embedder)
    assert not again.changed and not again.rebuilt


def test_a_rebuild_that_would_drop_searchable_files_is_abandoned(corpus, tmp_path, embedder):
    settings = _settings(corpus, tmp_path)
    ingest(settings, embedder=embedder)
    before = (settings.index_dir / CURRENT).read_text()
    (corpus / "b.pdf").write_bytes(b"%PDF-1.4 broken")
    report = ingest(settings, rebuild=True, embedder=embedder)
    failed = {f.source: f.error for f in report.failed}
    assert "作り直しを中止" in failed["b.pdf"]
    assert (settings.index_dir / CURRENT).read_text() == before
    assert "b.pdf" in read_manifest(settings.index_dir).sources


def test_the_version_a_reader_may_still_be_opening_survives_the_next_commit(corpus, tmp_path, embedder):
    settings = _settings(corpus, tmp_path)
    ingest(settings, embedder=embedder)
    first = (settings.index_dir / CURRENT).read_text()
    make_pdf(corpus / "c.pdf", [["追加", "追加の本文。"]])
    ingest(settings, embedder=embedder)
    second = (settings.index_dir / CURRENT).read_text()
    assert second > first  # names sort by creation time
    assert (settings.index_dir / first).is_dir()  # replaced a moment ago: kept for readers
    LocalIndex.open(settings.index_dir).close()
    (corpus / "c.pdf").unlink()
    ingest(settings, embedder=embedder)
    assert not (settings.index_dir / first).exists() and (settings.index_dir / second).is_dir()
