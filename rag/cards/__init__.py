"""Scheme cards for consultants: building them (:mod:`.card`) from the document's structure
(:mod:`.layout` lines with their headings, :mod:`.fields` what each field is called and looks like,
:mod:`.compose` the value a line gives, :mod:`.features` / :mod:`.model` / :mod:`.train` the fitted
choice among lines), reading amounts, rates and dates (:mod:`.values`), matching a project to them
(:mod:`.match`), and measuring them against the gold file (:mod:`.evaluate`, :mod:`.cli`)."""

from rag.cards.card import (
    CARDS_FILE,
    FIELDS,
    NOT_STATED,
    CardField,
    SchemeCard,
    build_card,
    card_rows,
    cards_for_index,
    format_cards,
    is_scheme_document,
)

__all__ = [
    "CARDS_FILE",
    "FIELDS",
    "NOT_STATED",
    "CardField",
    "SchemeCard",
    "build_card",
    "card_rows",
    "cards_for_index",
    "format_cards",
    "is_scheme_document",
]
