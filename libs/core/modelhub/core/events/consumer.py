"""Idempotent JetStream consumers: each event has its effect exactly once, whatever is redelivered.

A consumer is a durable pull consumer with explicit acks. For every fetched batch it opens one database
transaction; per message, inside a savepoint, it records (consumer, event id) in `consumer_inbox` and runs
the handler. A message whose id is already in the inbox is a duplicate (redelivery, replay, republish)
and is acknowledged without running the handler. The transaction commits, then the messages are acked.

- Crash before commit: nothing of the batch was applied; JetStream redelivers it after ack_wait.
- Crash after commit, before ack: redelivered, found in the inbox, acked with no second effect.
- Handler error: its savepoint rolls back (so the inbox row goes too), the rest of the batch goes on, and
  the message is nak'ed with a delay. On its last delivery (max_deliver) it is dead-lettered instead.
- Undecodable message: dead-lettered at once, with the error; it never blocks the stream.

Pull requests expire (`fetch_timeout`) and are issued again, so a consumer resumes by itself after a
NATS restart. Events of types without a handler are acknowledged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import nats.errors
from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelhub.core.events.model import ReceivedEvent
from modelhub.core.events.registry import EventRegistry, UndecodableEvent, UnknownEventType
from modelhub.core.nats import DEAD_LETTER_SUBJECT_PREFIX, dead_letter_stream_config, ensure_stream
from modelhub.core.telemetry import metrics
from modelhub.events.v1 import envelope_pb2

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

Handler = Callable[[AsyncConnection, ReceivedEvent], Awaitable[None]]

ERROR_HEADER = "Modelhub-Error"
CONSUMER_HEADER = "Modelhub-Consumer"
SUBJECT_HEADER = "Modelhub-Original-Subject"
SEQUENCE_HEADER = "Modelhub-Original-Sequence"

_RECORD = text(
    "INSERT INTO consumer_inbox (consumer, event_id) VALUES (:consumer, :event_id) ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class ConsumerSettings:
    """How a consumer pulls. fetch_timeout is also the pull request's expiry; ack_wait must exceed the
    time one batch can take to apply."""

    batch_size: int = 200
    fetch_timeout: float = 1.0
    ack_wait: float = 30.0
    max_deliver: int = 5
    retry_delay: float = 1.0


class IdempotentConsumer:
    """Applies one JetStream stream's events to a service's database, each exactly once in effect."""

    def __init__(
        self,
        engine: AsyncEngine,
        nc: Client,
        registry: EventRegistry,
        *,
        name: str,
        stream: str,
        subject: str,
        handlers: Mapping[str, Handler],
        settings: ConsumerSettings | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.name = name
        self.stream = stream
        self.subject = subject
        self.handlers = dict(handlers)
        self.settings = settings or ConsumerSettings()
        self._js: JetStreamContext = nc.jetstream()
        self._subscription: JetStreamContext.PullSubscription | None = None

    async def setup(self) -> None:
        """Create the dead-letter stream and the durable consumer (idempotent)."""
        await ensure_stream(self._js, dead_letter_stream_config())
        await self._subscribe()

    async def _subscribe(self) -> None:
        config = ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.settings.ack_wait,
            max_deliver=self.settings.max_deliver,
            filter_subject=self.subject,
        )
        self._subscription = await self._js.pull_subscribe(
            self.subject, durable=self.name, stream=self.stream, config=config
        )

    async def _drop_subscription(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except Exception as error:  # the connection may be down; the server forgets the inbox anyway
                log.debug("consumer %s: unsubscribe failed: %r", self.name, error)

    async def process_batch(self) -> int:
        """Fetch and handle one batch; returns the number of messages fetched (0 if none came in time)."""
        if self._subscription is None:
            await self._subscribe()
        assert self._subscription is not None
        try:
            messages = await self._subscription.fetch(self.settings.batch_size, timeout=self.settings.fetch_timeout)
        except nats.errors.TimeoutError:
            return 0
        await self._handle(messages)
        pending = messages[-1].metadata.num_pending
        metrics.CONSUMER_LAG.labels(self.name).set(pending)
        return len(messages)

    async def _handle(self, messages: list[Msg]) -> None:
        done: list[Msg] = []
        failed: list[tuple[Msg, str]] = []
        poison: list[tuple[Msg, str]] = []
        async with self.engine.begin() as conn:
            for msg in messages:
                if msg.metadata.num_delivered > 1:
                    metrics.CONSUMER_REDELIVERIES.labels(self.name).inc()
                try:
                    event = self._decode(msg)
                except (DecodeError, UndecodableEvent, UnknownEventType) as error:
                    poison.append((msg, f"undecodable event: {error}"))
                    continue
                if event is None:
                    done.append(msg)
                    metrics.CONSUMER_PROCESSED.labels(self.name, "skipped").inc()
                    continue
                try:
                    outcome = await self._apply(conn, msg, event)
                except Exception as error:
                    log.warning("consumer %s: %s %s failed: %r", self.name, event.event_type, event.event_id, error)
                    failed.append((msg, f"{type(error).__name__}: {error}"))
                    continue
                done.append(msg)
                metrics.CONSUMER_PROCESSED.labels(self.name, outcome).inc()
        for msg in done:
            await msg.ack()
        for msg, reason in failed:
            if msg.metadata.num_delivered >= self.settings.max_deliver:
                poison.append((msg, reason))
            else:
                metrics.CONSUMER_PROCESSED.labels(self.name, "failed").inc()
                await msg.nak(delay=self.settings.retry_delay * msg.metadata.num_delivered)
        for msg, reason in poison:
            await self._dead_letter(msg, reason)

    def _decode(self, msg: Msg) -> ReceivedEvent | None:
        envelope = envelope_pb2.EventEnvelope.FromString(msg.data)
        if envelope.event_type not in self.handlers:
            return None
        payload = self.registry.decode(envelope.event_type, envelope.schema_version, envelope.payload)
        return ReceivedEvent(envelope=envelope, payload=payload)

    async def _apply(self, conn: AsyncConnection, msg: Msg, event: ReceivedEvent) -> str:
        parent = propagate.extract(dict(msg.headers or {}))
        with tracer.start_as_current_span(f"consume {event.event_type}", context=parent, kind=SpanKind.CONSUMER):
            async with conn.begin_nested():
                result = await conn.execute(_RECORD, {"consumer": self.name, "event_id": event.event_id})
                if result.rowcount == 0:
                    return "duplicate"
                await self.handlers[event.event_type](conn, event)
        return "applied"

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        """Park the message on the dead-letter stream with its error, then take it off this consumer."""
        sequence = str(msg.metadata.sequence.stream)
        headers = {
            "Nats-Msg-Id": f"{self.name}:{self.stream}:{sequence}",
            ERROR_HEADER: reason[:2000],
            CONSUMER_HEADER: self.name,
            SUBJECT_HEADER: msg.subject,
            SEQUENCE_HEADER: sequence,
        }
        await self._js.publish(f"{DEAD_LETTER_SUBJECT_PREFIX}.{self.name}", msg.data, headers=headers)
        await msg.term()
        metrics.DEAD_LETTERS.labels(self.name).inc()
        metrics.CONSUMER_PROCESSED.labels(self.name, "dead_lettered").inc()
        log.error("consumer %s: dead-lettered stream sequence %s: %s", self.name, sequence, reason)

    async def run(self, stop: asyncio.Event, *, max_backoff: float = 5.0) -> None:
        """Consume until `stop` is set, riding out NATS and Postgres outages with capped backoff."""
        backoff = 0.1
        while not stop.is_set():
            try:
                await self.process_batch()
                backoff = 0.1
            except Exception as error:
                log.warning("consumer %s: %r; retrying in %.1fs", self.name, error, backoff)
                await self._drop_subscription()  # pull again on a fresh subscription
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, max_backoff)
