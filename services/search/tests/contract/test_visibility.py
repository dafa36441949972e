"""Browsing levels, applied inside the engine before pagination: pages are full, counts and suggestions agree."""

from __future__ import annotations

import pytest

from modelhub.search.domain.access import NsfwLevel
from modelhub.search.domain.ports import SearchIndex
from modelhub.search.domain.queries import FacetValue, ImageQuery, ModelFacet, ModelQuery, SuggestionKind
from modelhub.search.domain.visibility import is_visible

from .factories import image, image_ids, load, model, model_ids

PG, PG13, R, X, XXX, BLOCKED = (int(f) for f in NsfwLevel)
LEVELS = {
    "pg": PG,
    "pg13": PG13,
    "r": R,
    "x": X,
    "xxx": XXX,
    "pg-and-r": PG | R,
    "x-and-xxx": X | XXX,
    "blocked": BLOCKED,
    "r-blocked": R | BLOCKED,
    "unrated": 0,
}
BROWSING = [PG, PG | PG13, R, PG | PG13 | R | X | XXX, X | XXX, PG | BLOCKED, 63]


@pytest.fixture
async def rated(index: SearchIndex) -> SearchIndex:
    await load(
        index,
        [model(name, f"Sample {name}", nsfw_level=level, tags=("sample",)) for name, level in LEVELS.items()],
        [image(name, nsfw_level=level) for name, level in LEVELS.items()],
    )
    return index


@pytest.mark.parametrize("browsing_level", BROWSING)
async def test_models_and_images_shown_at_a_browsing_level(rated: SearchIndex, browsing_level: int) -> None:
    expected = {name for name, level in LEVELS.items() if is_visible(level, browsing_level)}

    models = await rated.search_models(ModelQuery(browsing_level=browsing_level, limit=100))
    images = await rated.search_images(ImageQuery(browsing_level=browsing_level, limit=100))

    assert set(model_ids(models)) == expected
    assert set(image_ids(images)) == expected


def test_the_visibility_rule() -> None:
    assert is_visible(PG | R, R)  # shares a bit
    assert not is_visible(X, PG | PG13)
    assert not is_visible(R | BLOCKED, R)  # Blocked wins over the other bits
    assert is_visible(R | BLOCKED, BLOCKED)
    assert not is_visible(0, PG | PG13 | R | X | XXX)  # unrated: moderators only
    assert is_visible(0, 63)


async def test_filtering_happens_before_pagination(rated: SearchIndex) -> None:
    page = await rated.search_models(ModelQuery(browsing_level=X | XXX, limit=2))

    assert set(model_ids(page)) == {"x", "xxx"}
    next_page = await rated.search_models(ModelQuery(browsing_level=X | XXX, limit=2, cursor=page.next_cursor))
    assert set(model_ids(next_page)) == {"x-and-xxx"}
    assert next_page.next_cursor is None


async def test_facets_and_suggestions_count_visible_models_only(rated: SearchIndex) -> None:
    page = await rated.search_models(ModelQuery(browsing_level=PG, facets=(ModelFacet.NSFW_LEVEL, ModelFacet.TAG)))
    assert page.facets[ModelFacet.NSFW_LEVEL] == (FacetValue("1", 2), FacetValue("4", 1))
    assert page.facets[ModelFacet.TAG] == (FacetValue("sample", 2),)

    tags = await rated.suggest("sam", [SuggestionKind.TAG], R, 10)
    assert [(s.text, s.weight) for s in tags] == [("sample", 2)]  # r and pg-and-r; r-blocked is Blocked: hidden

    moderator = await rated.suggest("sam", [SuggestionKind.TAG], 63, 10)
    assert [(s.text, s.weight) for s in moderator] == [("sample", len(LEVELS))]


async def test_every_rated_bit_shows_all_but_unrated_and_blocked_everywhere(rated: SearchIndex) -> None:
    # A level with every rated bit (31) is filtered by exclusions alone in tantivy: text, facets, images and
    # suggestions must all see the same models as the rule says.
    adults = PG | PG13 | R | X | XXX
    expected = {name for name, level in LEVELS.items() if is_visible(level, adults)}
    assert expected == set(LEVELS) - {"blocked", "r-blocked", "unrated"}

    text = await rated.search_models(ModelQuery(browsing_level=adults, text="sample", limit=100))
    assert set(model_ids(text)) == expected
    images = await rated.search_images(ImageQuery(browsing_level=adults, limit=100))
    assert set(image_ids(images)) == expected
    faceted = await rated.search_models(ModelQuery(browsing_level=adults, facets=(ModelFacet.TAG,)))
    assert faceted.facets[ModelFacet.TAG] == (FacetValue("sample", len(expected)),)
    tags = await rated.suggest("sam", [SuggestionKind.TAG], adults, 10)
    assert [(s.text, s.weight) for s in tags] == [("sample", len(expected))]
    names = await rated.suggest("sample", [SuggestionKind.MODEL_NAME], adults, 50)
    assert {s.text for s in names} == {f"Sample {name}" for name in expected}
