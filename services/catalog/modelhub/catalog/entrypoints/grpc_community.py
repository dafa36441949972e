"""CommunityService: protobuf in, command, protobuf out. Errors are DomainErrors (mapped by libs/core)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import grpc.aio

from modelhub.catalog.adapters import community_queries as q
from modelhub.catalog.domain import commands
from modelhub.catalog.domain.collections import Visibility
from modelhub.catalog.domain.commands import Violations, check_name, check_text
from modelhub.catalog.domain.community_base import SubjectKind, check_body, check_user_id
from modelhub.catalog.entrypoints.grpc_paging import id_after, page_info, page_of, time_after
from modelhub.catalog.entrypoints.grpc_support import Context, actor, optional_actor, to_timestamp
from modelhub.catalog.handlers.collections import Collections
from modelhub.catalog.handlers.comments import Comments
from modelhub.catalog.handlers.reviews import Reviews
from modelhub.catalog.handlers.social import Favorites, Follows
from modelhub.catalog.handlers.stats import Stats
from modelhub.catalog.v1 import community_pb2 as pb
from modelhub.core.grpc.auth import require_principal
from modelhub.core.grpc.registration import add_service

SERVICE_NAME: Final = "modelhub.catalog.v1.CommunityService"
PUBLIC_METHODS: Final = frozenset(
    f"/{SERVICE_NAME}/{m}"
    for m in (
        "GetReview",
        "ListReviews",
        "ListComments",
        "ListFollows",
        "GetCollection",
        "ListCollections",
        "ListCollectionItems",
        "GetModelStats",
    )
)
"""Methods anonymous callers may use (they see public items only)."""
MAX_DESCRIPTION: Final = 5_000
_KINDS: Final = {pb.SUBJECT_KIND_MODEL: SubjectKind.MODEL, pb.SUBJECT_KIND_IMAGE: SubjectKind.IMAGE}
_KIND_PB: Final = {v: k for k, v in _KINDS.items()}
_VISIBILITIES: Final = {
    pb.COLLECTION_VISIBILITY_PUBLIC: Visibility.PUBLIC,
    pb.COLLECTION_VISIBILITY_UNLISTED: Visibility.UNLISTED,
    pb.COLLECTION_VISIBILITY_PRIVATE: Visibility.PRIVATE,
}
_VISIBILITY_PB: Final = {v: k for k, v in _VISIBILITIES.items()}


@dataclass(frozen=True)
class Community:
    """The community's use cases, as the servicer needs them."""

    reviews: Reviews
    comments: Comments
    favorites: Favorites
    follows: Follows
    collections: Collections
    stats: Stats


def add_to_server(servicer: CommunityServicer, server: grpc.aio.Server) -> None:
    add_service(servicer, server, pb, "CommunityService")


# -- validation -------------------------------------------------------------------------------------------


def _id(v: Violations, field: str, value: str) -> str:
    return commands.require_id(v, field, value)


def _subject(v: Violations, field: str, subject: pb.Subject) -> tuple[SubjectKind, str]:
    kind = _KINDS.get(subject.kind)
    if kind is None:
        v.add(f"{field}.kind", "must be MODEL or IMAGE")
    return kind or SubjectKind.MODEL, _id(v, f"{field}.id", subject.id)


def _expected(v: Violations, value: int, *, required: bool) -> int | None:
    if required and value < 1:
        v.add("expected_version", "is required: send the item's `version` from your last read")
    return value if value > 0 else None


def _mask(v: Violations, paths: list[str], allowed: set[str]) -> set[str]:
    if not paths or set(paths) - allowed:
        v.add("update_mask", f"name the fields to change, among: {', '.join(sorted(allowed))}")
    return set(paths)


# -- protobuf out -----------------------------------------------------------------------------------------


def review_pb(row: q.ReviewRow) -> pb.Review:
    return pb.Review(
        review_id=row.review_id,
        model_id=row.model_id,
        model_version_id=row.model_version_id,
        author_user_id=row.author_id,
        author_username=row.author_name,
        recommended=row.recommended,
        text=row.text,
        status=row.status,
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
        version=row.version,
    )


def comment_pb(row: q.CommentRow) -> pb.Comment:
    return pb.Comment(
        comment_id=row.comment_id,
        subject=pb.Subject(kind=_KIND_PB[SubjectKind(row.subject_kind)], id=row.subject_id),
        parent_comment_id=row.parent_comment_id,
        author_user_id=row.author_id,
        author_username=row.author_name,
        body=row.body,
        status=row.status,
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
        version=row.version,
    )


def collection_pb(row: q.CollectionRow) -> pb.Collection:
    return pb.Collection(
        collection_id=row.collection_id,
        owner_user_id=row.owner_id,
        owner_username=row.owner_name,
        name=row.name,
        description=row.description,
        visibility=_VISIBILITY_PB[Visibility(row.visibility)],
        item_kind=_KIND_PB[SubjectKind(row.item_kind)],
        item_count=row.item_count,
        status=row.status,
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
        version=row.version,
    )


def _subject_pb(kind: str, item_id: str) -> pb.Subject:
    return pb.Subject(kind=_KIND_PB[SubjectKind(kind)], id=item_id)


class CommunityServicer:
    """modelhub.catalog.v1.CommunityService over the community use cases."""

    public_methods: Final = PUBLIC_METHODS

    def __init__(self, community: Community) -> None:
        self.c = community

    # -- reviews ------------------------------------------------------------------------------------------

    async def CreateReview(self, request: pb.CreateReviewRequest, context: Context) -> pb.CreateReviewResponse:  # noqa: N802 - generated name
        caller = actor()
        v = Violations()
        version_id = _id(v, "model_version_id", request.model_version_id)
        text = check_body(v, "text", request.text, required=False)
        v.raise_if_any("review")
        row = await self.c.reviews.create(caller, version_id, request.recommended, text)
        return pb.CreateReviewResponse(review=review_pb(row))

    async def UpdateReview(self, request: pb.UpdateReviewRequest, context: Context) -> pb.UpdateReviewResponse:  # noqa: N802 - generated name
        caller = actor()
        v = Violations()
        review_id = _id(v, "review_id", request.review_id)
        expected = _expected(v, request.expected_version, required=True)
        paths = _mask(v, list(request.update_mask.paths), {"recommended", "text"})
        text = check_body(v, "text", request.text, required=False) if "text" in paths else None
        v.raise_if_any("review edit")
        recommended = request.recommended if "recommended" in paths else None
        assert expected is not None
        row = await self.c.reviews.update(caller, review_id, expected, recommended, text)
        return pb.UpdateReviewResponse(review=review_pb(row))

    async def DeleteReview(self, request: pb.DeleteReviewRequest, context: Context) -> pb.DeleteReviewResponse:  # noqa: N802 - generated name
        caller = actor()
        v = Violations()
        review_id = _id(v, "review_id", request.review_id)
        expected = _expected(v, request.expected_version, required=False)
        v.raise_if_any("request")
        return pb.DeleteReviewResponse(review=review_pb(await self.c.reviews.delete(caller, review_id, expected)))

    async def GetReview(self, request: pb.GetReviewRequest, context: Context) -> pb.GetReviewResponse:  # noqa: N802 - generated name
        v = Violations()
        review_id = _id(v, "review_id", request.review_id)
        v.raise_if_any("request")
        return pb.GetReviewResponse(review=review_pb(await self.c.reviews.get(optional_actor(), review_id)))

    async def ListReviews(self, request: pb.ListReviewsRequest, context: Context) -> pb.ListReviewsResponse:  # noqa: N802 - generated name
        viewer = optional_actor()
        v = Violations()
        version_id, model_id = request.model_version_id.strip(), request.model_id.strip()
        if bool(version_id) == bool(model_id):
            v.add("model_version_id", "name exactly one of model_version_id and model_id")
        v.raise_if_any("request")
        page = page_of(request.page, "reviews")
        rows = await self.c.reviews.list_reviews(
            viewer, version_id=version_id, model_id=model_id, after=id_after(page), limit=page.size + 1
        )
        shown = rows[: page.size]
        return pb.ListReviewsResponse(
            reviews=[review_pb(r) for r in shown],
            page_info=page_info("reviews", rows, page.size, [shown[-1].review_id] if shown else None),
        )

    # -- comments -----------------------------------------------------------------------------------------

    async def PostComment(self, request: pb.PostCommentRequest, context: Context) -> pb.PostCommentResponse:  # noqa: N802 - generated name
        caller = actor()
        v = Violations()
        kind, subject_id = _subject(v, "subject", request.subject)
        body = check_body(v, "body", request.body, required=True)
        request_id = check_text(v, "request_id", request.request_id.strip(), commands.MAX_REQUEST_ID)
        v.raise_if_any("comment")
        row = await self.c.comments.post(caller, kind, subject_id, request.parent_comment_id.strip(), body, request_id)
        return pb.PostCommentResponse(comment=comment_pb(row))

    async def UpdateComment(self, request: pb.UpdateCommentRequest, context: Context) -> pb.UpdateCommentResponse:  # noqa: N802 - generated name
        caller = actor()
        v = Violations()
        comment_id = _id(v, "comment_id", request.comment_id)
        expected = _expected(v, request.expected_version, required=True)
        body = check_body(v, "body", request.body, required=True)
        v.raise_if_any("comment edit")
        assert expected is not None
        row = await self.c.comments.update(caller, comment_id, expected, body)
        return pb.UpdateCommentResponse(comment=comment_pb(row))

    async def DeleteComment(self, request: pb.DeleteCommentRequest, context: Context) -> pb.DeleteCommentResponse:  # noqa: N802 - generated name
        caller = actor()
        v = Violations()
        comment_id = _id(v, "comment_id", request.comment_id)
        expected = _expected(v, request.expected_version, required=False)
        v.raise_if_any("request")
        return pb.DeleteCommentResponse(comment=comment_pb(await self.c.comments.delete(caller, comment_id, expected)))

    async def ListComments(self, request: pb.ListCommentsRequest, context: Context) -> pb.ListCommentsResponse:  # noqa: N802 - generated name
        viewer = optional_actor()
        v = Violations()
        kind, subject_id = _subject(v, "subject", request.subject)
        v.raise_if_any("request")
        page = page_of(request.page, "comments", default=50, maximum=200)
        rows = await self.c.comments.list_comments(viewer, kind, subject_id, after=id_after(page), limit=page.size + 1)
        shown = rows[: page.size]
        return pb.ListCommentsResponse(
            comments=[comment_pb(r) for r in shown],
            page_info=page_info("comments", rows, page.size, [shown[-1].comment_id] if shown else None),
        )

    # -- favourites and follows ---------------------------------------------------------------------------

    async def AddFavorite(self, request: pb.AddFavoriteRequest, context: Context) -> pb.AddFavoriteResponse:  # noqa: N802 - generated name
        caller = actor()
        v = Violations()
        kind, target_id = _subject(v, "subject", request.subject)
        v.raise_if_any("request")
        return pb.AddFavoriteResponse(added=await self.c.favorites.add(caller, kind, target_id))

    async def RemoveFavorite(self, request: pb.RemoveFavoriteRequest, context: Context) -> pb.RemoveFavoriteResponse:  # noqa: N802 - generated name
        caller = actor()
        v = Violations()
        kind, target_id = _subject(v, "subject", request.subject)
        v.raise_if_any("request")
        return pb.RemoveFavoriteResponse(removed=await self.c.favorites.remove(caller, kind, target_id))

    async def ListFavorites(self, request: pb.ListFavoritesRequest, context: Context) -> pb.ListFavoritesResponse:  # noqa: N802 - generated name
        caller = actor()
        page = page_of(request.page, "favorites")
        kind = _KINDS.get(request.kind)
        edges = await self.c.favorites.list_favorites(caller, kind, after=time_after(page), limit=page.size + 1)
        shown = edges[: page.size]
        last = [shown[-1].created_at.isoformat(), shown[-1].second] if shown else None
        return pb.ListFavoritesResponse(
            favorites=[
                pb.Favorite(subject=_subject_pb(e.first, e.second), created_at=to_timestamp(e.created_at))
                for e in shown
            ],
            page_info=page_info("favorites", edges, page.size, last),
        )

    async def FollowUser(self, request: pb.FollowUserRequest, context: Context) -> pb.FollowUserResponse:  # noqa: N802 - generated name
        caller = actor()
        v = Violations()
        user_id = check_user_id(v, "user_id", request.user_id)
        v.raise_if_any("request")
        return pb.FollowUserResponse(followed=await self.c.follows.follow(caller, user_id))

    async def UnfollowUser(self, request: pb.UnfollowUserRequest, context: Context) -> pb.UnfollowUserResponse:  # noqa: N802 - generated name
        caller = actor()
        v = Violations()
        user_id = check_user_id(v, "user_id", request.user_id)
        v.raise_if_any("request")
        return pb.UnfollowUserResponse(unfollowed=await self.c.follows.unfollow(caller, user_id))

    async def ListFollows(self, request: pb.ListFollowsRequest, context: Context) -> pb.ListFollowsResponse:  # noqa: N802 - generated name
        user_id = request.user_id.strip() or require_principal().id
        followers = request.direction == pb.FOLLOW_DIRECTION_FOLLOWERS
        page = page_of(request.page, "follows")
        edges = await self.c.follows.list_follows(
            user_id, followers=followers, after=time_after(page), limit=page.size + 1
        )
        shown = edges[: page.size]
        last = None
        if shown:
            other = shown[-1].first if followers else shown[-1].second
            last = [shown[-1].created_at.isoformat(), other]
        return pb.ListFollowsResponse(
            follows=[
                pb.Follow(follower_user_id=e.first, followee_user_id=e.second, created_at=to_timestamp(e.created_at))
                for e in shown
            ],
            page_info=page_info("follows", edges, page.size, last),
        )

    # -- collections --------------------------------------------------------------------------------------

    async def CreateCollection(  # noqa: N802 - generated name
        self, request: pb.CreateCollectionRequest, context: Context
    ) -> pb.CreateCollectionResponse:
        caller = actor()
        v = Violations()
        name = check_name(v, "name", request.name)
        description = check_body(v, "description", request.description, required=False, limit=MAX_DESCRIPTION)
        visibility = _VISIBILITIES.get(request.visibility or pb.COLLECTION_VISIBILITY_PRIVATE, Visibility.PRIVATE)
        kind = _KINDS.get(request.item_kind)
        if kind is None:
            v.add("item_kind", "must be MODEL or IMAGE")
        request_id = check_text(v, "request_id", request.request_id.strip(), commands.MAX_REQUEST_ID)
        v.raise_if_any("collection")
        assert kind is not None
        row = await self.c.collections.create(caller, name, description, visibility, kind, request_id)
        return pb.CreateCollectionResponse(collection=collection_pb(row))

    async def UpdateCollection(  # noqa: N802 - generated name
        self, request: pb.UpdateCollectionRequest, context: Context
    ) -> pb.UpdateCollectionResponse:
        caller = actor()
        v = Violations()
        collection_id = _id(v, "collection_id", request.collection_id)
        expected = _expected(v, request.expected_version, required=True)
        paths = _mask(v, list(request.update_mask.paths), {"name", "description", "visibility"})
        name = check_name(v, "name", request.name) if "name" in paths else None
        description = (
            check_body(v, "description", request.description, required=False, limit=MAX_DESCRIPTION)
            if "description" in paths
            else None
        )
        visibility = None
        if "visibility" in paths:
            visibility = _VISIBILITIES.get(request.visibility)
            if visibility is None:
                v.add("visibility", "must be PUBLIC, UNLISTED or PRIVATE")
        v.raise_if_any("collection edit")
        assert expected is not None
        row = await self.c.collections.update(caller, collection_id, expected, name, description, visibility)
        return pb.UpdateCollectionResponse(collection=collection_pb(row))

    async def DeleteCollection(  # noqa: N802 - generated name
        self, request: pb.DeleteCollectionRequest, context: Context
    ) -> pb.DeleteCollectionResponse:
        caller = actor()
        v = Violations()
        collection_id = _id(v, "collection_id", request.collection_id)
        expected = _expected(v, request.expected_version, required=False)
        v.raise_if_any("request")
        row = await self.c.collections.delete(caller, collection_id, expected)
        return pb.DeleteCollectionResponse(collection=collection_pb(row))

    async def AddCollectionItem(  # noqa: N802 - generated name
        self, request: pb.AddCollectionItemRequest, context: Context
    ) -> pb.AddCollectionItemResponse:
        caller = actor()
        v = Violations()
        collection_id = _id(v, "collection_id", request.collection_id)
        kind, item_id = _subject(v, "item", request.item)
        v.raise_if_any("request")
        row, added = await self.c.collections.add_item(caller, collection_id, kind, item_id)
        return pb.AddCollectionItemResponse(collection=collection_pb(row), added=added)

    async def RemoveCollectionItem(  # noqa: N802 - generated name
        self, request: pb.RemoveCollectionItemRequest, context: Context
    ) -> pb.RemoveCollectionItemResponse:
        caller = actor()
        v = Violations()
        collection_id = _id(v, "collection_id", request.collection_id)
        _, item_id = _subject(v, "item", request.item)
        v.raise_if_any("request")
        row, removed = await self.c.collections.remove_item(caller, collection_id, item_id)
        return pb.RemoveCollectionItemResponse(collection=collection_pb(row), removed=removed)

    async def GetCollection(self, request: pb.GetCollectionRequest, context: Context) -> pb.GetCollectionResponse:  # noqa: N802 - generated name
        v = Violations()
        collection_id = _id(v, "collection_id", request.collection_id)
        v.raise_if_any("request")
        row = await self.c.collections.get(optional_actor(), collection_id)
        return pb.GetCollectionResponse(collection=collection_pb(row))

    async def ListCollections(self, request: pb.ListCollectionsRequest, context: Context) -> pb.ListCollectionsResponse:  # noqa: N802 - generated name
        viewer = optional_actor()
        owner = request.owner_user_id.strip() or require_principal().id
        page = page_of(request.page, "collections")
        rows = await self.c.collections.list_collections(viewer, owner, after=id_after(page), limit=page.size + 1)
        shown = rows[: page.size]
        return pb.ListCollectionsResponse(
            collections=[collection_pb(r) for r in shown],
            page_info=page_info("collections", rows, page.size, [shown[-1].collection_id] if shown else None),
        )

    async def ListCollectionItems(  # noqa: N802 - generated name
        self, request: pb.ListCollectionItemsRequest, context: Context
    ) -> pb.ListCollectionItemsResponse:
        viewer = optional_actor()
        v = Violations()
        collection_id = _id(v, "collection_id", request.collection_id)
        v.raise_if_any("request")
        page = page_of(request.page, "collection-items")
        edges = await self.c.collections.list_items(viewer, collection_id, after=time_after(page), limit=page.size + 1)
        shown = edges[: page.size]
        last = [shown[-1].created_at.isoformat(), shown[-1].second] if shown else None
        return pb.ListCollectionItemsResponse(
            items=[
                pb.CollectionItem(subject=_subject_pb(e.first, e.second), added_at=to_timestamp(e.created_at))
                for e in shown
            ],
            page_info=page_info("collection-items", edges, page.size, last),
        )

    # -- stats --------------------------------------------------------------------------------------------

    async def GetModelStats(self, request: pb.GetModelStatsRequest, context: Context) -> pb.GetModelStatsResponse:  # noqa: N802 - generated name
        v = Violations()
        model_id = _id(v, "model_id", request.model_id)
        v.raise_if_any("request")
        view = await self.c.stats.model_stats(optional_actor(), model_id)
        return pb.GetModelStatsResponse(
            model_id=view.model_id,
            periods=[
                pb.PeriodStats(
                    period=p.period,
                    downloads=p.downloads,
                    favorites=p.favorites,
                    thumbs_up=p.thumbs_up,
                    thumbs_down=p.thumbs_down,
                    comments=p.comments,
                    images=p.images,
                    collected=p.collected,
                    tipped_amount=p.tipped_amount,
                )
                for p in view.periods
            ],
            versions=[
                pb.VersionStats(
                    model_version_id=c.model_version_id,
                    downloads=c.downloads,
                    thumbs_up=c.thumbs_up,
                    thumbs_down=c.thumbs_down,
                    images=c.images,
                )
                for c in view.versions
            ],
            computed_at=to_timestamp(view.computed_at),
        )
