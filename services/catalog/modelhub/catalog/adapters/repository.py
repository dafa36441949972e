"""Loading and saving model aggregates: the event stream is the truth, the read models follow inline.

`save` appends the aggregate's new domain events and then one catalog.ModelSnapshot built from the state
after them, at the version the aggregate was loaded at (a concurrent writer makes it fail with
StreamVersionConflict and nothing is written), and applies them to the read models in the same
transaction: a caller reads its own writes as soon as it commits.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.catalog.adapters.events import MODEL_SNAPSHOT, from_payload, snapshot, to_payload
from modelhub.catalog.adapters.projection import ModelProjection
from modelhub.catalog.domain.model import Model, stream_id, version_not_found
from modelhub.core.events.model import NewEvent, RecordedEvent
from modelhub.core.events.store import EventStore


class ModelRepository:
    """Model aggregates over one connection (inside the caller's transaction)."""

    def __init__(self, conn: AsyncConnection, store: EventStore, projection: ModelProjection | None = None) -> None:
        self.conn = conn
        self.store = store
        self.projection = projection or ModelProjection()

    async def load(self, model_id: str) -> Model:
        """The model folded from its stream (an empty, non-existent one if the stream is empty)."""
        model = Model(model_id)
        # The snapshots beside the events are the whole public state each: read without their bytes (folding
        # skips them), or every command would read and decode the model's whole history of states.
        stream = await self.store.read_stream(self.conn, stream_id(model_id), without_payload=(MODEL_SNAPSHOT,))
        for recorded in stream:
            if recorded.event_type != MODEL_SNAPSHOT:
                payload = self.store.registry.decode(recorded.event_type, recorded.schema_version, recorded.payload)
                event = from_payload(payload)
                if event is not None:
                    model.apply(event)
            model.version = recorded.stream_version
        return model

    async def save(self, model: Model, *, correlation_id: str = "") -> list[RecordedEvent]:
        """Append the pending events plus a snapshot, and update the read models; no-op if nothing changed."""
        if not model.pending:
            return []
        events = model.pending
        payloads = [to_payload(event) for event in events]
        payloads.append(snapshot(model))
        recorded = await self.store.append(
            self.conn,
            model.stream_id,
            [NewEvent(p, correlation_id=correlation_id) for p in payloads],
            expected_version=model.version,
        )
        for event, record in zip(events, recorded, strict=False):
            await self.projection.apply_event(self.conn, event, record.stream_version)
        await self.projection.apply_snapshot(self.conn, model.id, recorded[-1].stream_version)
        model.pending = []
        model.version = recorded[-1].stream_version
        return recorded

    async def model_of_version(self, version_id: str) -> str:
        """The id of the model a version belongs to (NotFound if there is no such version)."""
        result = await self.conn.execute(
            text("SELECT model_id FROM model_versions WHERE model_version_id = :v"), {"v": version_id}
        )
        model_id = result.scalar_one_or_none()
        if model_id is None:
            raise version_not_found(version_id)
        return str(model_id)
