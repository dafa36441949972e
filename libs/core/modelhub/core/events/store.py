"""The event store: an append-only log in the service's own PostgreSQL database.

Writes: `append` adds events to one stream inside the caller's transaction, so the events commit (or not)
together with the state change they describe; that row *is* the outbox. Optimistic concurrency: the
caller states the version it read, and a concurrent writer that got there first makes the append fail
with StreamVersionConflict (the unique (stream_id, stream_version) key decides; nothing is overwritten).

Reads in global order: each row records the id of the transaction that wrote it (xid8). `read_all`
returns only events of transactions older than the oldest transaction still running
(`pg_snapshot_xmin`), ordered by (transaction id, position). Every transaction below that horizon has
finished, so no event can later appear *before* a position a reader has passed: a tailing reader never
skips an event that commits late, however slow its transaction was, and never blocks a writer. The cost:
a long-running transaction anywhere in the cluster holds the horizon back and delays readers (not
writers) until it ends. docs/adr/0002-global-order-by-transaction-id.md gives the reasons.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import RowMapping, exc, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.core.errors import StreamVersionConflict
from modelhub.core.events.model import GlobalPosition, NewEvent, RecordedEvent
from modelhub.core.events.registry import EventRegistry
from modelhub.core.events.schema import STREAM_VERSION_CONSTRAINT, events
from modelhub.core.telemetry.propagation import inject_headers

NO_STREAM = 0
"""Expected version of a stream that must not exist yet."""

_COLUMNS_BUT_PAYLOAD = (
    # xid8 read as text under another name: ORDER BY must still see the xid8 column, not this alias.
    "position, transaction_id::text AS transaction_id_text, event_id, stream_id, stream_version, event_type, "
    "schema_version, occurred_at, correlation_id, causation_id, traceparent, tracestate"
)
_COLUMNS = f"{_COLUMNS_BUT_PAYLOAD}, payload"

_READ_ALL = text(
    f"""
    SELECT {_COLUMNS} FROM events
    WHERE (transaction_id, position) > (CAST(:tx AS text)::xid8, :pos)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY transaction_id, position
    LIMIT :limit
    """
)

_READ_STREAM = text(
    f"""
    SELECT {_COLUMNS_BUT_PAYLOAD},
           CASE WHEN event_type = ANY(CAST(:bare AS text[])) THEN NULL ELSE payload END AS payload
    FROM events
    WHERE stream_id = :stream_id AND stream_version > :after
      AND (CAST(:latest_only AS text) IS NULL OR event_type <> :latest_only
           OR stream_version = (SELECT max(stream_version) FROM events
                                WHERE stream_id = :stream_id AND event_type = :latest_only))
    ORDER BY stream_version
    """
)


def _record(row: RowMapping) -> RecordedEvent:
    occurred_at: datetime = row["occurred_at"]
    return RecordedEvent(
        global_position=GlobalPosition(int(row["transaction_id_text"]), row["position"]),
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        event_type=row["event_type"],
        schema_version=row["schema_version"],
        payload=bytes(row["payload"] or b""),
        occurred_at=occurred_at,
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        traceparent=row["traceparent"],
        tracestate=row["tracestate"],
    )


class EventStore:
    """Appends to and reads from the `events` table; payload types come from the registry."""

    def __init__(self, registry: EventRegistry) -> None:
        self.registry = registry

    async def append(
        self,
        conn: AsyncConnection,
        stream_id: str,
        new_events: Sequence[NewEvent],
        *,
        expected_version: int,
    ) -> list[RecordedEvent]:
        """Append events to `stream_id`, which must be at `expected_version` (NO_STREAM for a new stream).

        Runs in the caller's transaction: nothing is visible to readers until it commits. Raises
        StreamVersionConflict, naming the current version, when another writer got there first; the
        transaction is then aborted and must be rolled back (retry the whole command).
        """
        if not new_events:
            return []
        carrier: dict[str, str] = {}
        inject_headers(carrier)
        rows: list[dict[str, Any]] = []
        for offset, event in enumerate(new_events, start=1):
            event_type, schema_version = self.registry.type_of(event.payload)
            rows.append(
                {
                    "event_id": event.event_id,
                    "stream_id": stream_id,
                    "stream_version": expected_version + offset,
                    "event_type": event_type,
                    "schema_version": schema_version,
                    "payload": event.payload.SerializeToString(deterministic=True),
                    "correlation_id": event.correlation_id or str(event.event_id),
                    "causation_id": event.causation_id,
                    "traceparent": carrier.get("traceparent", ""),
                    "tracestate": carrier.get("tracestate", ""),
                }
            )
        statement = insert(events).returning(
            events.c.position,
            events.c.transaction_id,
            events.c.occurred_at,
            sort_by_parameter_order=True,
        )
        try:
            result = await conn.execute(statement, rows)
        except exc.IntegrityError as error:
            if _violates(error, STREAM_VERSION_CONSTRAINT):
                # The caller's transaction is aborted now (it must roll back and retry), so the current
                # version is read on a connection of its own; the winner has committed, or we would not
                # have hit its key.
                async with conn.engine.connect() as other:
                    actual = await self.stream_version(other, stream_id)
                raise StreamVersionConflict(stream_id, expected_version, actual) from None
            raise
        returned = result.all()
        return [
            RecordedEvent(
                global_position=GlobalPosition(int(ret.transaction_id), ret.position),
                event_id=row["event_id"],
                stream_id=stream_id,
                stream_version=row["stream_version"],
                event_type=row["event_type"],
                schema_version=row["schema_version"],
                payload=row["payload"],
                occurred_at=ret.occurred_at,
                correlation_id=row["correlation_id"],
                causation_id=row["causation_id"],
                traceparent=row["traceparent"],
                tracestate=row["tracestate"],
            )
            for row, ret in zip(rows, returned, strict=True)
        ]

    async def stream_version(self, conn: AsyncConnection, stream_id: str) -> int:
        """Current version of a stream (NO_STREAM if it has no events)."""
        result = await conn.execute(
            text("SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = :s"), {"s": stream_id}
        )
        return int(result.scalar_one())

    async def read_stream(
        self,
        conn: AsyncConnection,
        stream_id: str,
        after_version: int = 0,
        *,
        without_payload: Collection[str] = (),
        latest_only: str | None = None,
    ) -> list[RecordedEvent]:
        """The stream's events after `after_version`, in stream order (one statement: one consistent read).

        Events of the types in `without_payload` come with an empty payload, their bytes neither sent nor decoded:
        for a caller that needs only their place in the stream (an aggregate folding its events skips the state
        snapshots written beside them, each as large as the whole state). Of the type `latest_only`, only the
        stream's latest event is returned: for state that each one replaces whole (counts published again and
        again), which would otherwise make every read grow with the stream's age. The stream's last event is
        returned either way (it is of another type, or the latest of that one), so the last one read still gives
        the stream's version."""
        result = await conn.execute(
            _READ_STREAM,
            {
                "stream_id": stream_id,
                "after": after_version,
                "bare": list(without_payload),
                "latest_only": latest_only,
            },
        )
        return [_record(row) for row in result.mappings()]

    async def read_all(self, conn: AsyncConnection, after: GlobalPosition, limit: int = 1000) -> list[RecordedEvent]:
        """Up to `limit` events after `after` in global order, below the visibility horizon."""
        result = await conn.execute(_READ_ALL, {"tx": str(after.transaction_id), "pos": after.position, "limit": limit})
        return [_record(row) for row in result.mappings()]

    async def event_by_id(self, conn: AsyncConnection, event_id: uuid.UUID) -> RecordedEvent | None:
        result = await conn.execute(text(f"SELECT {_COLUMNS} FROM events WHERE event_id = :id"), {"id": event_id})
        row = result.mappings().first()
        return _record(row) if row else None


def _violates(error: exc.IntegrityError, constraint: str) -> bool:
    orig = error.orig
    return isinstance(orig, pg_errors.UniqueViolation) and orig.diag.constraint_name == constraint
