"""The catalog's events into the index: the durable consumer "search-catalog" on CATALOG_EVENTS.

Built on the library's IdempotentConsumer in batch mode: one transaction per fetched batch claims the events
in the inbox, then `Indexer.apply` stores their states in the mirror (version-guarded), writes the documents of
every changed item into the live index and refreshes it, all before the transaction commits and the messages
are acked. What happens on crash, retry and redelivery is in `modelhub.search.handlers.Indexer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelhub.core.events.consumer import ConsumerSettings, IdempotentConsumer
from modelhub.core.events.model import ReceivedEvent
from modelhub.core.nats import connect, events_stream_name, events_subject
from modelhub.search.adapters.events import CATALOG, EVENT_TYPES, make_catalog_registry
from modelhub.search.adapters.mirror import mirror_row
from modelhub.search.config import SearchSettings
from modelhub.search.handlers import Indexer

log = logging.getLogger(__name__)

SEARCH_CONSUMER = "search-catalog"
"""The durable consumer's name, inbox key and dead-letter subject suffix. Never rename it: a new name starts
from the first event of the stream with an empty inbox (harmless here, the mirror's version guard holds, but
slow)."""


class CatalogIndexing:
    """The consumer's batch handler: events -> mirror rows -> `Indexer.apply`, in the consumer's transaction."""

    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer

    async def apply(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
        rows = [mirror_row(event) for event in events]  # all checked before anything is written
        await self.indexer.apply(conn, rows)


def build_catalog_consumer(
    db: AsyncEngine,
    nc: Client,
    indexer: Indexer,
    *,
    producer: str = CATALOG,
    name: str = SEARCH_CONSUMER,
    settings: ConsumerSettings | None = None,
) -> IdempotentConsumer:
    """The durable consumer `name` on the producer's stream (CATALOG_EVENTS), indexing its snapshots."""
    return IdempotentConsumer(
        db,
        nc,
        make_catalog_registry(),
        name=name,
        stream=events_stream_name(producer),
        subject=events_subject(producer),
        batch_handler=CatalogIndexing(indexer).apply,
        event_types=EVENT_TYPES,
        settings=settings or ConsumerSettings(batch_size=1000, fetch_timeout=0.05),
    )


def consumer_settings(settings: SearchSettings) -> ConsumerSettings:
    """One fetch returns up to consumer_batch_size events: JetStream must allow that many unacknowledged (twice,
    for messages nak'ed with a delay that still count against the limit)."""
    return ConsumerSettings(
        batch_size=settings.consumer_batch_size,
        fetch_timeout=settings.consumer_fetch_timeout_seconds,
        max_ack_pending=max(1000, 2 * settings.consumer_batch_size),
    )


async def run_consumer(
    consumer: IdempotentConsumer,
    stop: asyncio.Event,
    *,
    retry_interval: float = 2.0,
    max_backoff: float = 5.0,
    replicas: int = 1,
) -> None:
    """Set the consumer up, retrying until the catalog's stream exists, then consume until `stop` is set.

    Search never creates the catalog's stream (the catalog's relay does, with the producer's settings): until it
    exists this waits, says so once, and serves queries on what the index already holds.
    """
    said = False
    while not stop.is_set():
        try:
            await consumer.setup(replicas=replicas)
            break
        except Exception as error:  # the stream is missing, or NATS is down: try again
            level = logging.DEBUG if said else logging.WARNING
            log.log(level, "consumer %s: waiting for stream %s: %r", consumer.name, consumer.stream, error)
            said = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry_interval)
    else:
        return
    log.info("consumer %s: consuming %s", consumer.name, consumer.stream)
    await consumer.run(stop, max_backoff=max_backoff)


async def serve_consumer(
    db: AsyncEngine, indexer: Indexer, settings: SearchSettings, stop: asyncio.Event, *, retry_interval: float = 2.0
) -> None:
    """The service's catalog consumer until `stop` is set: connects to NATS (retrying), then `run_consumer`."""
    nc: Client | None = None
    while nc is None and not stop.is_set():
        try:
            nc = await connect(settings.nats_url, f"{settings.service_name}-catalog")
        except Exception as error:
            log.warning("search: cannot reach NATS (%r); retrying", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry_interval)
    if nc is None:
        return
    try:
        consumer = build_catalog_consumer(
            db, nc, indexer, producer=settings.catalog_producer, settings=consumer_settings(settings)
        )
        await run_consumer(consumer, stop, retry_interval=retry_interval, replicas=settings.stream_replicas)
    finally:
        await nc.close()
