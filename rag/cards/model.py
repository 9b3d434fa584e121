"""The card's fitted weights: a logistic regression over :data:`rag.cards.features.FEATURES`.

A field's value is the candidate line with the highest score; the field is left
「記載なし」 when that candidate's probability is under ``threshold``.  Weights and the
threshold are fitted by :mod:`rag.cards.train` on the gold cards of the development
documents, and stored as JSON with the feature names beside the weights: loading never
executes code, and a file whose feature list differs from this version's is refused
rather than misread.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from rag.cards.features import FEATURES
from rag.jsonfile import read_or_raise, write_atomically

MODEL_FILE = Path(__file__).resolve().parent.parent / "data" / "card_model.json"
FORMAT = 1


class CardModelError(ValueError):
    """A card weights file that cannot be used; the message says what to do."""


def _reject_constant(name: str):
    raise ValueError(f"{name} は使えません")


@dataclass
class CardModel:
    weights: dict[str, float]
    bias: float
    threshold: float  # probability under which the best candidate is not taken (記載なし)
    fitted_on: dict = field(default_factory=dict)  # documents, fields, rows: provenance for the README
    format: int = FORMAT

    def __post_init__(self) -> None:
        if set(self.weights) != set(FEATURES):
            extra, missing = sorted(set(self.weights) - set(FEATURES)), sorted(set(FEATURES) - set(self.weights))
            raise CardModelError(
                f"カードのモデルの特徴量がこの版と合いません（余分 {extra}, 不足 {missing}）。`python -m rag.cards.train` で作り直してください"
            )
        numbers = [*self.weights.values(), self.bias, self.threshold]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers) or not 0 <= self.threshold <= 1:
            raise CardModelError("カードのモデルに使えない値があります。`python -m rag.cards.train` で作り直してください")
        self._w = [float(self.weights[n]) for n in FEATURES]

    def probability(self, row: list[float]) -> float:
        """The probability that the line with feature ``row`` holds the field's value."""
        z = self.bias + sum(w * x for w, x in zip(self._w, row))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_json(self) -> str:
        data = {
            "format": self.format,
            "weights": {n: round(self.weights[n], 6) for n in FEATURES},
            "bias": round(self.bias, 6),
            "threshold": round(self.threshold, 6),
            "fitted_on": self.fitted_on,
        }
        return json.dumps(data, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = "") -> CardModel:
        try:
            data = json.loads(text, parse_constant=_reject_constant)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise CardModelError(f"カードのモデルの形式が違います（{where}）。`python -m rag.cards.train` で作り直してください")
            return cls(
                {str(k): float(v) for k, v in data["weights"].items()}, float(data["bias"]), float(data["threshold"]),
                dict(data.get("fitted_on", {})),
            )
        except CardModelError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CardModelError(f"カードのモデルを読めません（{where}: {exc}）。`python -m rag.cards.train` で作り直してください") from None

    def save(self, path: Path) -> None:
        write_atomically(path, self.to_json() + "\n")


def load_card_model(path: Path | None = None) -> CardModel:
    path = Path(path or MODEL_FILE)
    text = read_or_raise(path, lambda path, why: CardModelError(f"カードのモデルがありません（{path}: {why}）。`python -m rag.cards.train` で作ってください"))
    return CardModel.from_json(text, str(path))


__all__ = ["MODEL_FILE", "CardModel", "CardModelError", "load_card_model"]
