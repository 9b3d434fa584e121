"""Answering: named features of a candidate sentence, their fitted weights, and how they are fitted."""
