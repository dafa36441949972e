"""Helpers for tests that drive events from the store through the relay and JetStream to a consumer."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.events.model import NewEvent
from modelhub.core.events.store import NO_STREAM, EventStore

from .widgets import renamed


async def append_events(engine: AsyncEngine, store: EventStore, count: int, prefix: str = "w") -> list[uuid.UUID]:
    """Append `count` events, one new stream per event, each in its own transaction; return their ids."""
    ids = []
    for i in range(count):
        event = NewEvent(renamed(f"{prefix} {i}"))
        async with engine.begin() as conn:
            await store.append(conn, f"{prefix}-{uuid.uuid4().hex[:8]}", [event], expected_version=NO_STREAM)
        ids.append(event.event_id)
    return ids


async def effects(engine: AsyncEngine) -> dict[uuid.UUID, int]:
    """event id -> how many times the consumer's effect was applied."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT event_id, applied FROM effects"))
        return {row[0]: row[1] for row in rows}
