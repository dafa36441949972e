"""Bad input is a clear INVALID_ARGUMENT or a safe literal search; never an engine error, never a change."""

from __future__ import annotations

from dataclasses import replace

import pytest

from modelhub.core.errors import InvalidArgument
from modelhub.search.domain import cursors
from modelhub.search.domain.ports import SearchIndex
from modelhub.search.domain.queries import ImageQuery, ModelFilters, ModelQuery, ModelSort

from .factories import image, load, model, model_ids

PG = 1


@pytest.fixture
async def catalogue(index: SearchIndex) -> SearchIndex:
    await load(
        index,
        [
            model("dragon", "Dragon", description="name title"),
            model("ops", "AND OR NOT", description="plain words"),
            model("other", "Knight"),
        ]
        + [model(f"m{i}", f"Filler {i}") for i in range(5)],
        [image("i1"), image("i2")],
    )
    return index


async def find(index: SearchIndex, text: str) -> set[str]:
    page = await index.search_models(ModelQuery(browsing_level=PG, text=text, limit=100))
    return set(model_ids(page))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"dragon"', {"dragon"}),
        ("dragon)", {"dragon"}),
        ("(dragon OR knight", set()),  # OR is a word; no model has dragon, knight and "or"
        ("name:dragon", {"dragon"}),  # "name" and "dragon" are both words of that model
        ("title:dragon", {"dragon"}),
        ("knight:dragon", set()),  # not a field query: both words must match
        ("AND", {"ops"}),
        ("NOT dragon", set()),
        ("-dragon", {"dragon"}),  # no exclusion operator
        ("+dragon^10", set()),  # "10" is a word of its own
        ("dragon*", {"dragon"}),
        ("drag?n", set()),  # "drag" and "n": n is too short for a typo or a prefix and no model has it
        ("[* TO *]", set()),  # "to" is a word, which no model has
        ("[* *] && || !", {"dragon", "ops", "other"} | {f"m{i}" for i in range(5)}),  # no words: no text condition
        ("dragon~2", set()),
        ("{!lucene}dragon", set()),
        ("\\dragon\\", {"dragon"}),
        ("drägön", {"dragon"}),
        ("/dr.*n/", set()),
        ("dragon\x00", {"dragon"}),
    ],
)
async def test_query_syntax_is_searched_literally(catalogue: SearchIndex, text: str, expected: set[str]) -> None:
    assert await find(catalogue, text) == expected


async def test_overlong_text_is_refused(catalogue: SearchIndex) -> None:
    with pytest.raises(InvalidArgument) as error:
        await catalogue.search_models(ModelQuery(browsing_level=PG, text="dragon " * 40))
    assert error.value.violations[0].field == "text"

    with pytest.raises(InvalidArgument, match="words"):
        await catalogue.search_models(ModelQuery(browsing_level=PG, text=" ".join(["a"] * 17)))

    with pytest.raises(InvalidArgument):
        await catalogue.search_images(ImageQuery(browsing_level=PG, text="x" * 201))


async def test_a_word_too_long_to_index_matches_nothing_without_failing(catalogue: SearchIndex) -> None:
    assert await find(catalogue, "x" * 60) == set()


@pytest.mark.parametrize("limit", [0, -1, 101, 10**9])
async def test_limit_out_of_range(catalogue: SearchIndex, limit: int) -> None:
    with pytest.raises(InvalidArgument, match="limit"):
        await catalogue.search_models(ModelQuery(browsing_level=PG, limit=limit))
    with pytest.raises(InvalidArgument, match="limit"):
        await catalogue.search_images(ImageQuery(browsing_level=PG, limit=limit))


@pytest.mark.parametrize("level", [0, 64, -1, 1 << 40])
async def test_browsing_level_out_of_range(catalogue: SearchIndex, level: int) -> None:
    with pytest.raises(InvalidArgument, match="browsing_level"):
        await catalogue.search_models(ModelQuery(browsing_level=level))


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage",
        "m1.",
        "m1.!!!!",
        "m1.bm90IGpzb24",  # "not json"
        "m1.WzEsMiwzXQ",  # [1,2,3]
        "m1.WyJhIiwiYiIsImMiLDAsMF0",  # ["a","b","c",0,0]: position not a number
        "i1.WyJhIiwxLCJjIiwwLDBd",  # an image cursor for a model query
        "m2.WyJhIiwxLCJjIiwwLDBd",  # unknown format version
        "m1." + "A" * 2000,
    ],
)
async def test_invalid_cursors(catalogue: SearchIndex, cursor: str) -> None:
    query = ModelQuery(browsing_level=PG, cursor=cursor)
    if cursor == "":  # an empty cursor is no cursor: the first page
        assert (await catalogue.search_models(query)).hits
        return
    with pytest.raises(InvalidArgument, match="cursor"):
        await catalogue.search_models(query)


async def test_a_cursor_only_works_with_its_own_query(catalogue: SearchIndex) -> None:
    query = ModelQuery(browsing_level=PG, sort=ModelSort.MOST_DOWNLOADED, limit=2)
    cursor = (await catalogue.search_models(query)).next_cursor
    assert cursor is not None

    for other in (
        replace(query, text="dragon"),
        replace(query, sort=ModelSort.NEWEST),
        replace(query, browsing_level=PG | 2),
        replace(query, filters=ModelFilters(types=("LORA",))),
    ):
        with pytest.raises(InvalidArgument, match="another query") as error:
            await catalogue.search_models(replace(other, cursor=cursor))
        assert error.value.reason == "CURSOR_QUERY_MISMATCH"

    image_cursor = (await catalogue.search_images(ImageQuery(browsing_level=PG, limit=1))).next_cursor
    assert image_cursor is not None
    with pytest.raises(InvalidArgument, match="cursor"):
        await catalogue.search_models(replace(query, cursor=image_cursor))


@pytest.mark.parametrize(
    "filters",
    [
        ModelFilters(hashes=("not-hex!",)),
        ModelFilters(hashes=("ABC",)),
        ModelFilters(tags=("",)),
        ModelFilters(types=tuple(f"t{i}" for i in range(51))),
        ModelFilters(base_models=("x" * 201,)),
    ],
)
async def test_bad_filters(catalogue: SearchIndex, filters: ModelFilters) -> None:
    with pytest.raises(InvalidArgument, match="filters"):
        await catalogue.search_models(ModelQuery(browsing_level=PG, filters=filters))


async def test_relevance_needs_text(catalogue: SearchIndex) -> None:
    for text in ("", "!!!"):
        with pytest.raises(InvalidArgument, match="Relevance"):
            await catalogue.search_models(ModelQuery(browsing_level=PG, text=text, sort=ModelSort.RELEVANCE))


async def test_every_problem_is_reported_at_once(catalogue: SearchIndex) -> None:
    with pytest.raises(InvalidArgument) as error:
        await catalogue.search_models(ModelQuery(browsing_level=0, limit=0, text="x" * 300))

    assert {v.field for v in error.value.violations} == {"browsing_level", "limit", "text"}


async def test_bad_input_changes_nothing(catalogue: SearchIndex) -> None:
    before = await catalogue.count_models()
    with pytest.raises(InvalidArgument):
        await catalogue.search_models(ModelQuery(browsing_level=PG, cursor="garbage"))
    assert await catalogue.count_models() == before


@pytest.mark.parametrize("position", [1e300, -5, 2**70, 0.5, -1e300])
@pytest.mark.parametrize("sort", [ModelSort.MOST_DOWNLOADED, ModelSort.RELEVANCE])
async def test_an_edited_cursor_only_moves_the_page(catalogue: SearchIndex, position: float, sort: ModelSort) -> None:
    query = ModelQuery(browsing_level=PG, text="filler" if sort is ModelSort.RELEVANCE else "", sort=sort, limit=2)
    token = cursors.encode("m", cursors.Cursor(cursors.model_fingerprint(query), position, "m2", True, 3))

    page = await catalogue.search_models(replace(query, cursor=token))

    assert len(page.hits) <= 2
