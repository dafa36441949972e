"""Favourites and follows: one small aggregate per (user, target) pair, on a stream named after the pair, so a
pair is one fact however often, or however concurrently, it is asked for. Both are sets: adding what is there
or removing what is not records nothing, which makes every retry and redelivery harmless."""

from __future__ import annotations

from datetime import datetime

from modelhub.catalog.domain.community_base import CommunityAggregate, SubjectKind
from modelhub.catalog.domain.community_events import FavoriteAdded, FavoriteRemoved, UserFollowed, UserUnfollowed


def favorite_stream(kind: SubjectKind, target_id: str, user_id: str) -> str:
    return f"favorite-{kind.value}-{target_id}-{user_id}"


def follow_stream(follower_id: str, followee_id: str) -> str:
    return f"follow-{follower_id}-{followee_id}"


class Favorite(CommunityAggregate):
    kind = "favorite"

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.active = False

    def apply(self, event: object) -> None:
        match event:
            case FavoriteAdded():
                self.exists, self.active = True, True
            case FavoriteRemoved():
                self.active = False

    def add(self, kind: SubjectKind, target_id: str, user_id: str, now: datetime) -> bool:
        """True when the favourite is new."""
        if self.active:
            return False
        self.record(FavoriteAdded(kind.value, target_id, user_id, now))
        return True

    def remove(self, kind: SubjectKind, target_id: str, user_id: str, now: datetime) -> bool:
        """True when there was a favourite to remove."""
        if not self.active:
            return False
        self.record(FavoriteRemoved(kind.value, target_id, user_id, now))
        return True


class Follow(CommunityAggregate):
    kind = "follow"

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.active = False

    def apply(self, event: object) -> None:
        match event:
            case UserFollowed():
                self.exists, self.active = True, True
            case UserUnfollowed():
                self.active = False

    def follow(self, follower_id: str, followee_id: str, now: datetime) -> bool:
        if self.active:
            return False
        self.record(UserFollowed(follower_id, followee_id, now))
        return True

    def unfollow(self, follower_id: str, followee_id: str, now: datetime) -> bool:
        if not self.active:
            return False
        self.record(UserUnfollowed(follower_id, followee_id, now))
        return True
