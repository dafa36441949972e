"""Collection of the blobs of a content-addressed store that nothing references any more, and the lock that keeps
it from deleting bytes a writer is about to reference. Model files (handlers/files.py) and gallery images
(handlers/gallery.py) each have a collector, with their own lock and their own reference query.

Why a lock: identical content is stored once, so a writer of bytes whose old blob is about to be collected
(nothing references it any more) stores them by renaming onto that same path. A collector that decided
"unreferenced" just before the rename and unlinks just after would delete the bytes the writer then references.
Writers hold a shared PostgreSQL advisory lock from before the rename until their reference is committed
(`BlobCollector.writing`); the collector takes it exclusively for each batch, so it never sees a blob between
those two points.

Why the collector waits for the lock (up to `lock_wait`) rather than trying it: under a steady stream of posts
some writer nearly always holds the shared lock, and a collector that only tried would skip every round while
deleted bytes pile up. A waiting exclusive request is queued by PostgreSQL ahead of shared requests made after
it, so the writers in flight finish and the collector gets its turn; the writers that arrive meanwhile wait
with it, then for its batch (a reference query and its deletions). A writer that holds the lock longer than
`lock_wait` (a completion fsyncing a very large upload) makes the round stop instead: the writers queued behind
the collector then go on, having waited at most `lock_wait`.

One lock per store rather than one for both: a writer to one store never renames onto the other's paths, so a
shared lock would protect nothing more and would make each collection wait for the other's writers too.

Why an age (`older_than`): the lock covers a writer that is alive. Bytes stored by a writer that crashed before
committing their reference are unreferenced, and the writer's retry may still want them (an upload's completion
retried within its session's lifetime finds its blob); collecting only blobs unmodified for that long keeps them.
(A retried image post stores its bytes again: for images the age only delays collecting recent blobs.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelhub.catalog.files.blobstore import BlobStore
from modelhub.core import locks

log = logging.getLogger(__name__)

FILE_BLOBS_LOCK: Final = "catalog:blobs"
IMAGE_BLOBS_LOCK: Final = "catalog:image-blobs"
COLLECT_BATCH: Final = 1000
"""Blobs decided on (one reference query, deletions) per transaction under the exclusive lock."""
WRITERS_AT_ONCE: Final = 4
LOCK_WAIT: Final = timedelta(seconds=1)
"""How long a collection batch waits for the writers holding the lock, and so the longest that writers arriving
meanwhile wait before its batch: far longer than a post holds it, shorter than a large upload's completion."""
_SHA256_NAME: Final = re.compile(r"[0-9A-F]{64}")

ReferenceQuery = Callable[[AsyncConnection, Sequence[str]], Awaitable[set[str]]]
"""Which of the given SHA256s (upper case) something still references, read on the collector's connection."""


def stored_blobs(store: BlobStore) -> Iterator[tuple[str, float]]:
    """(SHA256, modification time) of every blob on disk (layout: blobs/<SHA[:2]>/<SHA[2:4]>/<SHA>)."""
    for first in os.scandir(store.root / "blobs"):
        if not first.is_dir():
            continue
        for second in os.scandir(first.path):
            if not second.is_dir():
                continue
            for entry in os.scandir(second.path):
                if _SHA256_NAME.fullmatch(entry.name):
                    try:
                        yield entry.name, entry.stat().st_mtime
                    except FileNotFoundError:
                        continue


class BlobCollector:
    """The collection of one store: `lock` names its advisory lock, `referenced` says which blobs are in use."""

    def __init__(
        self,
        engine: AsyncEngine,
        blobs: BlobStore,
        lock: str,
        referenced: ReferenceQuery,
        *,
        writers_at_once: int = WRITERS_AT_ONCE,
        lock_wait: timedelta = LOCK_WAIT,
    ) -> None:
        self.engine = engine
        self.lock_wait = lock_wait
        self.blobs = blobs
        self.lock = lock
        self.referenced = referenced
        # A writer holds a pooled connection (the lock) while it uses others: bounding how many run at once keeps
        # a burst of them from taking the whole pool and waiting on each other.
        self._writers = asyncio.Semaphore(writers_at_once)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Hold the shared lock from before storing bytes until their reference is committed (or given up).

        Its transaction writes nothing, so it gets no transaction id and does not hold back event readers; its
        end releases the lock, also on errors. A collection batch in progress, or waiting for the lock, makes it
        wait until the batch is done."""
        async with self._writers, self.engine.connect() as conn:
            await locks.lock(conn, self.lock, shared=True)
            try:
                yield
            finally:
                await conn.rollback()

    async def collect(self, older_than: timedelta) -> list[str]:
        """Delete the blobs unmodified for `older_than` that nothing references; returns their SHA256s.

        In batches, each one transaction holding the lock exclusively: the references are read and the
        unreferenced blobs deleted while no writer can store bytes. When the writers holding the lock keep it
        past `lock_wait`, the round stops (the next one goes on). A crash mid-batch leaves blobs that the next
        round deletes."""
        cutoff = time.time() - older_than.total_seconds()
        listed = await asyncio.to_thread(lambda: list(stored_blobs(self.blobs)))
        candidates = [sha for sha, mtime in listed if mtime <= cutoff]
        removed: list[str] = []
        for start in range(0, len(candidates), COLLECT_BATCH):
            batch = candidates[start : start + COLLECT_BATCH]
            try:
                async with self.engine.begin() as conn:
                    await locks.lock(conn, self.lock, wait=self.lock_wait)
                    referenced = await self.referenced(conn, batch)
                    removed += await asyncio.to_thread(self._delete, [sha for sha in batch if sha not in referenced])
            except locks.LockTimeout:
                log.info(
                    "blob collection (%s) stops for this round: a writer held the lock for over %s",
                    self.lock,
                    self.lock_wait,
                )
                return removed
        return removed

    def _delete(self, shas: list[str]) -> list[str]:
        return [sha for sha in shas if self.blobs.delete(sha)]
