"""pytest fixtures shared by every test suite: real PostgreSQL and NATS JetStream servers.

By default the harness starts its own throwaway servers on free ports (PostgreSQL without fsync: a test
cluster needs no crash safety of its own). Set MODELHUB_TEST_POSTGRES_URL (a superuser URL, e.g.
postgresql://user@host:5432/postgres) or MODELHUB_TEST_NATS_URL to reuse servers you already run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelhub.devstack.nats import NatsServer
from modelhub.devstack.postgres import PostgresServer, create_database, drop_database


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a superuser connection to the test PostgreSQL server."""
    if external := os.environ.get("MODELHUB_TEST_POSTGRES_URL"):
        yield external
        return
    # Not under pytest's temp directory: its 0700 parents would shut out the postgres user when we are root.
    root = Path(tempfile.mkdtemp(prefix="modelhub-test-pg-"))
    server = PostgresServer(root, durable=False)
    server.start()
    try:
        yield server.url()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for one test (dropped afterwards)."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = create_database(postgres_admin_url, name)
    try:
        yield url
    finally:
        drop_database(postgres_admin_url, name)


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a NATS server with JetStream shared by the session's tests (use unique stream names)."""
    if external := os.environ.get("MODELHUB_TEST_NATS_URL"):
        yield external
        return
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A private NATS server that the test may stop, kill and restart (same port, same store)."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unique_name() -> str:
    """A short name unique to this test, for streams, consumers and subjects on a shared server."""
    return f"T{uuid.uuid4().hex[:10].upper()}"


def pytest_configure(config: pytest.Config) -> None:
    """Under CI (CI=true) property tests draw a fixed sequence of examples, so a run is repeatable; locally
    they draw new ones each run and keep finding new cases."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        from hypothesis import settings

        settings.register_profile("ci", derandomize=True, print_blob=True)
        settings.load_profile("ci")
