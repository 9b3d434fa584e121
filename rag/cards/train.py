"""Fitting the card model from the gold cards, document by document.

A candidate line of a field is right when it stands on a gold page of that field and its
value or the line itself holds one of the gold's accepted strings
(:func:`rag.cards.evaluate.accepted`); every other candidate is wrong, and so is every
candidate of a field the document does not state.

Each (document, field) weighs the same whatever its number of candidates: a 57-page
公募要領 has hundreds of lines that mention 要件, a leaflet a handful.  The threshold
under which a field is left 「記載なし」 is chosen on scores the model gives documents it
was not fitted on (an inner leave-one-document-out), because a model's scores on its own
training documents are over-confident.

SciPy (installed with scikit-learn, the ``train`` extra) is needed here only: cards read the
fitted numbers from JSON.

    python -m rag.cards.train            # rag/data/card_model.json from the folds of `rag eval --cards`
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.cards.features import DIRECTION, FEATURES, candidates
from rag.cards.model import MODEL_FILE, CardModel

# Regularisation of the logistic regression towards the prior weights, as sklearn's default C
# means it: with the sample weights scaled to average 1 per row (not tuned on the gold).
C = 1.0
# Choosing the threshold: a value given for a field the document does not state costs this many
# right values (the card must not invent); a wrong value costs a quarter of one: it is shown with
# its page and confidence, so a reader can check it, but a 記載なし would not have misled at all.
INVENTED_COST = 2.0
WRONG_COST = 0.25
# The inner leave-one-out needs this many documents; with fewer the threshold is set in-sample.
_INNER_MIN = 3


@dataclass(frozen=True)
class Group:
    """One field of one document: its candidates' feature rows and whether each is right."""

    document: str
    field: str
    stated: bool
    rows: tuple[tuple[float, ...], ...]
    labels: tuple[int, ...]


def training_groups(reading, gold) -> list[Group]:
    """The (document, field) groups of one read document against its gold card.

    実施機関 is left out: the cover's line decides it whenever there is one, so its gold
    says nothing about how to choose among the lines inside.
    """
    from rag.cards.evaluate import accepted

    out = []
    for name, view in reading.views().items():
        if name == "実施機関":
            continue
        g = gold.fields.get(name)
        rows, labels = [], []
        for i, row in candidates(view):
            shown = view.cell(i)
            rows.append(tuple(row))
            labels.append(int(g is not None and shown.line.page in g.pages and accepted(g, shown.value, shown.quote)))
        out.append(Group(gold.key, name, g is not None, tuple(rows), tuple(labels)))
    return out


def _fit_weights(groups: Sequence[Group]) -> tuple[dict[str, float], float]:
    """Logistic regression with each feature's sign fixed by what it measures, and shrunk towards a prior.

    A feature is evidence for the line (its structure names the field), against it (a worked
    example, a special case) or either (:data:`rag.cards.features.DIRECTION`).  Five documents
    cannot teach everything: a kind of line that only the held-out document has (a lookup
    chart of rates) gets no weight from the others.  So the fit may not turn a feature's
    sign, and where the data say little a weight stays near one unit of log-odds in its
    direction (the prior) instead of falling to zero.
    """
    import numpy as np
    from scipy.optimize import minimize

    X, y, w = [], [], []
    for g in groups:
        for row, label in zip(g.rows, g.labels):
            X.append(row)
            y.append(label)
            w.append(1.0 / len(g.rows))
    if len(set(y)) < 2:
        raise ValueError("カードのモデルを学習できません: 正解の候補行と誤りの候補行の両方が必要です")
    X, y, w = np.asarray(X, dtype=float), np.asarray(y, dtype=float), np.asarray(w, dtype=float)
    w *= len(w) / w.sum()
    prior = np.array([float(DIRECTION[n]) for n in FEATURES])
    sign = 2 * y - 1

    def objective(theta):
        coef, bias = theta[:-1], theta[-1]
        z = sign * (X @ coef + bias)
        loss = np.logaddexp(0.0, -z)
        grad_z = -sign * w * (1.0 / (1.0 + np.exp(z)))
        value = float(w @ loss) + float(((coef - prior) ** 2).sum()) / (2 * C)
        grad = np.append(X.T @ grad_z + (coef - prior) / C, grad_z.sum())
        return value, grad

    bounds = [((0.0, None) if d > 0 else (None, 0.0) if d < 0 else (None, None)) for d in prior] + [(None, None)]
    fit = minimize(objective, np.append(prior, 0.0), jac=True, method="L-BFGS-B", bounds=bounds)
    coef, bias = fit.x[:-1], fit.x[-1]
    return {n: float(c) for n, c in zip(FEATURES, coef)}, float(bias)


def _best(model: CardModel, g: Group) -> tuple[float, bool] | None:
    """The best candidate's probability and whether it is right, or None without candidates."""
    if not g.rows:
        return None
    p, label = max((model.probability(list(r)), lab) for r, lab in zip(g.rows, g.labels))
    return p, bool(label)


def choose_threshold(outcomes: Sequence[tuple[float, bool, bool]]) -> float:
    """The threshold that does best on (best probability, right?, stated?) of held-out fields.

    Taking a field's best candidate gains 1 when it is right, costs INVENTED_COST when the
    document does not state the field and WRONG_COST when the value is wrong.  The
    threshold sits halfway between the last probability taken and the next one left.
    """
    points = sorted({p for p, _, _ in outcomes})
    best_gain, best_t = 0.0, 1.0
    for k, t in enumerate(points):
        taken = [(right, stated) for p, right, stated in outcomes if p >= t]
        gain = sum(1.0 if right else (-WRONG_COST if stated else -INVENTED_COST) for right, stated in taken)
        if gain > best_gain:
            below = points[k - 1] if k > 0 else 0.0
            best_gain, best_t = gain, (below + t) / 2
    return best_t


def fit_card_model(groups: Sequence[Group]) -> CardModel:
    """Weights on all ``groups``; the threshold on each document's scores from a model fitted without it."""
    weights, bias = _fit_weights(groups)
    documents = sorted({g.document for g in groups})
    outcomes = []
    if len(documents) >= _INNER_MIN:
        for held in documents:
            inner = CardModel(*_fit_weights([g for g in groups if g.document != held]), threshold=0.0)
            outcomes += [(b[0], b[1], g.stated) for g in groups if g.document == held and (b := _best(inner, g))]
    else:
        model = CardModel(weights, bias, threshold=0.0)
        outcomes = [(b[0], b[1], g.stated) for g in groups if (b := _best(model, g))]
    fitted_on = {
        "documents": documents,
        "fields": len(groups),
        "rows": sum(len(g.rows) for g in groups),
        "right_rows": sum(sum(g.labels) for g in groups),
    }
    return CardModel(weights, bias, choose_threshold(outcomes), fitted_on)


def main(argv: Sequence[str] | None = None) -> int:
    """Refit ``rag/data/card_model.json`` on every gold scheme document.

    Each document is read with the answer model fitted without it (the folds that
    ``rag eval --cards`` writes to ``eval/out/card_folds``), as in the evaluation.
    """
    from rag.answering.model import load_model
    from rag.cards.evaluate import GOLD_FILE, held_out_readings, load_gold
    from rag.config import PROJECT_ROOT, Settings
    from rag.lodo import DEVSETS_FILE, load_devsets
    from rag.pipeline import Pipeline

    parser = argparse.ArgumentParser(prog="python -m rag.cards.train", description="制度カードの重みを正解カードから学習し直す")
    parser.add_argument("--folds", default=str(PROJECT_ROOT / "eval" / "out" / "card_folds"), help="rag eval --cards が書いた文書ごとの回答モデル")
    parser.add_argument("--out", default=str(MODEL_FILE))
    args = parser.parse_args(argv)
    folds = Path(args.folds)
    if not folds.is_dir():
        print(f"文書ごとの回答モデルがありません（{folds}）。先に `rag eval --cards` を実行してください", file=sys.stderr)
        return 2
    gold = load_gold(GOLD_FILE)
    devsets, _ = load_devsets(DEVSETS_FILE)
    pipelines, embedder = {}, None
    for ds in devsets:
        p = Pipeline.load(Settings().model_copy(update={"index_dir": PROJECT_ROOT / "indexes" / "lodo" / ds.name}), embedder=embedder)
        pipelines[ds.name], embedder = p, p.embedder
    models = {g.key: load_model(f) for g in gold if (f := folds / (g.key.replace("/", "__") + ".json")).is_file()}
    readings = held_out_readings(gold, pipelines, models)
    by_key = {g.key: g for g in gold}
    groups = [grp for key, r in readings.items() if r is not None and by_key[key].scheme for grp in training_groups(r, by_key[key])]
    model = fit_card_model(groups)
    model.save(Path(args.out))
    print(f"{args.out}: {len(model.fitted_on['documents'])}文書・{model.fitted_on['fields']}項目・候補行 {model.fitted_on['rows']}、しきい値 {model.threshold:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
