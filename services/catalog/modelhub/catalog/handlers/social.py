"""Use cases of favourites and follows: sets, one stream per (user, target) pair.

Crash, retry, redelivery: see handlers/community_support.py. A retried (or concurrent) favourite of the same
target by the same user is one favourite: the second finds it there and records nothing (`added` False).
"""

from __future__ import annotations

from datetime import datetime

from modelhub.catalog.adapters import community_queries as q
from modelhub.catalog.adapters.community_repository import CommunityRepository
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_base import SubjectKind
from modelhub.catalog.domain.social import Favorite, Follow, favorite_stream, follow_stream
from modelhub.catalog.handlers.community_support import UseCases, visible_subject
from modelhub.core.errors import FieldViolation, InvalidArgument


class Favorites(UseCases):
    async def add(self, actor: Actor, kind: SubjectKind, target_id: str) -> bool:
        """Favourite a visible model or image; False when it was a favourite already."""

        async def add(repo: CommunityRepository, now: datetime) -> bool:
            await visible_subject(repo.conn, actor, kind, target_id)
            favorite = await repo.load(Favorite, favorite_stream(kind, target_id, actor.id))
            added = favorite.add(kind, target_id, actor.id, now)
            await repo.save(favorite)
            return added

        return await self.run(None, add)

    async def remove(self, actor: Actor, kind: SubjectKind, target_id: str) -> bool:
        """Take a favourite back (also of an item no longer visible); False when there was none."""

        async def remove(repo: CommunityRepository, now: datetime) -> bool:
            favorite = await repo.load(Favorite, favorite_stream(kind, target_id, actor.id))
            removed = favorite.remove(kind, target_id, actor.id, now)
            await repo.save(favorite)
            return removed

        return await self.run(None, remove)

    async def list_favorites(
        self, actor: Actor, kind: SubjectKind | None, *, after: tuple[datetime, str] | None, limit: int
    ) -> list[q.Edge]:
        return await self.read(lambda conn: q.list_favorites(conn, actor, kind.value if kind else None, after, limit))


class Follows(UseCases):
    async def follow(self, actor: Actor, user_id: str) -> bool:
        """Follow a user; False when already following. Users are not registered in the catalog: any user id
        is accepted (the token's subjects are the user ids)."""
        if user_id == actor.id:
            raise InvalidArgument(
                "you cannot follow yourself", violations=[FieldViolation("user_id", "must be another user's id")]
            )

        async def follow(repo: CommunityRepository, now: datetime) -> bool:
            edge = await repo.load(Follow, follow_stream(actor.id, user_id))
            followed = edge.follow(actor.id, user_id, now)
            await repo.save(edge)
            return followed

        return await self.run(None, follow)

    async def unfollow(self, actor: Actor, user_id: str) -> bool:
        async def unfollow(repo: CommunityRepository, now: datetime) -> bool:
            edge = await repo.load(Follow, follow_stream(actor.id, user_id))
            unfollowed = edge.unfollow(actor.id, user_id, now)
            await repo.save(edge)
            return unfollowed

        return await self.run(None, unfollow)

    async def list_follows(
        self, user_id: str, *, followers: bool, after: tuple[datetime, str] | None, limit: int
    ) -> list[q.Edge]:
        return await self.read(lambda conn: q.list_follows(conn, user_id, followers, after, limit))
