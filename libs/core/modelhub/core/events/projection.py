"""Read models as projections of the local event log: applied live by a runner, rebuildable at any time.

A projection's tables and its checkpoint are written in the same transaction, so a crash never leaves a
read model that has applied an event its checkpoint does not cover (or the reverse). `rebuild` clears the
read model and replays the whole log in one transaction: readers see the old model until it commits, then
the new one, and the result equals what the live runner built.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelhub.core.events.checkpoints import load_checkpoint, lock_reader, save_checkpoint
from modelhub.core.events.model import START, RecordedEvent
from modelhub.core.events.store import EventStore


class Projection(Protocol):
    """A read model fed by events. `apply` must be deterministic and use only the event and the model."""

    name: str

    async def reset(self, conn: AsyncConnection) -> None:
        """Empty the read model (use DELETE, not TRUNCATE, so readers are not blocked during a rebuild)."""

    async def apply(self, conn: AsyncConnection, event: RecordedEvent, payload: Message) -> None:
        """Apply one event; events of types the projection ignores are simply skipped."""


def _checkpoint_name(projection: Projection) -> str:
    return f"projection:{projection.name}"


class ProjectionRunner:
    """Keeps one projection up to date by tailing the event store."""

    def __init__(
        self, engine: AsyncEngine, store: EventStore, projection: Projection, *, batch_size: int = 500
    ) -> None:
        self.engine = engine
        self.store = store
        self.projection = projection
        self.batch_size = batch_size

    async def run_once(self) -> int:
        """Apply the next batch of events; returns how many were read (0 when caught up)."""
        async with self.engine.begin() as conn:
            await lock_reader(conn, _checkpoint_name(self.projection))
            position = await load_checkpoint(conn, _checkpoint_name(self.projection))
            batch = await self.store.read_all(conn, position, self.batch_size)
            await _apply_all(conn, self.store, self.projection, batch)
            if batch:
                await save_checkpoint(conn, _checkpoint_name(self.projection), batch[-1].global_position)
        return len(batch)

    async def catch_up(self) -> int:
        """Apply everything below the horizon now; returns how many events were applied."""
        total = 0
        while count := await self.run_once():
            total += count
        return total

    async def run(self, stop: asyncio.Event, idle_sleep: float = 0.05) -> None:
        """Tail the store until `stop` is set."""
        while not stop.is_set():
            if await self.run_once() == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle_sleep)


async def rebuild(engine: AsyncEngine, store: EventStore, projection: Projection, batch_size: int = 1000) -> int:
    """Clear the read model and replay the whole log into it, atomically; returns the events replayed."""
    total = 0
    async with engine.begin() as conn:
        await lock_reader(conn, _checkpoint_name(projection))
        await projection.reset(conn)
        position = START
        while batch := await store.read_all(conn, position, batch_size):
            await _apply_all(conn, store, projection, batch)
            position = batch[-1].global_position
            total += len(batch)
        await save_checkpoint(conn, _checkpoint_name(projection), position)
    return total


async def _apply_all(
    conn: AsyncConnection, store: EventStore, projection: Projection, batch: list[RecordedEvent]
) -> None:
    for event in batch:
        if store.registry.knows(event.event_type):
            payload = store.registry.decode(event.event_type, event.schema_version, event.payload)
            await projection.apply(conn, event, payload)
