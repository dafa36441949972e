"""Group commit: concurrent posting requests share one database transaction (TigerBeetle's batching).

Callers `submit` a job and await its future. While no batch is being written, the first job starts one at
once (an idle ledger adds no delay); jobs that arrive while a batch is in its transaction queue up and
form the next batch, so the batch size follows the load by itself. At most `max_in_flight` batches are
written at a time, each of at most `max_items` jobs. A batch never holds two jobs of the same
(principal, idempotency key): the later one waits for the next batch, where it finds the key taken and
answers the stored outcome, exactly as a retry would.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar


class Job(Protocol):
    @property
    def dedup_key(self) -> Hashable: ...

    @property
    def future(self) -> asyncio.Future[object]: ...


J = TypeVar("J", bound=Job)


class Batcher(Generic[J]):
    """Groups submitted jobs into batches for `flush`, which must settle every job's future."""

    def __init__(
        self, flush: Callable[[list[J]], Awaitable[None]], *, max_items: int = 1000, max_in_flight: int = 1
    ) -> None:
        self._flush = flush
        self.max_items = max_items
        self.max_in_flight = max_in_flight
        self._queue: deque[J] = deque()
        self._draining = 0
        self._tasks: set[asyncio.Task[None]] = set()  # strong references while they run

    def submit(self, job: J) -> None:
        """Queue `job`; its future is settled once its batch is written (or has failed)."""
        self._queue.append(job)
        # Counted here and uncounted synchronously when a drain finds the queue empty (not in a done
        # callback, which runs later): a job submitted in between always finds a drain or starts one.
        while self._queue and self._draining < self.max_in_flight:
            self._draining += 1
            task = asyncio.get_running_loop().create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[J]:
        batch: list[J] = []
        seen: set[Hashable] = set()
        deferred: list[J] = []
        while self._queue and len(batch) < self.max_items:
            job = self._queue.popleft()
            if job.future.done():  # the caller gave up (cancelled) before the job was written
                continue
            if job.dedup_key in seen:
                deferred.append(job)
            else:
                seen.add(job.dedup_key)
                batch.append(job)
        self._queue.extendleft(reversed(deferred))
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                if not batch:
                    continue
                try:
                    await self._flush(batch)
                finally:
                    for job in batch:
                        if not job.future.done():
                            job.future.set_exception(RuntimeError("the batch ended without settling this request"))
        finally:
            self._draining -= 1
