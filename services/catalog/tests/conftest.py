"""Fixtures of the catalog's tests: a migrated database, the catalog's use cases, a real gRPC server with
every registration, a channel to it, and tokens for any (user, roles)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc.aio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.adapters.migrations import upgrade
from modelhub.catalog.bootstrap import Catalog, build_catalog, build_server
from modelhub.catalog.bootstrap_files import build_files
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.handlers.files import FileCatalog
from modelhub.catalog.v1 import files_pb2_grpc, models_pb2_grpc
from modelhub.core.db import create_engine
from modelhub.core.grpc.auth import Role, issue_token
from modelhub.core.grpc.server import GrpcServer

SECRET = "catalog-test-secret-long-enough-for-hs256"


class FakeClock:
    """An injectable clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def token(subject: str, *roles: Role, name: str | None = None) -> str:
    """A token for `subject` with `roles` (default: user); `name` becomes its preferred_username."""
    extra = {"preferred_username": name} if name else None
    return issue_token(subject, roles or ("user",), key=SECRET, extra_claims=extra)


def auth(subject: str, *roles: Role, name: str | None = None) -> tuple[tuple[str, str]]:
    """Call metadata authenticating as `subject` with `roles` (default: user)."""
    return (("authorization", f"Bearer {token(subject, *roles, name=name)}"),)


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url, pool_size=10, max_overflow=10)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def catalog(engine: AsyncEngine, clock: FakeClock) -> AsyncIterator[Catalog]:
    catalog = build_catalog(engine, clock=clock)
    try:
        yield catalog
    finally:
        await catalog.dispose()


@pytest.fixture
def settings(migrated_url: str, tmp_path: Path) -> CatalogSettings:
    return CatalogSettings(
        grpc_port=0,
        jwt_secret=SECRET,
        database_url=migrated_url,
        data_dir=tmp_path / "catalog-data",
        run_relay=False,
        run_scheduler=False,
        migrate_on_start=False,
    )


@pytest.fixture
async def server(settings: CatalogSettings, catalog: Catalog) -> AsyncIterator[GrpcServer]:
    """The catalog's gRPC server with every registration, on a free port."""
    server = build_server(settings, catalog)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


@pytest.fixture
async def channel(server: GrpcServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield channel


@pytest.fixture
def models_stub(channel: grpc.aio.Channel) -> models_pb2_grpc.ModelServiceStub:
    return models_pb2_grpc.ModelServiceStub(channel)


@pytest.fixture
def files_stub(channel: grpc.aio.Channel) -> files_pb2_grpc.FileServiceStub:
    return files_pb2_grpc.FileServiceStub(channel)


@pytest.fixture
def files(settings: CatalogSettings, catalog: Catalog) -> FileCatalog:
    """The file use cases and jobs, sharing the server's blob store (settings.data_dir)."""
    return build_files(settings, catalog)
