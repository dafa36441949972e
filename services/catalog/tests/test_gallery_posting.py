"""Posting images: metadata read from A1111 and ComfyUI PNGs (made here), resources linked to catalog versions
by hash (or by an unambiguous name), metadata merged with what the poster states, the image's versions and
each version's images, idempotent posting, and refusals that change nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.bootstrap_community import build_gallery
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.domain.gallery import MAX_IMAGE_BYTES
from modelhub.catalog.handlers.gallery import Gallery
from modelhub.catalog.images import GenerationMetadata, Resource, ResourceKind
from modelhub.core.errors import AlreadyExists, InvalidArgument, NotFound

from .community_helpers import count_events, event_types, model_file, model_with, post
from .image_samples import A1111_PARAMETERS, comfyui_graph, comfyui_workflow, picture, png
from .model_helpers import ALICE, BOB

# The hashes A1111_PARAMETERS names: the checkpoint's AutoV2, and the add_detail LoRA's 12-digit "AutoV3",
# which for a non-safetensors file is the start of its SHA256.
DREAMSHAPER_AUTOV2 = "6CE0161689"
ADD_DETAIL_SHA256 = "7C6BAD76EB54" + "0" * 52


@pytest.fixture
def gallery(settings: CatalogSettings, catalog: Catalog) -> Gallery:
    return build_gallery(settings, catalog)


async def test_an_a1111_png_is_read_and_its_hashes_link_the_versions_that_made_it(
    catalog: Catalog, gallery: Gallery
) -> None:
    dreamshaper, checkpoint = await model_with(
        catalog, ALICE, "DreamShaper", [model_file("dreamshaper_8.safetensors", autov2=DREAMSHAPER_AUTOV2)]
    )
    add_detail, lora = await model_with(
        catalog, BOB, "Add Detail", [model_file("add_detail.pt", sha256=ADD_DETAIL_SHA256)], model_type="LORA"
    )
    # A file named like the FlatStyle LoRA exists, but the image names it by a hash no file has: not linked.
    await model_with(catalog, BOB, "FlatStyle", [model_file("FlatStyle.safetensors")])

    view = await post(gallery, BOB, png({"parameters": A1111_PARAMETERS}), version_id=lora, tags=["Knight"])

    g = view.row.generation
    assert g.source == "a1111"
    assert g.prompt is not None and g.prompt.startswith("masterpiece, best quality, portrait of a knight")
    assert g.negative_prompt == "(worst quality:1.4), lowres,\nbad hands, easynegative"
    assert (g.steps, g.sampler, g.scheduler, g.cfg_scale, g.seed) == (28, "DPM++ 2M", "Karras", 6.5, 3861521436)
    assert (g.width, g.height, g.clip_skip, g.denoising_strength) == (512, 768, 2, 0.45)
    links = {r.name: (r.hash_kind, r.model_version_id) for r in view.row.resources}
    assert links["dreamshaper_8"] == ("AutoV2", checkpoint)
    assert links["add_detail"] == ("AutoV3", lora)
    assert links["FlatStyle"] == ("AutoV3", "")
    assert links["GlowingEyes"][1] == ""
    assert view.row.tags == ("knight",)
    assert (view.row.width, view.row.height, view.row.nsfw_level) == (64, 48, 0)
    assert len(view.row.phash) == 16 and view.row.blurhash and view.row.mime_type == "image/png"

    # Every version lists the images made with it, and every model too.
    for by, key in (("version", checkpoint), ("version", lora), ("model", dreamshaper), ("model", add_detail)):
        listed = await gallery.list_images(None, by, key, after=None, limit=10)
        assert [v.row.image_id for v in listed] == [view.row.image_id], (by, key)
    # The snapshot for search names both versions and their models, in the same order.
    snapshot_types = await event_types(catalog.engine, f"image-{view.row.image_id}")
    assert snapshot_types == ["catalog.ImagePosted", "catalog.ImageSnapshot"]


async def test_a_comfyui_png_is_read_names_link_only_when_unambiguous_and_the_workflow_is_kept(
    catalog: Catalog, gallery: Gallery
) -> None:
    _, juggernaut = await model_with(catalog, ALICE, "Juggernaut", [model_file("juggernautXL_v9.safetensors")])
    # Two versions have a file named like the first LoRA: ambiguous, so it stays unlinked.
    await model_with(catalog, ALICE, "Detail A", [model_file("add-detail-xl.safetensors")])
    await model_with(catalog, BOB, "Detail B", [model_file("add-detail-xl.safetensors")])
    prompt, workflow = json.dumps(comfyui_graph()), json.dumps(comfyui_workflow())

    view = await post(gallery, BOB, png({"prompt": prompt, "workflow": workflow}))

    g = view.row.generation
    assert g.source == "comfyui"
    assert (g.steps, g.cfg_scale, g.seed, g.sampler, g.width, g.height) == (
        30,
        5.5,
        156680208700286,
        "dpmpp_2m_sde",
        1024,
        768,
    )
    assert g.prompt == "pixel art, a lighthouse at dusk, embedding:goodPixels"
    links = {r.name: r.model_version_id for r in view.row.resources}
    assert links["SDXL/juggernautXL_v9.safetensors"] == juggernaut
    assert links["add-detail-xl.safetensors"] == ""
    assert links["styles/pixel-art-xl.safetensors"] == ""
    assert [v.row.image_id for v in await gallery.list_images(None, "version", juggernaut, after=None, limit=5)] == [
        view.row.image_id
    ]
    # The JSON is kept byte for byte (as a blob: it may be far larger than an event should be).
    mime, size, handle = await gallery.open_part(None, view.row.image_id, "comfyui_workflow")
    with handle:
        assert (mime, handle.read().decode()) == ("application/json", workflow)
    assert size == len(workflow.encode())


async def test_the_file_wins_and_the_poster_fills_what_it_lacks(catalog: Catalog, gallery: Gallery) -> None:
    _, version = await model_with(catalog, ALICE, "Style", [model_file("my_style.safetensors")])
    stated = GenerationMetadata(
        prompt="a dog",
        cfg_scale=7.0,
        extra={"Note": "stated"},
        resources=(Resource(ResourceKind.LORA, "my_style", weight=0.7),),
    )
    data = png({"parameters": "a cat\nSteps: 20, Sampler: Euler, Seed: 1"})

    view = await post(gallery, ALICE, data, stated=stated)

    g = view.row.generation
    assert (g.prompt, g.steps, g.sampler, g.seed) == ("a cat", 20, "Euler", 1)  # from the file
    assert (g.cfg_scale, g.extra["Note"], g.source) == (7.0, "stated", "a1111")  # filled in by the poster
    assert [(r.name, r.weight, r.model_version_id) for r in view.row.resources] == [("my_style", 0.7, version)]

    # Without metadata in the file, the poster's is all there is.
    plain = await post(gallery, ALICE, png(image=picture("room", (40, 30))), stated=GenerationMetadata(steps=9))
    assert (plain.row.generation.steps, plain.row.generation.source) == (9, "user")


async def test_only_versions_the_poster_may_see_are_linked(catalog: Catalog, gallery: Gallery) -> None:
    _, draft = await model_with(
        catalog, ALICE, "Secret", [model_file("dreamshaper_8.safetensors", autov2=DREAMSHAPER_AUTOV2)], publish=False
    )
    data = png({"parameters": A1111_PARAMETERS})

    bobs = await post(gallery, BOB, data)
    alices = await post(gallery, ALICE, data)

    assert all(r.model_version_id == "" for r in bobs.row.resources)
    assert draft in {r.model_version_id for r in alices.row.resources}
    # Others do not see an image in a draft's gallery, nor a link to the draft.
    in_gallery = await post(gallery, ALICE, data, version_id=draft)
    with pytest.raises(NotFound):
        await gallery.get_image(BOB, in_gallery.row.image_id)
    with pytest.raises(NotFound):
        await post(gallery, BOB, data, version_id=draft)
    assert await gallery.visible_version_ids(BOB, [draft]) == set()
    # Nor the images made with it: listing them reveals nothing about the draft.
    with pytest.raises(NotFound):
        await gallery.list_images(BOB, "version", draft, after=None, limit=10)
    assert len(await gallery.list_images(ALICE, "version", draft, after=None, limit=10)) == 2


async def test_a_retried_post_is_one_image(catalog: Catalog, gallery: Gallery) -> None:
    data = png(image=picture("night", (48, 32)))
    first = await post(gallery, ALICE, data, tags=["a"], request_id="post-1")
    events = await count_events(catalog.engine)

    again = await post(gallery, ALICE, data, tags=["a"], request_id="post-1")

    assert again.row.image_id == first.row.image_id
    assert await count_events(catalog.engine) == events
    with pytest.raises(AlreadyExists) as reused:
        await post(gallery, ALICE, data, tags=["b"], request_id="post-1")
    assert reused.value.reason == "REQUEST_ID_REUSED"
    # Another user's request ids are their own.
    assert (await post(gallery, BOB, data, tags=["a"], request_id="post-1")).row.image_id != first.row.image_id


async def test_bad_images_are_refused_and_change_nothing(
    catalog: Catalog, gallery: Gallery, engine: AsyncEngine
) -> None:
    before = await count_events(engine)
    cases = {
        b"this is not an image": "IMAGE_FORMAT_UNSUPPORTED",
        png()[:60]: "IMAGE_CORRUPT",
        b"\0" * (MAX_IMAGE_BYTES + 1): "IMAGE_FILE_TOO_LARGE",
    }
    for data, reason in cases.items():
        with pytest.raises(InvalidArgument) as refused:
            await post(gallery, ALICE, data)
        assert refused.value.reason == reason
    with pytest.raises(NotFound):
        await post(gallery, ALICE, version_id="no-such-version")
    assert await count_events(engine) == before
