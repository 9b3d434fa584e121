"""The answerer's fitted weights, stored as JSON beside the feature names they belong to.

A model is a logistic regression over :data:`rag.answering.features.FEATURES` (the
score of a candidate sentence) and a second, question-level logistic regression (the
calibration): the probability that the answer quoting the best candidate is right, from
that candidate's score, its lead over the runner-up and a few of its features.  Thresholds on that probability
decide between answering, answering with 「確度：低」 and declining.  A third, small one
(:mod:`rag.answering.support`) orders the further lines an answer may quote.  All of it is
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
from rag.jsonfile import read_or_raise, write_atomically

MODEL_FILE = Path(__file__).resolve().parent.parent / "data" / "answer_model.json"
FORMAT = 2
# What the confidence reads beside the best score: is what the question asks about in the
# sentence itself, is the kind of answer asked for there at all.
CALIBRATION_FEATURES = (
    "own_coverage",
    "term_coverage",
    "absent_terms",
    "section_coverage",
    "dense",
    "dense_missing",
    "kind_of_number_missing",
    "date_missing_for_when",
    "year_missing",
    "named_place_missing",
    "only_title_words",
    "other_edition",
    "passage_rank",
)


class ModelError(ValueError):
    """A weights file that cannot be used; the message says what to do."""


def sigmoid(z: float) -> float:
    """A probability from log-odds; a non-finite score counts as no evidence at all."""
    z = float(z)
    if not math.isfinite(z):
        z = -30.0
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def logit(p: float) -> float:
    """The log-odds of a probability (a candidate's score before the sigmoid)."""
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


MAX_MARGIN = 10.0


def margin(scores: list[float], bias: float) -> float:
    """The best candidate's lead (in log-odds) over the runner-up, or over the model's
    no-evidence baseline when it stands alone: one weak candidate is not a sure answer."""
    best = logit(scores[0])
    other = logit(scores[1]) if len(scores) > 1 else bias
    return min(MAX_MARGIN, max(0.0, best - other))


def _reject_constant(name: str):
    raise ValueError(f"{name} は使えません")


@dataclass
class AnswerModel:
    names: list[str]
    weights: list[float]
    bias: float
    # P(answer right) = σ(bias + score·best score + margin·lead over the runner-up + Σ w·feature of the best).
    calibration: dict[str, float] = field(default_factory=lambda: {"bias": 0.0, "score": 1.0, "margin": 0.0})
    decline_below: float = 0.3  # evidence (calibrated probability) under which the answerer declines
    low_below: float = 0.5  # …and under which it answers with 「確度：低」 (also on the evidence)
    fitted_on: dict = field(default_factory=dict)  # documents, questions, rows: provenance for the README
    format: int = FORMAT
    # Which further lines an answer quotes beside its best one (rag.answering.support), fitted with
    # the weights; absent in a file written before it, and then the composer's fixed rule decides.
    support: dict | None = None
    # The confidence shown: the same regression fitted on answers as shown, with their further lines.
    # ``calibration`` (fitted on answers without them) says whether the best line answers: declining
    # is decided on it.  None in a file written before it: the calibration is shown.
    shown: dict[str, float] | None = None

    def __post_init__(self) -> None:
        self._w = np.asarray(self.weights, dtype=np.float64)
        self.calibration = dict(self.calibration)
        self._columns = {n: i for i, n in enumerate(self.names)}
        self._calibration_columns = [(n, self._columns[n]) for n in CALIBRATION_FEATURES if n in self._columns]
        self.shown = dict(self.shown) if self.shown is not None else None
        numbers = [*self.weights, self.bias, *self.calibration.values(), *(self.shown or {}).values(), self.decline_below, self.low_below]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
            raise ModelError("回答モデルに数でない値（NaN など）があります。`rag train` で作り直してください")
        if not 0 <= self.decline_below <= self.low_below <= 1:
            raise ModelError("回答モデルのしきい値が 0 ≤ 回答しない ≤ 確度：低 ≤ 1 になっていません。`rag train` で作り直してください")
        unknown = (set(self.calibration) | set(self.shown or {})) - {"bias", "score", "margin", *CALIBRATION_FEATURES}
        if unknown:
            raise ModelError(f"確度の較正に知らない項目があります（{sorted(unknown)}）。`rag train` で作り直してください")
        self.further = None
        if self.support is not None:
            from rag.answering.support import SupportModel

            try:
                self.further = SupportModel.from_dict(self.support)
            except (TypeError, ValueError) as exc:
                raise ModelError(f"回答モデルの引用を添える判断を読めません（{exc}）。`rag train` で作り直してください") from None

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """The log-odds that each row's candidate holds the answer."""
        if matrix.size == 0:
            return np.zeros(0)
        return matrix @ self._w + self.bias

    def confidence(self, score: float, margin: float = 0.0, row: np.ndarray | None = None) -> float:
        """Calibrated probability that the answer as shown (with its further lines) is right.

        ``score``: the best candidate's log-odds; ``margin``: its lead over the runner-up;
        ``row``: its feature vector.
        """
        return self._calibrated(self.shown or self.calibration, score, margin, row)

    def evidence(self, score: float, margin: float = 0.0, row: np.ndarray | None = None) -> float:
        """Calibrated probability that the best candidate answers (what declining is decided on)."""
        return self._calibrated(self.calibration, score, margin, row)

    def _calibrated(self, cal: dict[str, float], score: float, margin: float, row: np.ndarray | None) -> float:
        z = cal.get("bias", 0.0) + cal.get("score", 1.0) * score + cal.get("margin", 0.0) * margin
        if row is not None:
            z += sum(cal.get(n, 0.0) * float(row[i]) for n, i in self._calibration_columns)
        return sigmoid(z)

    def column(self, name: str) -> int:
        return self._columns[name]

    def contributions(self, row: np.ndarray) -> list[tuple[str, float]]:
        """Each feature's share of one candidate's score, largest effect first (for --explain)."""
        parts = [(n, float(w * x)) for n, w, x in zip(self.names, self._w, row) if w * x != 0]
        return sorted(parts, key=lambda p: -abs(p[1]))

    def to_json(self) -> str:
        data = asdict(self)
        data["weights"] = {n: round(w, 6) for n, w in zip(self.names, self.weights)}
        del data["names"]
        return json.dumps(data, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = "") -> AnswerModel:
        try:
            data = json.loads(text, parse_constant=_reject_constant)
            if not isinstance(data, dict):
                raise ValueError("JSON のオブジェクトではありません")
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
        write_atomically(path, self.to_json() + "\n")


def load_model(path: Path | None = None) -> AnswerModel:
    path = Path(path or MODEL_FILE)
    text = read_or_raise(path, lambda path, why: ModelError(f"回答モデルがありません（{path}: {why}）。`rag train` で作ってください"))
    return AnswerModel.from_json(text, str(path))


def untrained() -> AnswerModel:
    """Word coverage alone: what `rag train` starts from, and what tests of features use."""
    names = list(FEATURES)
    weights = [4.0 if n == "term_coverage" else 2.0 if n == "dense" else 0.0 for n in names]
    return AnswerModel(names, weights, -2.5)
