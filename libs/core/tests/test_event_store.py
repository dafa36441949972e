"""Event store against a real PostgreSQL: append, optimistic concurrency, immutability, rehydration."""

import asyncio

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.errors import StreamVersionConflict
from modelhub.core.events.aggregate import load, save
from modelhub.core.events.model import START, NewEvent, RecordedEvent
from modelhub.core.events.store import NO_STREAM, EventStore
from modelhub.testing.v1 import testing_pb2

from .widgets import RENAMED, Widget, make_registry, renamed


@pytest.fixture
def store() -> EventStore:
    return EventStore(make_registry())


async def test_append_then_read_stream(engine: AsyncEngine, store: EventStore) -> None:
    async with engine.begin() as conn:
        written = await store.append(
            conn, "widget-1", [NewEvent(renamed("A")), NewEvent(renamed("B"))], expected_version=NO_STREAM
        )
    assert [e.stream_version for e in written] == [1, 2]
    async with engine.connect() as conn:
        read = await store.read_stream(conn, "widget-1")
        assert await store.stream_version(conn, "widget-1") == 2
    assert [e.event_id for e in read] == [e.event_id for e in written]
    assert [store.registry.decode(e.event_type, e.schema_version, e.payload).display_name for e in read] == [
        "A",
        "B",
    ]
    assert read[0].correlation_id == str(read[0].event_id)  # a root event correlates with itself


async def test_read_stream_returns_only_the_latest_event_of_latest_only_types(engine: AsyncEngine) -> None:
    """State published again and again (counts) is read as its latest event only, the other events whole; the
    stream's last event always comes (here of either type), so a reader still learns the stream's version."""
    registry = make_registry()
    registry.register("testing.Echoed", testing_pb2.EchoRequest)
    store = EventStore(registry)

    def echoed(message: str) -> testing_pb2.EchoRequest:
        return testing_pb2.EchoRequest(message=message)

    payloads = [renamed("A"), echoed("1"), echoed("2"), renamed("B"), echoed("3"), renamed("C"), renamed("D")]
    async with engine.begin() as conn:
        await store.append(conn, "widget-latest", [NewEvent(p) for p in payloads], expected_version=NO_STREAM)
        await store.append(conn, "widget-other", [NewEvent(echoed("elsewhere"))], expected_version=NO_STREAM)
    async with engine.connect() as conn:
        latest_echo = await store.read_stream(conn, "widget-latest", latest_only="testing.Echoed")
        latest_rename = await store.read_stream(conn, "widget-latest", latest_only=RENAMED)
        after = await store.read_stream(conn, "widget-latest", 3, latest_only="testing.Echoed")
        everything = await store.read_stream(conn, "widget-latest", latest_only="testing.Unknown")
        unfiltered = await store.read_stream(conn, "widget-latest")

    def versions(events: list[RecordedEvent]) -> list[int]:
        return [e.stream_version for e in events]

    assert versions(latest_echo) == [1, 4, 5, 6, 7]
    assert registry.decode("testing.Echoed", 1, latest_echo[2].payload) == echoed("3")
    assert versions(latest_rename) == [2, 3, 5, 7], "the latest rename is also the stream's last event"
    assert versions(after) == [4, 5, 6, 7]
    assert versions(everything) == versions(unfiltered) == [1, 2, 3, 4, 5, 6, 7]


async def test_read_stream_leaves_out_the_payloads_of_named_types(engine: AsyncEngine, store: EventStore) -> None:
    async with engine.begin() as conn:
        written = await store.append(
            conn, "widget-bare", [NewEvent(renamed("A")), NewEvent(renamed("B"))], expected_version=NO_STREAM
        )
    async with engine.connect() as conn:
        bare = await store.read_stream(conn, "widget-bare", without_payload=[RENAMED])
        other = await store.read_stream(conn, "widget-bare", without_payload=["testing.SomethingElse"])
    assert [(e.event_id, e.stream_version, e.event_type) for e in bare] == [
        (e.event_id, e.stream_version, e.event_type) for e in written
    ]
    assert [e.payload for e in bare] == [b"", b""]
    assert [e.payload for e in other] == [e.payload for e in written]


async def test_stale_writer_gets_conflict_naming_current_version(engine: AsyncEngine, store: EventStore) -> None:
    async with engine.begin() as conn:
        await store.append(conn, "w", [NewEvent(renamed("A"))], expected_version=NO_STREAM)
    async with engine.begin() as conn:
        await store.append(conn, "w", [NewEvent(renamed("B"))], expected_version=1)
    with pytest.raises(StreamVersionConflict) as caught:
        async with engine.begin() as conn:
            await store.append(conn, "w", [NewEvent(renamed("stale"))], expected_version=1)
    assert caught.value.actual_version == 2
    assert caught.value.expected_version == 1
    assert "version 2" in caught.value.message
    async with engine.connect() as conn:
        assert len(await store.read_stream(conn, "w")) == 2


async def test_concurrent_writers_of_one_version_exactly_one_wins(engine: AsyncEngine, store: EventStore) -> None:
    async def write(name: str) -> bool:
        try:
            async with engine.begin() as conn:
                await store.append(conn, "race", [NewEvent(renamed(name))], expected_version=NO_STREAM)
                await conn.execute(text("SELECT pg_sleep(0.05)"))
            return True
        except StreamVersionConflict:
            return False

    results = await asyncio.gather(*(write(f"w{i}") for i in range(10)))
    assert sum(results) == 1
    async with engine.connect() as conn:
        assert len(await store.read_stream(conn, "race")) == 1


async def test_log_refuses_update_and_delete(engine: AsyncEngine, store: EventStore) -> None:
    async with engine.begin() as conn:
        await store.append(conn, "w", [NewEvent(renamed("A"))], expected_version=NO_STREAM)
    for statement in ("UPDATE events SET stream_id = 'x'", "DELETE FROM events", "TRUNCATE events"):
        with pytest.raises(exc.DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    async with engine.connect() as conn:
        assert len(await store.read_all(conn, START)) == 1


async def test_aggregate_rehydrates_and_saves_with_concurrency_check(engine: AsyncEngine, store: EventStore) -> None:
    async with engine.begin() as conn:
        widget = await load(conn, store, Widget, "widget-7")
        widget.rename("First")
        widget.rename("Second")
        await save(conn, store, widget)
    async with engine.begin() as conn:
        again = await load(conn, store, Widget, "widget-7")
    assert (again.name, again.renames, again.version) == ("Second", 2, 2)

    async with engine.connect() as conn:
        first, second = (
            await load(conn, store, Widget, "widget-7"),
            await load(conn, store, Widget, "widget-7"),
        )
    first.rename("Third")
    second.rename("Other")
    async with engine.begin() as conn:
        await save(conn, store, first)
    with pytest.raises(StreamVersionConflict):
        async with engine.begin() as conn:
            await save(conn, store, second)
