"""Wiring: the one place that builds the search service's dependencies. Nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.db import create_engine
from modelhub.core.grpc.server import GrpcServer, ServiceRegistration
from modelhub.core.nats import connect
from modelhub.core.runtime import settle_after_startup
from modelhub.search.adapters import migrations
from modelhub.search.adapters.events import make_catalog_registry
from modelhub.search.adapters.mirror import Mirror, MirrorRow
from modelhub.search.adapters.replay import stream_rows
from modelhub.search.config import SearchSettings
from modelhub.search.domain.ports import SearchEngine
from modelhub.search.entrypoints.consumers import serve_consumer
from modelhub.search.entrypoints.grpc import PUBLIC_METHODS, SERVICE_NAME, SearchServicer, add_to_server
from modelhub.search.handlers import Indexer, Searcher
from modelhub.search.rebuild import Rebuilder, RowSource


async def open_engine(settings: SearchSettings) -> SearchEngine:
    """The configured search engine (imported here only: a tantivy deployment never loads the ES client)."""
    if settings.engine == "elasticsearch":
        from modelhub.search.adapters.engines.elasticsearch_engine import ElasticsearchEngine

        return await ElasticsearchEngine.open(
            settings.elasticsearch_url,
            prefix=settings.elasticsearch_index_prefix,
            api_key=settings.elasticsearch_api_key or None,
        )
    from modelhub.search.adapters.engines.tantivy_engine import TantivyEngine

    engine = TantivyEngine(settings.tantivy_dir, heap_bytes=settings.tantivy_writer_heap_mb * 1_000_000)
    await engine.live()  # opens (or creates) the live generation now: a bad index fails the start, not a query
    return engine


@dataclass
class Search:
    """Everything the service runs on, built once per process."""

    settings: SearchSettings
    db: AsyncEngine
    engine: SearchEngine
    mirror: Mirror
    indexer: Indexer
    searcher: Searcher
    rebuilder: Rebuilder

    async def close(self) -> None:
        await self.engine.close()
        await self.db.dispose()


def stream_source(settings: SearchSettings) -> RowSource:
    """Opens the catalog's stream for a rebuild that replays it (a NATS connection of its own)."""

    @contextlib.asynccontextmanager
    async def open_stream() -> AsyncIterator[AsyncIterator[list[MirrorRow]]]:
        nc = await connect(settings.nats_url, f"{settings.service_name}-reindex")
        try:
            yield stream_rows(nc, settings.catalog_producer, batch_size=settings.reindex_batch_size)
        finally:
            await nc.close()

    return open_stream


def build(settings: SearchSettings, db: AsyncEngine, engine: SearchEngine) -> Search:
    mirror = Mirror(make_catalog_registry())
    indexer = Indexer(engine, mirror)
    rebuilder = Rebuilder(
        db,
        engine,
        mirror,
        indexer,
        batch_size=settings.reindex_batch_size,
        max_catch_up_rounds=settings.reindex_max_catch_up_rounds,
        pause_threshold=settings.reindex_pause_threshold,
        stream=stream_source(settings),
    )
    return Search(settings, db, engine, mirror, indexer, Searcher(engine), rebuilder)


async def open_search(settings: SearchSettings) -> Search:
    """Migrate (if configured), connect to the database, open the engine."""
    if settings.migrate_on_start:
        await asyncio.to_thread(migrations.upgrade, settings.database_url)
    db = create_engine(settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
    try:
        engine = await open_engine(settings)
    except BaseException:
        await db.dispose()
        raise
    return build(settings, db, engine)


def build_server(search: Search) -> GrpcServer:
    servicer = SearchServicer(search.searcher, search.rebuilder)
    return GrpcServer(
        search.settings, [ServiceRegistration(SERVICE_NAME, servicer, add_to_server)], public_methods=PUBLIC_METHODS
    )


async def serve(settings: SearchSettings) -> None:
    """Serve gRPC with the catalog consumer beside it, until SIGTERM."""
    search = await open_search(settings)
    server = build_server(search)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        if settings.run_consumer:  # in the background: it waits for NATS and for the catalog's stream
            tasks.append(asyncio.create_task(serve_consumer(search.db, search.indexer, settings, stop)))
        settle_after_startup()  # what was built so far lives as long as the process (modelhub.core.runtime)
        await server.serve()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await search.close()
