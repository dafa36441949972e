"""The transactional outbox relay: tails the event store and publishes every event to JetStream.

Events are committed with the state change that produced them (the `events` table is the outbox); the
relay publishes them afterwards, in global order, with `Nats-Msg-Id` = event id. It keeps a checkpoint of
what JetStream has acknowledged, and moves it only after every event of a batch is acknowledged.

Crash or NATS outage between commit and publish: nothing is lost, since the relay restarts from its
checkpoint. Something may be published twice (acknowledged, but the checkpoint not yet saved): JetStream
drops the repeat within the stream's duplicate window, and consumers' inboxes make any later repeat
harmless. Publishing is asynchronous with a bounded number of publishes in flight (never one synchronous
round trip per event), and pipelined: the next batch is read and sent while the previous one is acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core import locks
from modelhub.core.events.checkpoints import load_checkpoint, lock_reader, save_checkpoint
from modelhub.core.events.model import GlobalPosition, RecordedEvent
from modelhub.core.events.store import EventStore
from modelhub.core.nats import ensure_stream, events_stream_config, events_subject
from modelhub.core.telemetry import metrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

EVENT_TYPE_HEADER = "Modelhub-Event-Type"


@dataclass(frozen=True)
class _Sent:
    """A batch handed to the client: where it ends, its size, and the future of all its acks."""

    last: GlobalPosition
    count: int
    acks: asyncio.Future[list[PubAck]]


class OutboxRelay:
    """Publishes a service's committed events to its JetStream stream, in order, at least once."""

    def __init__(
        self,
        engine: AsyncEngine,
        store: EventStore,
        nc: Client,
        producer: str,
        *,
        batch_size: int = 1000,
        max_in_flight: int = 2000,
        ack_timeout: float = 5.0,
        idle_sleep: float = 0.02,
        pipeline_depth: int = 2,
    ) -> None:
        self.engine = engine
        self.store = store
        self.producer = producer
        self.batch_size = batch_size
        self.ack_timeout = ack_timeout
        self.idle_sleep = idle_sleep
        self.pipeline_depth = pipeline_depth
        self.checkpoint_name = f"relay:{producer}"
        self._js: JetStreamContext = nc.jetstream(publish_async_max_pending=max_in_flight)
        self._lag_checked = 0.0

    async def setup(self, *, replicas: int = 1) -> None:
        """Create (or update) the producer's stream with `replicas` copies (settings.stream_replicas)."""
        await ensure_stream(self._js, events_stream_config(self.producer, replicas=replicas))

    async def publish_once(self) -> int:
        """Publish the next batch and wait for it; returns how many events it held (0 when none is new).

        One batch at a time, under a transaction-scoped lock: for tests and tools. `run` pipelines.
        Raises if JetStream does not acknowledge the whole batch in time; the checkpoint then stays put
        and the next call publishes the batch again.
        """
        async with self.engine.begin() as conn:
            await lock_reader(conn, self.checkpoint_name)
            position = await load_checkpoint(conn, self.checkpoint_name)
            batch = await self.store.read_all(conn, position, self.batch_size)
            if not batch:
                return 0
            sent = await self._send(batch)
            try:
                await asyncio.wait_for(sent.acks, self.ack_timeout)
            finally:
                sent.acks.cancel()
            await save_checkpoint(conn, self.checkpoint_name, sent.last)
        metrics.RELAY_PUBLISHED.labels(self.producer).inc(sent.count)
        return sent.count

    async def _send(self, batch: list[RecordedEvent]) -> _Sent:
        """Start publishing a batch (bounded in flight by the client); the acks arrive later."""
        futures: list[asyncio.Future[PubAck]] = []
        with tracer.start_as_current_span("relay publish", kind=SpanKind.PRODUCER) as span:
            span.set_attribute("messaging.system", "nats")
            span.set_attribute("messaging.batch.message_count", len(batch))
            try:
                for event in batch:
                    futures.append(
                        await self._js.publish_async(
                            events_subject(self.producer, event.event_type),
                            event.to_envelope(self.producer).SerializeToString(),
                            headers=_headers(event),
                        )
                    )
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return _Sent(batch[-1].global_position, len(batch), asyncio.gather(*futures))

    async def _settle(self, sent: _Sent) -> None:
        """Wait for a batch's acks, then move the checkpoint past it."""
        await asyncio.wait_for(sent.acks, self.ack_timeout)
        async with self.engine.begin() as conn:
            await save_checkpoint(conn, self.checkpoint_name, sent.last)
        metrics.RELAY_PUBLISHED.labels(self.producer).inc(sent.count)

    async def lag(self, cap: int = 100_000) -> int:
        """Committed events not yet published (counted up to `cap`)."""
        async with self.engine.connect() as conn:
            position = await load_checkpoint(conn, self.checkpoint_name)
            result = await conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT 1 FROM events WHERE (transaction_id, position) > "
                    "(CAST(:tx AS text)::xid8, :pos) LIMIT :cap) AS pending"
                ),
                {"tx": str(position.transaction_id), "pos": position.position, "cap": cap},
            )
            return int(result.scalar_one())

    async def checkpoint(self) -> GlobalPosition:
        async with self.engine.connect() as conn:
            return await load_checkpoint(conn, self.checkpoint_name)

    async def run(self, stop: asyncio.Event, *, max_backoff: float = 5.0) -> None:
        """Publish until `stop` is set, riding out NATS and Postgres outages with capped backoff.

        While one batch waits for its acks the next is read and sent (up to `pipeline_depth` batches in
        flight); the checkpoint still moves only past fully acknowledged batches, in order.
        """
        backoff = 0.1
        while not stop.is_set():
            try:
                async with self._leadership(stop) as leading:
                    if leading:
                        await self._pump(stop)
                backoff = 0.1
            except Exception as error:  # an outage: wait, then resume from the checkpoint
                log.warning("relay %s: publish failed, retrying in %.1fs: %r", self.producer, backoff, error)
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, max_backoff)

    @contextlib.asynccontextmanager
    async def _leadership(self, stop: asyncio.Event) -> AsyncIterator[bool]:
        """Hold the relay's session lock: one active relay per database, the others wait as standbys.

        Yields False if `stop` came first. If the lock's connection dies, another relay may take over
        while this one still publishes: harmless (JetStream drops repeated ids, checkpoints only move
        forward) and short-lived, since this relay's next database call fails too.
        """
        async with self.engine.connect() as conn:
            while not stop.is_set():
                acquired = await locks.try_lock_session(conn, self.checkpoint_name)
                await conn.commit()  # no transaction stays open; the session lock stays
                if acquired:
                    break
                await _sleep_unless(stop, 1.0)
            else:
                yield False
                return
            try:
                yield True
            finally:
                with contextlib.suppress(Exception):
                    await locks.unlock_session(conn, self.checkpoint_name)
                    await conn.commit()

    async def _pump(self, stop: asyncio.Event) -> None:
        position = await self.checkpoint()
        in_flight: deque[_Sent] = deque()
        try:
            while not stop.is_set():
                async with self.engine.connect() as conn:
                    batch = await self.store.read_all(conn, position, self.batch_size)
                if batch:
                    in_flight.append(await self._send(batch))
                    position = batch[-1].global_position
                # Settle the oldest batches: all of them once caught up, else keep pipeline_depth in flight.
                while in_flight and (not batch or len(in_flight) > self.pipeline_depth):
                    await self._settle(in_flight.popleft())
                if not batch:
                    await self._report_lag()
                    await _sleep_unless(stop, self.idle_sleep)
            while in_flight:
                await self._settle(in_flight.popleft())
        finally:
            for sent in in_flight:
                sent.acks.cancel()

    async def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_checked >= 1.0:
            self._lag_checked = now
            metrics.RELAY_LAG.labels(self.producer).set(await self.lag())


def _headers(event: RecordedEvent) -> dict[str, str]:
    """NATS headers of an event. The trace context is the one recorded with the event, so a consumer's
    span continues the trace of the request that produced it."""
    headers = {"Nats-Msg-Id": str(event.event_id), EVENT_TYPE_HEADER: event.event_type}
    if event.traceparent:
        headers["traceparent"] = event.traceparent
        if event.tracestate:
            headers["tracestate"] = event.tracestate
    return headers


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
