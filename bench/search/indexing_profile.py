"""Where the search consumer's time goes: a focused profile of indexing from catalog events (not a benchmark).

Starts a durable PostgreSQL and NATS JetStream, publishes the events of N models (a snapshot and a stats event
each, as bench/search/run.py does), then runs the service's real consumer (IdempotentConsumer + Indexer +
tantivy, in this process, the service's consumer settings) until every event is applied, and times each stage
of a batch with wrappers, in CPU seconds of the thread that runs it (other jobs on the machine do not inflate
them; an awaiting stage counts the event loop's CPU meanwhile, a prefetch included):

    python bench/search/indexing_profile.py [N=20000] [batch_size=10000]

Prints one JSON object: wall seconds, events/s, documents/s, this process's CPU per document, the batch sizes,
and CPU seconds per stage summed over batches (nested stages, e.g. `mirror.put` inside `transaction`, are listed
too, so the parts do not add up), CPU per document by thread, and the whole machine's busy CPU per document
(PostgreSQL and NATS included). PREFETCH=0 turns the consumer's prefetching off; GC_SETTLE=0 leaves the garbage
collector at CPython's defaults (the service settles it once started: modelhub.core.runtime); PROFILE=<file>
writes a cProfile of the event loop's thread. Run it with PYTHONPATH pointing at another checkout's libs/core
and services/search to compare versions on the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import dataclasses
import functools
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.search import engine_bench
from bench.search.run import HEAP_MB, model_envelopes, publish_all
from modelhub.core.db import create_engine
from modelhub.core.events import consumer as consumer_module
from modelhub.core.events.consumer import ConsumerSettings
from modelhub.core.nats import connect
from modelhub.core.runtime import settle_after_startup
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.postgres import PostgresServer, create_database
from modelhub.search.adapters.engines import tantivy_engine, tantivy_schema
from modelhub.search.adapters.engines.tantivy_engine import TantivyEngine
from modelhub.search.adapters.events import make_catalog_registry
from modelhub.search.adapters.migrations import upgrade
from modelhub.search.adapters.mirror import Mirror
from modelhub.search.config import SearchSettings
from modelhub.search.entrypoints import consumers
from modelhub.search.handlers import Indexer

TIMES: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, summed by thread name (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    python_names = {t.native_id: t.name.split(" ")[0] for t in threading.enumerate()}  # e.g. "asyncio_0", "MainThread"
    by_name: dict[str, float] = defaultdict(float)
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            stat = (task / "stat").read_text()
            name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            name = python_names.get(int(task.name), name)
            by_name[name] += (int(fields[11]) + int(fields[12])) / ticks
    return by_name


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (not idle, not waiting for I/O) since boot (Linux /proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _timed_async(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return await fn(*args, **kwargs)
        finally:
            TIMES[name] += time.thread_time() - started
            CALLS[name] += 1

    return wrapper


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[name] += time.thread_time() - started
            CALLS[name] += 1

    return wrapper


BATCH_SIZES: list[int] = []


def instrument() -> None:
    """Wrap the stages of a batch (class attributes: every instance is timed)."""
    c = consumer_module.IdempotentConsumer
    handle = c._handle

    async def sizes(self: Any, batch: Any) -> None:
        BATCH_SIZES.append(len(getattr(batch, "messages", batch)))  # an older library passes the messages
        await handle(self, batch)

    setattr(c, "_handle", sizes)  # noqa: B010 (setattr: mypy would refuse assigning a method)
    stages: list[tuple[Any, str, str, bool]] = [
        (c, "_apply_batch", "transaction (claim..commit)", True),
        (c, "_handle", "handle (apply + acks)", True),
        (c, "_fetch", "fetch + decode", True),  # an older library has none
        (c, "_decode", "decode", False),
        (Mirror, "documents", "mirror.documents (read + build)", True),
        (Mirror, "_model", "  build model document", False),
        (tantivy_engine._Collection, "upsert", "tantivy upsert (thread)", False),
        (tantivy_engine._Collection, "_stored_versions", "  tantivy stored versions", False),
        (tantivy_engine._Collection, "refresh", "tantivy commit + reload (thread)", False),
        (tantivy_schema, "to_document", "  tantivy to_document", False),  # an older layout
        (tantivy_schema, "to_json", "  tantivy to_json", False),
        (tantivy_schema, "model_fields", "  layout fields", False),
        (tantivy_engine.TantivyIndex, "upsert_models", "index.upsert_models (await)", True),
        (tantivy_engine.TantivyIndex, "refresh", "index.refresh (await)", True),
    ]
    for owner, attr, name, is_async in stages:
        if hasattr(owner, attr):
            setattr(owner, attr, (_timed_async if is_async else _timed)(name, getattr(owner, attr)))
    for attr in ("lock_for_writing", "lock_models", "put"):
        setattr(Mirror, attr, staticmethod(_timed_async(f"mirror.{attr}", getattr(Mirror, attr))))


def consumer_settings(settings: SearchSettings) -> ConsumerSettings:
    """The service's settings; PREFETCH=0 turns prefetching off (where this version of the library has it)."""
    chosen = consumers.consumer_settings(settings)
    if hasattr(chosen, "prefetch") and os.environ.get("PREFETCH", "1") == "0":
        chosen = dataclasses.replace(chosen, prefetch=False)
    return chosen


async def main(n: int, batch_size: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="modelhub-index-profile-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "pg", durable=True)
    nats = NatsServer(root / "nats")
    pg.start()
    nats.start()
    try:
        url = create_database(pg.url(), "search")
        upgrade(url)
        producer = "prof"
        published = await publish_all(
            nats.url, producer, (e for doc in engine_bench.iter_models(n) for e in model_envelopes(doc))
        )
        settings = SearchSettings(database_url=url, nats_url=nats.url, consumer_batch_size=batch_size)
        db = create_engine(url, pool_size=2)
        engine = TantivyEngine(root / "index", heap_bytes=HEAP_MB * 1_000_000)
        await engine.live()
        nc = await connect(nats.url, "profile")
        consumer = consumers.build_catalog_consumer(
            db,
            nc,
            Indexer(engine, Mirror(make_catalog_registry())),
            producer=producer,
            settings=consumer_settings(settings),
        )
        await consumer.setup()
        instrument()
        if os.environ.get("GC_SETTLE", "1") == "1":
            settle_after_startup()  # as the service does once started (GC_SETTLE=0: CPython's defaults)
        expected = published["events"]
        load_before = os.getloadavg()
        profiler = cProfile.Profile() if os.environ.get("PROFILE") else None
        if profiler is not None:
            profiler.enable()
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        threads_before, machine_before = thread_cpu(), machine_busy()
        started = time.perf_counter()
        done = 0
        batches = 0
        stop = asyncio.Event()
        runner = asyncio.create_task(consumer.run(stop))
        async with db.connect() as conn:
            from sqlalchemy import text

            while done < expected:
                await asyncio.sleep(0.05)
                done = (await conn.execute(text("SELECT count(*) FROM consumer_inbox"))).scalar_one()
                await conn.commit()
        seconds = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        threads_after, machine_after = thread_cpu(), machine_busy()
        cpu = cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime
        stop.set()
        await runner
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(os.environ["PROFILE"])
        batches = CALLS["transaction (claim..commit)"]
        await nc.close()
        docs = await (await engine.live()).count_models()
        await engine.close()
        await db.dispose()
        print(
            json.dumps(
                {
                    "models": n,
                    "events": expected,
                    "batch_size": batch_size,
                    "batches": batches,
                    "batch_sizes": BATCH_SIZES,
                    "seconds": round(seconds, 2),
                    "events_per_s": round(expected / seconds),
                    "docs_per_s": round(n / seconds),
                    "consumer_process_cpu_s": round(cpu, 2),
                    "cpu_us_per_doc": round(cpu / n * 1e6),
                    "cpu_us_per_doc_by_thread": {
                        name: round((threads_after[name] - threads_before.get(name, 0.0)) / n * 1e6)
                        for name in sorted(threads_after, key=lambda t: threads_before.get(t, 0.0) - threads_after[t])
                        if threads_after[name] - threads_before.get(name, 0.0) > 0.002 * cpu
                    },
                    "machine_cpu_us_per_doc": round((machine_after - machine_before) / n * 1e6),
                    "documents_in_index": docs,
                    "load_avg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                    "stage_cpu_seconds": {k: round(v, 2) for k, v in sorted(TIMES.items(), key=lambda kv: -kv[1])},
                },
                indent=1,
            )
        )
    finally:
        nats.stop()
        pg.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000, int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
    )
