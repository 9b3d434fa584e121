"""Running Tesseract on one page image and reading its word boxes.

The ``tesseract`` command is called directly with TSV output (word text, box,
confidence, block/paragraph/line numbers).  pytesseract does the same through a
subprocess and adds nothing we need; calling the binary keeps the dependency on
Debian's package alone.  Each call is its own process, so pages OCR in parallel
from plain threads (:mod:`rag.ocr.pages`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

INSTALL_HINT = (
    "OCR（Tesseract と日本語データ）が入っていないため、スキャンPDFは読めません。"
    "sudo apt-get install tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert tesseract-ocr-script-jpan で入れてください"
)

# A single page can take tens of seconds on a busy 2-core machine; a hung process must not stall ingest.
_TIMEOUT_S = 300


class OcrError(Exception):
    """Tesseract failed on one page; the message is one Japanese line."""


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word; the box is in pixels of the OCR'd image (origin top-left)."""

    text: str
    left: int
    top: int
    width: int
    height: int
    conf: float  # 0-100, Tesseract's own estimate
    line: tuple[int, int, int]  # (block, paragraph, line): words of one line share it

    def to_list(self) -> list:
        return [self.text, self.left, self.top, self.width, self.height, round(self.conf, 1), *self.line]

    @classmethod
    def from_list(cls, row: list) -> Word:
        text, left, top, width, height, conf, block, par, line = row
        return cls(text, left, top, width, height, conf, (block, par, line))


@dataclass(frozen=True, slots=True)
class OcrResult:
    """Tesseract's reading of one image: words in its reading order, and the image size in pixels."""

    words: tuple[Word, ...]
    width: int
    height: int
    dpi: int
    languages: str

    @property
    def confidence(self) -> float | None:
        """Mean word confidence (0-1) weighted by characters; None when nothing was read."""
        total = sum(len(w.text) for w in self.words)
        if not total:
            return None
        return sum(w.conf * len(w.text) for w in self.words) / total / 100.0

    def to_json(self) -> dict:
        return {"width": self.width, "height": self.height, "dpi": self.dpi, "languages": self.languages,
                "words": [w.to_list() for w in self.words]}

    @classmethod
    def from_json(cls, data: dict) -> OcrResult:
        return cls(tuple(Word.from_list(r) for r in data["words"]), data["width"], data["height"], data["dpi"], data["languages"])


@functools.lru_cache(maxsize=8)
def missing(languages: str = "jpn+jpn_vert") -> str | None:
    """Why OCR cannot run here (one Japanese line naming what to install), or None when it can."""
    exe = shutil.which("tesseract")
    if exe is None:
        return INSTALL_HINT
    try:
        out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return INSTALL_HINT
    have = {line.strip() for line in (out.stdout + out.stderr).splitlines()}
    if any(lang not in have for lang in languages.split("+")):
        return INSTALL_HINT
    return None


@functools.lru_cache(maxsize=1)
def engine_version() -> str:
    """Tesseract's version line: part of the cache key, so an upgraded engine reads pages again."""
    try:
        out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "unknown"


def run_tesseract(png: bytes, dpi: int, languages: str) -> OcrResult:
    """OCR one PNG image (page segmentation 3: automatic layout, as for a whole page)."""
    # One thread per process: pages already run in parallel, and OpenMP threads on top
    # of that oversubscribe a small machine (Tesseract's own advice).
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        out = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", languages, "--psm", "3", "--dpi", str(dpi), "tsv"],
            input=png, capture_output=True, timeout=_TIMEOUT_S, env=env,
        )
    except subprocess.TimeoutExpired:
        raise OcrError(f"OCRが{_TIMEOUT_S}秒以内に終わりませんでした") from None
    except OSError as exc:
        raise OcrError(f"tesseract を起動できません（{exc.strerror}）") from None
    if out.returncode != 0:
        detail = out.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OcrError(f"tesseract が失敗しました（{detail[-1] if detail else out.returncode}）")
    return parse_tsv(out.stdout.decode("utf-8", "replace"), dpi, languages)


def parse_tsv(tsv: str, dpi: int, languages: str) -> OcrResult:
    width = height = 0
    words: list[Word] = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12:
            continue
        level = cols[0]
        if level == "1":
            width, height = int(cols[8]), int(cols[9])
        if level != "5" or not cols[11].strip():
            continue
        block, par, line = int(cols[2]), int(cols[3]), int(cols[4])
        left, top, w, h = (int(c) for c in cols[6:10])
        words.append(Word(cols[11].strip(), left, top, w, h, float(cols[10]), (block, par, line)))
    return OcrResult(tuple(words), width, height, dpi, languages)


def vertical_share(result: OcrResult) -> float:
    """Share of the read characters that sit in lines taller than wide (vertical writing).

    The horizontal model still finds vertical lines, as columns of one or two
    characters a line; a page made mostly of such columns is read again with the
    vertical model.
    """
    boxes: dict[tuple[int, int, int], list[int]] = {}
    chars: dict[tuple[int, int, int], int] = {}
    for w in result.words:
        b = boxes.setdefault(w.line, [w.left, w.top, w.left + w.width, w.top + w.height])
        b[0], b[1] = min(b[0], w.left), min(b[1], w.top)
        b[2], b[3] = max(b[2], w.left + w.width), max(b[3], w.top + w.height)
        chars[w.line] = chars.get(w.line, 0) + len(w.text)
    total = sum(chars.values())
    if not total:
        return 0.0
    tall = sum(n for key, n in chars.items() if n >= 2 and (boxes[key][3] - boxes[key][1]) > 2 * (boxes[key][2] - boxes[key][0]))
    return tall / total
