"""Use cases of reviews: one review per user per version (the stream "review-<version>-<user>" is the rule).

Crash, retry, redelivery: see handlers/community_support.py. CreateReview has no request id and needs none:
a retry loads the same stream and finds the review there (same content: returned as is; other content:
ALREADY_EXISTS naming it). Two concurrent creates race on the stream's first version: the loser runs again,
sees the winner's review, and answers the same way. catalog.ReviewCreated is therefore appended once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection
from uuid_utils.compat import uuid7

from modelhub.catalog.adapters import community_queries as q
from modelhub.catalog.adapters.community_repository import CommunityRepository
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_base import not_found
from modelhub.catalog.domain.reviews import Review, review_stream
from modelhub.catalog.handlers.community_support import UseCases, expect, visible_model, visible_version
from modelhub.core.errors import NotFound, PermissionDenied


class Reviews(UseCases):
    async def create(self, actor: Actor, version_id: str, recommended: bool, text: str) -> q.ReviewRow:
        """Review a visible version of someone else's model."""

        async def create(repo: CommunityRepository, now: datetime) -> str:
            node = await visible_version(repo.conn, actor, version_id)
            if node.owner_id == actor.id:
                raise PermissionDenied(
                    f"model version {version_id} is of your own model: reviews are for other people's models",
                    reason="OWN_MODEL",
                    metadata={"model_version_id": version_id},
                )
            review = await repo.load(Review, review_stream(version_id, actor.id))
            review.write(review.id or str(uuid7()), actor, node.model_id, version_id, recommended, text, now)
            await repo.save(review)
            return review.id

        review_id = await self.run(None, create)
        return await self._row(review_id)

    async def update(
        self, actor: Actor, review_id: str, expected_version: int, recommended: bool | None, text: str | None
    ) -> q.ReviewRow:
        async def update(repo: CommunityRepository, now: datetime) -> None:
            review = await self._editable(repo, actor, review_id)
            expect(review, expected_version)
            review.edit(actor, recommended, text, now)
            await repo.save(review)

        await self.run(expected_version, update)
        return await self._row(review_id)

    async def delete(self, actor: Actor, review_id: str, expected_version: int | None) -> q.ReviewRow:
        async def delete(repo: CommunityRepository, now: datetime) -> None:
            review = await self._editable(repo, actor, review_id)
            expect(review, expected_version)
            review.delete(actor, now)
            await repo.save(review)

        await self.run(expected_version, delete)
        return await self._row(review_id)

    async def get(self, actor: Actor | None, review_id: str) -> q.ReviewRow:
        """A review of a version the actor may see; deleted ones only to their author and privileged users."""

        async def read(conn: AsyncConnection) -> q.ReviewRow:
            row = await q.review(conn, review_id)
            if row is None or (row.status != "Active" and not _mine(actor, row)):
                raise not_found("review", review_id)
            await _version_or_not_found(conn, actor, row)
            return row

        return await self.read(read)

    async def list_reviews(
        self, actor: Actor | None, *, version_id: str = "", model_id: str = "", after: str | None, limit: int
    ) -> list[q.ReviewRow]:
        async def read(conn: AsyncConnection) -> list[q.ReviewRow]:
            if version_id:
                await visible_version(conn, actor, version_id)
                return await q.list_reviews(conn, "model_version_id", version_id, after, limit)
            await visible_model(conn, actor, model_id)
            return await q.list_reviews(conn, "model_id", model_id, after, limit)

        return await self.read(read)

    async def _editable(self, repo: CommunityRepository, actor: Actor, review_id: str) -> Review:
        row = await q.review(repo.conn, review_id)
        if row is None:
            raise not_found("review", review_id)
        await _version_or_not_found(repo.conn, actor, row)
        review = await repo.load(Review, review_stream(row.model_version_id, row.author_id))
        review.require_editor(actor)
        return review

    async def _row(self, review_id: str) -> q.ReviewRow:
        async def read(conn: AsyncConnection) -> q.ReviewRow:
            row = await q.review(conn, review_id)
            assert row is not None, "a review just written is in the read model"
            return row

        return await self.read(read)


def _mine(actor: Actor | None, row: q.ReviewRow) -> bool:
    return actor is not None and (actor.privileged or actor.id == row.author_id)


async def _version_or_not_found(conn: AsyncConnection, actor: Actor | None, row: q.ReviewRow) -> None:
    """A review is hidden with its version: NotFound (for the review) when the version is not visible."""
    try:
        await visible_version(conn, actor, row.model_version_id)
    except NotFound as error:
        raise not_found("review", row.review_id) from error
