"""JSON files the product writes and reads back whole: fitted models and caches beside the index."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Written to a temporary file beside ``path``, then renamed: a reader sees the old file or
    the new one, never half of one (the name is unique, so two writers never share it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_or_raise(path: Path, missing: Callable[[Path, str], Exception]) -> str:
    """The file's text, or ``missing(path, reason)`` raised as one clear error instead of an OSError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise missing(Path(path), exc.strerror or str(exc)) from None
