"""Fitting the answerer's weights, calibration and thresholds from Q&A, document by document.

Labels come from the Q&A alone: a candidate sentence on a gold page that contains one of
the question's ``must_include`` facts holds the answer; every other candidate does not
(and no candidate of an unanswerable question does).  A further line (one an answer may
quote beside its best one, :mod:`rag.answering.support`) is labelled the same way: it holds
a fact that the lines read around the best one lack.

Everything is judged leave-one-document-out.  The confidence that a held-out document's
answers carry is calibrated on scores of *other* documents that were themselves produced
by a model that had not seen them (an inner leave-one-out), because a model's scores on
its own training questions are over-confident.

scikit-learn is needed here only: answering reads the fitted numbers from JSON.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.answering.model import CALIBRATION_FEATURES, AnswerModel, ModelError, logit, margin
from rag.answering.support import CONSIDERED, PAIR_FEATURES, SupportModel
from rag.answering.support import vector as support_vector
from rag.evaluate import QAItem, QuestionResult, judge
from rag.normalize import comparable

# Wrongly declined answerable questions allowed when choosing the decline threshold.  The target
# is 0.05 on held-out documents, and a threshold fitted on other documents overshoots its budget
# there: measured leave-one-document-out, 0.04 gave 0.057 and 0.025 gives 0.047 (docs/decisions.md).
DECLINE_BUDGET = 0.025
# Regularisation of the logistic regression (sklearn's C): features are few and the documents varied.
C = 0.5
# A question of a document with n questions weighs n**-DOCUMENT_SHARE: 1 weighs every document the same,
# 0 every question the same.
DOCUMENT_SHARE = 0.5
# The fitted probability at which a further line is quoted.  Measured on held-out documents
# (docs/decisions.md): 0.5 and 0.35 quote almost nothing, 0.1 → accuracy 0.583, 0.05 → 0.594,
# 0 → 0.605.  A line that adds nothing costs the reader a line; a missing fact costs the answer.
# So the model orders the runners-up, and the budget decides how many are quoted.
SUPPORT_THRESHOLD = 0.0
# Regularisation of the confidence shown, refitted on answers completed by further lines.  Measured
# on held-out documents (docs/decisions.md), answers shown with 0.2–0.4 were right 0.49 / 0.52 / 0.43
# of the time at C = 1 / 10 / 0.3: only 0.3 keeps every band within 0.15 of what it says.
SHOWN_C = 0.3


@dataclass
class Case:
    """One question, retrieved and scored once; folds re-weight its candidates without searching again."""

    item: QAItem
    document: str  # what leave-one-document-out holds out
    pipeline: object  # the rag.pipeline.Pipeline of its corpus
    found: object  # rag.pipeline.Retrieved
    labels: np.ndarray  # the share of the must_include facts a candidate holds on a gold page

    @functools.cached_property
    def matrix(self) -> np.ndarray:
        """The candidates' features in collection order (the rows never change; folds only re-weight them)."""
        return np.vstack([c.row for c in self.found.ranking.candidates])


def label(item: QAItem, candidates) -> np.ndarray:
    """Graded relevance of each candidate: the share of the question's facts it holds on a gold page."""
    gold = set(item.sources)
    facts = [comparable(f) for f in item.must_include]
    out = np.zeros(len(candidates))
    for i, c in enumerate(candidates):
        if facts and (c.hit.chunk.source, c.hit.chunk.page) in gold:
            text = comparable(c.text + c.figure)
            out[i] = sum(f in text for f in facts) / len(facts)
    return out


def fit_weights(cases: Sequence[Case], names: list[str], disabled: frozenset[str] = frozenset()) -> AnswerModel:
    """Weights that rank a question's right sentences above its other ones; each document weighs the same.

    Pairwise (the difference of a right and a wrong candidate of one question is one
    example): what matters is the order within a question, not how many candidates a
    question happens to have.  The scale and offset that turn a score into a sentence's
    probability are then fitted pointwise on all candidates.  ``disabled`` features are
    fitted as absent (weight 0): an ablation is a setting, not an edit.
    """
    from sklearn.linear_model import LogisticRegression

    per_doc = defaultdict(int)
    usable = [c for c in cases if c.found.ranking is not None and c.labels.any()]
    if len({c.document for c in usable}) < 2:
        raise ModelError(
            "学習に使える文書が足りません（答えのある質問がある文書が2つ以上必要です）。eval/lodo.toml の文書と質問を確かめてください"
        )
    for case in usable:
        per_doc[case.document] += 1
    off = [names.index(n) for n in disabled]
    diffs, weights = [], []
    for case in usable:
        x = case.matrix
        if off:
            x = x.copy()
            x[:, off] = 0.0
        # Every pair of candidates where one holds more of the facts than the other.
        hi, lo = np.nonzero(case.labels[:, None] > case.labels[None, :])
        if not len(hi):
            continue
        d = x[hi] - x[lo]
        gain = case.labels[hi] - case.labels[lo]
        diffs.append(d)
        # Every question of a document weighs the same, and every document the same in all.
        weights.append(gain / (gain.sum() * per_doc[case.document] ** DOCUMENT_SHARE))
    d, w = np.vstack(diffs), np.concatenate(weights)
    w = w * (len(w) / w.sum())
    std = d.std(axis=0)
    std[std == 0] = 1.0
    # Each pair both ways round, so the two classes are balanced and no intercept is needed.
    learner = LogisticRegression(C=C, max_iter=500, solver="newton-cholesky", fit_intercept=False)
    learner.fit(np.vstack([d, -d]) / std, np.r_[np.ones(len(d)), np.zeros(len(d))], sample_weight=np.r_[w, w])
    coef = learner.coef_[0] / std
    # Score → probability that the sentence holds the answer, over all candidates of all questions.
    scores = np.concatenate([c.matrix @ coef for c in cases if c.found.ranking is not None])
    labels = np.concatenate([c.labels for c in cases if c.found.ranking is not None]) > 0
    platt = LogisticRegression(C=100.0).fit(scores[:, None], labels)
    a, b = float(platt.coef_[0][0]), float(platt.intercept_[0])
    return AnswerModel(list(names), [float(v) * a for v in coef], b)


def support_examples(cases: Sequence[Case], model: AnswerModel, considered: int = CONSIDERED):
    """(pairs' features, labels, weights) for the further-line model, with answers ranked by ``model``.

    A further line is positive when it holds a ``must_include`` fact that the lines read around
    the best one lack, so the model learns which lines complete an answer, not which repeat it.
    """
    per_doc = defaultdict(int)
    usable = [c for c in cases if c.found.ranking is not None and c.item.answerable and c.item.must_include]
    for case in usable:
        per_doc[case.document] += 1
    xs, ys, ws = [], [], []
    for case in usable:
        ranking = case.pipeline.offline.rescore(case.found.ranking, model)
        composer = case.pipeline.offline.composer
        chosen = composer.read_around(ranking)
        have = comparable("\n".join(c.text for c in chosen))
        lacking = [f for f in (comparable(f) for f in case.item.must_include) if f not in have]
        found = composer.further_pairs(ranking, chosen, considered)
        for p in found:
            xs.append(support_vector(p))
            ys.append(any(f in comparable(p.c.text) for f in lacking))
            # Every document weighs the same in all, whatever its number of questions and lines.
            ws.append(1.0 / (len(found) * per_doc[case.document] ** DOCUMENT_SHARE))
    return np.array(xs, dtype=np.float64).reshape(-1, len(PAIR_FEATURES)), np.array(ys, dtype=int), np.array(ws)


def fit_support(cases: Sequence[Case], model: AnswerModel, threshold: float | None = None) -> SupportModel | None:
    """The further-line model fitted on ``cases`` ranked by ``model``; None without both kinds of example."""
    from sklearn.linear_model import LogisticRegression

    x, y, w = support_examples(cases, model)
    if len(set(y.tolist())) < 2:
        return None
    w = w * (len(w) / w.sum())
    std = x.std(axis=0)
    std[std == 0] = 1.0
    learner = LogisticRegression(C=C, max_iter=1000)
    learner.fit(x / std, y, sample_weight=w)
    coef = learner.coef_[0] / std
    return SupportModel(
        {n: float(v) for n, v in zip(PAIR_FEATURES, coef)},
        float(learner.intercept_[0]),
        SUPPORT_THRESHOLD if threshold is None else threshold,
        fitted_on={"pairs": int(len(y)), "positive": int(y.sum())},
    )


def with_support(model: AnswerModel, further: SupportModel | None) -> AnswerModel:
    """``model`` quoting further lines by ``further`` (by the composer's fixed rule when None)."""
    model.support = further.to_dict() if further else None
    model.further = further
    return model


@dataclass
class Judged:
    """One question answered under a model that had not seen its document."""

    score: float  # the best candidate's log-odds
    margin: float  # its lead over the runner-up
    row: np.ndarray | None  # its features
    right: bool  # the answer judged right (never for an unanswerable question)
    answerable: bool

    def x(self, names: list[str]) -> list[float]:
        row = self.row if self.row is not None else np.zeros(len(names))
        columns = {n: i for i, n in enumerate(names)}
        return [self.score, self.margin] + [float(row[columns[n]]) for n in CALIBRATION_FEATURES]


def fit_calibration(judged: Sequence[Judged], names: list[str], c: float = 1.0) -> dict[str, float]:
    """P(answer right) from the best candidate's score, margin and features, fitted on held-out answers."""
    from sklearn.linear_model import LogisticRegression

    x = np.array([j.x(names) for j in judged])
    y = np.array([j.right for j in judged], dtype=int)
    if len(set(y)) < 2:
        return {"bias": 0.0, "score": 1.0, "margin": 0.0}
    learner = LogisticRegression(C=c, max_iter=1000)
    learner.fit(x, y)
    keys = ["score", "margin", *CALIBRATION_FEATURES]
    return {"bias": float(learner.intercept_[0]), **{k: float(v) for k, v in zip(keys, learner.coef_[0])}}


def choose_thresholds(judged: Sequence[Judged], model: AnswerModel) -> tuple[float, float]:
    """(decline_below, low_below): decline (on the evidence) as many unanswerable questions as the
    budget of wrongly declined answerable ones allows; below 0.5 an answer is more likely wrong than right."""
    answerable = sorted(model.evidence(j.score, j.margin, j.row) for j in judged if j.answerable)
    if not answerable:
        return 0.0, 0.5
    allowed = int(DECLINE_BUDGET * len(answerable))
    # Just under the (allowed+1)-th lowest answerable confidence: at most ``allowed`` fall below it.
    decline = max(0.0, answerable[allowed] - 1e-6)
    return round(decline, 6), round(max(0.5, decline), 6)


def judge_case(
    case: Case, model: AnswerModel, decline: float | None = None
) -> tuple[QuestionResult, Judged, list[tuple[str, float]]]:
    """Answer ``case`` with ``model`` and judge it; declining under ``decline`` (default: the model's threshold)."""
    pipeline, found = case.pipeline, case.found
    ranking = pipeline.offline.rescore(found.ranking, model) if found.ranking else None
    hits = ranking.hits if ranking else found.hits
    answer = pipeline.offline.answer(
        found.query,
        hits,
        pipeline.titles(),
        found.query_vector,
        ranking,
        decline=model.decline_below if decline is None else decline,
    )
    answer = pipeline.finish(case.item.question, dataclasses.replace(found, hits=hits, ranking=ranking), answer, None)
    row = judge(case.item, answer, [(h.chunk.source, h.chunk.page) for h in answer.hits], 0.0)
    right, answerable = row.passed and case.item.answerable, case.item.answerable
    if not ranking:
        return row, Judged(-30.0, 0.0, None, right, answerable), []
    best = ranking.candidates
    lead = margin([c.score for c in best[:2]], model.bias)
    return row, Judged(logit(best[0].score), lead, best[0].row, right, answerable), pipeline.offline.explain(ranking)


def _out_of_fold(
    cases: Sequence[Case], names: list[str], disabled: frozenset[str], further: SupportModel | None = None
) -> tuple[list[Judged], list[bool]]:
    """Each document's answers judged under a model fitted without it, and whether each was
    right once completed by ``further`` lines (the pair model fitted on all ``cases``:
    refitting it per inner fold would double the time of a fit).

    The calibration is fitted on the answers as composed without further lines: it says
    whether the best line answers, and declining is decided on it.  Fitted on answers completed
    by further lines, it moved with every line they add: measured on held-out documents,
    unanswerable questions declined fell 0.325 → 0.291 for the same accuracy (docs/decisions.md).
    """
    judged: list[Judged] = []
    completed: list[bool] = []
    for doc in sorted({c.document for c in cases}):
        model = fit_weights([c for c in cases if c.document != doc], names, disabled)
        for case in (c for c in cases if c.document == doc):
            # Every answer judged as given: declining is what the threshold fitted on these decides.
            judged.append(judge_case(case, model, decline=0.0)[1])
        if further is not None:
            with_support(model, further)
            completed += [judge_case(case, model, decline=0.0)[1].right for case in cases if case.document == doc]
    return judged, completed


def fit_shown(judged: Sequence[Judged], completed: Sequence[bool], names: list[str]) -> dict[str, float] | None:
    """The calibration refitted on whether each answer was right once completed by further lines,
    so the confidence shown means what it says of the answer shown; None without such answers."""
    if len(completed) != len(judged) or all(j.right == r for j, r in zip(judged, completed)):
        return None  # no answer changed (further lines off): the calibration is what is shown
    return fit_calibration([dataclasses.replace(j, right=r) for j, r in zip(judged, completed)], names, SHOWN_C)


def fit_model(
    cases: Sequence[Case], names: list[str], fitted_on: dict | None = None, disabled: frozenset[str] = frozenset()
) -> AnswerModel:
    """Weights on all ``cases``; calibration and thresholds on their out-of-fold scores; the
    further-line pair model on all ``cases`` ranked by those weights."""
    model = fit_weights(cases, names, disabled)
    further = fit_support(cases, model)
    judged, completed = _out_of_fold(cases, names, disabled, further)
    model.calibration = fit_calibration(judged, names)
    model.decline_below, model.low_below = choose_thresholds(judged, model)
    model.shown = fit_shown(judged, completed, names)
    model.fitted_on = fitted_on or {}
    return with_support(model, further)


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
            row, _, why[row.id] = judge_case(case, model)
            rows[doc].append(row)
            # The reliability chart asks how often an answer shown with p was right, so the
            # answer is judged as it would be shown, not as declined.
            _, j, _ = judge_case(case, model, decline=0.0)
            shown.append((model.confidence(j.score, j.margin, j.row), j.right, j.answerable))
    return rows, shown, why
