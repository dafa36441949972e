"""Reviews: one per user per version (the stream id), catalog.ReviewCreated once whatever happens after,
retries and races that make one review, optimistic concurrency on edits, and who may review what."""

from __future__ import annotations

import asyncio

import pytest

from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.bootstrap_community import build_community
from modelhub.catalog.entrypoints.grpc_community import Community
from modelhub.core.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied, StreamVersionConflict

from .community_helpers import CAROL, event_types, model_with
from .model_helpers import ALICE, BOB, MOD


@pytest.fixture
def community(catalog: Catalog) -> Community:
    return build_community(catalog)


async def test_one_review_per_user_per_version_and_review_created_once(catalog: Catalog, community: Community) -> None:
    model_id, version = await model_with(catalog, ALICE, "Reviewed")
    reviews = community.reviews
    review = await reviews.create(BOB, version, True, "great")
    stream = f"review-{version}-{BOB.id}"
    assert await event_types(catalog.engine, stream) == ["catalog.ReviewCreated", "catalog.ReviewWritten"]
    assert (review.model_id, review.recommended, review.text, review.author_name) == (model_id, True, "great", "Bob")

    # A retry with the same content (the answer was lost) is the same review; other content is refused.
    assert (await reviews.create(BOB, version, True, "great")).review_id == review.review_id
    with pytest.raises(AlreadyExists) as exists:
        await reviews.create(BOB, version, False, "changed my mind")
    assert exists.value.metadata["review_id"] == review.review_id

    edited = await reviews.update(BOB, review.review_id, review.version, False, None)
    assert (edited.recommended, edited.text) == (False, "great")
    with pytest.raises(StreamVersionConflict):  # the version read before the edit is stale now
        await reviews.update(BOB, review.review_id, review.version, True, "again")

    deleted = await reviews.delete(BOB, review.review_id, None)
    assert deleted.status == "Deleted"
    assert (await reviews.delete(BOB, review.review_id, None)).version == deleted.version  # a retry: no change
    with pytest.raises(FailedPrecondition):
        await reviews.update(BOB, review.review_id, deleted.version, True, None)
    assert await reviews.list_reviews(None, version_id=version, after=None, limit=10) == []

    # Written again after deletion: the same review, not a new one (the ledger rewards ReviewCreated once).
    again = await reviews.create(BOB, version, True, "fine after all")
    assert (again.review_id, again.status) == (review.review_id, "Active")
    assert (await event_types(catalog.engine, stream)).count("catalog.ReviewCreated") == 1
    assert [r.review_id for r in await reviews.list_reviews(None, model_id=model_id, after=None, limit=10)] == [
        review.review_id
    ]


async def test_concurrent_creates_by_one_user_make_one_review(catalog: Catalog, community: Community) -> None:
    _, version = await model_with(catalog, ALICE, "Popular")

    results = await asyncio.gather(*(community.reviews.create(BOB, version, True, "same") for _ in range(6)))

    assert len({r.review_id for r in results}) == 1
    assert await event_types(catalog.engine, event_type="catalog.ReviewCreated") == ["catalog.ReviewCreated"]


async def test_who_may_review_and_edit(catalog: Catalog, community: Community) -> None:
    _, version = await model_with(catalog, ALICE, "Mine")
    _, draft = await model_with(catalog, ALICE, "Draft", publish=False)
    reviews = community.reviews

    with pytest.raises(PermissionDenied) as own:
        await reviews.create(ALICE, version, True, "I love my model")
    assert own.value.reason == "OWN_MODEL"
    with pytest.raises(NotFound):  # a draft is hidden from others, as if it did not exist
        await reviews.create(BOB, draft, True, "")

    review = await reviews.create(BOB, version, True, "ok")
    with pytest.raises(PermissionDenied):
        await reviews.update(CAROL, review.review_id, review.version, False, None)
    with pytest.raises(PermissionDenied):
        await reviews.delete(CAROL, review.review_id, None)
    moderated = await reviews.update(MOD, review.review_id, review.version, None, "[removed by a moderator]")
    assert (moderated.text, moderated.author_name) == ("[removed by a moderator]", "Bob")
    assert (await reviews.delete(MOD, review.review_id, moderated.version)).status == "Deleted"
    # A deleted review is visible to its author and moderators only.
    with pytest.raises(NotFound):
        await reviews.get(CAROL, review.review_id)
    assert (await reviews.get(BOB, review.review_id)).status == "Deleted"
