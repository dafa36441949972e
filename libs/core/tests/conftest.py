"""Fixtures for the shared library's tests (servers come from modelhub.devstack.pytest_plugin)."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.db import create_engine, migrate


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """A fresh database with the library's tables."""
    migrate(database_url)
    return database_url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url)
    try:
        yield engine
    finally:
        await engine.dispose()
