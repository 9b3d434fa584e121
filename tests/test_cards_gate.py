"""The card gate: scheme cards of the development documents against the hand-written gold, held out.

Each document's card is made by an answer model fitted on the other documents' questions
only.  The figures must stay at or above eval/floors_cards.json (the measured values,
recorded with the command that reproduces them: ``rag eval --cards``).  Without ../shared
the gate is skipped with the reason (see the ``lodo_cases`` fixture).
"""

from __future__ import annotations

import json

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def card_eval(lodo_cases):
    from rag.cards.evaluate import evaluate_cards, fold_models, held_out_cards, load_gold, set_pipelines

    _, cases = lodo_cases
    gold = load_gold()
    pipelines = set_pipelines(cases)
    cards = held_out_cards(gold, pipelines, fold_models(gold, cases, pipelines))
    return gold, cards, evaluate_cards(gold, cards)[0]


def test_every_gold_document_was_measured_and_scheme_documents_are_told_apart(card_eval):
    gold, cards, summary = card_eval
    assert set(cards) == {g.key for g in gold}
    assert summary["detection_accuracy"] == 1.0, summary["detection"]


def test_held_out_card_accuracy_stays_above_its_floors(card_eval):
    _, _, summary = card_eval
    floors = json.loads((ROOT / "eval" / "floors_cards.json").read_text(encoding="utf-8"))
    for key in ("right_with_page", "value_accuracy", "page_accuracy", "unstated_declined"):
        assert summary[key] >= floors[key], (key, summary[key], floors[key])
