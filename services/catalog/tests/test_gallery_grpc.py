"""GalleryService and CommunityService through the real server: the PostImage stream (header, then chunks),
downloads, paging, what others see, and bad requests answered INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

import grpc
import grpc.aio
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.v1 import community_pb2 as cpb
from modelhub.catalog.v1 import community_pb2_grpc, gallery_pb2_grpc
from modelhub.catalog.v1 import gallery_pb2 as gpb

from .community_helpers import count_events, model_file, model_with
from .conftest import auth
from .file_helpers import failure
from .image_samples import A1111_PARAMETERS, comfyui_workflow, picture, png
from .model_helpers import ALICE

ALICE_MD = auth("alice", name="Alice")
BOB_MD = auth("bob")


@pytest.fixture
def gallery(channel: grpc.aio.Channel) -> gallery_pb2_grpc.GalleryServiceStub:
    return gallery_pb2_grpc.GalleryServiceStub(channel)


@pytest.fixture
def community(channel: grpc.aio.Channel) -> community_pb2_grpc.CommunityServiceStub:
    return community_pb2_grpc.CommunityServiceStub(channel)


async def stream(
    header: gpb.PostImageHeader | None, data: bytes, chunk: int = 1000
) -> AsyncIterator[gpb.PostImageRequest]:
    if header is not None:
        yield gpb.PostImageRequest(header=header)
    for start in range(0, len(data), chunk):
        yield gpb.PostImageRequest(chunk=data[start : start + chunk])


async def download(
    stub: gallery_pb2_grpc.GalleryServiceStub, image_id: str, part: int, md: Sequence[tuple[str, str]] = ()
) -> tuple[str, bytes]:
    chunks = [c async for c in stub.DownloadImage(gpb.DownloadImageRequest(image_id=image_id, part=part), metadata=md)]
    return chunks[0].mime_type, b"".join(c.chunk for c in chunks)


async def test_post_an_image_in_chunks_and_download_it(
    catalog: Catalog, gallery: gallery_pb2_grpc.GalleryServiceStub
) -> None:
    _, version = await model_with(
        catalog, ALICE, "DreamShaper", [model_file("dreamshaper_8.safetensors", autov2="6CE0161689")]
    )
    data = png(
        {"parameters": A1111_PARAMETERS, "workflow": json.dumps(comfyui_workflow())}, image=picture(size=(300, 200))
    )
    header = gpb.PostImageHeader(
        request_id="r-1",
        tags=["Knight", "knight", "Night"],
        generation=gpb.GenerationSettings(prompt="ignored: the file's prompt wins", scheduler="stated"),
        resources=[gpb.ImageResource(kind="lora", name="extra", weight=0.5)],
    )

    image = (await gallery.PostImage(stream(header, data), metadata=ALICE_MD)).image

    assert (image.creator_username, image.status, image.width, image.height) == ("Alice", "Published", 300, 200)
    assert list(image.tags) == ["knight", "night"]
    assert image.generation.prompt.startswith("masterpiece") and image.generation.scheduler == "Karras"
    assert image.generation.has_comfyui_workflow and not image.generation.has_comfyui_prompt
    assert list(image.model_version_ids) == [version]
    assert [r.name for r in image.resources if r.model_version_id == version] == ["dreamshaper_8"]
    assert ("extra", 0.5) in [(r.name, r.weight) for r in image.resources]
    assert await download(gallery, image.image_id, gpb.IMAGE_PART_UNSPECIFIED) == ("image/png", data)
    assert (await download(gallery, image.image_id, gpb.IMAGE_PART_COMFYUI_WORKFLOW))[1] == json.dumps(
        comfyui_workflow()
    ).encode()
    assert (await failure(download(gallery, image.image_id, gpb.IMAGE_PART_COMFYUI_PROMPT))).code == (
        grpc.StatusCode.NOT_FOUND
    )
    # The retry of a post whose answer was lost is the same image.
    again = (await gallery.PostImage(stream(header, data), metadata=ALICE_MD)).image
    assert again.image_id == image.image_id


async def test_hidden_images_are_not_found_by_others_and_lists_page_without_gaps(
    gallery: gallery_pb2_grpc.GalleryServiceStub,
) -> None:
    posted = []
    for n in range(5):
        header = gpb.PostImageHeader(tags=[f"n{n}"])
        posted.append(
            (await gallery.PostImage(stream(header, png(image=picture(size=(20 + n, 20)))), metadata=ALICE_MD)).image
        )
    hidden = posted[2]
    update = gpb.UpdateImageRequest(
        image_id=hidden.image_id, expected_version=hidden.version, update_mask=FieldMask(paths=["hidden"]), hidden=True
    )
    assert (await gallery.UpdateImage(update, metadata=ALICE_MD)).image.status == "Hidden"

    assert (
        await failure(gallery.GetImage(gpb.GetImageRequest(image_id=hidden.image_id)))
    ).code == grpc.StatusCode.NOT_FOUND
    assert (
        await gallery.GetImage(gpb.GetImageRequest(image_id=hidden.image_id), metadata=ALICE_MD)
    ).image.status == "Hidden"
    seen, cursor = [], ""
    while True:
        page = await gallery.ListImages(gpb.ListImagesRequest(user_id="alice", page=_page(2, cursor)))
        assert page.images, "a cursor never leads to an empty page"
        seen += [i.image_id for i in page.images]
        cursor = page.page_info.next_cursor
        if not cursor:
            break
    assert seen == [i.image_id for i in reversed(posted) if i.image_id != hidden.image_id]


def _page(size: int, cursor: str = "") -> object:
    from modelhub.common.v1 import pagination_pb2

    return pagination_pb2.PageRequest(page_size=size, cursor=cursor)


async def test_bad_posts_name_the_field_and_change_nothing(
    catalog: Catalog, gallery: gallery_pb2_grpc.GalleryServiceStub
) -> None:
    before = await count_events(catalog.engine)
    data = png()
    cases: list[tuple[AsyncIterator[gpb.PostImageRequest], list[str]]] = [
        (stream(None, data), ["header"]),
        (stream(gpb.PostImageHeader(), b""), ["chunk"]),
        (stream(gpb.PostImageHeader(), b"not an image at all"), ["image"]),
        (stream(gpb.PostImageHeader(tags=["x" * 51]), data), ["header.tags[0]"]),
        (
            stream(gpb.PostImageHeader(generation=gpb.GenerationSettings(steps=0, cfg_scale=-1)), data),
            ["header.generation.cfg_scale", "header.generation.steps"],
        ),
        (
            stream(gpb.PostImageHeader(resources=[gpb.ImageResource(kind="lora", hash="xyz")]), data),
            ["header.resources[0].hash"],
        ),
        (
            stream(gpb.PostImageHeader(resources=[gpb.ImageResource(kind="weird", name="a")]), data),
            ["header.resources[0].resource.kind"],
        ),
    ]
    for messages, fields in cases:
        bad = await failure(gallery.PostImage(messages, metadata=ALICE_MD))
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert sorted(v.field for v in bad.violations) == fields
    assert (await failure(gallery.ListImages(gpb.ListImagesRequest()))).code == grpc.StatusCode.INVALID_ARGUMENT
    bad_cursor = await failure(gallery.ListImages(gpb.ListImagesRequest(user_id="x", page=_page(5, "bogus"))))
    assert [v.field for v in bad_cursor.violations] == ["page.cursor"]
    assert await count_events(catalog.engine) == before


async def test_bad_community_requests_name_the_field(
    catalog: Catalog, community: community_pb2_grpc.CommunityServiceStub
) -> None:
    before = await count_events(catalog.engine)
    model = cpb.Subject(kind=cpb.SUBJECT_KIND_MODEL, id="m")
    cases = [
        (
            community.CreateReview(cpb.CreateReviewRequest(text="x" * 10_001), metadata=BOB_MD),
            ["model_version_id", "text"],
        ),
        (
            community.PostComment(cpb.PostCommentRequest(subject=cpb.Subject(id="m"), body=" "), metadata=BOB_MD),
            ["body", "subject.kind"],
        ),
        (
            community.UpdateComment(cpb.UpdateCommentRequest(comment_id="c", body="b"), metadata=BOB_MD),
            ["expected_version"],
        ),
        (
            community.UpdateReview(cpb.UpdateReviewRequest(review_id="r", expected_version=1), metadata=BOB_MD),
            ["update_mask"],
        ),
        (community.FollowUser(cpb.FollowUserRequest(user_id=""), metadata=BOB_MD), ["user_id"]),
        (community.CreateCollection(cpb.CreateCollectionRequest(name=""), metadata=BOB_MD), ["item_kind", "name"]),
        (community.AddCollectionItem(cpb.AddCollectionItemRequest(item=model), metadata=BOB_MD), ["collection_id"]),
    ]
    for call, fields in cases:
        bad = await failure(call)
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert sorted(v.field for v in bad.violations) == fields
    assert await count_events(catalog.engine) == before


async def test_stats_and_reviews_over_grpc(
    catalog: Catalog, community: community_pb2_grpc.CommunityServiceStub
) -> None:
    model_id, version = await model_with(catalog, ALICE, "Counted")
    review = (
        await community.CreateReview(
            cpb.CreateReviewRequest(model_version_id=version, recommended=True), metadata=BOB_MD
        )
    ).review
    await community.AddFavorite(
        cpb.AddFavoriteRequest(subject=cpb.Subject(kind=cpb.SUBJECT_KIND_MODEL, id=model_id)), metadata=BOB_MD
    )

    stats = await community.GetModelStats(cpb.GetModelStatsRequest(model_id=model_id))

    all_time = {p.period: p for p in stats.periods}["AllTime"]
    assert (all_time.thumbs_up, all_time.favorites, all_time.tipped_amount) == (1, 1, 0)
    assert [(v.model_version_id, v.thumbs_up) for v in stats.versions] == [(version, 1)]
    listed = await community.ListReviews(cpb.ListReviewsRequest(model_version_id=version))
    assert [r.review_id for r in listed.reviews] == [review.review_id]
    conflict = await failure(
        community.UpdateReview(
            cpb.UpdateReviewRequest(
                review_id=review.review_id,
                expected_version=review.version + 1,
                update_mask=FieldMask(paths=["text"]),
                text="x",
            ),
            metadata=BOB_MD,
        )
    )
    assert conflict.code == grpc.StatusCode.ABORTED
