"""Events as the store and the wire see them: new (to append), recorded (read back), and the envelope."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, total_ordering

from google.protobuf.message import Message
from uuid_utils.compat import uuid7

from modelhub.events.v1 import envelope_pb2


@dataclass(frozen=True)
class NewEvent:
    """An event to append: the payload message plus the ids that tie it to what caused it."""

    payload: Message
    event_id: uuid.UUID = field(default_factory=uuid7)
    correlation_id: str = ""
    causation_id: str = ""


@total_ordering
@dataclass(frozen=True)
class GlobalPosition:
    """A place in the store's global order: (transaction id, position within the table).

    Readers walk events in this order, and only below the visibility horizon (see EventStore.read_all),
    so a reader never passes an event that a still-running transaction may yet commit.
    """

    transaction_id: int = 0
    position: int = 0

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, GlobalPosition):
            return NotImplemented
        return (self.transaction_id, self.position) < (other.transaction_id, other.position)


START = GlobalPosition(0, 0)


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored: the raw payload bytes at the schema version they were written with."""

    global_position: GlobalPosition
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    payload: bytes
    occurred_at: datetime
    correlation_id: str = ""
    causation_id: str = ""
    traceparent: str = ""
    tracestate: str = ""

    def to_envelope(self, producer: str) -> envelope_pb2.EventEnvelope:
        """The wire form published to JetStream."""
        envelope = envelope_pb2.EventEnvelope(
            event_id=str(self.event_id),
            event_type=self.event_type,
            stream_id=self.stream_id,
            stream_version=self.stream_version,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            trace_context=envelope_pb2.TraceContext(traceparent=self.traceparent, tracestate=self.tracestate),
            schema_version=self.schema_version,
            payload=self.payload,
            producer=producer,
        )
        envelope.occurred_at.FromDatetime(self.occurred_at)
        return envelope


@dataclass(frozen=True)
class ReceivedEvent:
    """An event as a consumer sees it: envelope fields plus the payload upcast to its current schema."""

    envelope: envelope_pb2.EventEnvelope
    payload: Message
    headers: Mapping[str, str] = field(default_factory=dict)  # the NATS headers, trace context among them

    @cached_property
    def event_id(self) -> uuid.UUID:
        return uuid.UUID(self.envelope.event_id)

    @property
    def event_type(self) -> str:
        return self.envelope.event_type

    @property
    def stream_id(self) -> str:
        return self.envelope.stream_id

    @property
    def stream_version(self) -> int:
        return self.envelope.stream_version

    @property
    def occurred_at(self) -> datetime:
        return self.envelope.occurred_at.ToDatetime(tzinfo=UTC)
