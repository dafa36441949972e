"""Rebuild: a fresh index generation built from the mirror, swapped in atomically, while queries and live
indexing go on (ADR 0008).

1. Optionally replay the catalog's stream from its first event into the mirror (and the live index), through
   the same version-guarded writes as the live consumer: repairs a lost or damaged mirror.
2. Note the horizon h0 (the oldest transaction still running), create a fresh generation, copy every public
   item of the mirror into it. Queries keep going to the live generation; the live consumer keeps writing
   the mirror and the live generation.
3. Catch up: the rows changed by transactions at or after the last horizon (they may have been missed by the
   copy) are written again, with their current state, until a pass finds few changes (or after a few passes).
   Writes are idempotent (documents from the mirror's current state, guarded by version), so reading a row
   twice costs time, never correctness.
4. Pause: take the index-writes lock exclusively. Every consumer transaction holds it in shared mode from
   before it touches the mirror until it commits, so this waits for batches in flight and holds new ones at
   their start. One last catch-up pass (now nothing is in flight: it is complete), refresh, promote, unlock.
   Consumer batches held back resume and write into the new generation.
5. Drop the old generation.

A crash (or error) before the promote leaves the live generation untouched; the half-built one is dropped (or
left behind by a crash, for the next rebuild to ignore). Queries never see a half-built index: promote is the
engine's atomic switch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelhub.core import locks
from modelhub.core.errors import FailedPrecondition
from modelhub.search.adapters.mirror import INDEX_WRITES_LOCK, Mirror, MirrorRow
from modelhub.search.domain.ports import SearchEngine, SearchIndex
from modelhub.search.handlers import Indexer, write_documents

log = logging.getLogger(__name__)

REBUILD_LOCK = "search:rebuild"
"""Advisory lock held for a whole rebuild: one at a time, across every process sharing the database."""

RowSource = Callable[[], AbstractAsyncContextManager[AsyncIterator[list[MirrorRow]]]]
"""Opens the catalog's stream for a replay: yields batches of mirror rows up to its last event."""


class RebuildRunning(FailedPrecondition):
    reason = "REINDEX_RUNNING"


@dataclass(frozen=True)
class RebuildReport:
    generation: str
    models: int
    images: int
    replayed_events: int
    took_seconds: float
    paused_seconds: float
    catch_up_rounds: int


@asynccontextmanager
async def session_lock(db: AsyncEngine, name: str, *, wait: bool) -> AsyncIterator[bool]:
    """Hold the advisory lock `name` on a connection of its own for the block; yields whether it was taken
    (always True with `wait`). A connection whose unlock failed is closed, which releases the lock."""
    async with db.connect() as conn:
        if wait:
            await locks.lock_session(conn, name)
            taken = True
        else:
            taken = await locks.try_lock_session(conn, name)
        await conn.commit()  # session-level lock: no transaction stays open while it is held
        try:
            yield taken
        finally:
            if taken:
                try:
                    await locks.unlock_session(conn, name)
                    await conn.commit()
                except Exception:
                    await conn.invalidate()
                    raise


class Rebuilder:
    """Runs rebuilds (one at a time) for the serving process, which owns the engine."""

    def __init__(
        self,
        db: AsyncEngine,
        engine: SearchEngine,
        mirror: Mirror,
        indexer: Indexer,
        *,
        batch_size: int = 2000,
        max_catch_up_rounds: int = 5,
        pause_threshold: int = 2000,
        stream: RowSource | None = None,
        on_phase: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`stream` opens the catalog's stream for `rebuild(replay_stream=True)`; `on_phase` is told each phase
        ("replayed", "copied", "caught_up", "paused", "promoted") as it ends (for tests and progress logs)."""
        self.db = db
        self.engine = engine
        self.mirror = mirror
        self.indexer = indexer
        self.batch_size = batch_size
        self.max_catch_up_rounds = max_catch_up_rounds
        self.pause_threshold = pause_threshold
        self.stream = stream
        self.on_phase = on_phase
        self._running = asyncio.Lock()

    async def _phase(self, name: str) -> None:
        log.info("rebuild: %s", name)
        if self.on_phase is not None:
            await self.on_phase(name)

    async def rebuild(self, *, replay_stream: bool = False) -> RebuildReport:
        """Build a fresh generation and swap it in; raises RebuildRunning while another rebuild runs."""
        if replay_stream and self.stream is None:
            raise FailedPrecondition("this process cannot read the catalog's stream", reason="REPLAY_UNAVAILABLE")
        if self._running.locked():
            raise RebuildRunning("a rebuild is already running in this process: wait for it to finish")
        async with self._running, session_lock(self.db, REBUILD_LOCK, wait=False) as taken:
            if not taken:
                raise RebuildRunning("a rebuild is already running in another process: wait for it to finish")
            return await self._rebuild(replay_stream)

    async def _rebuild(self, replay_stream: bool) -> RebuildReport:
        started = time.perf_counter()
        replayed = await self._replay() if replay_stream else 0
        if replay_stream:
            await self._phase("replayed")
        previous = await self.engine.live_generation()
        generation, index = await self.engine.create_generation()
        promoted = False
        try:
            async with self.db.connect() as conn:
                horizon = await self.mirror.horizon(conn)
                models, images = await self._copy(conn, index)
                await conn.rollback()  # end the read transaction between passes
                await self._phase("copied")
                rounds = 0
                while rounds < self.max_catch_up_rounds:
                    rounds += 1
                    horizon, changes = await self._catch_up(conn, index, horizon)
                    await conn.rollback()
                    if changes <= self.pause_threshold:
                        break
                await self._phase("caught_up")
            paused_at = time.perf_counter()
            async with session_lock(self.db, INDEX_WRITES_LOCK, wait=True), self.db.connect() as conn:
                # Nothing writes the mirror now: this pass sees every change since the last horizon.
                await self._catch_up(conn, index, horizon)
                await conn.rollback()
                await self._phase("paused")
                await self.engine.promote(generation)
                promoted = True
            paused = time.perf_counter() - paused_at
        except BaseException:
            if not promoted:  # the live generation is untouched; the half-built one goes
                await self._drop(generation)
            raise
        await self._phase("promoted")
        if previous != generation:
            await self._drop(previous)
        report = RebuildReport(
            generation=generation,
            models=models,
            images=images,
            replayed_events=replayed,
            took_seconds=time.perf_counter() - started,
            paused_seconds=paused,
            catch_up_rounds=rounds,
        )
        log.info("rebuild: generation %s live: %s", generation, report)
        return report

    async def _replay(self) -> int:
        assert self.stream is not None
        count = 0
        async with self.stream() as batches:
            async for rows in batches:
                async with self.db.begin() as conn:
                    await self.indexer.apply(conn, rows)
                count += len(rows)
        return count

    async def _copy(self, conn: AsyncConnection, index: SearchIndex) -> tuple[int, int]:
        models = images = 0
        async for model_batch in self.mirror.public_models(conn, self.batch_size):
            await index.upsert_models(model_batch)
            models += len(model_batch)
        async for image_batch in self.mirror.public_images(conn, self.batch_size):
            await index.upsert_images(image_batch)
            images += len(image_batch)
        await index.refresh()
        return models, images

    async def _catch_up(self, conn: AsyncConnection, index: SearchIndex, horizon: int) -> tuple[int, int]:
        """Write the current state of every item changed at or after `horizon`; returns the next horizon and
        how many items were written."""
        next_horizon = await self.mirror.horizon(conn)  # before reading: later changes are the next pass's
        model_ids, image_ids = await self.mirror.changed_since(conn, horizon)
        documents = await self.mirror.documents(conn, model_ids, image_ids)
        await write_documents(index, documents)
        return next_horizon, documents.count

    async def _drop(self, generation: str) -> None:
        try:
            await self.engine.drop_generation(generation)
        except Exception:  # leaves files or an index behind; the next rebuild does not need them
            log.exception("rebuild: could not drop generation %s", generation)
