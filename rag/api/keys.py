"""API keys: created once, stored only as hashes in SQLite, checked on every request.

A key is 32 random bytes (``secrets``), so a plain SHA-256 of it cannot be
brute-forced and lets the server look a key up by its hash in one indexed
query; a slow password hash would buy nothing here and cost every request.
The key itself is shown once, at creation, and never stored or logged.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rag.access import AccessPolicy, check_collection

KEY_PREFIX = "rag_"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    collections TEXT,          -- JSON list; NULL: every collection
    can_write INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""


class KeyError_(ValueError):  # trailing underscore: KeyError is a builtin
    """A key operation that cannot be done; the message is one Japanese line."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    collections: tuple[str, ...] | None  # None: every collection
    can_write: bool
    created_at: str
    revoked_at: str | None = None

    @property
    def policy(self) -> AccessPolicy:
        return AccessPolicy(None if self.collections is None else frozenset(self.collections), self.can_write)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """The keys file.  Each call opens its own connection, so the store is safe to share between threads."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success and is always closed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=10)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.commit()
            elif version != SCHEMA_VERSION:
                # A file from another version is refused, never misread.
                raise KeyError_(
                    f"キーのファイルの形式が違います（形式 {version}、このバージョンは {SCHEMA_VERSION}）: {self.path}。"
                    "このバージョンの `rag keys add` でキーを作り直してください"
                )
            with db:
                yield db
        finally:
            db.close()

    def add(self, name: str, collections: Sequence[str] | None = None, can_write: bool = False) -> str:
        """Create a key and return it (the only time it exists in clear)."""
        name = (name or "").strip()
        if not name or len(name) > 64 or any(ord(c) < 32 for c in name):
            raise KeyError_("キーの名前が正しくありません。64文字以内の名前を指定してください")
        cols = None if collections is None else sorted({check_collection(c) for c in collections})
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._connect() as db:
            try:
                db.execute(
                    "INSERT INTO keys VALUES (?, ?, ?, ?, ?, NULL)",
                    (name, _hash(key), None if cols is None else json.dumps(cols, ensure_ascii=False), int(can_write), _now()),
                )
            except sqlite3.IntegrityError:
                raise KeyError_(f"「{name}」という名前のキーは既にあります。別の名前にしてください（無効にしたキーの名前も使えません）") from None
        return key

    def list(self) -> list[ApiKey]:
        with self._connect() as db:
            rows = db.execute("SELECT name, collections, can_write, created_at, revoked_at FROM keys ORDER BY name").fetchall()
        return [_row(r) for r in rows]

    def revoke(self, name: str) -> None:
        with self._connect() as db:
            cur = db.execute("UPDATE keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (_now(), name))
        if cur.rowcount == 0:
            raise KeyError_(f"有効な「{name}」というキーはありません。`rag keys list` で名前を確かめてください")

    def by_name(self, name: str) -> ApiKey | None:
        """The key called ``name`` when it is not revoked (the app re-reads a signed-in key each run)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT name, collections, can_write, created_at, revoked_at FROM keys WHERE name = ? AND revoked_at IS NULL", (name,)
            ).fetchone()
        return _row(row) if row else None

    def check(self, key: str) -> ApiKey | None:
        """The key's record when it is known and not revoked, else None."""
        if not key or not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        with self._connect() as db:
            row = db.execute(
                "SELECT name, collections, can_write, created_at, revoked_at FROM keys WHERE key_hash = ?", (_hash(key),)
            ).fetchone()
        if row is None or row[4] is not None:
            return None
        return _row(row)


def _row(r: tuple) -> ApiKey:
    cols = None if r[1] is None else tuple(json.loads(r[1]))
    return ApiKey(r[0], cols, bool(r[2]), r[3], r[4])


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
