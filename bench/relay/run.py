"""Benchmark of the event backbone: append, relay, and end-to-end through an idempotent consumer.

Starts its own durable PostgreSQL (fsync on) and NATS JetStream server, then measures in one run:
- append: events committed per second by concurrent writers (one event per transaction);
- raw baseline: JetStream asynchronous publishes per second of the same envelopes on the same server;
- relay: events per second the outbox relay publishes from a backlog (and its ratio to the baseline);
- end-to-end: events per second from a committed backlog to the consumer's committed effect, and the
  latency from commit to effect under a steady write load; the relay runs in its own process there, as
  it does in production (inside the producing service, not the consuming one).
Writes bench/results/relay.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from nats.aio.client import Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.db import create_engine, migrate
from modelhub.core.events.consumer import ConsumerSettings, IdempotentConsumer
from modelhub.core.events.model import START, NewEvent, ReceivedEvent
from modelhub.core.events.registry import EventRegistry
from modelhub.core.events.relay import OutboxRelay
from modelhub.core.events.store import NO_STREAM, EventStore
from modelhub.core.nats import (
    connect,
    ensure_stream,
    events_stream_config,
    events_stream_name,
    events_subject,
)
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.postgres import PostgresServer
from modelhub.testing.v1 import testing_pb2

EVENT = "testing.WidgetRenamed"
BACKLOG = 30_000
WRITERS = 16
APPENDS = 6_000
STEADY_RATE = 1_000  # events/s offered during the latency run
STEADY_SECONDS = 5
REPEATS = 3
IN_FLIGHT = 2000  # publishes in flight, for the relay and the raw baseline alike
WARM_UP_SECONDS = 3
RESULTS = Path(__file__).parent.parent / "results" / "relay.json"


def registry() -> EventRegistry:
    reg = EventRegistry()
    reg.register(EVENT, testing_pb2.WidgetRenamedV2, version=1)
    return reg


def payload(i: int) -> testing_pb2.WidgetRenamedV2:
    return testing_pb2.WidgetRenamedV2(display_name=f"Widget number {i}", slug=f"widget-number-{i}")


async def measure_appends(engine: AsyncEngine, store: EventStore) -> float:
    per_writer = APPENDS // WRITERS

    async def writer(w: int) -> None:
        for i in range(per_writer):
            async with engine.begin() as conn:
                await store.append(conn, f"a-{w}-{i}", [NewEvent(payload(i))], expected_version=NO_STREAM)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    return per_writer * WRITERS / (time.perf_counter() - start)


async def fill_backlog(engine: AsyncEngine, store: EventStore, count: int, prefix: str) -> None:
    """Commit `count` events quickly (100 per transaction) to build a backlog."""
    for start in range(0, count, 100):
        async with engine.begin() as conn:
            for i in range(start, min(start + 100, count)):
                await store.append(conn, f"{prefix}-{i}", [NewEvent(payload(i))], expected_version=NO_STREAM)


async def measure_raw_publish(nats_url: str, envelopes: list[bytes], attempt: int) -> float:
    """Baseline: the same envelopes published straight to JetStream, asynchronously, with the relay's bound
    on publishes in flight."""
    nc = await connect(nats_url, "bench-raw")
    js = nc.jetstream(publish_async_max_pending=IN_FLIGHT)
    producer = f"rawbaseline{attempt}"
    await ensure_stream(js, events_stream_config(producer))
    subject = events_subject(producer, EVENT)
    start = time.perf_counter()
    futures = [await js.publish_async(subject, body, headers={"Nats-Msg-Id": str(uuid.uuid4())}) for body in envelopes]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - start
    await nc.close()
    return len(envelopes) / elapsed


async def measure_relay(engine: AsyncEngine, store: EventStore, nats_url: str, producer: str) -> tuple[float, int]:
    """The relay's own loop (`run`, pipelined) publishing the whole committed log to a fresh stream."""
    nc = await connect(nats_url, "bench-relay")
    relay = OutboxRelay(engine, store, nc, producer, max_in_flight=IN_FLIGHT)
    await relay.setup()
    pending = await relay.lag(cap=10_000_000)
    stop = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.create_task(relay.run(stop))
    while await relay.lag(cap=1):
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    await nc.close()
    return pending / elapsed, pending


async def make_effects(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS bench_effects (event_id uuid PRIMARY KEY, "
                "committed_at timestamptz NOT NULL, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
            )
        )


async def apply_effect(conn, event: ReceivedEvent) -> None:  # type: ignore[no-untyped-def]
    await conn.execute(
        text("INSERT INTO bench_effects (event_id, committed_at) VALUES (:id, :at)"),
        {"id": event.event_id, "at": event.occurred_at},
    )


async def apply_effects(conn, events) -> None:  # type: ignore[no-untyped-def]
    await conn.execute(
        text("INSERT INTO bench_effects (event_id, committed_at) VALUES (:id, :at)"),
        [{"id": e.event_id, "at": e.occurred_at} for e in events],
    )


async def effect_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM bench_effects"))).scalar_one())


def start_relay_process(db_url: str, nats_url: str, producer: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "relay_process.py"), db_url, nats_url, producer]
    )


def bench_consumer(
    engine: AsyncEngine, nc: Client, store: EventStore, producer: str, *, batched: bool
) -> IdempotentConsumer:
    handlers = (
        {"batch_handler": apply_effects, "event_types": {EVENT}} if batched else {"handlers": {EVENT: apply_effect}}
    )
    return IdempotentConsumer(
        engine,
        nc,
        store.registry,
        name=f"{producer}-bench",
        stream=events_stream_name(producer),
        subject=events_subject(producer),
        settings=ConsumerSettings(batch_size=500),
        **handlers,
    )


async def measure_end_to_end(
    engine: AsyncEngine, db_url: str, store: EventStore, nats_url: str, producer: str, expected: int, *, batched: bool
) -> float:
    """Committed backlog -> relay (its own process) -> JetStream -> consumer -> committed effects."""
    nc = await connect(nats_url, "bench-e2e")
    await ensure_stream(nc.jetstream(), events_stream_config(producer))
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM bench_effects"))
    consumer = bench_consumer(engine, nc, store, producer, batched=batched)
    await consumer.setup()
    stop = asyncio.Event()
    start = time.perf_counter()
    relay = start_relay_process(db_url, nats_url, producer)
    task = asyncio.create_task(consumer.run(stop))
    while await effect_count(engine) < expected:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    relay.terminate()
    relay.wait()
    await nc.close()
    return expected / elapsed


async def measure_latency(engine: AsyncEngine, db_url: str, store: EventStore, nats_url: str) -> dict[str, float]:
    """Commit-to-effect latency while writers offer STEADY_RATE events/s."""
    producer = "latency"
    nc = await connect(nats_url, "bench-latency")
    await ensure_stream(nc.jetstream(), events_stream_config(producer))
    consumer = bench_consumer(engine, nc, store, producer, batched=False)
    await consumer.setup()
    stop = asyncio.Event()
    relay = start_relay_process(db_url, nats_url, producer)
    task = asyncio.create_task(consumer.run(stop))
    # Steady state only: events committed in the first ~1.5 s after a relay process starts arrive late
    # (seen on this machine, cause not yet pinned down), which is start-up cost, not latency.
    await asyncio.sleep(WARM_UP_SECONDS)
    total = STEADY_RATE * STEADY_SECONDS
    interval = 10 / STEADY_RATE  # ten events every `interval` seconds
    start = time.perf_counter()
    for tick in range(total // 10):
        async with engine.begin() as conn:
            for i in range(10):
                await store.append(conn, f"l-{tick}-{i}", [NewEvent(payload(i))], expected_version=NO_STREAM)
        delay = start + (tick + 1) * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    while await effect_count(engine) < total:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    relay.terminate()
    relay.wait()
    await nc.close()
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT extract(epoch FROM applied_at - committed_at) * 1000 FROM bench_effects")
        )
        latencies = sorted(float(r[0]) for r in rows)
    return {
        "offered_events_per_s": STEADY_RATE,
        "warm_up_s": WARM_UP_SECONDS,
        "events": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "max_ms": round(latencies[-1], 2),
    }


async def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="modelhub-bench-"))
    root.chmod(0o755)  # PostgreSQL runs as the postgres user when we are root
    postgres = PostgresServer(root / "postgres", durable=True)
    nats_server = NatsServer(root / "nats")
    postgres.start()
    nats_server.start()
    try:
        db_url = _migrated(postgres, "bench")
        engine = create_engine(db_url, pool_size=WRITERS, max_overflow=4)
        store = EventStore(registry())
        await make_effects(engine)

        append_rate = await measure_appends(engine, store)
        await fill_backlog(engine, store, BACKLOG, "b")
        async with engine.connect() as conn:
            sample = (await store.read_all(conn, START, 1))[0]
        envelope = sample.to_envelope("bench").SerializeToString()
        # Alternate baseline and relay runs and keep the medians: both are sensitive to what else the two
        # cores are doing, and alternating exposes both to the same conditions.
        raw_rates, relay_rates = [], []
        for attempt in range(REPEATS):
            raw_rates.append(await measure_raw_publish(nats_server.url, [envelope] * (APPENDS + BACKLOG), attempt))
            rate, relayed = await measure_relay(engine, store, nats_server.url, f"relay{attempt}")
            relay_rates.append(rate)
        raw_rate, relay_rate = statistics.median(raw_rates), statistics.median(relay_rates)
        # A second producer name re-publishes the same committed log to a fresh stream: the relay and the
        # consumer run together, from committed events to committed effects.
        e2e_rate = await measure_end_to_end(engine, db_url, store, nats_server.url, "e2e", relayed, batched=False)
        e2e_batched_rate = await measure_end_to_end(
            engine, db_url, store, nats_server.url, "e2ebatch", relayed, batched=True
        )
        await engine.dispose()
        latency_url = _migrated(postgres, "bench_latency")
        latency_engine = create_engine(latency_url)
        await make_effects(latency_engine)
        latency = await measure_latency(latency_engine, latency_url, store, nats_server.url)
        await latency_engine.dispose()
    finally:
        nats_server.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)

    result = {
        "benchmark": "relay",
        "machine": {"cpus": _cpus(), "python": sys.version.split()[0], "platform": platform.platform()},
        "settings": {
            "postgres": "fsync on, synchronous_commit on",
            "jetstream_sync_interval": nats_server.sync_interval,
            "append_writers": WRITERS,
            "events_relayed": relayed,
            "envelope_bytes": len(envelope),
            "publishes_in_flight": IN_FLIGHT,
        },
        "append_events_per_s": round(append_rate),
        "baseline_raw_async_publish_per_s": round(raw_rate),
        "relay_publish_events_per_s": round(relay_rate),
        "runs": {"baseline": [round(r) for r in raw_rates], "relay": [round(r) for r in relay_rates]},
        "relay_to_baseline_ratio": round(relay_rate / raw_rate, 3),
        "end_to_end_events_per_s": {
            "per_event_handler": round(e2e_rate),
            "batch_handler": round(e2e_batched_rate),
        },
        "commit_to_effect_latency": latency,
        "goals": {"relay_to_baseline_ratio": 0.5, "end_to_end_events_per_s": 3000},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _migrated(postgres: PostgresServer, database: str) -> str:
    url = postgres.create_database(database)
    migrate(url)
    return url


def _cpus() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    asyncio.run(main())
