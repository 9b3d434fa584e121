"""Collections and the access policy (rag/access.py), and the pipeline honouring it."""

from __future__ import annotations

import pytest

from rag.access import AccessPolicy, CollectionError, check_collection, collection_of


def test_a_documents_collection_is_its_top_level_folder():
    assert collection_of("naibu/x.pdf") == "naibu"
    assert collection_of("naibu/sub/x.pdf") == "naibu"
    assert collection_of("x.pdf") == "default"


@pytest.mark.parametrize("bad", ["..", ".", "../x", "a/b", "a\\b", ".hidden", "", " ", "x" * 65, "a:b", "a\x00b"])
def test_a_collection_name_must_be_one_plain_folder_name(bad):
    with pytest.raises(CollectionError):
        check_collection(bad)


def test_collection_names_are_normalised():
    assert check_collection("ｎａｉｂｕ") == "naibu"
    assert check_collection("庁内 限定") == "庁内 限定"


def test_restrict_never_turns_a_restricted_policy_into_everything():
    indexed = ["a.pdf", "naibu/b.pdf", "koukai/c.pdf"]
    assert AccessPolicy.everything().restrict(None, indexed) is None
    assert AccessPolicy.everything().restrict(["naibu/b.pdf"], indexed) == ("naibu/b.pdf",)
    only = AccessPolicy(frozenset({"koukai"}))
    assert only.restrict(None, indexed) == ("koukai/c.pdf",)
    assert only.restrict(["naibu/b.pdf"], indexed) == ()
    assert AccessPolicy(frozenset()).restrict(None, indexed) == ()


def test_the_pipeline_searches_nothing_for_a_policy_that_allows_nothing(pipeline):
    question = "デジタル実装に取り組む地方公共団体の目標は？"
    assert pipeline.ask(question).hits
    answer = pipeline.ask(question, policy=AccessPolicy(frozenset({"naibu"})))
    assert not answer.hits and not answer.citations and not answer.found
    # An empty source list without a policy still means "every document", as before.
    assert pipeline.ask(question, sources=[]).hits
