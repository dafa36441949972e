"""Favourites, follows, comments and collections: sets that a retry or a race cannot double, threads,
idempotent posting, and visibility (private things are NOT_FOUND to others, never PERMISSION_DENIED)."""

from __future__ import annotations

import asyncio

import pytest

from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.bootstrap_community import build_community, build_gallery
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.domain.collections import Visibility
from modelhub.catalog.domain.community_base import SubjectKind
from modelhub.catalog.entrypoints.grpc_community import Community
from modelhub.catalog.handlers.gallery import Gallery
from modelhub.core.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, StreamVersionConflict

from .community_helpers import CAROL, event_types, model_with, post
from .model_helpers import ALICE, BOB, MOD

MODEL, IMAGE = SubjectKind.MODEL, SubjectKind.IMAGE


@pytest.fixture
def community(catalog: Catalog) -> Community:
    return build_community(catalog)


@pytest.fixture
def gallery(settings: CatalogSettings, catalog: Catalog) -> Gallery:
    return build_gallery(settings, catalog)


async def test_a_retried_or_concurrent_favourite_is_one_favourite(catalog: Catalog, community: Community) -> None:
    model_id, _ = await model_with(catalog, ALICE, "Liked")
    favorites = community.favorites

    assert await favorites.add(BOB, MODEL, model_id) is True
    assert await favorites.add(BOB, MODEL, model_id) is False  # the retry changes nothing
    added = await asyncio.gather(*(favorites.add(CAROL, MODEL, model_id) for _ in range(5)))

    assert sorted(added) == [False, False, False, False, True]
    assert await event_types(catalog.engine, event_type="catalog.FavoriteAdded") == ["catalog.FavoriteAdded"] * 2
    listed = await favorites.list_favorites(BOB, None, after=None, limit=10)
    assert [(e.first, e.second) for e in listed] == [("model", model_id)]
    assert await favorites.remove(BOB, MODEL, model_id) is True
    assert await favorites.remove(BOB, MODEL, model_id) is False
    assert await favorites.list_favorites(BOB, None, after=None, limit=10) == []


async def test_favourites_and_comments_need_a_visible_subject(
    catalog: Catalog, community: Community, gallery: Gallery
) -> None:
    draft, _ = await model_with(catalog, ALICE, "Hidden", publish=False)
    image = await post(gallery, ALICE)
    await gallery.update_image(ALICE, image.row.image_id, image.row.version, None, True)  # hidden by its owner

    for kind, subject in ((MODEL, draft), (IMAGE, image.row.image_id)):
        with pytest.raises(NotFound):
            await community.favorites.add(BOB, kind, subject)
        with pytest.raises(NotFound):
            await community.comments.post(BOB, kind, subject, "", "hello", "")
        assert await community.favorites.add(ALICE, kind, subject) is True  # the owner sees it


async def test_follows(catalog: Catalog, community: Community) -> None:
    follows = community.follows
    with pytest.raises(InvalidArgument):
        await follows.follow(BOB, BOB.id)
    assert await follows.follow(BOB, ALICE.id) is True
    assert await follows.follow(BOB, ALICE.id) is False
    assert await follows.follow(CAROL, ALICE.id) is True
    followers = await follows.list_follows(ALICE.id, followers=True, after=None, limit=10)
    assert sorted(e.first for e in followers) == ["bob", "carol"]
    first_page = await follows.list_follows(ALICE.id, followers=True, after=None, limit=1)
    rest = await follows.list_follows(
        ALICE.id, followers=True, after=(first_page[0].created_at, first_page[0].first), limit=5
    )
    assert [e.first for e in first_page + rest] == [e.first for e in followers]
    assert [e.second for e in await follows.list_follows(BOB.id, followers=False, after=None, limit=10)] == ["alice"]
    assert await follows.unfollow(BOB, ALICE.id) is True
    assert await event_types(catalog.engine, f"follow-{BOB.id}-{ALICE.id}") == [
        "catalog.UserFollowed",
        "catalog.UserUnfollowed",
    ]


async def test_comment_threads(catalog: Catalog, community: Community, gallery: Gallery) -> None:
    model_id, _ = await model_with(catalog, ALICE, "Discussed")
    other, _ = await model_with(catalog, ALICE, "Other")
    comments = community.comments
    top = await comments.post(BOB, MODEL, model_id, "", "nice", "c-1")
    reply = await comments.post(CAROL, MODEL, model_id, top.comment_id, "agreed", "")

    assert (await comments.post(BOB, MODEL, model_id, "", "nice", "c-1")).comment_id == top.comment_id
    with pytest.raises(AlreadyExists):
        await comments.post(BOB, MODEL, model_id, "", "something else", "c-1")
    with pytest.raises(InvalidArgument):  # a reply stays in its subject's thread
        await comments.post(CAROL, MODEL, other, top.comment_id, "elsewhere", "")
    with pytest.raises(PermissionDenied):
        await comments.update(CAROL, top.comment_id, top.version, "mine now")
    edited = await comments.update(BOB, top.comment_id, top.version, "very nice")
    with pytest.raises(StreamVersionConflict):
        await comments.update(BOB, top.comment_id, top.version, "stale")
    deleted = await comments.delete(MOD, top.comment_id, edited.version)

    thread = await comments.list_comments(None, MODEL, model_id, after=None, limit=10)
    assert [(c.comment_id, c.parent_comment_id, c.body, c.status) for c in thread] == [
        (top.comment_id, "", "", "Deleted"),  # a placeholder keeps the reply's thread
        (reply.comment_id, top.comment_id, "agreed", "Active"),
    ]
    assert deleted.version == edited.version + 1
    image = await post(gallery, ALICE)
    on_image = await comments.post(BOB, IMAGE, image.row.image_id, "", "pretty", "")
    assert [
        c.comment_id for c in await comments.list_comments(None, IMAGE, image.row.image_id, after=None, limit=5)
    ] == [on_image.comment_id]


async def test_collections_visibility_and_items(catalog: Catalog, community: Community) -> None:
    public_model, _ = await model_with(catalog, BOB, "Public")
    draft_model, _ = await model_with(catalog, BOB, "Draft", publish=False)
    collections = community.collections
    private = await collections.create(ALICE, "Mine", "", Visibility.PRIVATE, MODEL, "k-1")
    unlisted = await collections.create(ALICE, "Shared", "", Visibility.UNLISTED, MODEL, "")
    public = await collections.create(ALICE, "Best", "the best", Visibility.PUBLIC, MODEL, "")

    assert (await collections.create(ALICE, "Mine", "", Visibility.PRIVATE, MODEL, "k-1")).collection_id == (
        private.collection_id
    )
    with pytest.raises(NotFound):
        await collections.get(BOB, private.collection_id)
    with pytest.raises(NotFound):  # private: not even "permission denied"
        await collections.add_item(BOB, private.collection_id, MODEL, public_model)
    with pytest.raises(PermissionDenied):  # visible, but not Bob's
        await collections.add_item(BOB, public.collection_id, MODEL, public_model)
    assert (await collections.get(None, unlisted.collection_id)).name == "Shared"
    assert [c.collection_id for c in await collections.list_collections(None, ALICE.id, after=None, limit=10)] == [
        public.collection_id
    ]
    assert len(await collections.list_collections(ALICE, ALICE.id, after=None, limit=10)) == 3

    row, added = await collections.add_item(ALICE, public.collection_id, MODEL, public_model)
    assert (added, row.item_count) == (True, 1)
    assert (await collections.add_item(ALICE, public.collection_id, MODEL, public_model))[1] is False
    with pytest.raises(NotFound):  # Alice may not see Bob's draft
        await collections.add_item(ALICE, public.collection_id, MODEL, draft_model)
    with pytest.raises(InvalidArgument):
        await collections.add_item(ALICE, public.collection_id, IMAGE, "some-image")
    items = await collections.list_items(None, public.collection_id, after=None, limit=10)
    assert [(e.first, e.second) for e in items] == [("model", public_model)]

    # An item that stops being visible is left out of the list (it stays in the collection).
    model = await catalog.models.get_model(BOB, public_model)
    await catalog.models.unpublish_model(BOB, public_model, model.version, "", False)
    assert await collections.list_items(None, public.collection_id, after=None, limit=10) == []
    assert (await collections.get(None, public.collection_id)).item_count == 1

    updated = await collections.update(ALICE, public.collection_id, row.version, None, None, Visibility.PRIVATE)
    with pytest.raises(NotFound):
        await collections.get(None, public.collection_id)
    with pytest.raises(StreamVersionConflict):
        await collections.update(ALICE, public.collection_id, row.version, "stale", None, None)
    deleted = await collections.delete(ALICE, public.collection_id, updated.version)
    assert deleted.status == "Deleted"
    assert len(await collections.list_collections(ALICE, ALICE.id, after=None, limit=10)) == 2


async def test_racing_posts_with_one_request_id_make_one_comment(catalog: Catalog, community: Community) -> None:
    model_id, _ = await model_with(catalog, ALICE, "Busy")

    posted = await asyncio.gather(
        *(community.comments.post(BOB, MODEL, model_id, "", "once", "same-request") for _ in range(4))
    )

    assert len({c.comment_id for c in posted}) == 1
    assert await event_types(catalog.engine, event_type="catalog.CommentPosted") == ["catalog.CommentPosted"]
