"""Group commit: concurrent posting requests share one database transaction (TigerBeetle's batching).

Callers `submit` a job and await its future. While fewer than `max_in_flight` batches are being written,
a job starts one at once (an idle ledger adds no delay); jobs that arrive while every slot is in its
transaction queue up and form the next batch, so the batch size follows the load by itself. Each batch
holds at most `max_items` jobs. No two jobs of the same (principal, idempotency key) are ever written at
the same time, in one batch or in two: the later one waits for a later batch, where it finds the key
taken and answers the stored outcome, exactly as a retry would.

A slot keeps one session (the ledger's: a database connection) for as long as it finds jobs queued, and
gives it back when the queue is empty: under load, consecutive batches skip the pool's checkout.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from typing import Final, Generic, Protocol, TypeVar

from prometheus_client import Histogram


class Job(Protocol):
    @property
    def dedup_key(self) -> Hashable: ...

    @property
    def future(self) -> asyncio.Future[object]: ...


J = TypeVar("J", bound=Job)
S = TypeVar("S")

BATCH_REQUESTS: Final = Histogram(
    "modelhub_ledger_batch_requests",
    "Posting requests written per batch transaction (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
BATCH_SECONDS: Final = Histogram(
    "modelhub_ledger_batch_seconds",
    "Time to write one batch (its transaction, commit included) and settle its requests.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_QUEUE_SECONDS: Final = Histogram(
    "modelhub_ledger_batch_queue_seconds",
    "Time a posting request waited in the batcher's queue before its batch started.",
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


class Batcher(Generic[J, S]):
    """Groups submitted jobs into batches for `flush(session, batch)`, which must settle every job's future.

    `session()` opens what one slot writes its batches through while the queue has jobs."""

    def __init__(
        self,
        flush: Callable[[S, list[J]], Awaitable[None]],
        session: Callable[[], AbstractAsyncContextManager[S]],
        *,
        max_items: int = 1000,
        max_in_flight: int = 1,
    ) -> None:
        self._flush = flush
        self._session = session
        self.max_items = max_items
        self.max_in_flight = max_in_flight
        self._queue: deque[tuple[J, float]] = deque()
        self._draining = 0
        self._writing: set[Hashable] = set()  # dedup keys of the jobs in batches being written
        self._tasks: set[asyncio.Task[None]] = set()  # strong references while they run

    def submit(self, job: J) -> None:
        """Queue `job`; its future is settled once its batch is written (or has failed)."""
        self._queue.append((job, time.perf_counter()))
        self._start()

    def _start(self) -> None:
        # Counted here and uncounted synchronously when a drain finds no work left (not in a done
        # callback, which runs later): a job submitted in between always finds a drain or starts one.
        if self._queue and self._draining < self.max_in_flight:
            self._draining += 1
            task = asyncio.get_running_loop().create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[J]:
        batch: list[J] = []
        deferred: list[tuple[J, float]] = []
        now = time.perf_counter()
        while self._queue and len(batch) < self.max_items:
            job, queued_at = entry = self._queue.popleft()
            if job.future.done():  # the caller gave up (cancelled) before the job was written
                continue
            if job.dedup_key in self._writing:
                deferred.append(entry)
            else:
                self._writing.add(job.dedup_key)
                batch.append(job)
                BATCH_QUEUE_SECONDS.observe(now - queued_at)
        self._queue.extendleft(reversed(deferred))
        return batch

    def _has_work(self) -> bool:
        return any(job.dedup_key not in self._writing for job, _ in self._queue)

    async def _drain(self) -> None:
        try:
            while self._has_work():
                async with self._session() as session:
                    while batch := self._take():
                        started = time.perf_counter()
                        try:
                            await self._flush(session, batch)
                        finally:
                            BATCH_SECONDS.observe(time.perf_counter() - started)
                            BATCH_REQUESTS.observe(len(batch))
                            for job in batch:
                                self._writing.discard(job.dedup_key)
                                if not job.future.done():
                                    job.future.set_exception(
                                        RuntimeError("the batch ended without settling this request")
                                    )
        finally:
            self._draining -= 1
            # A drain that ended abnormally (cancelled) may leave jobs that no other drain will take.
            if self._draining == 0:
                self._start()
