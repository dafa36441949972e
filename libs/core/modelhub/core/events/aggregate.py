"""Event-sourced aggregates: state is the fold of the stream's events; changes are recorded as new events."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self, TypeVar

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.core.events.model import NewEvent, RecordedEvent
from modelhub.core.events.store import EventStore


class Aggregate(ABC):
    """Base for aggregates. Subclasses implement `apply` (no I/O, no validation: events are facts)
    and call `record` from their command methods after validating."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.version = 0  # the stream version loaded or last saved: what `save` expects to find
        self.pending: list[Message] = []

    @abstractmethod
    def apply(self, payload: Message) -> None:
        """Change in-memory state by one event."""

    def record(self, payload: Message) -> None:
        """Apply a new event now and keep it for saving."""
        self.apply(payload)
        self.pending.append(payload)

    @classmethod
    def rehydrate(cls, stream_id: str, history: list[tuple[RecordedEvent, Message]]) -> Self:
        """Rebuild state from decoded history, in stream order."""
        aggregate = cls(stream_id)
        for recorded, payload in history:
            aggregate.apply(payload)
            aggregate.version = recorded.stream_version
        return aggregate


A = TypeVar("A", bound=Aggregate)


async def load(conn: AsyncConnection, store: EventStore, cls: type[A], stream_id: str) -> A:
    """Read a stream and rehydrate the aggregate from it (a new, empty one if the stream is empty)."""
    recorded = await store.read_stream(conn, stream_id)
    history = [(r, store.registry.decode(r.event_type, r.schema_version, r.payload)) for r in recorded]
    return cls.rehydrate(stream_id, history)


async def save(
    conn: AsyncConnection,
    store: EventStore,
    aggregate: Aggregate,
    *,
    correlation_id: str = "",
    causation_id: str = "",
) -> list[RecordedEvent]:
    """Append the aggregate's pending events at the version it was loaded at (conflict if it moved)."""
    recorded = await store.append(
        conn,
        aggregate.stream_id,
        [NewEvent(p, correlation_id=correlation_id, causation_id=causation_id) for p in aggregate.pending],
        expected_version=aggregate.version,
    )
    aggregate.pending.clear()
    if recorded:
        aggregate.version = recorded[-1].stream_version
    return recorded
