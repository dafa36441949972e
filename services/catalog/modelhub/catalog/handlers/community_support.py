"""What the gallery and community use cases share: one transaction per command with the retry rule, the
expected-version check, idempotent creation by request id, and the visibility checks of what they point at
(models, versions, images).

Crash, retry, redelivery (every command): the aggregate's events, the read models and the stats marks commit
in one transaction, or nothing does; the outbox relay publishes what committed. A command sent with an
`expected_version` is run once: a concurrent writer makes it fail with ABORTED (StreamVersionConflict naming
the current version), and the client reads again. A command without one (creations, sets, unconditional
deletes) is run again on the fresh state when a concurrent writer wins, up to INTERNAL_RETRIES times; those
commands are no-ops when their effect is there already, so running them again is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final, TypeVar

from psycopg import errors as pg_errors
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelhub.catalog.adapters import community_queries as q
from modelhub.catalog.adapters import queries as model_queries
from modelhub.catalog.adapters.community_repository import CommunityRepository
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_base import CommunityAggregate, SubjectKind, not_found
from modelhub.catalog.domain.gallery import VersionRef
from modelhub.catalog.domain.model import can_see, model_not_found, version_not_found
from modelhub.catalog.handlers import Clock, utcnow
from modelhub.core.errors import AlreadyExists, StreamVersionConflict
from modelhub.core.events.store import EventStore

log = logging.getLogger(__name__)

INTERNAL_RETRIES: Final = 5
R = TypeVar("R")


def expect(aggregate: CommunityAggregate, expected_version: int | None) -> None:
    """Refuse a stale `expected_version` (None: the caller asked for no check)."""
    if expected_version is not None and expected_version != aggregate.version:
        raise StreamVersionConflict(aggregate.stream_id, expected_version, aggregate.version)


def is_request_clash(error: exc.IntegrityError) -> bool:
    """Whether a failed insert lost a race for the same request id (community_requests' primary key)."""
    orig = error.orig
    return isinstance(orig, pg_errors.UniqueViolation) and orig.diag.table_name == "community_requests"


class UseCases:
    """The plumbing of a set of use cases over one database and its event store."""

    def __init__(self, engine: AsyncEngine, store: EventStore, *, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock

    async def run(
        self,
        expected_version: int | None,
        work: Callable[[CommunityRepository, datetime], Awaitable[R]],
        *,
        retry: bool | None = None,
    ) -> R:
        """Run `work` in one transaction; again on a stream conflict when no version was expected."""
        attempts = INTERNAL_RETRIES if (expected_version is None if retry is None else retry) else 1
        for attempt in range(1, attempts + 1):
            try:
                async with self.engine.begin() as conn:
                    return await work(CommunityRepository(conn, self.store), self.clock())
            except StreamVersionConflict:
                if attempt == attempts:
                    raise
                log.info("a concurrent writer won; running the command again")
        raise AssertionError("unreachable")  # pragma: no cover

    async def read(self, work: Callable[[AsyncConnection], Awaitable[R]]) -> R:
        async with self.engine.connect() as conn:
            return await work(conn)

    async def created_by(self, actor: Actor, kind: str, request_id: str, digest: str) -> str | None:
        """The id of what an earlier request with this id created (None if none); AlreadyExists when that
        request asked for something else."""
        if not request_id:
            return None
        async with self.engine.connect() as conn:
            found = await q.created_by_request(conn, actor.id, kind, request_id)
        if found is None:
            return None
        item_id, stored = found
        if stored != digest:
            raise AlreadyExists(
                f"request id {request_id!r} was used for another {kind} ({item_id}): use a new request id",
                reason="REQUEST_ID_REUSED",
                metadata={f"{kind}_id": item_id},
            )
        return item_id


# -- what community items point at -----------------------------------------------------------------------


async def visible_model(conn: AsyncConnection, actor: Actor | None, model_id: str) -> q.ModelAccess:
    """The model if the actor may see it and it is not deleted, else NotFound."""
    model = await q.model_access(conn, model_id)
    if model is None or model.status == "Deleted" or not can_see(actor, model.owner_id, model.status):
        raise model_not_found(model_id)
    return model


async def visible_version(conn: AsyncConnection, actor: Actor | None, version_id: str) -> model_queries.VersionNode:
    """The version if the actor may see it and neither it nor its model is deleted, else NotFound."""
    node = (await model_queries.version_nodes(conn, [version_id])).get(version_id)
    if (
        node is None
        or "Deleted" in (node.version_status, node.model_status)
        or not can_see(actor, node.owner_id, node.model_status, node.version_status)
    ):
        raise version_not_found(version_id)
    return node


async def visible_image(conn: AsyncConnection, actor: Actor | None, image_id: str) -> q.ImageRow:
    """The image if the actor may see it and it is not deleted, else NotFound."""
    row = await q.image(conn, image_id)
    if row is None or row.status == "Deleted" or not await q.image_visible(conn, image_id, actor):
        raise not_found("image", image_id)
    return row


async def visible_subject(conn: AsyncConnection, actor: Actor | None, kind: SubjectKind, subject_id: str) -> str:
    """Check a model or image is visible (NotFound otherwise); returns the subject's owner."""
    if kind == SubjectKind.MODEL:
        return (await visible_model(conn, actor, subject_id)).owner_id
    return (await visible_image(conn, actor, subject_id)).owner_id


def version_ref(node: model_queries.VersionNode) -> VersionRef:
    return VersionRef(node.version_id, node.model_id)
