"""The review aggregate: one user's review of one model version, on the stream "review-<version>-<user>".

The stream id is the uniqueness rule: a second CreateReview by the same user for the same version loads the
same stream. catalog.ReviewCreated (the ledger rewards on it) is recorded only when the stream is new, so it
is emitted once per (user, version) whatever happens later: a deleted review written again is the same
review (catalog.ReviewWritten only).
"""

from __future__ import annotations

from datetime import datetime

from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_base import CommunityAggregate, ItemStatus
from modelhub.catalog.domain.community_events import ReviewCreated, ReviewDeleted, ReviewWritten
from modelhub.core.errors import AlreadyExists, FailedPrecondition


def review_stream(version_id: str, user_id: str) -> str:
    return f"review-{version_id}-{user_id}"


class Review(CommunityAggregate):
    kind = "review"

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.owner_name = ""
        self.model_id = ""
        self.version_id = ""
        self.recommended = False
        self.text = ""
        self.status = ItemStatus.ACTIVE
        self.created_at: datetime | None = None
        self.updated_at: datetime | None = None

    @property
    def public(self) -> bool:
        return self.status == ItemStatus.ACTIVE

    def apply(self, event: object) -> None:
        match event:
            case ReviewCreated():
                self.exists = True
                self.id, self.owner_id = event.review_id, event.author_user_id
                self.model_id, self.version_id = event.model_id, event.model_version_id
                self.created_at = event.created_at
            case ReviewWritten():
                self.owner_name = event.author_username
                self.recommended, self.text = event.recommended, event.text
                self.status = ItemStatus.ACTIVE
                self.updated_at = event.at
            case ReviewDeleted():
                self.status = ItemStatus.DELETED
                self.updated_at = event.at

    def write(
        self,
        review_id: str,
        actor: Actor,
        model_id: str,
        version_id: str,
        recommended: bool,
        text: str,
        now: datetime,
    ) -> None:
        """CreateReview on this stream. New: ReviewCreated + ReviewWritten. Deleted before: written again
        (no second ReviewCreated). Active with the same content: nothing (a retried create). Active with other
        content: AlreadyExists naming the review, to be edited with UpdateReview instead."""
        if not self.exists:
            self.record(ReviewCreated(review_id, model_id, version_id, actor.id, recommended, now))
        elif self.status == ItemStatus.ACTIVE:
            if (self.recommended, self.text) == (recommended, text):
                return
            raise AlreadyExists(
                f"you reviewed model version {version_id} already (review {self.id}): edit it with UpdateReview",
                reason="REVIEW_EXISTS",
                metadata={"review_id": self.id, "version": str(self.version)},
            )
        self.record(self._written(actor, recommended, text, now, author_name=actor.name or actor.id))

    def edit(self, actor: Actor, recommended: bool | None, text: str | None, now: datetime) -> None:
        if self.status == ItemStatus.DELETED:
            raise FailedPrecondition(f"review {self.id} is deleted", reason="REVIEW_DELETED")
        new = (self.recommended if recommended is None else recommended, self.text if text is None else text)
        if new != (self.recommended, self.text):
            self.record(self._written(actor, new[0], new[1], now, author_name=self.owner_name))

    def delete(self, actor: Actor, now: datetime) -> None:
        """A retried delete of a deleted review changes nothing."""
        if self.status != ItemStatus.DELETED:
            self.record(ReviewDeleted(self.id, self.model_id, self.version_id, self.owner_id, actor.id, now))

    def _written(self, actor: Actor, recommended: bool, text: str, now: datetime, *, author_name: str) -> ReviewWritten:
        return ReviewWritten(
            self.id, self.model_id, self.version_id, self.owner_id, author_name, recommended, text, actor.id, now
        )
