"""Filters (AND across fields, OR within one) and facet counts over the whole result set."""

from __future__ import annotations

from dataclasses import replace

import pytest

from modelhub.search.domain.ports import SearchIndex
from modelhub.search.domain.queries import FacetValue, ModelFacet, ModelFilters, ModelQuery, ModelSort

from .factories import load, model, model_ids

PG = 1
SHA = "AB" * 32


@pytest.fixture
async def catalogue(index: SearchIndex) -> SearchIndex:
    await load(
        index,
        [
            model(
                "lora-anime",
                type="LORA",
                tags=("Anime", "style"),
                base_models=("SDXL 1.0",),
                file_formats=("SafeTensor",),
                creator_user_id="u-ann",
                hashes=(SHA, "0A1B2C3D"),
                allow_no_credit=True,
                allow_derivatives=True,
                allow_different_license=False,
                allow_commercial_use=("Image", "Rent"),
                nsfw_level=1,
            ),
            model(
                "ckpt-photo",
                type="Checkpoint",
                tags=("photo",),
                base_models=("SD 1.5", "SDXL 1.0"),
                file_formats=("SafeTensor", "PickleTensor"),
                creator_user_id="u-bob",
                hashes=("11223344",),
                allow_no_credit=False,
                allow_derivatives=False,
                allow_different_license=True,
                allow_commercial_use=("Image",),
                nsfw_level=1 | 2,
            ),
            model(
                "vae-gguf",
                type="VAE",
                tags=("anime",),
                base_models=("Flux.1 D",),
                file_formats=("GGUF",),
                creator_user_id="u-ann",
                allow_no_credit=True,
                allow_derivatives=False,
                allow_different_license=False,
                allow_commercial_use=(),
                nsfw_level=1,
            ),
        ],
    )
    return index


async def found(index: SearchIndex, **filters: object) -> set[str]:
    page = await index.search_models(ModelQuery(browsing_level=PG, filters=ModelFilters(**filters), limit=100))  # type: ignore[arg-type]
    return set(model_ids(page))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"types": ("LORA",)}, {"lora-anime"}),
        ({"types": ("LORA", "VAE")}, {"lora-anime", "vae-gguf"}),
        ({"base_models": ("SDXL 1.0",)}, {"lora-anime", "ckpt-photo"}),
        ({"base_models": ("SD 1.5",)}, {"ckpt-photo"}),
        ({"tags": ("anime",)}, {"lora-anime", "vae-gguf"}),
        ({"tags": ("ANIME",)}, {"lora-anime", "vae-gguf"}),  # tags are case-insensitive
        ({"creator_user_ids": ("u-ann",)}, {"lora-anime", "vae-gguf"}),
        ({"file_formats": ("PickleTensor",)}, {"ckpt-photo"}),
        ({"file_formats": ("GGUF", "PickleTensor")}, {"ckpt-photo", "vae-gguf"}),
        ({"hashes": (SHA.lower(),)}, {"lora-anime"}),  # any kind, case-insensitive
        ({"hashes": ("0a1b2c3d", "11223344")}, {"lora-anime", "ckpt-photo"}),
        ({"hashes": ("0A1B2C3E",)}, set()),  # exact only, no typo tolerance
        ({"allow_no_credit": True}, {"lora-anime", "vae-gguf"}),
        ({"allow_no_credit": False}, {"ckpt-photo"}),
        ({"allow_derivatives": True}, {"lora-anime"}),
        ({"allow_different_license": True}, {"ckpt-photo"}),
        ({"allow_commercial_use": ("Image",)}, {"lora-anime", "ckpt-photo"}),
        ({"allow_commercial_use": ("Image", "Rent")}, {"lora-anime"}),  # every one of them
        ({"types": ("LORA",), "tags": ("photo",)}, set()),  # fields are ANDed
        ({"tags": ("anime",), "base_models": ("Flux.1 D",)}, {"vae-gguf"}),
    ],
)
async def test_filters(catalogue: SearchIndex, filters: dict[str, object], expected: set[str]) -> None:
    assert await found(catalogue, **filters) == expected


async def test_facets_count_the_whole_result_set(catalogue: SearchIndex) -> None:
    page = await catalogue.search_models(ModelQuery(browsing_level=PG | 2, limit=1, facets=tuple(ModelFacet)))

    assert len(page.hits) == 1
    assert page.facets == {
        ModelFacet.TYPE: (FacetValue("Checkpoint", 1), FacetValue("LORA", 1), FacetValue("VAE", 1)),
        ModelFacet.BASE_MODEL: (FacetValue("SDXL 1.0", 2), FacetValue("Flux.1 D", 1), FacetValue("SD 1.5", 1)),
        ModelFacet.TAG: (FacetValue("anime", 2), FacetValue("photo", 1), FacetValue("style", 1)),
        ModelFacet.NSFW_LEVEL: (FacetValue("1", 3), FacetValue("2", 1)),
        ModelFacet.FILE_FORMAT: (FacetValue("SafeTensor", 2), FacetValue("GGUF", 1), FacetValue("PickleTensor", 1)),
        ModelFacet.COMMERCIAL_USE: (FacetValue("Image", 2), FacetValue("Rent", 1)),
    }


async def test_facets_follow_filters_text_and_browsing_level(catalogue: SearchIndex) -> None:
    filtered = await catalogue.search_models(
        ModelQuery(browsing_level=PG, filters=ModelFilters(tags=("anime",)), facets=(ModelFacet.TYPE,))
    )
    assert filtered.facets == {ModelFacet.TYPE: (FacetValue("LORA", 1), FacetValue("VAE", 1))}

    # ckpt-photo is PG|PG13: visible at PG too (it shares the PG bit), so a PG13-only level sees it alone.
    pg13 = await catalogue.search_models(ModelQuery(browsing_level=2, facets=(ModelFacet.TYPE,)))
    assert pg13.facets == {ModelFacet.TYPE: (FacetValue("Checkpoint", 1),)}


async def test_no_facets_asked_none_returned(catalogue: SearchIndex) -> None:
    page = await catalogue.search_models(ModelQuery(browsing_level=PG))

    assert page.facets == {}


async def test_facets_are_current_after_every_refresh(catalogue: SearchIndex) -> None:
    query = ModelQuery(browsing_level=PG, facets=(ModelFacet.TYPE,))
    assert (await catalogue.search_models(query)).facets[ModelFacet.TYPE] == (
        FacetValue("Checkpoint", 1),
        FacetValue("LORA", 1),
        FacetValue("VAE", 1),
    )

    await load(catalogue, [model("another-vae", type="VAE")])
    await catalogue.delete_models(["lora-anime"])
    await catalogue.refresh()

    after = (FacetValue("VAE", 2), FacetValue("Checkpoint", 1))
    assert (await catalogue.search_models(query)).facets[ModelFacet.TYPE] == after
    other_sort = await catalogue.search_models(replace(query, sort=ModelSort.NEWEST, limit=1))
    assert other_sort.facets[ModelFacet.TYPE] == after


async def test_facets_of_a_text_query(catalogue: SearchIndex) -> None:
    # "lora" matches one model by its name (its id is in its default name): every facet counts that one only.
    page = await catalogue.search_models(ModelQuery(browsing_level=PG, text="lora", facets=tuple(ModelFacet)))

    assert model_ids(page) == ["lora-anime"]
    assert page.facets[ModelFacet.TYPE] == (FacetValue("LORA", 1),)
    assert page.facets[ModelFacet.TAG] == (FacetValue("anime", 1), FacetValue("style", 1))
    assert page.facets[ModelFacet.COMMERCIAL_USE] == (FacetValue("Image", 1), FacetValue("Rent", 1))
    assert list(page.facets) == list(ModelFacet)
