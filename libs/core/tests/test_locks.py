"""Named advisory locks against a real PostgreSQL: who excludes whom, and when each kind is released."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core import locks


async def test_an_exclusive_lock_excludes_others_until_the_transaction_ends(engine: AsyncEngine) -> None:
    async with engine.connect() as other:
        async with engine.begin() as conn:
            await locks.lock(conn, "jobs:flush")
            assert not await locks.try_lock(other, "jobs:flush")
            await other.rollback()
            assert await locks.try_lock(other, "jobs:other"), "another name is another lock"
            await other.rollback()
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
        await asyncio.sleep(0.2)
        assert not exclusive.done(), "waits for the shared holder"
        newer_shared = asyncio.create_task(locks.lock(second, "store:blobs", shared=True))
        await asyncio.sleep(0.2)
        assert not newer_shared.done(), "a shared request made after the waiting exclusive one queues behind it"

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
            await conn.invalidate()  # the connection ends: its session locks with it
        assert await locks.try_lock_session(other, "relay:catalog")
        held = await other.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )
        assert held.scalar_one() == 1
