"""Autocomplete: model names, tags and creators starting with what was typed, among visible models."""

from __future__ import annotations

import pytest

from modelhub.core.errors import InvalidArgument
from modelhub.search.domain.documents import Period, PeriodStats
from modelhub.search.domain.ports import SearchIndex
from modelhub.search.domain.queries import SuggestionKind

from .factories import load, model

PG = 1
NAME, TAG, CREATOR = SuggestionKind.MODEL_NAME, SuggestionKind.TAG, SuggestionKind.CREATOR


@pytest.fixture
async def catalogue(index: SearchIndex) -> SearchIndex:
    def downloads(n: int) -> dict[Period, PeriodStats]:
        return {Period.ALL_TIME: PeriodStats(downloads=n)}

    await load(
        index,
        [
            model("a", "Anime Lineart", tags=("anime", "lineart"), creator_username="AnnaArt", stats=downloads(50)),
            model(
                "b", "Anime Screencap", tags=("anime", "screencap"), creator_username="annabel", stats=downloads(900)
            ),
            model("c", "Animal Crossing", tags=("animals",), creator_username="Bob", stats=downloads(10)),
            model("d", "Anime Noir", tags=("anime", "noir"), creator_username="Annex", nsfw_level=8),
            model("e", "Éclair Studio", tags=("Éclair",), creator_username="Émile"),
        ],
    )
    return index


async def suggest(
    index: SearchIndex, prefix: str, *kinds: SuggestionKind, level: int = PG, limit: int = 10
) -> list[tuple[SuggestionKind, str, int]]:
    return [(s.kind, s.text, s.weight) for s in await index.suggest(prefix, list(kinds), level, limit)]


async def test_model_names_complete_the_last_word_most_downloaded_first(catalogue: SearchIndex) -> None:
    assert await suggest(catalogue, "anim", NAME) == [
        (NAME, "Anime Screencap", 1),
        (NAME, "Anime Lineart", 1),
        (NAME, "Animal Crossing", 1),
    ]
    assert await suggest(catalogue, "anime sc", NAME) == [(NAME, "Anime Screencap", 1)]


async def test_tags_complete_with_how_many_visible_models_carry_them(catalogue: SearchIndex) -> None:
    assert await suggest(catalogue, "ani", TAG) == [(TAG, "anime", 2), (TAG, "animals", 1)]
    assert await suggest(catalogue, "ani", TAG, level=PG | 8) == [(TAG, "anime", 3), (TAG, "animals", 1)]


async def test_creators_complete_case_and_accent_insensitively(catalogue: SearchIndex) -> None:
    assert await suggest(catalogue, "ANN", CREATOR) == [(CREATOR, "AnnaArt", 1), (CREATOR, "annabel", 1)]
    assert await suggest(catalogue, "emi", CREATOR) == [(CREATOR, "Émile", 1)]
    assert await suggest(catalogue, "ecl", TAG) == [(TAG, "éclair", 1)]


async def test_kinds_take_turns_within_the_limit(catalogue: SearchIndex) -> None:
    mixed = await suggest(catalogue, "an", limit=4)  # no kinds: every kind, in the order names, tags, creators

    assert mixed == [
        (NAME, "Anime Screencap", 1),
        (TAG, "anime", 2),
        (CREATOR, "AnnaArt", 1),
        (NAME, "Anime Lineart", 1),
    ]


async def test_nothing_matches(catalogue: SearchIndex) -> None:
    assert await suggest(catalogue, "zzz") == []


@pytest.mark.parametrize(("prefix", "limit"), [("", 10), ("  !! ", 10), ("a" * 101, 10), ("an", 0), ("an", 51)])
async def test_bad_requests(catalogue: SearchIndex, prefix: str, limit: int) -> None:
    with pytest.raises(InvalidArgument):
        await catalogue.suggest(prefix, [], PG, limit)
