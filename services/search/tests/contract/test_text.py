"""Full text: where words are looked up, typo tolerance at its boundaries, ranking of exact over fuzzy matches."""

from __future__ import annotations

import pytest

from modelhub.search.domain.ports import SearchIndex
from modelhub.search.domain.queries import ImageQuery, ModelQuery, ModelSort

from .factories import image, image_ids, load, model, model_ids

PG = 1


async def relevance(index: SearchIndex, text: str, limit: int = 20) -> list[str]:
    page = await index.search_models(ModelQuery(browsing_level=PG, text=text, sort=ModelSort.RELEVANCE, limit=limit))
    return model_ids(page)


async def matches(index: SearchIndex, text: str) -> set[str]:
    return set(await relevance(index, text, limit=100))


async def test_a_word_is_found_in_every_text_field(index: SearchIndex) -> None:
    await load(
        index,
        [
            model("name", "Dragon Rider"),
            model("description", "Other", description="paints a dragon at dawn"),
            model("tag", "Other", tags=("dragon",)),
            model("trigger", "Other", trained_words=("dragon",)),
            model("creator", "Other", creator_username="Dragon"),
            model("none", "Unrelated"),
        ],
    )

    assert await matches(index, "dragon") == {"name", "description", "tag", "trigger", "creator"}


async def test_name_ranks_above_trigger_words_tags_creator_and_description(index: SearchIndex) -> None:
    await load(
        index,
        [
            model("description", "Other", description="dragon"),
            model("creator", "Other", creator_username="dragon"),
            model("tag", "Other", tags=("dragon",)),
            model("trigger", "Other", trained_words=("dragon",)),
            model("name", "Dragon"),
        ],
    )

    assert await relevance(index, "dragon") == ["name", "trigger", "tag", "creator", "description"]


async def test_exact_beats_prefix_beats_fuzzy(index: SearchIndex) -> None:
    await load(index, [model("typo", "Cartoom"), model("prefix", "Cartoons"), model("exact", "Cartoon")])

    assert await relevance(index, "cartoon") == ["exact", "prefix", "typo"]


@pytest.mark.parametrize(
    ("indexed", "typed", "found"),
    [
        # Below 3 characters: exact only.
        ("xy", "xy", True),
        ("xy", "xz", False),
        # 3 to 5 characters: one edit.
        ("cat", "cot", True),
        ("cat", "cxx", False),
        ("anime", "anxme", True),
        ("anime", "naime", True),  # a transposition is one edit
        ("anime", "axxme", False),
        # From 6 characters: two edits.
        ("dragon", "drxgxn", True),
        ("dragon", "dxxgxn", False),
    ],
)
async def test_typo_tolerance_grows_with_word_length(index: SearchIndex, indexed: str, typed: str, found: bool) -> None:
    await load(index, [model("m", indexed, creator_username="someone")])

    assert await matches(index, typed) == ({"m"} if found else set())


async def test_every_word_must_match(index: SearchIndex) -> None:
    await load(index, [model("both", "Anime Dragon"), model("anime", "Anime Girl"), model("dragon", "Dragon")])

    assert await matches(index, "anime dragon") == {"both"}
    assert await matches(index, "dragon anime") == {"both"}


async def test_the_last_word_completes_as_a_prefix(index: SearchIndex) -> None:
    await load(index, [model("m", "Photorealistic Portrait"), model("other", "Anime")])

    assert await matches(index, "photoreal") == {"m"}
    assert await matches(index, "portrait photo") == {"m"}


async def test_case_and_diacritics_do_not_matter(index: SearchIndex) -> None:
    await load(index, [model("m", "Café Crème")])

    assert await matches(index, "cafe creme") == {"m"}
    assert await matches(index, "CAFÉ") == {"m"}


async def test_a_hash_typed_as_text_finds_its_model(index: SearchIndex) -> None:
    sha256 = "7F3A" * 16
    auto_v3_short = "5E6F7A8B9C0D"  # A1111's form of an AutoV3 ("Lora hashes"); the mapping indexes it
    await load(index, [model("m", "Some Model", hashes=(sha256, "0A1B2C3D4E", auto_v3_short)), model("other", "Other")])

    assert await matches(index, sha256.lower()) == {"m"}
    assert await matches(index, "0a1b2c3d4e") == {"m"}
    assert await matches(index, "5e6f7a8b9c0d") == {"m"}


async def test_no_words_means_no_text_condition(index: SearchIndex) -> None:
    await load(index, [model("a", "Alpha"), model("b", "Beta")])

    page = await index.search_models(ModelQuery(browsing_level=PG, text="  *** !! "))

    assert set(model_ids(page)) == {"a", "b"}


async def test_image_prompts_are_searched_with_the_same_typo_rule(index: SearchIndex) -> None:
    await load(index, images=[image("castle", prompt="a castle in the clouds"), image("cat", prompt="a cat")])

    async def found(text: str) -> set[str]:
        return set(image_ids(await index.search_images(ImageQuery(browsing_level=PG, text=text))))

    assert await found("castle clouds") == {"castle"}
    assert await found("cstle") == {"castle"}
    assert await found("cat") == {"cat"}
