"""Accepting a PDF from a user: validate it, then save it into the corpus folder safely.

The app calls :func:`save_upload`; the index is updated afterwards by
:func:`rag.ingest.ingest` like any other file that appears in the corpus.
Nothing here trusts the file name or the bytes a browser sends:

* the name is reduced to a plain file name (no folders, no control or
  Windows-illegal characters, NFKC, bounded length, ``.pdf``) and the final
  path is checked to lie directly inside the corpus folder;
* the bytes must be a PDF that the indexer can actually read — the same
  :func:`rag.loaders.load_document` that ingestion uses is run on a temporary
  copy, so an encrypted or image-only PDF is refused here with the loader's own
  message instead of failing later during indexing;
* an existing file is never overwritten: a different file with the same name
  gets `` (2)``, ``(3)``…; identical content is reported as already present.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rag.ingest import sha256_file
from rag.loaders import DocumentError, LoadedDocument, iter_corpus, load_document
from rag.ocr import PageOcr

PDF_SIGNATURE = b"%PDF-"
# Leave room under the usual 255-byte file name limit for " (999)" and ".pdf",
# and keep names readable in a file list.  Counted in UTF-8 bytes because a
# Japanese character takes three.
MAX_STEM_BYTES = 180
MAX_COLLISION_SUFFIX = 999
DEFAULT_STEM = "無題の文書"

# Characters Windows forbids in file names (the corpus folder may be shared with
# Windows users or synced to a Windows file server).
_WINDOWS_ILLEGAL = re.compile(r'[<>:"/\\|?*]')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_SPACES = re.compile(r"\s+")


class UploadError(ValueError):
    """A file that was not saved.  ``str(err)`` is one Japanese line: which file, what is wrong, what to do."""


@dataclass(frozen=True)
class SavedUpload:
    """The outcome of one accepted upload."""

    original_name: str
    source: str  # file name inside the corpus folder (what the index calls it)
    path: Path
    status: Literal["saved", "duplicate"]
    title: str = ""
    pages: int = 0
    problems: tuple[str, ...] = field(default_factory=tuple)

    def message(self) -> str:
        if self.status == "duplicate":
            return f"「{self.original_name}」と同じ内容のファイルが既にあります（{self.source}）。追加はしませんでした。"
        renamed = f"（「{self.source}」として保存）" if self.source != self.original_name else ""
        return f"「{self.title or self.source}」を追加しました（{self.pages}ページ）{renamed}。"


def safe_filename(name: str) -> str:
    """A file name that is safe to create inside the corpus folder, ending in ``.pdf``.

    ``../../x.pdf`` → ``x.pdf``; ``C:\\Users\\me\\資料.PDF`` → ``資料.pdf``;
    control, bidi-override and Windows-illegal characters are removed or replaced.
    """
    # NFKC first: it turns full-width "／" and "＼" into real separators, which
    # must then be stripped like any other folder part.
    text = unicodedata.normalize("NFKC", name or "")
    text = re.split(r"[/\\]", text)[-1]
    # Category C = control, format (zero-width, bidi overrides that can disguise
    # an extension), surrogates, private use, unassigned.
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    text = _WINDOWS_ILLEGAL.sub("_", text)
    text = _SPACES.sub(" ", text).strip()
    stem = text[:-4] if text.lower().endswith(".pdf") else text
    # Leading dots would make a hidden file that ingestion skips; trailing dots
    # and spaces are silently dropped by Windows.
    stem = stem.strip(" .")
    stem = _truncate_utf8(stem, MAX_STEM_BYTES).rstrip(" .")
    if not stem:
        stem = DEFAULT_STEM
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        stem = f"{stem}_"
    return f"{stem}.pdf"


def _truncate_utf8(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")


def check_pdf(data: bytes, name: str, *, max_upload_mb: int, ocr: PageOcr | None = None) -> LoadedDocument:
    """Validate an uploaded file; the loaded document (title, pages, problems) or :class:`UploadError`.

    ``ocr``: read pages without a text layer, as ingestion will (its cache then spares
    ingestion the work); without it a scan is refused.
    """
    if len(data) > max_upload_mb * 1024 * 1024:
        raise UploadError(
            f"{name}: ファイルが大きすぎます（{len(data) / 1024 / 1024:.1f} MB、上限 {max_upload_mb} MB）。"
            "ファイルを分割するか、管理者に上限（app.max_upload_mb）の変更を依頼してください"
        )
    if not data:
        raise UploadError(f"{name}: 空のファイルです。正しいPDFを選び直してください")
    # Same rule as the PDF loader: a few bytes of whitespace may precede the header.
    if not data[:1024].lstrip().startswith(PDF_SIGNATURE):
        raise UploadError(f"{name}: PDFではありません（先頭に %PDF- がありません）。PDFとして保存し直してください")
    # Let the indexer's own loader judge the file, so that what is accepted here
    # is exactly what ingestion can index (encryption, missing text layer, damage).
    with tempfile.TemporaryDirectory(prefix="rag-upload-") as tmp:
        path = Path(tmp) / "upload.pdf"
        path.write_bytes(data)
        try:
            return load_document(path, name, ocr, hashlib.sha256(data).hexdigest() if ocr else None)
        except DocumentError as exc:
            raise UploadError(str(exc)) from None


def save_upload(
    data: bytes, name: str, corpus_dir: Path, *, max_upload_mb: int = 50, ocr: PageOcr | None = None
) -> SavedUpload:
    """Validate ``data`` and save it into ``corpus_dir`` under a safe, unused name.

    Raises :class:`UploadError` (nothing written) for a file that is too large,
    not a PDF, encrypted or without text.
    """
    original = name or ""
    filename = safe_filename(original)
    doc = check_pdf(data, filename, max_upload_mb=max_upload_mb, ocr=ocr)

    corpus = Path(corpus_dir).resolve()
    corpus.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    same = _existing_copy(corpus, len(data), digest)
    if same is not None:
        return SavedUpload(original, same.relative_to(corpus).as_posix(), same, "duplicate", doc.title, doc.page_count)

    # A hidden temporary name: ingestion skips dot-files, so a concurrent
    # re-index never sees a half-written PDF.
    tmp = corpus / f".upload-{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        target = _claim_name(tmp, corpus, filename)
    finally:
        tmp.unlink(missing_ok=True)
    return SavedUpload(original, target.name, target, "saved", doc.title, doc.page_count, tuple(doc.problems))


def _candidates(filename: str):
    stem = filename[:-4]
    yield filename
    for n in range(2, MAX_COLLISION_SUFFIX + 1):
        yield f"{stem} ({n}).pdf"


def _inside(corpus: Path, name: str) -> Path:
    # safe_filename already removed separators; this is the belt to those braces.
    # The last component is deliberately not resolved: an existing symlink of
    # that name must count as taken, not be followed.
    target = corpus / name
    if Path(name).name != name or name in (".", "..") or target.parent.resolve() != corpus:
        raise UploadError(f"{name}: 文書フォルダの外には保存できません")
    return target


def _claim_name(tmp: Path, corpus: Path, filename: str) -> Path:
    """Move ``tmp`` to the first free candidate name, never replacing an existing file."""
    for candidate in _candidates(filename):
        target = _inside(corpus, candidate)
        # os.link fails if the name exists, so checking and claiming the name is
        # one atomic step even with two uploads of the same name at once.
        try:
            os.link(tmp, target)
            return target
        except FileExistsError:
            continue
        except OSError:
            # File systems without hard links (some network shares): fall back to
            # an existence check and an atomic rename of the complete file.
            if target.exists() or target.is_symlink():
                continue
            os.replace(tmp, target)
            return target
    raise UploadError(f"{filename}: 同じ名前のファイルが多すぎます。ファイル名を変えてから追加してください")


def _existing_copy(corpus: Path, size: int, digest: str) -> Path | None:
    """A file already in this folder with exactly these bytes (size first, so only candidates are hashed).

    Only files directly in ``corpus``: a subfolder is another collection, which the
    uploader may not be allowed to see (its file names must not be revealed).
    """
    for path, _ in iter_corpus(corpus):
        if path.is_symlink() or path.parent != corpus:
            continue
        try:
            if path.stat().st_size != size:
                continue
            if sha256_file(path) == digest:
                return path
        except OSError:
            continue
    return None




def remove_source(corpus_dir: Path, source: str, reindex: Callable[[], object]) -> None:
    """Take the indexed file ``source`` out of the corpus and, through ``reindex``, out of the index.

    The file is first renamed to a hidden name beside it (ingestion skips hidden
    files), so ``reindex`` — an incremental :func:`rag.ingest.ingest` — commits one
    new index version without it: readers see the document either fully there or
    fully gone.  If ``reindex`` fails, the file is put back and nothing changes.
    Raises :class:`FileNotFoundError` for a source that is not a file inside the corpus.
    """
    corpus = Path(corpus_dir).resolve()
    path = (corpus / source).resolve()
    if not path.is_relative_to(corpus) or path == corpus or not path.is_file():
        raise FileNotFoundError(source)
    hidden = path.with_name(f".removing-{uuid.uuid4().hex}-{path.name}")
    os.rename(path, hidden)
    try:
        reindex()
    except BaseException:
        os.rename(hidden, path)
        raise
    hidden.unlink(missing_ok=True)
