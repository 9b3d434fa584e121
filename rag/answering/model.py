"""The answerer's fitted weights, stored as JSON beside the feature names they belong to.

A model is a logistic regression over :data:`rag.answering.features.FEATURES` (the
score of a candidate sentence) and a Platt calibration of the best candidate's score
(the probability that the answer quoting it is right).  Thresholds on that probability
decide between answering, answering with 「確度：低」 and declining.  All of it is
fitted by :mod:`rag.answering.train` on the development Q&A; loading never executes
code (plain JSON, no pickle), and a file whose feature list differs from this
version's is refused rather than misread.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rag.answering.features import FEATURES

MODEL_FILE = Path(__file__).resolve().parent.parent / "data" / "answer_model.json"
FORMAT = 1


class ModelError(ValueError):
    """A weights file that cannot be used; the message says what to do."""


@dataclass
class AnswerModel:
    names: list[str]
    weights: list[float]
    bias: float
    # Platt scaling of the best candidate's score: P(answer right) = σ(a·score + b).
    calibration: tuple[float, float] = (1.0, 0.0)
    decline_below: float = 0.3  # calibrated probability under which the answerer declines
    low_below: float = 0.5  # …and under which it answers with 「確度：低」
    fitted_on: dict = field(default_factory=dict)  # documents, questions, rows: provenance for the README
    format: int = FORMAT

    def __post_init__(self) -> None:
        self._w = np.asarray(self.weights, dtype=np.float64)
        self.calibration = tuple(self.calibration)

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """The log-odds that each row's candidate holds the answer."""
        if matrix.size == 0:
            return np.zeros(0)
        return matrix @ self._w + self.bias

    def confidence(self, score: float) -> float:
        a, b = self.calibration
        return 1.0 / (1.0 + math.exp(-(a * score + b)))

    def contributions(self, row: np.ndarray) -> list[tuple[str, float]]:
        """Each feature's share of one candidate's score, largest effect first (for --explain)."""
        parts = [(n, float(w * x)) for n, w, x in zip(self.names, self._w, row) if w * x != 0]
        return sorted(parts, key=lambda p: -abs(p[1]))

    def without(self, disabled: set[str]) -> AnswerModel:
        """This model with the named features switched off (for ablations)."""
        weights = [0.0 if n in disabled else w for n, w in zip(self.names, self.weights)]
        return AnswerModel(self.names, weights, self.bias, self.calibration, self.decline_below, self.low_below, self.fitted_on)

    def to_json(self) -> str:
        data = asdict(self)
        data["weights"] = {n: round(w, 6) for n, w in zip(self.names, self.weights)}
        del data["names"]
        return json.dumps(data, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = "") -> AnswerModel:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ModelError(f"回答モデルの形式が違います（{where}: format {data.get('format')}）。`rag train` で作り直してください")
            weights: dict[str, float] = data.pop("weights")
            known = set(FEATURES)
            if set(weights) != known:
                extra, missing = sorted(set(weights) - known), sorted(known - set(weights))
                raise ModelError(
                    f"回答モデルの特徴量がこの版と合いません（{where}: 余分 {extra}, 不足 {missing}）。`rag train` で作り直してください"
                )
            names = [n for n in FEATURES]
            return cls(names=names, weights=[float(weights[n]) for n in names], **data)
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"回答モデルを読めません（{where}: {exc}）。`rag train` で作り直してください") from None

    def save(self, path: Path) -> None:
        """Written to a temporary file, then renamed: a reader never sees half a model."""
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json() + "\n", encoding="utf-8")
        tmp.replace(path)


def load_model(path: Path | None = None) -> AnswerModel:
    path = Path(path or MODEL_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"回答モデルがありません（{path}: {exc.strerror}）。`rag train` で作ってください") from None
    return AnswerModel.from_json(text, str(path))


def untrained() -> AnswerModel:
    """Word coverage alone: what `rag train` starts from, and what tests of features use."""
    names = list(FEATURES)
    weights = [4.0 if n == "term_coverage" else 2.0 if n == "dense" else 0.0 for n in names]
    return AnswerModel(names, weights, -2.5)
