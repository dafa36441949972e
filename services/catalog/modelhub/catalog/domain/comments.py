"""The comment aggregate (stream "comment-<id>"): a comment on a model or an image, maybe a reply to another
comment of the same subject. Whether a comment can be seen is decided by its subject (the handlers check
it); a deleted comment stays, without its body, so the replies under it keep their thread."""

from __future__ import annotations

from datetime import datetime

from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_base import CommunityAggregate, ItemStatus, SubjectKind
from modelhub.catalog.domain.community_events import CommentDeleted, CommentEdited, CommentPosted
from modelhub.core.errors import FailedPrecondition


def comment_stream(comment_id: str) -> str:
    return f"comment-{comment_id}"


class Comment(CommunityAggregate):
    kind = "comment"

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.owner_name = ""
        self.subject_kind = SubjectKind.MODEL
        self.subject_id = ""
        self.parent_id = ""
        self.body = ""
        self.status = ItemStatus.ACTIVE
        self.created_at: datetime | None = None
        self.updated_at: datetime | None = None

    def apply(self, event: object) -> None:
        match event:
            case CommentPosted():
                self.exists = True
                self.id, self.owner_id, self.owner_name = event.comment_id, event.author_user_id, event.author_username
                self.subject_kind, self.subject_id = SubjectKind(event.subject_kind), event.subject_id
                self.parent_id, self.body = event.parent_comment_id, event.body
                self.created_at = self.updated_at = event.at
            case CommentEdited():
                self.body, self.updated_at = event.body, event.at
            case CommentDeleted():
                self.body, self.status, self.updated_at = "", ItemStatus.DELETED, event.at

    @classmethod
    def post(
        cls,
        comment_id: str,
        actor: Actor,
        subject_kind: SubjectKind,
        subject_id: str,
        parent_id: str,
        body: str,
        request_id: str,
        now: datetime,
    ) -> Comment:
        comment = cls(comment_stream(comment_id))
        comment.record(
            CommentPosted(
                comment_id,
                subject_kind.value,
                subject_id,
                parent_id,
                actor.id,
                actor.name or actor.id,
                body,
                request_id,
                now,
            )
        )
        return comment

    def edit(self, actor: Actor, body: str, now: datetime) -> None:
        if self.status == ItemStatus.DELETED:
            raise FailedPrecondition(f"comment {self.id} is deleted", reason="COMMENT_DELETED")
        if body != self.body:
            self.record(CommentEdited(self.id, body, actor.id, now))

    def delete(self, actor: Actor, now: datetime) -> None:
        """A retried delete of a deleted comment changes nothing."""
        if self.status != ItemStatus.DELETED:
            self.record(CommentDeleted(self.id, actor.id, now))
