"""Gallery image queries: by model version, model, creator, tags, NSFW level and prompt text."""

from __future__ import annotations

import pytest

from modelhub.search.domain.ports import SearchIndex
from modelhub.search.domain.queries import ImageQuery

from .factories import image, image_ids, load

PG = 1


@pytest.fixture
async def gallery(index: SearchIndex) -> SearchIndex:
    await load(
        index,
        images=[
            image(
                "a",
                model_version_ids=("v1",),
                model_ids=("m1",),
                creator_user_id="u-ann",
                tags=("Portrait",),
                prompt="portrait of a knight, oil painting",
            ),
            image(
                "b",
                model_version_ids=("v2", "v9"),
                model_ids=("m1", "m9"),
                creator_user_id="u-bob",
                tags=("landscape",),
                prompt="misty mountains at dawn",
            ),
            image(
                "c",
                model_version_ids=("v3",),
                model_ids=("m3",),
                creator_user_id="u-ann",
                tags=("portrait",),
                prompt="portrait of a cat",
                nsfw_level=4,
            ),
        ],
    )
    return index


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"model_version_ids": ("v1",)}, {"a"}),
        ({"model_version_ids": ("v9", "v3")}, {"b"}),  # c is R: not shown at PG
        ({"model_ids": ("m1",)}, {"a", "b"}),
        ({"creator_user_ids": ("u-ann",)}, {"a"}),
        ({"tags": ("portrait",)}, {"a"}),
        ({"tags": ("portrait",), "browsing_level": PG | 4}, {"a", "c"}),
        ({"text": "portrait"}, {"a"}),
        ({"text": "portrait", "browsing_level": 4}, {"c"}),
        ({"text": "mountins dawn"}, {"b"}),  # typo tolerant, every word
        ({"text": "knight", "model_ids": ("m9",)}, set()),
        ({}, {"a", "b"}),
    ],
)
async def test_image_queries(gallery: SearchIndex, query: dict[str, object], expected: set[str]) -> None:
    params: dict[str, object] = {"browsing_level": PG} | query
    page = await gallery.search_images(ImageQuery(**params))  # type: ignore[arg-type]

    assert set(image_ids(page)) == expected


async def test_image_hits_carry_what_a_gallery_shows(gallery: SearchIndex) -> None:
    page = await gallery.search_images(ImageQuery(browsing_level=PG, model_version_ids=("v1",)))

    (hit,) = page.hits
    assert (hit.image_id, hit.creator_username, hit.nsfw_level, hit.width, hit.height) == ("a", "creator", 1, 512, 768)
    assert hit.blurhash == "LEHV6nWB2yk8pyo0adR*.7kCMdnj"
