"""OCR results on disk: SQLite, JSON values, no pickle.

Two tables:

* ``results``: Tesseract's words for one page image, keyed by the image's hash
  together with the resolution, languages and engine version.  The same page in
  another file (a copy under a new name, a file with pages added) is not read again.
* ``pages``: which result belongs to page N of the file whose sha256 is S.  This
  is a fact about the file's bytes, so it stays true whichever index version is
  live; the app and the CLI look up a cited page here (OCR mark, confidence,
  word boxes) without touching the index format.

Rows are only ever added (a result for a key never changes), so a crashed or
abandoned ingest leaves nothing wrong behind, only work already done.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from rag.ocr.tesseract import OcrResult

_SCHEMA_VERSION = 1


class OcrStoreError(Exception):
    """The cache file cannot be used; one Japanese line."""


class OcrStore:
    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = Path(path)
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
                self._db.executescript(
                    """
                    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                    CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, data TEXT NOT NULL);
                    CREATE TABLE IF NOT EXISTS pages (file_sha256 TEXT NOT NULL, page INTEGER NOT NULL,
                        key TEXT NOT NULL, PRIMARY KEY (file_sha256, page));
                    """
                )
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(_SCHEMA_VERSION),))
                self._db.commit()
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.Error as exc:
            raise OcrStoreError(
                f"OCRのキャッシュ {self.path} を開けません（{exc}）。ファイルを削除すると作り直します"
            ) from None
        if row is None or row[0] != str(_SCHEMA_VERSION):
            raise OcrStoreError(
                f"OCRのキャッシュ {self.path} の形式が違います（{row[0] if row else '不明'}）。ファイルを削除すると作り直します"
            )

    @classmethod
    def open_if_exists(cls, path: Path) -> OcrStore | None:
        """Read-only view for the app and the CLI; None when nothing was ever OCR'd there."""
        if not Path(path).is_file():
            return None
        try:
            return cls(path, readonly=True)
        except OcrStoreError:
            return None

    def close(self) -> None:
        self._db.close()

    def get(self, key: str) -> OcrResult | None:
        row = self._db.execute("SELECT data FROM results WHERE key=?", (key,)).fetchone()
        return OcrResult.from_json(json.loads(row[0])) if row else None

    def put(self, key: str, result: OcrResult) -> None:
        self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (key, json.dumps(result.to_json(), ensure_ascii=False)))
        self._db.commit()

    def link(self, file_sha256: str, page: int, key: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO pages VALUES (?, ?, ?)", (file_sha256, page, key))
        self._db.commit()

    def key_for(self, file_sha256: str, page: int) -> str | None:
        row = self._db.execute("SELECT key FROM pages WHERE file_sha256=? AND page=?", (file_sha256, page)).fetchone()
        return row[0] if row else None

    def pages_of(self, file_sha256: str) -> list[int]:
        """The pages of that file that were OCR'd (1-based, ascending)."""
        return [r[0] for r in self._db.execute("SELECT page FROM pages WHERE file_sha256=? ORDER BY page", (file_sha256,))]

    def page(self, file_sha256: str, page: int) -> OcrResult | None:
        """The OCR reading of page ``page`` (1-based) of the file with that sha256, if it was OCR'd."""
        key = self.key_for(file_sha256, page)
        return self.get(key) if key else None
