"""The transactional outbox relay: tails the event store and publishes every event to JetStream.

Events are committed with the state change that produced them (the `events` table is the outbox); the
relay publishes them afterwards, in global order, with `Nats-Msg-Id` = event id. It keeps a checkpoint of
what JetStream has acknowledged, and moves it only after every event of a batch is acknowledged.

Crash or NATS outage between commit and publish: nothing is lost, since the relay restarts from its
checkpoint. Something may be published twice (acknowledged, but the checkpoint not yet saved): JetStream
drops the repeat within the stream's duplicate window, and consumers' inboxes make any later repeat
harmless. Publishing is asynchronous with a bounded number of publishes in flight (never one synchronous
round trip per event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.events.checkpoints import load_checkpoint, lock_reader, save_checkpoint
from modelhub.core.events.model import GlobalPosition, RecordedEvent
from modelhub.core.events.store import EventStore
from modelhub.core.nats import ensure_stream, events_stream_config, events_subject
from modelhub.core.telemetry import metrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

EVENT_TYPE_HEADER = "Modelhub-Event-Type"


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
        max_in_flight: int = 1000,
        ack_timeout: float = 5.0,
        idle_sleep: float = 0.02,
    ) -> None:
        self.engine = engine
        self.store = store
        self.producer = producer
        self.batch_size = batch_size
        self.ack_timeout = ack_timeout
        self.idle_sleep = idle_sleep
        self.checkpoint_name = f"relay:{producer}"
        self._js: JetStreamContext = nc.jetstream(publish_async_max_pending=max_in_flight)
        self._lag_checked = 0.0

    async def setup(self) -> None:
        """Create (or update) the producer's stream."""
        await ensure_stream(self._js, events_stream_config(self.producer))

    async def publish_once(self) -> int:
        """Publish the next batch; returns how many events it held (0 when there is nothing new).

        Raises if JetStream does not acknowledge the whole batch in time; the checkpoint then stays put
        and the next call publishes the batch again.
        """
        async with self.engine.begin() as conn:
            # One relay at a time per database; a second replica waits here as a warm standby.
            await lock_reader(conn, self.checkpoint_name)
            position = await load_checkpoint(conn, self.checkpoint_name)
            batch = await self.store.read_all(conn, position, self.batch_size)
            if not batch:
                return 0
            await self._publish(batch)
            await save_checkpoint(conn, self.checkpoint_name, batch[-1].global_position)
        metrics.RELAY_PUBLISHED.labels(self.producer).inc(len(batch))
        return len(batch)

    async def _publish(self, batch: list[RecordedEvent]) -> None:
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
                await asyncio.wait_for(asyncio.gather(*futures), self.ack_timeout)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

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
        """Publish until `stop` is set, riding out NATS and Postgres outages with capped backoff."""
        backoff = 0.1
        while not stop.is_set():
            try:
                published = await self.publish_once()
                backoff = 0.1
                await self._report_lag()
            except Exception as error:  # an outage: wait and try the same batch again
                log.warning("relay %s: publish failed, retrying in %.1fs: %r", self.producer, backoff, error)
                published = 0
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            if published < self.batch_size:
                await _sleep_unless(stop, self.idle_sleep)

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
