"""Fixtures of the search service's tests: a migrated database, NATS, an engine, the wired service, a gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio
import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.db import create_engine
from modelhub.core.events.consumer import ConsumerSettings, IdempotentConsumer
from modelhub.core.grpc.auth import Role, issue_token
from modelhub.core.grpc.server import GrpcServer
from modelhub.core.nats import connect
from modelhub.search.adapters.migrations import upgrade
from modelhub.search.bootstrap import Search, build, build_server, open_engine
from modelhub.search.config import SearchSettings
from modelhub.search.domain.ports import SearchEngine
from modelhub.search.entrypoints.consumers import build_catalog_consumer
from modelhub.search.v1 import search_pb2_grpc

from .catalog_events import create_stream
from .fakes import FakeEngine

SECRET = "search-test-secret-long-enough-for-hs256"
FAST = ConsumerSettings(
    batch_size=200,
    fetch_timeout=0.05,
    backlog_fetch_timeout=0.5,
    ack_wait=5.0,
    max_deliver=3,
    retry_delay=0.1,
    prefetch=True,  # as the service runs it (consumer_settings)
)


def token(subject: str, *roles: Role) -> str:
    return issue_token(subject, roles or ("user",), key=SECRET)


def auth(subject: str, *roles: Role) -> tuple[tuple[str, str]]:
    """Call metadata authenticating as `subject` with `roles` (default: user)."""
    return (("authorization", f"Bearer {token(subject, *roles)}"),)


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url, pool_size=10, max_overflow=20)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await connect(nats_url, "search-tests")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def producer(nc: Client, unique_name: str) -> str:
    """A producer name of this test's own: its stream <NAME>_EVENTS stands in for CATALOG_EVENTS."""
    name = unique_name.lower()
    await create_stream(nc.jetstream(), name)
    return name


def settings_for(url: str, tmp_path: Path, producer: str = "catalog", **overrides: object) -> SearchSettings:
    values: dict[str, object] = {
        "grpc_port": 0,
        "jwt_secret": SECRET,
        "database_url": url,
        "data_dir": tmp_path,
        "catalog_producer": producer,
        "migrate_on_start": False,
        "reindex_batch_size": 50,
        "tantivy_writer_heap_mb": 32,
    }
    values.update(overrides)
    return SearchSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(migrated_url: str, tmp_path: Path, producer: str, nats_url: str) -> SearchSettings:
    return settings_for(migrated_url, tmp_path, producer, nats_url=nats_url)


@pytest.fixture
async def tantivy(settings: SearchSettings) -> AsyncIterator[SearchEngine]:
    engine = await open_engine(settings)
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def search(settings: SearchSettings, db: AsyncEngine, tantivy: SearchEngine) -> Search:
    """The service wired on the real tantivy engine."""
    return build(settings, db, tantivy)


@pytest.fixture
def fake_search(settings: SearchSettings, db: AsyncEngine, fake_engine: FakeEngine) -> Search:
    """The service wired on the in-memory engine."""
    return build(settings, db, fake_engine)


def consumer_of(
    search: Search, nc: Client, producer: str, name: str = "search-catalog", settings: ConsumerSettings = FAST
) -> IdempotentConsumer:
    return build_catalog_consumer(search.db, nc, search.indexer, producer=producer, name=name, settings=settings)


@pytest.fixture
async def server(search: Search) -> AsyncIterator[GrpcServer]:
    server = build_server(search)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


@pytest.fixture
async def stub(server: GrpcServer) -> AsyncIterator[search_pb2_grpc.SearchServiceStub]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield search_pb2_grpc.SearchServiceStub(channel)
