"""Named advisory locks against a real PostgreSQL: who excludes whom, and when each kind is released."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core import locks
from modelhub.devstack.waiting import wait_until

_ADVISORY = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = :granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def advisory_locks(engine: AsyncEngine, *, granted: bool) -> int:
    """Advisory locks of the test's database, held (`granted`) or waited for."""
    async with engine.connect() as conn:
        return int((await conn.execute(text(_ADVISORY), {"granted": granted})).scalar_one())


async def waiters(engine: AsyncEngine, count: int) -> bool:
    return await advisory_locks(engine, granted=False) == count


async def test_an_exclusive_lock_excludes_others_until_the_transaction_ends(engine: AsyncEngine) -> None:
    async with engine.connect() as other, engine.connect() as third:
        async with engine.begin() as conn:
            await locks.lock(conn, "jobs:flush")
            assert not await locks.try_lock(other, "jobs:flush")
            await other.rollback()
            assert await locks.try_lock(other, "jobs:other"), "another name is another lock"
            assert not await locks.try_lock(third, "jobs:other")
            await third.rollback()
            await other.rollback()
            assert await locks.try_lock(third, "jobs:other"), "a lock taken by try_lock ends with its transaction"
            await third.rollback()
        assert await locks.try_lock(other, "jobs:flush"), "released at commit"
        await other.rollback()


async def test_shared_holders_exclude_only_exclusive_ones_and_a_waiting_exclusive_queues_newer_shared_ones(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as first, engine.connect() as second, engine.connect() as third:
        await locks.lock(first, "store:blobs", shared=True)
        await locks.lock(second, "store:blobs", shared=True)  # granted beside the first
        assert not await locks.try_lock(third, "store:blobs")
        await third.rollback()
        await second.rollback()

        exclusive = asyncio.create_task(locks.lock(third, "store:blobs"))
        await wait_until(lambda: waiters(engine, 1), 10, "the exclusive request to wait for the shared holder")
        newer_shared = asyncio.create_task(locks.lock(second, "store:blobs", shared=True))
        await wait_until(lambda: waiters(engine, 2), 10, "the newer shared request to queue behind it")
        assert not exclusive.done() and not newer_shared.done()

        await first.rollback()
        await asyncio.wait_for(exclusive, 10)
        assert not newer_shared.done()
        await third.rollback()
        await asyncio.wait_for(newer_shared, 10)
        await second.rollback()


async def test_a_session_lock_outlives_transactions_until_unlocked_or_the_connection_closes(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as other:
        async with engine.connect() as conn:
            assert await locks.try_lock_session(conn, "relay:catalog")
            await conn.commit()
            assert not await locks.try_lock_session(other, "relay:catalog")
            assert await locks.unlock_session(conn, "relay:catalog")
            assert not await locks.unlock_session(conn, "relay:catalog"), "it held none any more"
            assert await locks.try_lock_session(other, "relay:catalog")
            assert await locks.unlock_session(other, "relay:catalog")

            await locks.lock_session(conn, "relay:catalog")
            await conn.commit()
            assert not await locks.try_lock_session(other, "relay:catalog")
            await conn.invalidate()  # the connection ends: its session locks with it (once its server exits)
        await asyncio.wait_for(locks.lock_session(other, "relay:catalog"), 10)
        assert await advisory_locks(engine, granted=True) == 1


async def test_a_bounded_wait_gives_up_with_lock_timeout_and_leaves_the_connections_own_timeout(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as holder, engine.connect() as conn:
        await locks.lock(holder, "store:blobs", shared=True)
        with pytest.raises(locks.LockTimeout, match="store:blobs"):
            await locks.lock(conn, "store:blobs", wait=timedelta(milliseconds=100))
        await conn.rollback()
        await conn.execute(text("SET lock_timeout = '7s'"))
        await locks.lock(conn, "store:other", wait=timedelta(milliseconds=100))
        assert (await conn.execute(text("SELECT current_setting('lock_timeout')"))).scalar_one() == "7s"
        await conn.rollback()
        await holder.rollback()
