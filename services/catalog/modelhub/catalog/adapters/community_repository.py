"""Loading and saving gallery and community aggregates: the stream is the truth, the read models follow inline.

`save` appends the aggregate's new events at the version it was loaded at (a concurrent writer makes it fail
with StreamVersionConflict and nothing is written) and applies them to the read models in the same
transaction. An aggregate with a `STATE_SCHEMA` (a collection, whose stream gains an event per item added or
removed) also has its state saved in `aggregate_states` (catalog_0007), in that transaction, once
STATE_EVERY events have come since the last saved one; loading it starts from that state and reads only the
events after it. An image's change always ends with a catalog.ImageSnapshot built from the aggregate and the
image's current counts (`save_image`).
"""

from __future__ import annotations

import json
from typing import Any, Final, TypeVar

from google.protobuf.message import Message
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.catalog.adapters import community_queries as q
from modelhub.catalog.adapters.community_events import from_payload, image_snapshot, to_payload
from modelhub.catalog.adapters.community_projection import CommunityProjection
from modelhub.catalog.adapters.events import IMAGE_SNAPSHOT
from modelhub.catalog.domain.community_base import CommunityAggregate
from modelhub.catalog.domain.gallery import Image, ImageCounts, image_stream
from modelhub.core.events.model import NewEvent, RecordedEvent
from modelhub.core.events.store import EventStore

A = TypeVar("A", bound=CommunityAggregate)

STATE_EVERY: Final = 100
"""Events after which an aggregate's state is saved again: a load reads fewer than this many beyond the state."""

_STATE = text("SELECT version, schema, state FROM aggregate_states WHERE stream_id = :stream_id")
_SAVE_STATE = text(
    """
    INSERT INTO aggregate_states AS a (stream_id, version, schema, state)
    VALUES (:stream_id, :version, :schema, CAST(:state AS jsonb))
    ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, schema = excluded.schema, state = excluded.state
    WHERE excluded.schema > a.schema OR (excluded.schema = a.schema AND excluded.version > a.version)
    """
)


class CommunityRepository:
    """Gallery and community aggregates over one connection (inside the caller's transaction)."""

    def __init__(self, conn: AsyncConnection, store: EventStore, projection: CommunityProjection | None = None) -> None:
        self.conn = conn
        self.store = store
        self.projection = projection or CommunityProjection()
        self._saved_at: dict[str, int] = {}
        """Stream -> the version of its saved state, as loaded (0: none)."""

    async def load(self, cls: type[A], stream_id: str, *, latest_only: str | None = None) -> A:
        """The aggregate folded from its stream (a new, non-existent one if the stream is empty); of the event
        type `latest_only`, each event of which replaces the state the last one carried, only the latest is read."""
        aggregate = cls(stream_id)
        if cls.STATE_SCHEMA is not None:
            await self._restore(aggregate)
        events = await self.store.read_stream(self.conn, stream_id, aggregate.version, latest_only=latest_only)
        for recorded in events:
            payload = self.store.registry.decode(recorded.event_type, recorded.schema_version, recorded.payload)
            event = from_payload(payload)
            if event is not None:
                aggregate.apply(event)
            aggregate.version = recorded.stream_version
        return aggregate

    async def load_image(self, image_id: str) -> Image:
        """An image folded from its events and its latest snapshot only: the snapshots' share of the aggregate is
        the counts, each replacing the last, and the stats job adds one whenever they change (a popular image's
        stream grows by one a minute), so reading them all would make every load grow with the image's age."""
        return await self.load(Image, image_stream(image_id), latest_only=IMAGE_SNAPSHOT)

    async def save(self, aggregate: CommunityAggregate, *, then: Message | None = None) -> list[RecordedEvent]:
        """Append the pending events (and `then`, a state-carrying payload, after them); no-op if none."""
        pairs: list[tuple[Message, Any]] = [(to_payload(event), event) for event in aggregate.pending]
        if then is not None:
            pairs.append((then, from_payload(then)))
        if not pairs:
            return []
        recorded = await self.append(aggregate.stream_id, pairs, aggregate.version)
        aggregate.pending = []
        aggregate.version = recorded[-1].stream_version
        schema = type(aggregate).STATE_SCHEMA
        if schema is not None and aggregate.version - self._saved_at.get(aggregate.stream_id, 0) >= STATE_EVERY:
            state = json.dumps(aggregate.state())
            params = {"stream_id": aggregate.stream_id, "version": aggregate.version, "schema": schema, "state": state}
            await self.conn.execute(_SAVE_STATE, params)
            self._saved_at[aggregate.stream_id] = aggregate.version
        return recorded

    async def _restore(self, aggregate: CommunityAggregate) -> None:
        """Start `aggregate` from its saved state, if it has one of its current schema."""
        row = (await self.conn.execute(_STATE, {"stream_id": aggregate.stream_id})).first()
        self._saved_at[aggregate.stream_id] = 0
        if row is None or row.schema != type(aggregate).STATE_SCHEMA:
            return
        aggregate.restore(row.state)
        aggregate.version = row.version
        self._saved_at[aggregate.stream_id] = row.version

    async def append(
        self, stream_id: str, pairs: list[tuple[Message, Any]], expected_version: int
    ) -> list[RecordedEvent]:
        """Append payloads at `expected_version` and apply their domain events (paired) to the read models."""
        recorded = await self.store.append(
            self.conn, stream_id, [NewEvent(p) for p, _ in pairs], expected_version=expected_version
        )
        for (_, event), record in zip(pairs, recorded, strict=True):
            if event is not None:
                await self.projection.apply_event(self.conn, event, record.stream_version)
        return recorded

    async def save_image(self, image: Image, counts: ImageCounts | None = None) -> list[RecordedEvent]:
        """Append the image's pending events and a snapshot with its current counts. With nothing pending, the
        snapshot is appended only if the counts differ from the last snapshot's (the stats job's case)."""
        if counts is None:
            counts = await q.image_counts(self.conn, image.id)
        if not image.pending and counts == image.counts:
            return []
        recorded = await self.save(image, then=image_snapshot(image, counts))
        image.counts = counts
        return recorded
