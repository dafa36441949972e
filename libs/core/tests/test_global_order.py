"""Gap test: a tailing reader sees exactly the committed events, however late slow transactions commit.

Identity values are handed out at insert time but become visible at commit, so a reader that simply
followed `position` would pass over an event whose transaction was still open and never come back. The
store's horizon rule must prevent that under many concurrent, deliberately slow writers.
"""

import asyncio
import random
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.events.model import START, GlobalPosition, NewEvent
from modelhub.core.events.store import NO_STREAM, EventStore

from .widgets import make_registry, renamed

WRITERS = 16
TRANSACTIONS_PER_WRITER = 12


async def test_tailing_reader_sees_exactly_the_committed_events(engine: AsyncEngine) -> None:
    store = EventStore(make_registry())
    committed: set[uuid.UUID] = set()
    rng = random.Random(7)
    writing = asyncio.Event()
    writing.set()

    async def writer(index: int) -> None:
        for n in range(TRANSACTIONS_PER_WRITER):
            events = [NewEvent(renamed(f"w{index}-{n}-{k}")) for k in range(rng.randint(1, 3))]
            rollback = rng.random() < 0.15
            try:
                async with engine.begin() as conn:
                    await store.append(conn, f"writer-{index}-{n}", events, expected_version=NO_STREAM)
                    # Hold the transaction open after the identity values were taken.
                    await conn.execute(text("SELECT pg_sleep(:s)"), {"s": rng.uniform(0, 0.25)})
                    if rollback:
                        raise RuntimeError("abandon this transaction")
            except RuntimeError:
                continue
            committed.update(e.event_id for e in events)

    seen: list[uuid.UUID] = []
    positions: list[GlobalPosition] = []

    async def tailer() -> None:
        position = START
        async with engine.connect() as conn:
            while True:
                still_writing = writing.is_set()
                batch = await store.read_all(conn, position, limit=7)
                await conn.commit()  # end the read transaction so the next read takes a fresh snapshot
                for event in batch:
                    seen.append(event.event_id)
                    positions.append(event.global_position)
                if batch:
                    position = batch[-1].global_position
                elif not still_writing:
                    return
                else:
                    await asyncio.sleep(0.005)

    tail = asyncio.create_task(tailer())
    await asyncio.gather(*(writer(i) for i in range(WRITERS)))
    writing.clear()
    await asyncio.wait_for(tail, 30)

    assert len(seen) == len(set(seen)), "an event was read twice"
    assert set(seen) == committed, (
        f"missed {len(committed - set(seen))} committed events, saw {len(set(seen) - committed)} uncommitted"
    )
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert len(committed) > WRITERS * TRANSACTIONS_PER_WRITER // 2
