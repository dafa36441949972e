"""Use cases of comments on models and images (threaded: a reply names its parent, of the same subject).

Crash, retry, redelivery: see handlers/community_support.py. PostComment with a request id is idempotent: the
(author, request id) row commits with the comment, so a retry returns the first comment (also when both race).
Without a request id a retry posts a second comment: clients that retry must send one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection
from uuid_utils.compat import uuid7

from modelhub.catalog.adapters import community_queries as q
from modelhub.catalog.adapters.community_projection import comment_fingerprint
from modelhub.catalog.adapters.community_repository import CommunityRepository
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.comments import Comment, comment_stream
from modelhub.catalog.domain.community_base import SubjectKind, not_found
from modelhub.catalog.handlers.community_support import UseCases, expect, is_request_clash, visible_subject
from modelhub.core.errors import FieldViolation, InvalidArgument, NotFound


class Comments(UseCases):
    async def post(
        self, actor: Actor, kind: SubjectKind, subject_id: str, parent_id: str, body: str, request_id: str
    ) -> q.CommentRow:
        digest = comment_fingerprint(kind.value, subject_id, parent_id, body)
        if existing := await self.created_by(actor, "comment", request_id, digest):
            return await self.get(actor, existing)
        comment_id = str(uuid7())

        async def post(repo: CommunityRepository, now: datetime) -> None:
            await visible_subject(repo.conn, actor, kind, subject_id)
            if parent_id:
                parent = await q.comment(repo.conn, parent_id)
                if parent is None or (parent.subject_kind, parent.subject_id) != (kind.value, subject_id):
                    raise InvalidArgument(
                        f"comment {parent_id} is not a comment of {kind.value} {subject_id}: reply to one of its "
                        "comments",
                        violations=[FieldViolation("parent_comment_id", "must be a comment of the same subject")],
                    )
            comment = Comment.post(comment_id, actor, kind, subject_id, parent_id, body, request_id, now)
            await repo.save(comment)

        try:
            await self.run(None, post)
        except exc.IntegrityError as error:
            if not is_request_clash(error):
                raise
            comment_id = await self.created_by(actor, "comment", request_id, digest) or comment_id
        return await self.get(actor, comment_id)

    async def update(self, actor: Actor, comment_id: str, expected_version: int, body: str) -> q.CommentRow:
        async def update(repo: CommunityRepository, now: datetime) -> None:
            comment = await self._editable(repo, actor, comment_id)
            expect(comment, expected_version)
            comment.edit(actor, body, now)
            await repo.save(comment)

        await self.run(expected_version, update)
        return await self.get(actor, comment_id)

    async def delete(self, actor: Actor, comment_id: str, expected_version: int | None) -> q.CommentRow:
        async def delete(repo: CommunityRepository, now: datetime) -> None:
            comment = await self._editable(repo, actor, comment_id)
            expect(comment, expected_version)
            comment.delete(actor, now)
            await repo.save(comment)

        await self.run(expected_version, delete)
        return await self.get(actor, comment_id)

    async def get(self, actor: Actor | None, comment_id: str) -> q.CommentRow:
        """A comment whose subject the actor may see."""

        async def read(conn: AsyncConnection) -> q.CommentRow:
            row = await q.comment(conn, comment_id)
            if row is None:
                raise not_found("comment", comment_id)
            await _subject_or_not_found(conn, actor, row.subject_kind, row.subject_id, comment_id)
            return row

        return await self.read(read)

    async def list_comments(
        self, actor: Actor | None, kind: SubjectKind, subject_id: str, *, after: str | None, limit: int
    ) -> list[q.CommentRow]:
        async def read(conn: AsyncConnection) -> list[q.CommentRow]:
            await visible_subject(conn, actor, kind, subject_id)
            return await q.list_comments(conn, kind.value, subject_id, after, limit)

        return await self.read(read)

    async def _editable(self, repo: CommunityRepository, actor: Actor, comment_id: str) -> Comment:
        comment = await repo.load(Comment, comment_stream(comment_id))
        if not comment.exists:
            raise not_found("comment", comment_id)
        await _subject_or_not_found(repo.conn, actor, comment.subject_kind, comment.subject_id, comment_id)
        comment.require_editor(actor)
        return comment


async def _subject_or_not_found(
    conn: AsyncConnection, actor: Actor | None, kind: str, subject_id: str, comment_id: str
) -> None:
    """A comment is hidden with its subject: NotFound (for the comment) when the subject is not visible."""
    try:
        await visible_subject(conn, actor, SubjectKind(kind), subject_id)
    except NotFound as error:
        raise not_found("comment", comment_id) from error
