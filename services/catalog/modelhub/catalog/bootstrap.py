"""Wiring: the one place that builds the catalog's dependencies. Nothing is built at import time.

Each part of the catalog plugs in here with one line in `registrations` (its gRPC service) and, if it has
background work, one task in `serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog import bootstrap_community, bootstrap_files
from modelhub.catalog.adapters import migrations
from modelhub.catalog.adapters.events import PRODUCER, make_registry
from modelhub.catalog.adapters.hot_reads import POOL_SIZE, hot_read_engine
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.entrypoints import grpc_models
from modelhub.catalog.handlers import Clock, utcnow
from modelhub.catalog.handlers.models import ModelCatalog
from modelhub.core.db import create_engine
from modelhub.core.events.relay import OutboxRelay
from modelhub.core.events.store import EventStore
from modelhub.core.grpc.server import GrpcServer, ServiceRegistration
from modelhub.core.nats import connect
from modelhub.core.runtime import settle_after_startup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalog:
    """The catalog's use cases and what they share (one engine, one event store, one clock), and the pool of the
    hot public reads (adapters/hot_reads.py; it opens connections on first use, `dispose` closes them)."""

    engine: AsyncEngine
    store: EventStore
    clock: Clock
    models: ModelCatalog
    hot_reads: AsyncEngine

    async def dispose(self) -> None:
        """Close the hot reads' connections (the caller owns `engine`)."""
        await self.hot_reads.dispose()


def build_catalog(engine: AsyncEngine, *, clock: Clock = utcnow, hot_read_pool_size: int = POOL_SIZE) -> Catalog:
    store = EventStore(make_registry())
    hot = hot_read_engine(engine, hot_read_pool_size)
    models = ModelCatalog(engine, store, clock=clock, hot_reads=hot)
    return Catalog(engine=engine, store=store, clock=clock, models=models, hot_reads=hot)


def registrations(settings: CatalogSettings, catalog: Catalog) -> list[ServiceRegistration]:
    """Every gRPC service the catalog serves (one line each). A servicer's `public_methods` attribute lists
    the methods anonymous callers may use."""
    return [
        ServiceRegistration(
            grpc_models.SERVICE_NAME, grpc_models.ModelServicer(catalog.models), grpc_models.add_to_server
        ),
        bootstrap_files.registration(settings, catalog),
        *bootstrap_community.registrations(settings, catalog),
    ]


def build_server(settings: CatalogSettings, catalog: Catalog) -> GrpcServer:
    services = registrations(settings, catalog)
    public = frozenset().union(*(getattr(s.servicer, "public_methods", frozenset()) for s in services))
    # Upload chunks are up to upload_chunk_max_bytes; leave room for the rest of the message. Only what the
    # server receives is bounded by the chunk size: gRPC servers send responses of any size (a model with many
    # files; clients' own receive limit, 4 MiB by default, applies there), and download chunks are sized by
    # download_chunk_bytes.
    limit = max(settings.upload_chunk_max_bytes + 64 * 1024, 4 * 1024 * 1024)
    options = [("grpc.max_receive_message_length", limit)]
    return GrpcServer(settings, services, public_methods=public, options=options)


async def every(interval: float, stop: asyncio.Event, job: Callable[[], Awaitable[int]], name: str) -> None:
    """Run `job` every `interval` seconds (at once again while it reports work done) until `stop` is set.
    A failure (an outage) is logged and retried on the next round."""
    while not stop.is_set():
        try:
            while await job() > 0 and not stop.is_set():
                pass
        except Exception:
            log.exception("%s failed; retrying in %.1fs", name, interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def serve(settings: CatalogSettings) -> None:
    """Migrate, then serve gRPC with the outbox relay and the publication scheduler beside it, until SIGTERM."""
    if settings.migrate_on_start:
        await asyncio.to_thread(migrations.upgrade, settings.database_url)
    engine = create_engine(
        settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
    )
    catalog = build_catalog(engine, hot_read_pool_size=settings.hot_read_pool_size)
    server = build_server(settings, catalog)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    nc = None
    try:
        if settings.run_scheduler:
            tasks.append(
                asyncio.create_task(
                    every(settings.schedule_interval_seconds, stop, catalog.models.publish_due, "scheduled publication")
                )
            )
        tasks.extend(asyncio.create_task(every(*job)) for job in bootstrap_files.jobs(settings, catalog, stop))
        tasks.extend(asyncio.create_task(every(*job)) for job in bootstrap_community.jobs(settings, catalog, stop))
        if settings.run_relay:
            nc = await connect(settings.nats_url, f"{settings.service_name}-relay")
            relay = OutboxRelay(engine, catalog.store, nc, PRODUCER)
            await relay.setup(replicas=settings.stream_replicas)
            tasks.append(asyncio.create_task(relay.run(stop)))
        settle_after_startup()  # what was built so far lives as long as the process (modelhub.core.runtime)
        await server.serve()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if nc is not None:
            await nc.close()
        await catalog.dispose()
        await engine.dispose()
