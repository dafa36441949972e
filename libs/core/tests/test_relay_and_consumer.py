"""Outbox relay and idempotent consumer against real PostgreSQL and NATS JetStream."""

import asyncio
import contextlib
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.events.consumer import ERROR_HEADER, ConsumerSettings, Handler, IdempotentConsumer
from modelhub.core.events.model import ReceivedEvent
from modelhub.core.events.relay import OutboxRelay
from modelhub.core.events.store import EventStore
from modelhub.core.nats import DEAD_LETTER_STREAM, connect, events_stream_name, events_subject
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.waiting import wait_until
from modelhub.events.v1 import envelope_pb2

from .flow import append_events, effects
from .widgets import RENAMED, create_effects_table, make_registry, record_effect

WORKER = Path(__file__).parent / "relay_worker.py"


@pytest.fixture
async def prepared(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await create_effects_table(conn)
    return engine


@contextlib.asynccontextmanager
async def running(*runners: object) -> AsyncIterator[asyncio.Event]:
    """Run relays/consumers (anything with `run(stop)`) in the background for the block's duration."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]  # type: ignore[attr-defined]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


def make_consumer(
    engine: AsyncEngine, nc: Client, producer: str, handler: Handler = record_effect, **settings: object
) -> IdempotentConsumer:
    return IdempotentConsumer(
        engine,
        nc,
        make_registry(),
        name=f"{producer}-effects",
        stream=events_stream_name(producer),
        subject=events_subject(producer),
        handlers={RENAMED: handler},
        settings=ConsumerSettings(batch_size=100, **settings),  # type: ignore[arg-type]
    )


async def publish_committed(engine: AsyncEngine, store: EventStore, nc: Client, producer: str) -> OutboxRelay:
    """Create the producer's stream and publish everything committed so far (one batch)."""
    relay = OutboxRelay(engine, store, nc, producer)
    await relay.setup()
    await relay.publish_once()
    return relay


async def test_relay_publishes_in_order_with_event_id_as_message_id(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    store = EventStore(make_registry())
    ids = await append_events(prepared, store, 25)
    nc = await connect(nats_url, "test")
    try:
        relay = OutboxRelay(prepared, store, nc, unique_name.lower(), batch_size=10)
        await relay.setup()
        assert await relay.lag() == 25
        assert [await relay.publish_once() for _ in range(4)] == [10, 10, 5, 0]
        assert await relay.lag() == 0
        js = nc.jetstream()
        sub = await js.pull_subscribe(events_subject(unique_name.lower()), stream=events_stream_name(unique_name))
        messages = await sub.fetch(25, timeout=2)
        assert [uuid.UUID(m.headers["Nats-Msg-Id"]) for m in messages] == ids  # type: ignore[index]
        # Publishing the same event again (a relay crash before its checkpoint) is dropped by JetStream.
        info = await js.stream_info(events_stream_name(unique_name))
        ack = await js.publish(messages[0].subject, messages[0].data, headers=dict(messages[0].headers or {}))
        assert ack.duplicate
        assert (await js.stream_info(events_stream_name(unique_name))).state.messages == 25
        assert info.state.messages == 25
    finally:
        await nc.close()


async def test_relay_killed_between_publish_and_checkpoint_loses_nothing_and_applies_once(
    prepared: AsyncEngine, migrated_url: str, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    store = EventStore(make_registry())
    await append_events(prepared, store, 120, prefix="before")

    def start_relay(crash_at: int = 0) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(WORKER), migrated_url, nats_url, producer, str(crash_at)])

    # First run: dies (SIGKILL) right after JetStream acknowledged its second batch, before the checkpoint.
    first = start_relay(crash_at=2)
    assert await asyncio.to_thread(first.wait, 60) == -9
    # Then kill -9 at random moments while writers keep committing.
    rng = random.Random(3)
    writer = asyncio.create_task(append_events(prepared, store, 150, prefix="during"))
    for _ in range(5):
        worker = start_relay()
        await asyncio.sleep(rng.uniform(0.3, 1.0))
        worker.kill()
        await asyncio.to_thread(worker.wait)
    await writer
    final = start_relay()
    nc = await connect(nats_url, "test")
    try:
        consumer = make_consumer(prepared, nc, producer)
        await consumer.setup()
        async with running(consumer):
            await wait_until(lambda: _count_is(prepared, 270), 60, "every committed event applied")
        applied = await effects(prepared)
        assert len(applied) == 270
        assert set(applied.values()) == {1}
        # Republished batches were dropped by JetStream's duplicate window: one message per event.
        info = await nc.jetstream().stream_info(events_stream_name(producer))
        assert info.state.messages == 270
    finally:
        final.kill()
        final.wait()
        await nc.close()


async def _count_is(engine: AsyncEngine, expected: int) -> bool:
    return len(await effects(engine)) >= expected


async def test_consumer_that_dies_before_ack_gets_redelivery_and_applies_once(
    prepared: AsyncEngine, nats_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = unique_name.lower()
    store = EventStore(make_registry())
    ids = await append_events(prepared, store, 30)
    nc = await connect(nats_url, "test")
    try:
        await publish_committed(prepared, store, nc, producer)

        # The first consumer commits its effects, then "dies" before acking anything.
        doomed = make_consumer(prepared, nc, producer, ack_wait=1.0)
        await doomed.setup()

        async def no_ack(self: object) -> None:
            return None

        with monkeypatch.context() as patch:
            patch.setattr("nats.aio.msg.Msg.ack", no_ack)
            assert await doomed.process_batch() == 30
        assert await effects(prepared) == dict.fromkeys(ids, 1)

        # Its successor (same durable name) receives all 30 again after ack_wait and applies none twice.
        successor = make_consumer(prepared, nc, producer, ack_wait=1.0)
        await successor.setup()
        redelivered = 0

        async def all_redelivered() -> bool:
            nonlocal redelivered
            redelivered += await successor.process_batch()
            return redelivered >= 30

        await wait_until(all_redelivered, 15, "the unacknowledged batch to come back")
        assert redelivered == 30
        assert await effects(prepared) == dict.fromkeys(ids, 1)
        await wait_all_acknowledged(nc, events_stream_name(producer), successor.name)
    finally:
        await nc.close()


async def test_consumer_cancelled_mid_batch_commits_nothing_then_applies_once(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    store = EventStore(make_registry())
    ids = await append_events(prepared, store, 10)
    nc = await connect(nats_url, "test")
    try:
        await publish_committed(prepared, store, nc, producer)
        seen = 0
        hang = asyncio.Event()

        async def slow_effect(conn, event: ReceivedEvent) -> None:  # type: ignore[no-untyped-def]
            nonlocal seen
            await record_effect(conn, event)
            seen += 1
            if seen == 5:
                await hang.wait()  # the process "dies" here, mid-transaction

        consumer = make_consumer(prepared, nc, producer, slow_effect, ack_wait=1.0)
        await consumer.setup()
        task = asyncio.create_task(consumer.process_batch())
        await wait_until(lambda: _true(seen == 5), 10, "the handler to hang")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await effects(prepared) == {}  # the open transaction rolled back

        successor = make_consumer(prepared, nc, producer, ack_wait=1.0)
        await successor.setup()
        async with running(successor):
            await wait_until(lambda: _count_is(prepared, 10), 20, "redelivered events applied")
        assert await effects(prepared) == dict.fromkeys(ids, 1)
    finally:
        await nc.close()


async def _true(value: bool) -> bool:
    return value


async def test_poison_events_go_to_dead_letters_with_their_error_and_never_block(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    store = EventStore(make_registry())
    nc = await connect(nats_url, "test")
    try:
        relay = OutboxRelay(prepared, store, nc, producer)
        await relay.setup()
        js = nc.jetstream()
        # Garbage where an envelope should be, and an envelope whose id is no UUID, straight to the stream.
        await js.publish(events_subject(producer, RENAMED), b"\x08\xff\xff not an envelope")
        bad_id = envelope_pb2.EventEnvelope(event_id="not-a-uuid", event_type=RENAMED, schema_version=2)
        await js.publish(events_subject(producer, RENAMED), bad_id.SerializeToString())
        good = await append_events(prepared, store, 3, prefix="good")
        refused = (await append_events(prepared, store, 1, prefix="refused"))[0]
        later = await append_events(prepared, store, 3, prefix="later")
        await relay.publish_once()

        async def refuse_one(conn, event: ReceivedEvent) -> None:  # type: ignore[no-untyped-def]
            if event.event_id == refused:
                raise ValueError("this event breaks a rule of the read model")
            await record_effect(conn, event)

        consumer = make_consumer(prepared, nc, producer, refuse_one, max_deliver=3, retry_delay=0.1)
        await consumer.setup()
        dead = await js.subscribe(f"deadletter.{consumer.name}", stream=DEAD_LETTER_STREAM)
        async with running(consumer):
            await wait_until(lambda: _count_is(prepared, 6), 20, "the good events applied")
            letters = [await dead.next_msg(timeout=10) for _ in range(3)]
        assert set(await effects(prepared)) == set(good + later)
        errors = sorted(letter.headers[ERROR_HEADER] for letter in letters)  # type: ignore[index]
        assert errors[0].startswith("ValueError: this event breaks a rule")
        assert errors[1].startswith("undecodable event: Error parsing message")
        assert errors[2] == "undecodable event: event_id 'not-a-uuid' is not a UUID"
        info = await js.consumer_info(events_stream_name(producer), consumer.name)
        assert info.num_ack_pending == 0
        assert info.num_pending == 0
    finally:
        await nc.close()


async def test_nats_restarts_under_load_lose_nothing_and_consumers_resume(
    prepared: AsyncEngine, nats_server: NatsServer
) -> None:
    producer = "restart"
    store = EventStore(make_registry())
    relay_nc = await connect(nats_server.url, "relay")
    consumer_nc = await connect(nats_server.url, "consumer")
    try:
        relay = OutboxRelay(prepared, store, relay_nc, producer, ack_timeout=2.0)
        await relay.setup()
        consumer = make_consumer(prepared, consumer_nc, producer)
        await consumer.setup()
        async with running(relay, consumer):
            writer = asyncio.create_task(append_events(prepared, store, 400))
            for _ in range(2):
                await asyncio.sleep(0.7)
                nats_server.stop()
                await asyncio.sleep(0.5)
                nats_server.start()
            total = len(await writer)
            await wait_until(lambda: _count_is(prepared, total), 60, "every event applied after restarts")
        applied = await effects(prepared)
        assert len(applied) == 400
        assert set(applied.values()) == {1}
    finally:
        await relay_nc.close()
        await consumer_nc.close()


async def test_batch_handler_applies_each_new_event_once_and_isolates_a_failure(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    store = EventStore(make_registry())
    ids = await append_events(prepared, store, 40)
    nc = await connect(nats_url, "test")
    try:
        await publish_committed(prepared, store, nc, producer)
        batches: list[int] = []

        async def apply_many(conn, events: Sequence[ReceivedEvent]) -> None:  # type: ignore[no-untyped-def]
            batches.append(len(events))
            if any(e.event_id == ids[7] for e in events) and len(events) > 1:
                raise ValueError("one bad apple")  # only in a batch: alone, the event applies
            await conn.execute(
                text("INSERT INTO effects (event_id, stream_id) VALUES (:id, :s)"),
                [{"id": e.event_id, "s": e.stream_id} for e in events],
            )

        consumer = IdempotentConsumer(
            prepared,
            nc,
            make_registry(),
            name=f"{producer}-batch",
            stream=events_stream_name(producer),
            subject=events_subject(producer),
            batch_handler=apply_many,
            event_types={RENAMED},
            settings=ConsumerSettings(batch_size=100),
        )
        await consumer.setup()
        assert await consumer.process_batch() == 40
        assert await effects(prepared) == dict.fromkeys(ids, 1)
        assert batches[0] == 40 and batches[1:] == [1] * 40  # the fast path failed, then one by one
        # A replay of the same events (here: republished under new stream sequence numbers) has no effect.
        js = nc.jetstream()
        sub = await js.pull_subscribe(events_subject(producer), stream=events_stream_name(producer))
        for msg in await sub.fetch(40, timeout=2):
            await js.publish(msg.subject, msg.data)  # no Nats-Msg-Id: JetStream stores the copies
        assert await consumer.process_batch() == 40
        assert len(batches) == 41  # all duplicates: the handler was not called again
        assert await effects(prepared) == dict.fromkeys(ids, 1)
    finally:
        await nc.close()


async def test_a_standby_relay_takes_over_when_the_leader_stops(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    store = EventStore(make_registry())
    nc = await connect(nats_url, "test")
    js = nc.jetstream()

    async def stream_has(count: int) -> bool:
        return (await js.stream_info(events_stream_name(producer))).state.messages >= count

    try:
        leader = OutboxRelay(prepared, store, nc, producer, batch_size=20)
        standby = OutboxRelay(prepared, store, nc, producer, batch_size=20)
        await leader.setup()
        leader_stop, standby_stop = asyncio.Event(), asyncio.Event()
        leading = asyncio.create_task(leader.run(leader_stop))
        await append_events(prepared, store, 50, prefix="first")
        await wait_until(lambda: stream_has(50), 20, "the leader to publish")
        waiting = asyncio.create_task(standby.run(standby_stop))
        await append_events(prepared, store, 50, prefix="second")
        await wait_until(lambda: stream_has(100), 20, "the leader to publish more")
        leader_stop.set()
        await leading
        await append_events(prepared, store, 50, prefix="third")
        await wait_until(lambda: stream_has(150), 20, "the standby to take over")
        standby_stop.set()
        await waiting
        info = await js.stream_info(events_stream_name(producer))
        assert info.state.messages == 150
        assert await leader.lag() == 0
    finally:
        await nc.close()


async def test_an_event_whose_deliveries_all_crash_is_dead_lettered_not_dropped(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    store = EventStore(make_registry())
    ids = await append_events(prepared, store, 1)
    nc = await connect(nats_url, "test")
    try:
        await publish_committed(prepared, store, nc, producer)
        consumer = make_consumer(prepared, nc, producer, max_deliver=2, ack_wait=0.5)
        await consumer.setup()
        dead = await nc.jetstream().subscribe(f"deadletter.{consumer.name}", stream=DEAD_LETTER_STREAM)
        crashed = 0

        async def crash_on_delivery() -> bool:  # take the message and "die": no ack, no nak
            nonlocal crashed
            assert consumer._subscription is not None
            with contextlib.suppress(TimeoutError):
                crashed += len(await consumer._subscription.fetch(1, timeout=0.5))
            return crashed == 2

        await wait_until(crash_on_delivery, 15, "two deliveries that end in a crash")
        fetched = 0

        async def third_delivery() -> bool:
            nonlocal fetched
            fetched += await consumer.process_batch()
            return fetched == 1

        await wait_until(third_delivery, 15, "the third delivery")
        letter = await dead.next_msg(timeout=5)
        assert letter.headers[ERROR_HEADER] == "delivered 3 times without being applied"  # type: ignore[index]
        assert await effects(prepared) == {}
        info = await nc.jetstream().consumer_info(events_stream_name(producer), consumer.name)
        assert info.num_ack_pending == 0 and info.num_pending == 0 and ids
    finally:
        await nc.close()


async def test_max_ack_pending_lets_one_fetch_take_a_batch_above_the_server_default(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    store = EventStore(make_registry())
    ids = await append_events(prepared, store, 1500)  # JetStream's default max_ack_pending is 1000
    nc = await connect(nats_url, "test")
    try:
        relay = await publish_committed(prepared, store, nc, producer)
        while await relay.publish_once():  # the relay publishes 1000 per batch
            pass
        consumer = IdempotentConsumer(
            prepared,
            nc,
            make_registry(),
            name=f"{producer}-effects",
            stream=events_stream_name(producer),
            subject=events_subject(producer),
            handlers={RENAMED: record_effect},
            settings=ConsumerSettings(batch_size=1500, fetch_timeout=2.0, max_ack_pending=3000),
        )
        await consumer.setup()
        info = await nc.jetstream().consumer_info(events_stream_name(producer), consumer.name)
        assert info.config.max_ack_pending == 3000
        assert await consumer.process_batch() == 1500
        assert await effects(prepared) == dict.fromkeys(ids, 1)
        await wait_all_acknowledged(nc, events_stream_name(producer), consumer.name)
    finally:
        await nc.close()


async def test_setup_raises_an_existing_durable_consumers_limits_to_the_settings(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    store = EventStore(make_registry())
    await append_events(prepared, store, 3)
    nc = await connect(nats_url, "test")
    try:
        await publish_committed(prepared, store, nc, producer)
        await make_consumer(prepared, nc, producer, max_ack_pending=1000, ack_wait=30.0).setup()
        upgraded = make_consumer(prepared, nc, producer, max_ack_pending=20_000, ack_wait=45.0)
        await upgraded.setup()

        info = await nc.jetstream().consumer_info(events_stream_name(producer), upgraded.name)
        assert (info.config.max_ack_pending, info.config.ack_wait) == (20_000, 45.0)
        assert await upgraded.process_batch() == 3  # the durable keeps its place and serves the new settings
    finally:
        await nc.close()


async def wait_all_acknowledged(nc: Client, stream: str, consumer: str) -> None:
    """Wait until the consumer has nothing pending: acks are published without waiting for the server, so
    they arrive shortly after the batch that sent them."""
    js = nc.jetstream()

    async def all_acknowledged() -> bool:
        info = await js.consumer_info(stream, consumer)
        return info.num_ack_pending == 0 and info.num_pending == 0

    await wait_until(all_acknowledged, 15, f"every message acknowledged by {consumer}")


def held_until(gate: asyncio.Event, entered: asyncio.Event) -> Handler:
    """record_effect, but the first batch waits for `gate` (and sets `entered` when it starts waiting)."""

    async def handler(conn, event: ReceivedEvent) -> None:  # type: ignore[no-untyped-def]
        if not gate.is_set():
            entered.set()
            await gate.wait()
        await record_effect(conn, event)

    return handler


def prefetching_consumer(engine: AsyncEngine, nc: Client, producer: str, handler: Handler) -> IdempotentConsumer:
    """A consumer of `producer`'s effects that pulls batches of 100 and prefetches the next one. ack_wait is far
    above the tests' waits: a batch that were not nak'ed at a stop would come back too late for them."""
    settings = ConsumerSettings(
        batch_size=100, backlog_fetch_timeout=2.0, max_ack_pending=200, ack_wait=60.0, prefetch=True
    )
    return IdempotentConsumer(
        engine,
        nc,
        make_registry(),
        name=f"{producer}-effects",
        stream=events_stream_name(producer),
        subject=events_subject(producer),
        handlers={RENAMED: handler},
        settings=settings,
    )


async def each_applied_once_by(consumer: IdempotentConsumer, engine: AsyncEngine, ids: list[uuid.UUID]) -> None:
    """Run `consumer` until every event of `ids` has had its effect; each exactly once."""
    async with running(consumer):

        async def all_applied() -> bool:
            return len(await effects(engine)) == len(ids)

        await wait_until(all_applied, 15, f"all {len(ids)} events applied by the next consumer")
    assert await effects(engine) == dict.fromkeys(ids, 1)


async def test_a_prefetching_consumer_applies_a_backlog_once_and_gives_back_its_prefetched_batch_at_stop(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    store = EventStore(make_registry())
    ids = await append_events(prepared, store, 350)
    nc = await connect(nats_url, "test")
    entered, gate = asyncio.Event(), asyncio.Event()
    held_once = held_until(gate, entered)

    def consumer(handler: Handler) -> IdempotentConsumer:
        return prefetching_consumer(prepared, nc, producer, handler)

    js = nc.jetstream()
    try:
        await publish_committed(prepared, store, nc, producer)
        first = consumer(held_once)
        await first.setup()
        async with running(first) as stop:
            await asyncio.wait_for(entered.wait(), 15)

            async def next_batch_prefetched() -> bool:
                info = await js.consumer_info(events_stream_name(producer), first.name)
                return info.num_ack_pending == 200  # the held batch and the one pulled ahead of it

            await wait_until(next_batch_prefetched, 15, "the next batch prefetched")
            stop.set()
            gate.set()  # the held batch commits; the prefetched one is given back unapplied
        assert len(await effects(prepared)) == 100
        second = consumer(record_effect)
        await each_applied_once_by(second, prepared, ids)
        await wait_all_acknowledged(nc, events_stream_name(producer), second.name)
    finally:
        await nc.close()


async def test_a_stop_while_the_prefetch_pull_is_still_under_way_gives_back_what_it_received(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    """The prefetch's messages have arrived but its pull has not returned yet when the consumer stops (held
    here for a second after the real pull, so the stop always lands in that window): the stop waits for the
    pull, then naks what it got. The next consumer applies those at once, not after ack_wait (60 s)."""
    producer = unique_name.lower()
    store = EventStore(make_registry())
    ids = await append_events(prepared, store, 200)
    nc = await connect(nats_url, "test")
    entered, gate, prefetched = asyncio.Event(), asyncio.Event(), asyncio.Event()
    held_once = held_until(gate, entered)

    def consumer(handler: Handler) -> IdempotentConsumer:
        return prefetching_consumer(prepared, nc, producer, handler)

    try:
        await publish_committed(prepared, store, nc, producer)
        first = consumer(held_once)
        await first.setup()
        subscription = first._subscription
        assert subscription is not None
        pull, pulls = subscription.fetch, 0

        async def slow_to_return(*args: Any, **kwargs: Any) -> list[Msg]:
            nonlocal pulls
            pulls += 1
            messages = await pull(*args, **kwargs)
            if pulls == 2:  # the prefetch: its messages are here, its pull not over yet
                prefetched.set()
                await asyncio.sleep(1.0)
            return messages

        subscription.fetch = slow_to_return  # type: ignore[method-assign]
        async with running(first) as stop:
            await asyncio.wait_for(entered.wait(), 15)
            await asyncio.wait_for(prefetched.wait(), 15)
            stop.set()
            gate.set()  # the held batch commits; the prefetched one, still being pulled, is waited for and nak'ed
        assert len(await effects(prepared)) == 100
        await each_applied_once_by(consumer(record_effect), prepared, ids)
    finally:
        await nc.close()


async def inbox_rows(engine: AsyncEngine, consumer: str) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(text("SELECT count(*) FROM consumer_inbox WHERE consumer = :c"), {"c": consumer})
    return int(count or 0)


async def test_pruning_deletes_only_this_consumers_inbox_rows_past_the_retention(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    nc = await connect(nats_url, "test")
    try:
        consumer = make_consumer(prepared, nc, producer)
        other = f"{consumer.name}-other"
        async with prepared.begin() as conn:
            for name, age_days, count in ((consumer.name, 10, 25), (consumer.name, 1, 5), (other, 10, 7)):
                await conn.execute(
                    text(
                        "INSERT INTO consumer_inbox (consumer, event_id, processed_at) SELECT :c, gen_random_uuid(),"
                        " clock_timestamp() - make_interval(days => :age) FROM generate_series(1, :n)"
                    ),
                    {"c": name, "age": age_days, "n": count},
                )

        # Several small transactions (batch_size 10) delete exactly the 25 old rows of this consumer.
        assert await consumer.prune_inbox(timedelta(days=7), batch_size=10) == 25
        assert await inbox_rows(prepared, consumer.name) == 5
        assert await inbox_rows(prepared, other) == 7
        assert await consumer.prune_inbox(timedelta(days=7)) == 0
    finally:
        await nc.close()


async def test_a_running_consumer_prunes_its_inbox_when_a_retention_is_set(
    prepared: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    store = EventStore(make_registry())
    ids = await append_events(prepared, store, 20)
    nc = await connect(nats_url, "test")
    try:
        await publish_committed(prepared, store, nc, producer)
        consumer = make_consumer(prepared, nc, producer, inbox_retention=timedelta(0), inbox_prune_interval=0.2)
        await consumer.setup()
        async with running(consumer):

            async def applied_and_pruned() -> bool:
                return len(await effects(prepared)) == 20 and await inbox_rows(prepared, consumer.name) == 0

            await wait_until(applied_and_pruned, 15, "every event applied and the inbox pruned")
        assert await effects(prepared) == dict.fromkeys(ids, 1)
    finally:
        await nc.close()
