"""Query validation shared by the gRPC layer and the engines (modelhub.search.domain.validation)."""

from __future__ import annotations

import pytest

from modelhub.core.errors import InvalidArgument
from modelhub.search.domain.queries import ModelFacet, ModelQuery, SuggestionKind
from modelhub.search.domain.validation import check_model_query, check_suggest


def test_a_checked_query_carries_its_words_and_no_duplicate_facets() -> None:
    search = check_model_query(
        ModelQuery(browsing_level=1, text="Anime girl", facets=(ModelFacet.TAG, ModelFacet.TAG, ModelFacet.TYPE))
    )

    assert [t.token for t in search.terms] == ["anime", "girl"]
    assert search.facets == (ModelFacet.TAG, ModelFacet.TYPE)
    assert search.cursor is None


def test_boundaries() -> None:
    check_model_query(ModelQuery(browsing_level=63, limit=100, text="x" * 200))
    check_model_query(ModelQuery(browsing_level=1, limit=1, text=" ".join(["w"] * 16)))
    with pytest.raises(InvalidArgument):
        check_model_query(ModelQuery(browsing_level=1, text="x" * 201))


def test_messages_say_what_to_do() -> None:
    with pytest.raises(InvalidArgument) as error:
        check_model_query(ModelQuery(browsing_level=1, limit=500))

    assert "limit: 500 is out of range: ask for 1 to 100 items" in error.value.message


def test_suggest_defaults_to_every_kind_and_normalizes_the_prefix() -> None:
    request = check_suggest("  Émile ", [], 1, 10)

    assert request.prefix == "emile"
    assert request.kinds == (SuggestionKind.MODEL_NAME, SuggestionKind.TAG, SuggestionKind.CREATOR)
