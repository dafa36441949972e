"""The catalog's events into the index: the durable consumer "search-catalog" on CATALOG_EVENTS.

Built on the library's IdempotentConsumer in batch mode: one transaction per fetched batch claims the events
in the inbox, then `Indexer.apply` stores their states in the mirror (version-guarded), writes the documents of
every changed item into the live index and refreshes it, all before the transaction commits and the messages
are acked. What happens on crash, retry and redelivery is in `modelhub.search.handlers.Indexer`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelhub.core.events.consumer import ConsumerSettings, IdempotentConsumer
from modelhub.core.events.model import ReceivedEvent
from modelhub.core.nats import connect_until_stopped, events_stream_name, events_subject
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


BACKLOG_FETCH_TIMEOUT = 0.5
"""How long a pull may take to fill its batch while a backlog is known to wait: thousands of events take longer
than the idle pull's 50 ms to be read off the connection, and every batch costs an index commit. Such a pull
ends as soon as the server has no more, so this never delays a lone event."""


def consumer_settings(settings: SearchSettings) -> ConsumerSettings:
    """One fetch returns up to consumer_batch_size events: JetStream must allow that many unacknowledged, twice
    over: under a backlog the next batch is pulled (prefetched) while one is applied, and messages nak'ed with a
    delay still count against the limit (a pull then returns fewer, never none for long)."""
    return ConsumerSettings(
        batch_size=settings.consumer_batch_size,
        fetch_timeout=settings.consumer_fetch_timeout_seconds,
        backlog_fetch_timeout=BACKLOG_FETCH_TIMEOUT,
        prefetch=True,
        max_ack_pending=max(1000, 2 * settings.consumer_batch_size),
        inbox_retention=timedelta(days=days) if (days := settings.consumer_inbox_retention_days) else None,
    )


async def serve_consumer(
    db: AsyncEngine, indexer: Indexer, settings: SearchSettings, stop: asyncio.Event, *, retry_interval: float = 2.0
) -> None:
    """The service's catalog consumer until `stop` is set: connects to NATS (retrying), then
    consumes once the catalog's stream exists."""
    nc = await connect_until_stopped(settings.nats_url, f"{settings.service_name}-catalog", stop, retry_interval)
    if nc is None:
        return
    try:
        consumer = build_catalog_consumer(
            db, nc, indexer, producer=settings.catalog_producer, settings=consumer_settings(settings)
        )
        await consumer.run_when_stream_exists(stop, retry_interval=retry_interval, replicas=settings.stream_replicas)
    finally:
        await nc.close()
