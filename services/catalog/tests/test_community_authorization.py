"""Authorization over every mutating RPC of GalleryService and CommunityService, through the real server: the
item's owner, another user, an anonymous caller and a moderator. Something the caller may not see is
NOT_FOUND (never PERMISSION_DENIED); something visible but not theirs is PERMISSION_DENIED."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.bootstrap_community import build_community, build_gallery
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.domain.collections import Visibility
from modelhub.catalog.domain.community_base import SubjectKind
from modelhub.catalog.v1 import community_pb2 as cpb
from modelhub.catalog.v1 import community_pb2_grpc, gallery_pb2_grpc
from modelhub.catalog.v1 import gallery_pb2 as gpb

from .community_helpers import model_with, post
from .conftest import auth
from .image_samples import picture, png
from .model_helpers import ALICE, BOB

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
HIDDEN = grpc.StatusCode.NOT_FOUND
ANONYMOUS = grpc.StatusCode.UNAUTHENTICATED
INVALID = grpc.StatusCode.INVALID_ARGUMENT
ROLES = ("owner", "other", "anonymous", "moderator")
Metadata = Sequence[tuple[str, str]]


@dataclass
class World:
    catalog: Catalog
    settings: CatalogSettings
    gallery: gallery_pb2_grpc.GalleryServiceStub
    community: community_pb2_grpc.CommunityServiceStub


Call = Callable[[Metadata], Awaitable[Any]]
Setup = Callable[[World], Awaitable[Call]]


def image_request(version_id: str = "") -> Callable[[], AsyncIterator[gpb.PostImageRequest]]:
    async def messages() -> AsyncIterator[gpb.PostImageRequest]:
        yield gpb.PostImageRequest(header=gpb.PostImageHeader(model_version_id=version_id))
        yield gpb.PostImageRequest(chunk=png(image=picture(size=(24, 16))))

    return messages


# -- setups: each makes fresh items and returns the call to make -------------------------------------------


async def post_to_public_gallery(w: World) -> Call:
    _, version = await model_with(w.catalog, ALICE, "Public")
    return lambda md: w.gallery.PostImage(image_request(version)(), metadata=md)


async def post_to_draft_gallery(w: World) -> Call:
    _, version = await model_with(w.catalog, ALICE, "Draft", publish=False)
    return lambda md: w.gallery.PostImage(image_request(version)(), metadata=md)


async def _image(w: World, hidden: bool = False) -> tuple[str, int]:
    gallery = build_gallery(w.settings, w.catalog)
    view = await post(gallery, ALICE)
    if hidden:
        view = await gallery.update_image(ALICE, view.row.image_id, view.row.version, None, True)
    return view.row.image_id, view.row.version


async def update_public_image(w: World) -> Call:
    image_id, version = await _image(w)
    request = gpb.UpdateImageRequest(
        image_id=image_id, expected_version=version, update_mask=FieldMask(paths=["tags"]), tags=["x"]
    )
    return lambda md: w.gallery.UpdateImage(request, metadata=md)


async def update_hidden_image(w: World) -> Call:
    image_id, version = await _image(w, hidden=True)
    request = gpb.UpdateImageRequest(
        image_id=image_id, expected_version=version, update_mask=FieldMask(paths=["hidden"]), hidden=False
    )
    return lambda md: w.gallery.UpdateImage(request, metadata=md)


async def delete_public_image(w: World) -> Call:
    image_id, _ = await _image(w)
    return lambda md: w.gallery.DeleteImage(gpb.DeleteImageRequest(image_id=image_id), metadata=md)


async def delete_hidden_image(w: World) -> Call:
    image_id, _ = await _image(w, hidden=True)
    return lambda md: w.gallery.DeleteImage(gpb.DeleteImageRequest(image_id=image_id), metadata=md)


async def create_review(w: World) -> Call:
    _, version = await model_with(w.catalog, ALICE, "Reviewed")
    request = cpb.CreateReviewRequest(model_version_id=version, recommended=True, text="ok")
    return lambda md: w.community.CreateReview(request, metadata=md)


async def create_review_of_draft(w: World) -> Call:
    _, version = await model_with(w.catalog, BOB, "Draft", publish=False)
    request = cpb.CreateReviewRequest(model_version_id=version, recommended=True)
    return lambda md: w.community.CreateReview(request, metadata=md)


async def _review(w: World) -> tuple[str, int]:
    _, version = await model_with(w.catalog, BOB, "Reviewed")
    row = await build_community(w.catalog).reviews.create(ALICE, version, True, "ok")
    return row.review_id, row.version


async def update_review(w: World) -> Call:
    review_id, version = await _review(w)
    request = cpb.UpdateReviewRequest(
        review_id=review_id, expected_version=version, update_mask=FieldMask(paths=["text"]), text="edited"
    )
    return lambda md: w.community.UpdateReview(request, metadata=md)


async def delete_review(w: World) -> Call:
    review_id, _ = await _review(w)
    return lambda md: w.community.DeleteReview(cpb.DeleteReviewRequest(review_id=review_id), metadata=md)


def _model_subject(model_id: str) -> cpb.Subject:
    return cpb.Subject(kind=cpb.SUBJECT_KIND_MODEL, id=model_id)


async def comment_on_public_model(w: World) -> Call:
    model_id, _ = await model_with(w.catalog, ALICE, "Discussed")
    request = cpb.PostCommentRequest(subject=_model_subject(model_id), body="hi")
    return lambda md: w.community.PostComment(request, metadata=md)


async def comment_on_draft_model(w: World) -> Call:
    model_id, _ = await model_with(w.catalog, ALICE, "Draft", publish=False)
    request = cpb.PostCommentRequest(subject=_model_subject(model_id), body="hi")
    return lambda md: w.community.PostComment(request, metadata=md)


async def _comment(w: World) -> tuple[str, int]:
    model_id, _ = await model_with(w.catalog, BOB, "Discussed")
    row = await build_community(w.catalog).comments.post(ALICE, SubjectKind.MODEL, model_id, "", "hi", "")
    return row.comment_id, row.version


async def update_comment(w: World) -> Call:
    comment_id, version = await _comment(w)
    request = cpb.UpdateCommentRequest(comment_id=comment_id, expected_version=version, body="edited")
    return lambda md: w.community.UpdateComment(request, metadata=md)


async def delete_comment(w: World) -> Call:
    comment_id, _ = await _comment(w)
    return lambda md: w.community.DeleteComment(cpb.DeleteCommentRequest(comment_id=comment_id), metadata=md)


async def favourite_public_model(w: World) -> Call:
    model_id, _ = await model_with(w.catalog, ALICE, "Liked")
    return lambda md: w.community.AddFavorite(cpb.AddFavoriteRequest(subject=_model_subject(model_id)), metadata=md)


async def favourite_draft_model(w: World) -> Call:
    model_id, _ = await model_with(w.catalog, ALICE, "Draft", publish=False)
    return lambda md: w.community.AddFavorite(cpb.AddFavoriteRequest(subject=_model_subject(model_id)), metadata=md)


async def unfavourite(w: World) -> Call:
    model_id, _ = await model_with(w.catalog, ALICE, "Liked")
    request = cpb.RemoveFavoriteRequest(subject=_model_subject(model_id))
    return lambda md: w.community.RemoveFavorite(request, metadata=md)


async def follow_owner(w: World) -> Call:
    return lambda md: w.community.FollowUser(cpb.FollowUserRequest(user_id=ALICE.id), metadata=md)


async def unfollow_owner(w: World) -> Call:
    return lambda md: w.community.UnfollowUser(cpb.UnfollowUserRequest(user_id=ALICE.id), metadata=md)


async def create_collection(w: World) -> Call:
    request = cpb.CreateCollectionRequest(name="Mine", item_kind=cpb.SUBJECT_KIND_MODEL)
    return lambda md: w.community.CreateCollection(request, metadata=md)


async def _collection(w: World, visibility: Visibility, item: str = "") -> tuple[str, int]:
    collections = build_community(w.catalog).collections
    row = await collections.create(ALICE, "Mine", "", visibility, SubjectKind.MODEL, "")
    if item:
        row, _ = await collections.add_item(ALICE, row.collection_id, SubjectKind.MODEL, item)
    return row.collection_id, row.version


def _update_collection(visibility: Visibility) -> Setup:
    async def setup(w: World) -> Call:
        collection_id, version = await _collection(w, visibility)
        request = cpb.UpdateCollectionRequest(
            collection_id=collection_id, expected_version=version, update_mask=FieldMask(paths=["name"]), name="New"
        )
        return lambda md: w.community.UpdateCollection(request, metadata=md)

    return setup


def _delete_collection(visibility: Visibility) -> Setup:
    async def setup(w: World) -> Call:
        collection_id, _ = await _collection(w, visibility)
        request = cpb.DeleteCollectionRequest(collection_id=collection_id)
        return lambda md: w.community.DeleteCollection(request, metadata=md)

    return setup


def _add_item(visibility: Visibility) -> Setup:
    async def setup(w: World) -> Call:
        model_id, _ = await model_with(w.catalog, BOB, "Collected")
        collection_id, _ = await _collection(w, visibility)
        request = cpb.AddCollectionItemRequest(collection_id=collection_id, item=_model_subject(model_id))
        return lambda md: w.community.AddCollectionItem(request, metadata=md)

    return setup


def _remove_item(visibility: Visibility) -> Setup:
    async def setup(w: World) -> Call:
        model_id, _ = await model_with(w.catalog, BOB, "Collected")
        collection_id, _ = await _collection(w, visibility, model_id)
        request = cpb.RemoveCollectionItemRequest(collection_id=collection_id, item=_model_subject(model_id))
        return lambda md: w.community.RemoveCollectionItem(request, metadata=md)

    return setup


# (owner of the item, setup, expected code for owner / other user / anonymous / moderator)
CASES: dict[str, tuple[str, Setup, tuple[grpc.StatusCode, ...]]] = {
    "PostImage to a public gallery": ("alice", post_to_public_gallery, (OK, OK, ANONYMOUS, OK)),
    "PostImage to a draft's gallery": ("alice", post_to_draft_gallery, (OK, HIDDEN, ANONYMOUS, OK)),
    "UpdateImage public": ("alice", update_public_image, (OK, DENIED, ANONYMOUS, OK)),
    "UpdateImage hidden": ("alice", update_hidden_image, (OK, HIDDEN, ANONYMOUS, OK)),
    "DeleteImage public": ("alice", delete_public_image, (OK, DENIED, ANONYMOUS, OK)),
    "DeleteImage hidden": ("alice", delete_hidden_image, (OK, HIDDEN, ANONYMOUS, OK)),
    "CreateReview (owner = the model's)": ("alice", create_review, (DENIED, OK, ANONYMOUS, OK)),
    "CreateReview of a draft (owner = the model's)": ("bob", create_review_of_draft, (DENIED, HIDDEN, ANONYMOUS, OK)),
    "UpdateReview": ("alice", update_review, (OK, DENIED, ANONYMOUS, OK)),
    "DeleteReview": ("alice", delete_review, (OK, DENIED, ANONYMOUS, OK)),
    "PostComment on a public model": ("alice", comment_on_public_model, (OK, OK, ANONYMOUS, OK)),
    "PostComment on a draft": ("alice", comment_on_draft_model, (OK, HIDDEN, ANONYMOUS, OK)),
    "UpdateComment": ("alice", update_comment, (OK, DENIED, ANONYMOUS, OK)),
    "DeleteComment": ("alice", delete_comment, (OK, DENIED, ANONYMOUS, OK)),
    "AddFavorite of a public model": ("alice", favourite_public_model, (OK, OK, ANONYMOUS, OK)),
    "AddFavorite of a draft": ("alice", favourite_draft_model, (OK, HIDDEN, ANONYMOUS, OK)),
    "RemoveFavorite": ("alice", unfavourite, (OK, OK, ANONYMOUS, OK)),
    "FollowUser (owner = the followee)": ("alice", follow_owner, (INVALID, OK, ANONYMOUS, OK)),
    "UnfollowUser (owner = the followee)": ("alice", unfollow_owner, (OK, OK, ANONYMOUS, OK)),
    "CreateCollection": ("alice", create_collection, (OK, OK, ANONYMOUS, OK)),
    "UpdateCollection public": ("alice", _update_collection(Visibility.PUBLIC), (OK, DENIED, ANONYMOUS, OK)),
    "UpdateCollection private": ("alice", _update_collection(Visibility.PRIVATE), (OK, HIDDEN, ANONYMOUS, OK)),
    "DeleteCollection unlisted": ("alice", _delete_collection(Visibility.UNLISTED), (OK, DENIED, ANONYMOUS, OK)),
    "DeleteCollection private": ("alice", _delete_collection(Visibility.PRIVATE), (OK, HIDDEN, ANONYMOUS, OK)),
    "AddCollectionItem public": ("alice", _add_item(Visibility.PUBLIC), (OK, DENIED, ANONYMOUS, OK)),
    "AddCollectionItem private": ("alice", _add_item(Visibility.PRIVATE), (OK, HIDDEN, ANONYMOUS, OK)),
    "RemoveCollectionItem public": ("alice", _remove_item(Visibility.PUBLIC), (OK, DENIED, ANONYMOUS, OK)),
    "RemoveCollectionItem private": ("alice", _remove_item(Visibility.PRIVATE), (OK, HIDDEN, ANONYMOUS, OK)),
}


def test_the_matrix_covers_every_mutating_rpc() -> None:
    mutating = {
        m.name
        for service in (
            gpb.DESCRIPTOR.services_by_name["GalleryService"],
            cpb.DESCRIPTOR.services_by_name["CommunityService"],
        )
        for m in service.methods
        if not m.name.startswith(("Get", "List", "Download"))
    }
    assert mutating == {name.split(" ")[0] for name in CASES}


async def test_authorization_matrix(catalog: Catalog, settings: CatalogSettings, channel: grpc.aio.Channel) -> None:
    """One database for the whole matrix (each call gets fresh items); the comparison shows every mismatch."""
    world = World(
        catalog,
        settings,
        gallery_pb2_grpc.GalleryServiceStub(channel),
        community_pb2_grpc.CommunityServiceStub(channel),
    )
    got: dict[str, dict[str, grpc.StatusCode]] = {}
    for case, (owner, setup, _) in CASES.items():
        callers: dict[str, Metadata] = {
            "owner": auth(owner),
            "other": auth("mallory"),
            "anonymous": (),
            "moderator": auth("mod", "moderator"),
        }
        got[case] = {}
        for role in ROLES:
            call = await setup(world)
            try:
                await call(callers[role])
                got[case][role] = OK
            except grpc.aio.AioRpcError as error:
                got[case][role] = error.code()
    assert got == {case: dict(zip(ROLES, expected, strict=True)) for case, (_, _, expected) in CASES.items()}
