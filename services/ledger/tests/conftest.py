"""Fixtures of the ledger's tests: a migrated database, the Ledger use cases, a real gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc.aio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.db import create_engine
from modelhub.core.grpc.auth import Role, issue_token
from modelhub.core.grpc.server import GrpcServer
from modelhub.ledger.adapters.migrations import upgrade
from modelhub.ledger.bootstrap import build_ledger, build_server
from modelhub.ledger.config import LedgerSettings
from modelhub.ledger.handlers import Ledger
from modelhub.ledger.v1 import ledger_pb2_grpc

SECRET = "ledger-test-secret-long-enough-for-hs256"


class FakeClock:
    """An injectable clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url, pool_size=20, max_overflow=20)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(engine: AsyncEngine, clock: FakeClock) -> Ledger:
    return build_ledger(engine, clock=clock)


def token(subject: str, *roles: Role) -> str:
    return issue_token(subject, roles or ("user",), key=SECRET)


def auth(subject: str, *roles: Role) -> tuple[tuple[str, str]]:
    """Call metadata authenticating as `subject` with `roles` (default: user)."""
    return (("authorization", f"Bearer {token(subject, *roles)}"),)


@pytest.fixture
async def server(ledger: Ledger, migrated_url: str) -> AsyncIterator[GrpcServer]:
    settings = LedgerSettings(
        grpc_port=0, jwt_secret=SECRET, database_url=migrated_url, tip_fee_basis_points=500, run_relay=False
    )
    server = build_server(settings, ledger)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


@pytest.fixture
async def stub(server: GrpcServer) -> AsyncIterator[ledger_pb2_grpc.LedgerServiceStub]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield ledger_pb2_grpc.LedgerServiceStub(channel)
