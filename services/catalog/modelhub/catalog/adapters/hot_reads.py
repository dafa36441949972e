"""The pool of the catalog's hottest public reads (GetModel, GetFileByHash), beside the main engine.

Its connections are in autocommit mode from the start (a single statement sees one snapshot; no isolation level
set and reset per checkout, no BEGIN and ROLLBACK) and are not pinged when checked out: together a third of a
lookup by hash's CPU and one of its two round trips. Without the ping, a connection PostgreSQL dropped (a
restart) fails once: `read` takes it out of the pool and runs the read again on the main engine, which pings.

The pool keeps `pool_size` connections (setting HOT_READ_POOL_SIZE, default POOL_SIZE) and never opens more: a
read beyond them waits for a free one (reads hold one for about a millisecond) instead of opening another, which
would cost PostgreSQL a new backend each time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import psycopg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

T = TypeVar("T")

POOL_SIZE: Final = 8
"""Connections kept open by default. Measured with 16 lookups by hash in flight (docs/catalog.md, Lookup by
hash): 4 kept plus 8 opened and closed as bursts came and went managed a third of the throughput of 8 kept, with
3-4x the p99."""


def hot_read_engine(engine: AsyncEngine, pool_size: int = POOL_SIZE) -> AsyncEngine:
    """The hot reads' pool, on `engine`'s database. It opens connections on first use; dispose() closes them."""
    return create_async_engine(
        engine.url, pool_size=pool_size, max_overflow=0, pool_pre_ping=False, isolation_level="AUTOCOMMIT"
    )


async def read(hot: AsyncEngine, fallback: AsyncEngine, query: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`query` on a connection of the hot pool; if that connection fails (psycopg.OperationalError: PostgreSQL
    dropped it, or the statement was cancelled), once more on one of `fallback`, which pings what it checks out.
    Only for reads: running one twice changes nothing."""
    try:
        async with hot.connect() as conn:
            try:
                return await query(conn)
            except psycopg.OperationalError:
                driver: psycopg.AsyncConnection[Any] = (await conn.get_raw_connection()).driver_connection  # type: ignore[assignment]
                if driver.closed or driver.broken:
                    await conn.invalidate()  # out of the pool: it would fail again
                raise
    except psycopg.OperationalError as error:
        log.warning("a read failed on a pooled connection, running it again: %s", error)
    async with fallback.connect() as conn:
        return await query(conn)
