"""Fitting the answerer's weights, calibration and thresholds from Q&A, document by document.

Labels come from the Q&A alone: a candidate sentence on a gold page that contains one of
the question's ``must_include`` facts holds the answer; every other candidate does not
(and no candidate of an unanswerable question does).

Everything is judged leave-one-document-out.  The confidence that a held-out document's
answers carry is calibrated on scores of *other* documents that were themselves produced
by a model that had not seen them (an inner leave-one-out), because a model's scores on
its own training questions are over-confident.

scikit-learn is needed here only: answering reads the fitted numbers from JSON.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.answer import logit
from rag.answering.model import AnswerModel
from rag.evaluate import QAItem, QuestionResult, judge
from rag.normalize import comparable

# Wrongly declined answerable questions allowed when choosing the decline threshold (the target is 0.05).
DECLINE_BUDGET = 0.04
# Regularisation of the logistic regression (sklearn's C): features are few and the documents varied.
C = 0.5


@dataclass
class Case:
    """One question, retrieved and scored once; folds re-weight its candidates without searching again."""

    item: QAItem
    document: str  # what leave-one-document-out holds out
    pipeline: object  # the rag.pipeline.Pipeline of its corpus
    found: object  # rag.pipeline.Retrieved
    labels: np.ndarray  # 1 for a candidate that holds a must_include fact on a gold page

    @property
    def matrix(self) -> np.ndarray:
        return np.vstack([c.row for c in self.found.ranking.candidates])


def label(item: QAItem, candidates) -> np.ndarray:
    gold = set(item.sources)
    facts = [comparable(f) for f in item.must_include]
    out = np.zeros(len(candidates))
    for i, c in enumerate(candidates):
        if (c.hit.chunk.source, c.hit.chunk.page) in gold:
            text = comparable(c.text + c.figure)
            out[i] = float(any(f in text for f in facts))
    return out


def fit_weights(cases: Sequence[Case], names: list[str], disabled: frozenset[str] = frozenset()) -> AnswerModel:
    """Logistic regression over the candidates of ``cases``; each document weighs the same.

    ``disabled`` features are fitted as absent (weight 0): an ablation is a setting, not an edit.
    """
    from sklearn.linear_model import LogisticRegression

    per_doc = defaultdict(int)
    for case in cases:
        per_doc[case.document] += 1
    xs, ys, ws = [], [], []
    for case in cases:
        if case.found.ranking is None or (case.item.answerable and not case.labels.any()):
            continue  # an answerable question whose answer was not retrieved says nothing about sentences
        n = len(case.labels)
        xs.append(case.matrix)
        ys.append(case.labels)
        # Every question of a document weighs the same, and every document the same in all.
        ws.append(np.full(n, 1.0 / (n * per_doc[case.document])))
    x, y, w = np.vstack(xs), np.concatenate(ys), np.concatenate(ws)
    x[:, [names.index(n) for n in disabled]] = 0.0
    w = w * (len(w) / w.sum())
    # Standardised, the solver converges in a few steps; the weights are mapped back to raw feature units.
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    learner = LogisticRegression(C=C, max_iter=500, solver="newton-cholesky")
    learner.fit((x - mean) / std, y, sample_weight=w)
    coef = learner.coef_[0] / std
    bias = float(learner.intercept_[0] - (coef * mean).sum())
    return AnswerModel(list(names), [float(v) for v in coef], bias)


Judged = tuple[float, bool, bool]  # (best candidate's log-odds, answer judged right, question answerable)


def fit_calibration(judged: Sequence[Judged]) -> tuple[float, float]:
    """Platt scaling: P(answer right) as a logistic function of the best candidate's log-odds."""
    from sklearn.linear_model import LogisticRegression

    x = np.array([[z] for z, _, _ in judged])
    y = np.array([ok for _, ok, _ in judged], dtype=int)
    if len(set(y)) < 2:
        return (1.0, 0.0)
    learner = LogisticRegression(C=10.0)
    learner.fit(x, y)
    return float(learner.coef_[0][0]), float(learner.intercept_[0])


def choose_thresholds(judged: Sequence[Judged], calibration: tuple[float, float]) -> tuple[float, float]:
    """(decline_below, low_below): decline as many unanswerable questions as the budget of
    wrongly declined answerable ones allows; below 0.5 an answer is more likely wrong than right."""
    a, b = calibration
    conf = [(1 / (1 + math.exp(-(a * z + b))), answerable) for z, _, answerable in judged]
    answerable = sorted(p for p, ok in conf if ok)
    if not answerable:
        return 0.0, 0.5
    allowed = int(DECLINE_BUDGET * len(answerable))
    # Just under the (allowed+1)-th lowest answerable confidence: at most ``allowed`` fall below it.
    decline = max(0.0, answerable[allowed] - 1e-6)
    return round(decline, 6), round(max(0.5, decline), 6)


def judge_case(case: Case, model: AnswerModel) -> tuple[QuestionResult, float, list[tuple[str, float]]]:
    """Answer ``case`` with ``model`` (its thresholds included) and judge it; also the best log-odds."""
    pipeline, found = case.pipeline, case.found
    ranking = pipeline.offline.rescore(found.ranking, model) if found.ranking else None
    hits = ranking.hits if ranking else found.hits
    answer = pipeline.offline.answer(found.query, hits, pipeline.titles(), found.query_vector, ranking)
    answer = pipeline.finish(case.item.question, dataclasses.replace(found, hits=hits, ranking=ranking), answer, None)
    row = judge(case.item, answer, [(h.chunk.source, h.chunk.page) for h in answer.hits], 0.0)
    if not ranking:
        return row, -30.0, []
    return row, logit(ranking.candidates[0].score), pipeline.offline.explain(ranking)


def _out_of_fold(cases: Sequence[Case], names: list[str], disabled: frozenset[str]) -> list[Judged]:
    """Each document's answers judged under a model fitted without it."""
    judged: list[Judged] = []
    for doc in sorted({c.document for c in cases}):
        model = fit_weights([c for c in cases if c.document != doc], names, disabled)
        model.decline_below = 0.0  # judge every answer; declining is what the threshold decides
        for case in (c for c in cases if c.document == doc):
            row, z, _ = judge_case(case, model)
            judged.append((z, row.passed and case.item.answerable, case.item.answerable))
    return judged


def fit_model(
    cases: Sequence[Case], names: list[str], fitted_on: dict | None = None, disabled: frozenset[str] = frozenset()
) -> AnswerModel:
    """Weights on all ``cases``; calibration and thresholds on their out-of-fold scores."""
    model = fit_weights(cases, names, disabled)
    judged = _out_of_fold(cases, names, disabled)
    model.calibration = fit_calibration(judged)
    model.decline_below, model.low_below = choose_thresholds(judged, model.calibration)
    model.fitted_on = fitted_on or {}
    return model


ProgressFn = Callable[[str], None]


def leave_one_document_out(
    cases: Sequence[Case], names: list[str], progress: ProgressFn | None = None, disabled: frozenset[str] = frozenset()
) -> tuple[dict[str, list[QuestionResult]], list[tuple[float, bool, bool]], dict[str, list[tuple[str, float]]]]:
    """Each document answered by a model fitted, calibrated and thresholded on the others only.

    Returns the judged rows per document; (confidence shown, answer right, answerable) for
    every question, for the reliability chart; and the features that decided each answer.
    """
    rows: dict[str, list[QuestionResult]] = {}
    shown: list[tuple[float, bool, bool]] = []
    why: dict[str, list[tuple[str, float]]] = {}
    for doc in sorted({c.document for c in cases}):
        if progress:
            progress(doc)
        others = [c for c in cases if c.document != doc]
        model = fit_model(others, names, disabled=disabled)
        rows[doc] = []
        for case in (c for c in cases if c.document == doc):
            row, z, why[row.id] = judge_case(case, model)
            rows[doc].append(row)
            shown.append((model.confidence(z), row.passed and case.item.answerable, case.item.answerable))
    return rows, shown, why
