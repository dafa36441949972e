"""Idempotent JetStream consumers: each event has its effect exactly once, whatever is redelivered.

A consumer is a durable pull consumer with explicit acks. For every fetched batch it opens one database
transaction, records (consumer, event id) for the whole batch in `consumer_inbox` with one statement, and
runs the handlers of the events that were new. A message whose id is already in the inbox is a duplicate
(redelivery, replay, republish) and is acknowledged without running the handler. The transaction
commits, then the messages are acked.

- Crash before commit: nothing of the batch was applied; JetStream redelivers it after ack_wait.
- Crash after commit, before ack: redelivered, found in the inbox, acked with no second effect.
- Handler error: the batch's transaction rolls back and the batch is applied again with one savepoint
  per message, so only the failing message is left out (its inbox row rolls back with it); it is nak'ed
  with a delay, and on its last delivery (max_deliver) dead-lettered instead.
- A message delivered more than max_deliver times without a verdict (the consumer kept dying on it) is
  dead-lettered on its next delivery without running the handler again.
- Undecodable message: dead-lettered at once, with the error; it never blocks the stream.

Pull requests expire (`fetch_timeout`) and are issued again, so a consumer resumes by itself after a
NATS restart. Events of types without a handler are acknowledged and skipped. Optionally (`ConsumerSettings`),
a pull under a backlog may wait longer to fill its batch, and `run` pulls the next batch while one is applied;
neither changes what is applied or when it is acknowledged.

The inbox grows by one row per applied event. With `ConsumerSettings.inbox_retention`, `run` deletes the
consumer's rows older than that, at most every `inbox_prune_interval`. A durable consumer never redelivers an
acknowledged message, so past ack_wait times max_deliver a row only matters if the stream is replayed to this
consumer (it is deleted and created again, or reset): set a retention only for consumers whose handlers are
idempotent by themselves (a version guard, an idempotency key), and keep it far above any redelivery window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelhub.core.events.model import ReceivedEvent
from modelhub.core.events.registry import EventRegistry, UndecodableEvent, UnknownEventType
from modelhub.core.nats import DEAD_LETTER_SUBJECT_PREFIX, dead_letter_stream_config, ensure_stream
from modelhub.core.telemetry import metrics
from modelhub.core.telemetry.metrics import ConsumerOutcome
from modelhub.core.telemetry.propagation import extract_context
from modelhub.events.v1 import envelope_pb2

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

Handler = Callable[[AsyncConnection, ReceivedEvent], Awaitable[None]]
"""Applies one event inside the consumer's transaction."""
BatchHandler = Callable[[AsyncConnection, Sequence[ReceivedEvent]], Awaitable[None]]
"""Applies several events, in order, inside the consumer's transaction (for set-based writes)."""

ERROR_HEADER = "Modelhub-Error"
CONSUMER_HEADER = "Modelhub-Consumer"
SUBJECT_HEADER = "Modelhub-Original-Subject"
SEQUENCE_HEADER = "Modelhub-Original-Sequence"

_CLAIM_ONE = text(
    "INSERT INTO consumer_inbox (consumer, event_id) VALUES (:consumer, :event_id) ON CONFLICT DO NOTHING"
)
_PRUNE = text(
    "DELETE FROM consumer_inbox WHERE consumer = :consumer AND event_id IN ("
    " SELECT event_id FROM consumer_inbox"
    " WHERE consumer = :consumer AND processed_at < clock_timestamp() - :older_than LIMIT :limit)"
)
_CLAIM_MANY = text(
    "INSERT INTO consumer_inbox (consumer, event_id) SELECT :consumer, unnest(CAST(:ids AS uuid[])) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)


class _HandlerFailed(Exception):
    """A handler raised on the fast path; the batch is redone one savepoint per message."""


@dataclass
class _Batch:
    """One fetched batch, decoded and sorted, not applied yet."""

    messages: list[Msg]
    decoded: list[tuple[Msg, ReceivedEvent]] = field(default_factory=list)
    skipped: list[tuple[Msg, ConsumerOutcome]] = field(default_factory=list)
    poison: list[tuple[Msg, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ConsumerSettings:
    """How a consumer pulls.

    A pull request returns when batch_size messages are there or when it expires after fetch_timeout,
    with what it has: fetch_timeout bounds the delay a lone event waits for its batch to fill, at the
    cost of one pull request per fetch_timeout while idle. A pull made while the stream is known to hold more
    messages (the previous batch's last message said so) waits up to backlog_fetch_timeout instead, when set:
    such a pull still ends as soon as its batch is full or the server has no more messages for it, so the longer
    limit only keeps a backlog from being cut into small batches (one transaction each) while the client is
    still reading the messages off the connection. ack_wait must exceed the time one batch can
    take to apply. max_ack_pending (JetStream's limit of delivered, unacknowledged messages) caps what one
    fetch can return: keep it at least batch_size. It is set when the durable consumer is created, and
    `setup` brings an existing durable consumer's max_ack_pending and ack_wait to these settings.
    prefetch: see `IdempotentConsumer.run` (a prefetching consumer has up to two batches delivered and
    unacknowledged: max_ack_pending at least twice batch_size lets the second pull fill).
    """

    batch_size: int = 200
    fetch_timeout: float = 0.1
    backlog_fetch_timeout: float | None = None
    ack_wait: float = 30.0
    max_deliver: int = 5
    retry_delay: float = 1.0
    max_ack_pending: int = 1000
    prefetch: bool = False
    inbox_retention: timedelta | None = None
    """Inbox rows older than this are deleted by `run` (None: kept forever). See the module doc for when that
    is safe."""
    inbox_prune_interval: float = 3600.0
    """Seconds between two prunings of the inbox (the first comes with the first batch)."""


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
        handlers: Mapping[str, Handler] | None = None,
        batch_handler: BatchHandler | None = None,
        event_types: Collection[str] = (),
        settings: ConsumerSettings | None = None,
    ) -> None:
        """Give either `handlers` (one per event type) or a `batch_handler` with the `event_types` it takes.

        Events of other types are acknowledged and skipped.
        """
        if (handlers is None) == (batch_handler is None):
            raise ValueError("give either handlers or batch_handler")
        self.engine = engine
        self.registry = registry
        self.name = name
        self.stream = stream
        self.subject = subject
        if handlers is not None:
            self.event_types = frozenset(handlers)
            self._apply: BatchHandler = _one_at_a_time(dict(handlers))
        else:
            assert batch_handler is not None
            self.event_types = frozenset(event_types)
            self._apply = batch_handler
        self.settings = settings or ConsumerSettings()
        self._js: JetStreamContext = nc.jetstream()
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._backlog = False  # the last batch said more messages were waiting
        self._next_prune = 0.0  # time.monotonic() at which run() prunes the inbox next

    async def setup(self, *, replicas: int = 1) -> None:
        """Create the dead-letter stream (`replicas` copies) and the durable consumer (idempotent)."""
        await ensure_stream(self._js, dead_letter_stream_config(replicas=replicas))
        await self._subscribe()
        await self._update_durable()

    async def _subscribe(self) -> None:
        self._subscription = await self._js.pull_subscribe(
            self.subject, durable=self.name, stream=self.stream, config=self._config()
        )

    def _config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.settings.ack_wait,
            # Unlimited on the server: JetStream would silently stop delivering after its limit, so the
            # consumer applies max_deliver itself and dead-letters instead (nothing is ever dropped).
            max_deliver=-1,
            max_ack_pending=self.settings.max_ack_pending,
            filter_subject=self.subject,
        )

    async def _update_durable(self) -> None:
        """Bring an existing durable consumer's limits to the settings (JetStream keeps what a consumer was
        created with, so a raised max_ack_pending would otherwise never reach a consumer created before)."""
        info = await self._js.consumer_info(self.stream, self.name)
        wanted = self._config()
        if (info.config.max_ack_pending, info.config.ack_wait) != (wanted.max_ack_pending, wanted.ack_wait):
            await self._js.add_consumer(self.stream, wanted)  # an update of an existing durable's editable fields
            log.info(
                "consumer %s: max_ack_pending %s -> %s, ack_wait %s -> %s s",
                self.name,
                info.config.max_ack_pending,
                wanted.max_ack_pending,
                info.config.ack_wait,
                wanted.ack_wait,
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
        batch = await self._fetch()
        if batch is None:
            return 0
        await self._handle(batch)
        return len(batch.messages)

    async def _fetch(self) -> _Batch | None:
        """Pull one batch and decode it (no effect yet: until handled, its messages are merely in flight)."""
        if self._subscription is None:
            await self._subscribe()
        assert self._subscription is not None
        timeout = self.settings.fetch_timeout
        if self._backlog and self.settings.backlog_fetch_timeout is not None:
            timeout = self.settings.backlog_fetch_timeout
        self._backlog = False
        try:
            messages = await self._subscription.fetch(self.settings.batch_size, timeout=timeout)
        except TimeoutError:  # nats.errors.TimeoutError, or asyncio's when the pull's reply is late
            return None
        if not messages:
            return None
        pending = messages[-1].metadata.num_pending
        self._backlog = pending > 0
        metrics.CONSUMER_LAG.labels(self.name).set(pending)
        batch = _Batch(messages)
        for msg in messages:
            if msg.metadata.num_delivered > 1:
                metrics.CONSUMER_REDELIVERIES.labels(self.name).inc()
            if msg.metadata.num_delivered > self.settings.max_deliver:
                # Every earlier delivery ended without a verdict: the consumer died or timed out applying it.
                batch.poison.append((msg, f"delivered {msg.metadata.num_delivered} times without being applied"))
                continue
            try:
                event = self._decode(msg)
            except (DecodeError, UndecodableEvent, UnknownEventType) as error:
                batch.poison.append((msg, f"undecodable event: {error}"))
                continue
            if event is None:
                batch.skipped.append((msg, "skipped"))
            else:
                batch.decoded.append((msg, event))
        return batch

    async def _handle(self, batch: _Batch) -> None:
        decoded, poison = batch.decoded, list(batch.poison)
        outcomes = list(batch.skipped)
        failed: list[tuple[Msg, str]] = []
        try:
            outcomes += await self._apply_batch(decoded)
        except _HandlerFailed:
            # Some handler failed: redo the batch with one savepoint per message, so only the failures
            # are left out (the fast path has rolled back entirely).
            applied, failed = await self._apply_one_by_one(decoded)
            outcomes += applied
        for msg, _ in outcomes:
            await msg.ack()
        for outcome, count in Counter(outcome for _, outcome in outcomes).items():  # per batch: thousands of msgs
            metrics.record_consumer_outcome(self.name, outcome, count)
        for msg, reason in failed:
            if msg.metadata.num_delivered >= self.settings.max_deliver:
                poison.append((msg, reason))
            else:
                metrics.record_consumer_outcome(self.name, "failed")
                await msg.nak(delay=self.settings.retry_delay * msg.metadata.num_delivered)
        for msg, reason in poison:
            await self._dead_letter(msg, reason)

    async def _apply_batch(self, batch: list[tuple[Msg, ReceivedEvent]]) -> list[tuple[Msg, ConsumerOutcome]]:
        """Fast path: claim the whole batch in the inbox with one statement, then run the handlers."""
        if not batch:
            return []
        outcomes: list[tuple[Msg, ConsumerOutcome]] = []
        async with self.engine.begin() as conn:
            # One uuid[] literal: PostgreSQL parses it faster than psycopg adapts a list of UUIDs element by element.
            ids = "{" + ",".join(event.event_id.hex for _, event in batch) + "}"
            result = await conn.execute(_CLAIM_MANY, {"consumer": self.name, "ids": ids})
            claimed = set(result.scalars())
            new: list[ReceivedEvent] = []
            for msg, event in batch:
                if event.event_id in claimed:
                    claimed.discard(event.event_id)  # the same event twice in one batch applies once
                    new.append(event)
                    outcomes.append((msg, "applied"))
                else:
                    outcomes.append((msg, "duplicate"))
            try:
                await self._run(conn, new)
            except Exception as error:
                log.info("consumer %s: batch retried message by message after %r", self.name, error)
                raise _HandlerFailed from error
        return outcomes

    async def _apply_one_by_one(
        self, batch: list[tuple[Msg, ReceivedEvent]]
    ) -> tuple[list[tuple[Msg, ConsumerOutcome]], list[tuple[Msg, str]]]:
        outcomes: list[tuple[Msg, ConsumerOutcome]] = []
        failed: list[tuple[Msg, str]] = []
        async with self.engine.begin() as conn:
            for msg, event in batch:
                try:
                    async with conn.begin_nested():
                        result = await conn.execute(_CLAIM_ONE, {"consumer": self.name, "event_id": event.event_id})
                        if result.rowcount == 0:
                            outcomes.append((msg, "duplicate"))
                            continue
                        await self._run(conn, [event])
                except Exception as error:
                    log.warning("consumer %s: %s %s failed: %r", self.name, event.event_type, event.event_id, error)
                    failed.append((msg, f"{type(error).__name__}: {error}"))
                    continue
                outcomes.append((msg, "applied"))
        return outcomes, failed

    def _decode(self, msg: Msg) -> ReceivedEvent | None:
        envelope = envelope_pb2.EventEnvelope.FromString(msg.data)
        if envelope.event_type not in self.event_types:
            return None
        payload = self.registry.decode(envelope.event_type, envelope.schema_version, envelope.payload)
        event = ReceivedEvent(envelope=envelope, payload=payload, headers=dict(msg.headers or {}))
        try:
            _ = event.event_id  # parsed once here (a cached property): the inbox claim needs it
        except ValueError:
            raise UndecodableEvent(f"event_id {envelope.event_id[:64]!r} is not a UUID") from None
        return event

    async def _run(self, conn: AsyncConnection, events: list[ReceivedEvent]) -> None:
        if events:
            await self._apply(conn, events)

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
        metrics.record_consumer_outcome(self.name, "dead_lettered")
        log.error("consumer %s: dead-lettered stream sequence %s: %s", self.name, sequence, reason)

    async def run_when_stream_exists(
        self,
        stop: asyncio.Event,
        *,
        replicas: int = 1,
        retry_interval: float = 2.0,
        max_backoff: float = 5.0,
    ) -> None:
        """Set up (retrying until the stream exists and NATS answers), then `run` until `stop` is set.

        For consumers of another service's stream: only the producer's relay creates it, with the producer's
        settings, so until then this waits, says so once, and holds up nothing else of the service."""
        said = False
        while not stop.is_set():
            try:
                await self.setup(replicas=replicas)
                break
            except Exception as error:  # the stream is missing, or NATS is down: try again
                log.log(
                    logging.DEBUG if said else logging.WARNING,
                    "consumer %s: waiting for stream %s: %r",
                    self.name,
                    self.stream,
                    error,
                )
                said = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), retry_interval)
        else:
            return
        log.info("consumer %s: consuming %s", self.name, self.stream)
        await self.run(stop, max_backoff=max_backoff)

    async def prune_inbox(self, older_than: timedelta, *, batch_size: int = 10_000) -> int:
        """Delete this consumer's inbox rows processed more than `older_than` ago, `batch_size` rows per
        transaction (short locks, bounded WAL); the age is by the database's clock, as `processed_at`. Returns how
        many were deleted. Other consumers' rows are
        untouched. Safe to run at any time: a row deleted while its event is being claimed again only means
        the event counts as new, which the retention (see the module doc) must make impossible in practice."""
        deleted = 0
        while True:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    _PRUNE, {"consumer": self.name, "older_than": older_than, "limit": batch_size}
                )
            deleted += result.rowcount
            if result.rowcount < batch_size:
                return deleted

    async def _prune_when_due(self) -> None:
        retention = self.settings.inbox_retention
        if retention is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self.settings.inbox_prune_interval
        try:
            deleted = await self.prune_inbox(retention)
        except Exception as error:  # consuming matters more: try again at the next interval
            log.warning("consumer %s: pruning the inbox failed: %r", self.name, error)
            return
        if deleted:
            log.info("consumer %s: pruned %d inbox rows older than %s", self.name, deleted, retention)

    async def run(self, stop: asyncio.Event, *, max_backoff: float = 5.0) -> None:
        """Consume until `stop` is set, riding out NATS and Postgres outages with capped backoff.

        With `settings.prefetch`, while a batch is applied the next one is already pulled and decoded when the
        stream holds more (a backlog): reading and decoding overlap the handler's waits on the database and
        the index. A prefetched batch has had no effect: one left over at a stop is nak'ed, so JetStream
        redelivers it at once; after an error (or a pull cut short) its messages come back after ack_wait, as
        after a crash, so an outage does not spend their deliveries faster than without prefetching."""
        backoff = 0.1
        ahead: asyncio.Task[_Batch | None] | None = None
        try:
            while not stop.is_set():
                try:
                    await self._prune_when_due()
                    if ahead is not None:
                        batch, ahead = await ahead, None
                    else:
                        batch = await self._fetch()
                    if batch is None:
                        continue
                    if self.settings.prefetch and self._backlog:
                        ahead = asyncio.create_task(self._fetch())
                    await self._handle(batch)
                    backoff = 0.1
                except Exception as error:
                    await self._abandon(ahead, nak=False)
                    ahead = None
                    log.warning("consumer %s: %r; retrying in %.1fs", self.name, error, backoff)
                    await self._drop_subscription()  # pull again on a fresh subscription
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff)
                    backoff = min(backoff * 2, max_backoff)
        finally:
            await self._abandon(ahead, nak=True)

    async def _abandon(self, ahead: asyncio.Task[_Batch | None] | None, *, nak: bool) -> None:
        """Drop a prefetched batch unapplied; with `nak`, ask for its redelivery now rather than after ack_wait.

        With `nak` (a stop), a pull still under way is first given the time its request may take: the server may
        have delivered its messages already, and a pull cut short could not give them back (they would wait for
        ack_wait)."""
        if ahead is None:
            return
        if nak:
            longest_pull = max(self.settings.fetch_timeout, self.settings.backlog_fetch_timeout or 0.0)
            await asyncio.wait([ahead], timeout=longest_pull + 1.0)
        ahead.cancel()
        await asyncio.wait([ahead])  # never raises the task's own error or cancellation
        if ahead.cancelled() or ahead.exception() is not None:
            return  # cut short, or the pull failed: what it got comes back after ack_wait
        batch = ahead.result()
        if nak and batch is not None:
            for msg in batch.messages:
                with contextlib.suppress(Exception):  # the connection may be gone: then after ack_wait
                    await msg.nak()


def _one_at_a_time(handlers: dict[str, Handler]) -> BatchHandler:
    """A batch handler calling each event's own handler in a span that continues the producer's trace."""

    async def apply(conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
        for event in events:
            parent = extract_context(event.headers)
            with tracer.start_as_current_span(f"consume {event.event_type}", context=parent, kind=SpanKind.CONSUMER):
                await handlers[event.event_type](conn, event)

    return apply
