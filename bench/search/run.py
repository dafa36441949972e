"""Benchmark of the search service: indexing from catalog events, query latency through gRPC, freshness, rebuilds.

Starts its own durable PostgreSQL (fsync on) and NATS JetStream, runs the search service as a real subprocess
(`python -m modelhub.search`, tantivy engine, consumer on) and measures from this process, for each size in
SIZES (env BENCH_SEARCH_SIZES, default 100000,1000000) of model documents drawn by bench/search/engine_bench.py
(realistic distributions):

- events: the catalog's events (one ModelSnapshot and one ModelStatsUpdated per model, as the catalog's relay
  publishes them) are published into JetStream first (not timed); then the service starts and its consumer
  indexes them. Rate = events (and documents) per second between the first and the last batch the consumer
  committed (its inbox's timestamps). Above FULL_EVENT_PATH_MAX documents (1M) this would take longer than the
  run may: the index is then built by a rebuild from a bulk-loaded mirror (timed, reported as `rebuild`), and
  the consumer's rate is measured on UPDATE_EVENTS further events (snapshot + stats updates of existing models)
  indexed on top of the full index. Both are in the results, labelled.
- baseline for indexing: the engine's raw bulk rate (engine_bench.bulk_index: port calls only, same engine
  settings) for the same documents in the same run.
- queries: QUERIES queries of engine_bench.query_mix (text + filters + facets + sorts over periods, browsing
  levels) through gRPC, one at a time from this process (after a warm-up), p50/p99; beside them the same
  queries at the engine's port (engine_bench.measure_queries) on the same index directory after the service
  stopped, in this process: the raw engine latency.
- freshness: FRESHNESS times, a new model's snapshot is published and SearchModels polled until it is found;
  as many times, it is unpublished and polled until gone.
- rebuild: an offline rebuild (python -m modelhub.search.reindex --offline's code path) of the same database.

Writes bench/results/search.json (or BENCH_SEARCH_RESULTS). On the 2-core development machine a run of both
sizes takes about 26 minutes, 19 of them for 1M (loading the mirror, the rebuild and the raw bulk indexing of
1M documents); BENCH_SEARCH_SIZES=100000 takes about 6.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc.aio
import psycopg
from uuid_utils.compat import uuid7

from modelhub.common.v1 import pagination_pb2
from modelhub.core.grpc.auth import issue_token
from modelhub.core.nats import connect, ensure_stream, events_stream_config, events_subject
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.ports import free_port
from modelhub.devstack.postgres import PostgresServer, create_database
from modelhub.events.v1 import catalog_pb2, envelope_pb2
from modelhub.search.adapters.events import MODEL_SNAPSHOT, MODEL_STATS_UPDATED
from modelhub.search.adapters.migrations import upgrade
from modelhub.search.adapters.mirror import MirrorRow, Table
from modelhub.search.bootstrap import open_search
from modelhub.search.config import SearchSettings
from modelhub.search.domain.documents import ModelDocument
from modelhub.search.domain.queries import ModelQuery
from modelhub.search.v1 import search_pb2, search_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench` is a namespace package
from bench.search import engine_bench

SIZES = [int(s) for s in os.environ.get("BENCH_SEARCH_SIZES", "100000,1000000").split(",") if s]
FULL_EVENT_PATH_MAX = int(os.environ.get("BENCH_SEARCH_FULL_EVENT_PATH_MAX", "200000"))
UPDATE_EVENTS = int(os.environ.get("BENCH_SEARCH_UPDATE_EVENTS", "100000"))
QUERIES = int(os.environ.get("BENCH_SEARCH_QUERIES", "2000"))
FRESHNESS = int(os.environ.get("BENCH_SEARCH_FRESHNESS", "100"))
HEAP_MB = 256
WRITER_THREADS = 1
SECRET = "search-bench-secret-long-enough-for-hs256"
RESULTS = Path(os.environ.get("BENCH_SEARCH_RESULTS", Path(__file__).parent.parent / "results" / "search.json"))
PUBLISH_IN_FLIGHT = 4000


# -- documents as the catalog's events ------------------------------------------------------------------------


def catalog_events(doc: ModelDocument) -> tuple[catalog_pb2.CatalogModelSnapshot, catalog_pb2.CatalogModelStatsUpdated]:
    """The snapshot and stats payloads the catalog would publish for `doc` (the inverse of the service's
    mapping: indexing them yields `doc` again, up to the order of its value sets)."""
    kinds = ("SHA256", "AutoV2", "CRC32")
    versions = []
    for i, version_id in enumerate(doc.version_ids):
        hashes = doc.hashes[3 * i : 3 * i + 3]
        file = catalog_pb2.CatalogFileSnapshot(
            file_id=f"{version_id}-f",
            name=f"{version_id}.safetensors",
            format=doc.file_formats[i % len(doc.file_formats)],
            size_bytes=2_000_000_000,
            scan_result="Success",
            hashes=[catalog_pb2.CatalogFileHash(kind=k, value=v) for k, v in zip(kinds, hashes, strict=False)],
        )
        version = catalog_pb2.CatalogVersionSnapshot(
            model_version_id=version_id,
            name=f"v{i + 1}",
            base_model=doc.base_models[i % len(doc.base_models)],
            trained_words=list(doc.trained_words) if i == 0 else [],
            status="Published",
            files=[file],
        )
        if doc.published_at is not None:
            version.published_at.FromDatetime(doc.published_at)
        versions.append(version)
    snapshot = catalog_pb2.CatalogModelSnapshot(
        model_id=doc.model_id,
        name=doc.name,
        description=doc.description,
        type=doc.type,
        status=doc.status,
        tags=list(doc.tags),
        creator_user_id=doc.creator_user_id,
        creator_username=doc.creator_username,
        license=catalog_pb2.CatalogLicense(
            allow_no_credit=doc.allow_no_credit,
            allow_commercial_use=list(doc.allow_commercial_use),
            allow_derivatives=doc.allow_derivatives,
            allow_different_license=doc.allow_different_license,
        ),
        nsfw_level=doc.nsfw_level,
        versions=versions,
    )
    snapshot.created_at.FromDatetime(doc.created_at)
    snapshot.updated_at.FromDatetime(doc.created_at)
    if doc.published_at is not None:
        snapshot.published_at.FromDatetime(doc.published_at)
    stats = catalog_pb2.CatalogModelStatsUpdated(
        model_id=doc.model_id,
        periods=[
            catalog_pb2.CatalogModelPeriodStats(period=period.value, **asdict(counts))
            for period, counts in doc.stats.items()
        ],
    )
    stats.computed_at.FromDatetime(engine_bench.NOW)
    return snapshot, stats


def envelope(event_type: str, stream_id: str, version: int, payload: bytes) -> envelope_pb2.EventEnvelope:
    env = envelope_pb2.EventEnvelope(
        event_id=str(uuid7()),
        event_type=event_type,
        stream_id=stream_id,
        stream_version=version,
        schema_version=1,
        payload=payload,
        producer="catalog",
    )
    env.occurred_at.GetCurrentTime()
    return env


def model_envelopes(doc: ModelDocument, bump: int = 0) -> Iterator[envelope_pb2.EventEnvelope]:
    snapshot, stats = catalog_events(doc)
    yield envelope(
        MODEL_SNAPSHOT, f"model-{doc.model_id}", doc.model_stream_version + bump, snapshot.SerializeToString()
    )
    yield envelope(
        MODEL_STATS_UPDATED,
        f"model-stats-{doc.model_id}",
        doc.stats_stream_version + bump,
        stats.SerializeToString(),
    )


async def publish_all(nats_url: str, producer: str, envelopes: Iterable[envelope_pb2.EventEnvelope]) -> dict[str, Any]:
    """Publish like the catalog's relay (Nats-Msg-Id = event id), PUBLISH_IN_FLIGHT acks outstanding."""
    nc = await connect(nats_url, "bench-publisher")
    js = nc.jetstream()
    await ensure_stream(js, events_stream_config(producer))
    count = 0
    size = 0
    started = time.perf_counter()
    pending = []
    try:
        for env in envelopes:
            data = env.SerializeToString()
            headers = {"Nats-Msg-Id": env.event_id, "Modelhub-Event-Type": env.event_type}
            pending.append(await js.publish_async(events_subject(producer, env.event_type), data, headers=headers))
            count += 1
            size += len(data)
            if len(pending) >= PUBLISH_IN_FLIGHT:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await nc.close()
    return {
        "events": count,
        "mean_event_bytes": round(size / max(count, 1)),
        "seconds": round(time.perf_counter() - started, 1),
    }


# -- the service ----------------------------------------------------------------------------------------------


def service_settings(url: str, nats_url: str, producer: str, data_dir: Path, port: int = 0) -> SearchSettings:
    return SearchSettings(
        database_url=url,
        nats_url=nats_url,
        grpc_port=port,
        data_dir=data_dir,
        catalog_producer=producer,
        jwt_secret=SECRET,
        tantivy_writer_heap_mb=HEAP_MB,
        migrate_on_start=False,
        log_level="WARNING",
    )


def start_service(settings: SearchSettings) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "MODELHUB_SEARCH_DATABASE_URL": settings.database_url,
        "MODELHUB_SEARCH_NATS_URL": settings.nats_url,
        "MODELHUB_SEARCH_GRPC_PORT": str(settings.grpc_port),
        "MODELHUB_SEARCH_DATA_DIR": str(settings.data_dir),
        "MODELHUB_SEARCH_CATALOG_PRODUCER": settings.catalog_producer,
        "MODELHUB_SEARCH_JWT_SECRET": SECRET,
        "MODELHUB_SEARCH_TANTIVY_WRITER_HEAP_MB": str(HEAP_MB),
        "MODELHUB_SEARCH_MIGRATE_ON_START": "false",
        "MODELHUB_SEARCH_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "modelhub.search"], env=env)


def stop_service(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def wait_ready(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 120)


async def consumed(url: str, expected: int, timeout: float) -> dict[str, Any]:
    """Wait until the consumer's inbox holds `expected` events; its rate between the first and last batch."""
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            row = await (
                await conn.execute(
                    "SELECT count(*), extract(epoch FROM max(processed_at) - min(processed_at)) FROM consumer_inbox"
                )
            ).fetchone()
            assert row is not None
            count, seconds = row[0], float(row[1] or 0)
            if count >= expected:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the consumer applied {count} of {expected} events in {timeout}s")
            await asyncio.sleep(0.2)
    return {"events": count, "seconds": round(seconds, 2), "events_per_s": round(count / seconds) if seconds else None}


# -- queries through gRPC -----------------------------------------------------------------------------------

_SORT_PB = {
    "Highest Rated": search_pb2.MODEL_SORT_HIGHEST_RATED,
    "Most Downloaded": search_pb2.MODEL_SORT_MOST_DOWNLOADED,
    "Most Liked": search_pb2.MODEL_SORT_MOST_LIKED,
    "Most Discussed": search_pb2.MODEL_SORT_MOST_DISCUSSED,
    "Most Collected": search_pb2.MODEL_SORT_MOST_COLLECTED,
    "Most Images": search_pb2.MODEL_SORT_MOST_IMAGES,
    "Newest": search_pb2.MODEL_SORT_NEWEST,
    "Relevance": search_pb2.MODEL_SORT_RELEVANCE,
}
_PERIOD_PB = {
    "Day": search_pb2.PERIOD_DAY,
    "Week": search_pb2.PERIOD_WEEK,
    "Month": search_pb2.PERIOD_MONTH,
    "Year": search_pb2.PERIOD_YEAR,
    "AllTime": search_pb2.PERIOD_ALL_TIME,
}
_FACET_PB = {
    "type": search_pb2.MODEL_FACET_TYPE,
    "base_model": search_pb2.MODEL_FACET_BASE_MODEL,
    "tag": search_pb2.MODEL_FACET_TAG,
    "nsfw_level": search_pb2.MODEL_FACET_NSFW_LEVEL,
    "file_format": search_pb2.MODEL_FACET_FILE_FORMAT,
    "commercial_use": search_pb2.MODEL_FACET_COMMERCIAL_USE,
}


def request_of(query: ModelQuery) -> search_pb2.SearchModelsRequest:
    """The gRPC request of an engine_bench query (its filters are types, base models and tags only)."""
    f = query.filters
    return search_pb2.SearchModelsRequest(
        query=query.text,
        filters=search_pb2.ModelFilters(
            types=f.types, base_models=f.base_models, tags=f.tags, creator_user_ids=f.creator_user_ids
        ),
        sort=_SORT_PB[query.sort.value],
        period=_PERIOD_PB[query.period.value],
        facets=[_FACET_PB[facet.value] for facet in query.facets],
        page=pagination_pb2.PageRequest(page_size=query.limit),
        browsing_level=query.browsing_level,
    )


async def grpc_latency(address: str, queries: list[ModelQuery], warmup: int = 100) -> engine_bench.Latency:
    """The queries one at a time through gRPC as a signed-in user (any level but Blocked), after a warm-up."""
    metadata = (("authorization", f"Bearer {issue_token('bench', ('user',), key=SECRET)}"),)
    requests = [request_of(q) for q in queries]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        for request in requests[:warmup]:
            await stub.SearchModels(request, metadata=metadata)
        samples = []
        hits = 0
        for request in requests:
            started = time.perf_counter()
            response = await stub.SearchModels(request, metadata=metadata)
            samples.append(time.perf_counter() - started)
            hits += len(response.hits)
    return engine_bench.latency(samples, hits)


async def freshness(address: str, nats_url: str, producer: str, count: int) -> dict[str, Any]:
    """Publish a new model (and later its unpublish) one at a time; seconds until the API shows the change."""
    nc = await connect(nats_url, "bench-freshness")
    js = nc.jetstream()
    found: list[float] = []
    gone: list[float] = []
    docs = list(engine_bench.iter_models(count, seed=99))
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            for n, doc in enumerate(docs):
                token = f"zqfresh{n}x"
                snapshot, _ = catalog_events(doc)
                snapshot.model_id = f"fresh-{n}"
                snapshot.name = f"{token} {doc.name}"
                snapshot.nsfw_level = 1
                request = search_pb2.SearchModelsRequest(query=token)
                for version, status, samples in ((1, "Published", found), (2, "Unpublished", gone)):
                    snapshot.status = status
                    env = envelope(MODEL_SNAPSHOT, f"model-fresh-{n}", version, snapshot.SerializeToString())
                    started = time.perf_counter()
                    await js.publish(events_subject(producer, MODEL_SNAPSHOT), env.SerializeToString())
                    while bool((await stub.SearchModels(request)).hits) != (status == "Published"):
                        if time.perf_counter() - started > 30:
                            raise TimeoutError(f"{status} {token} not visible after 30 s")
                    samples.append(time.perf_counter() - started)
    finally:
        await nc.close()
    return {
        "searchable": asdict(engine_bench.latency(found)),
        "removed": asdict(engine_bench.latency(gone)),
    }


# -- the index built by a rebuild from a bulk-loaded mirror (for sizes above FULL_EVENT_PATH_MAX) -----------


async def load_mirror(settings: SearchSettings, docs: Iterable[ModelDocument], chunk: int = 5000) -> float:
    """Write the documents' events into the mirror directly (what the consumer would have written)."""
    search = await open_search(settings)
    started = time.perf_counter()
    try:
        for batch in engine_bench.batches(docs, chunk):
            rows = []
            for doc in batch:
                snapshot, stats = catalog_events(doc)
                rows.append(
                    MirrorRow(
                        Table.MODELS,
                        doc.model_id,
                        doc.model_stream_version,
                        1,
                        snapshot.SerializeToString(),
                        True,
                        uuid7(),
                    )
                )
                rows.append(
                    MirrorRow(
                        Table.MODEL_STATS,
                        doc.model_id,
                        doc.stats_stream_version,
                        1,
                        stats.SerializeToString(),
                        True,
                        uuid7(),
                    )
                )
            async with search.db.begin() as conn:
                await search.mirror.put(conn, rows)
    finally:
        await search.close()
    return time.perf_counter() - started


async def offline_rebuild(settings: SearchSettings) -> dict[str, Any]:
    search = await open_search(settings)
    try:
        report = await search.rebuilder.rebuild()
    finally:
        await search.close()
    return {
        "documents": report.models,
        "seconds": round(report.took_seconds, 1),
        "docs_per_s": round(report.models / report.took_seconds),
        "paused_s": round(report.paused_seconds, 3),
    }


# -- raw engine ------------------------------------------------------------------------------------------------


async def raw_latency(index_dir: Path, queries: list[ModelQuery]) -> engine_bench.Latency:
    from modelhub.search.adapters.engines.tantivy_engine import TantivyEngine

    engine = TantivyEngine(index_dir, heap_bytes=HEAP_MB * 1_000_000, threads=WRITER_THREADS)
    try:
        return await engine_bench.measure_queries(await engine.live(), queries)
    finally:
        await engine.close()


async def raw_bulk(root: Path, n: int) -> engine_bench.BulkResult:
    from modelhub.search.adapters.engines.tantivy_engine import TantivyEngine

    engine = TantivyEngine(root, heap_bytes=HEAP_MB * 1_000_000, threads=WRITER_THREADS)
    try:
        return await engine_bench.bulk_index(await engine.live(), engine_bench.iter_models(n))
    finally:
        await engine.close()
        shutil.rmtree(root, ignore_errors=True)


# -- one size ------------------------------------------------------------------------------------------------


async def run_size(n: int, pg: PostgresServer, nats: NatsServer, root: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"documents": n}
    producer = f"bench{n}"
    url = create_database(pg.url(), f"search_{n}")
    upgrade(url)
    data_dir = root / f"search-{n}"
    port = free_port()
    settings = service_settings(url, nats.url, producer, data_dir, port)
    if n <= FULL_EVENT_PATH_MAX:
        print(f"[{n}] publishing {2 * n} catalog events", flush=True)
        result["published"] = await publish_all(
            nats.url, producer, (e for doc in engine_bench.iter_models(n) for e in model_envelopes(doc))
        )
        expected = 2 * n
        path = "all documents indexed from their events"
    else:
        print(f"[{n}] loading the mirror and rebuilding", flush=True)
        result["mirror_load_s"] = round(await load_mirror(settings, engine_bench.iter_models(n)), 1)
        result["rebuild"] = await offline_rebuild(settings)
        updates = UPDATE_EVENTS // 2
        print(f"[{n}] publishing {UPDATE_EVENTS} update events", flush=True)
        result["published"] = await publish_all(
            nats.url,
            producer,
            (e for doc in engine_bench.iter_models(updates, seed=5) for e in model_envelopes(doc, bump=100)),
        )
        expected = UPDATE_EVENTS
        path = f"index built by a rebuild; {UPDATE_EVENTS} update events of {updates} models indexed on top"
    process = start_service(settings)
    try:
        await wait_ready(settings.grpc_address)
        print(f"[{n}] consuming", flush=True)
        indexing = await consumed(url, expected, timeout=3600)
        indexing["docs_per_s"] = round(indexing["events_per_s"] / 2) if indexing["events_per_s"] else None
        indexing["what"] = path
        result["indexing_from_events"] = indexing
        queries = engine_bench.query_mix(QUERIES)
        print(f"[{n}] queries through gRPC", flush=True)
        result["grpc_query_latency"] = asdict(await grpc_latency(settings.grpc_address, queries))
        print(f"[{n}] freshness", flush=True)
        result["freshness_s"] = await freshness(settings.grpc_address, nats.url, producer, FRESHNESS)
    finally:
        stop_service(process)
    print(f"[{n}] raw engine queries", flush=True)
    result["raw_engine_query_latency"] = asdict(await raw_latency(settings.tantivy_dir, queries))
    grpc_p99, raw_p99 = result["grpc_query_latency"]["p99_ms"], result["raw_engine_query_latency"]["p99_ms"]
    grpc_p50, raw_p50 = result["grpc_query_latency"]["p50_ms"], result["raw_engine_query_latency"]["p50_ms"]
    result["grpc_over_raw"] = {"p50": round(grpc_p50 / raw_p50, 2), "p99": round(grpc_p99 / raw_p99, 2)}
    if "rebuild" not in result:
        print(f"[{n}] rebuild", flush=True)
        result["rebuild"] = await offline_rebuild(settings)
    print(f"[{n}] raw engine bulk indexing", flush=True)
    bulk = await raw_bulk(root / f"raw-{n}", n)
    result["raw_engine_bulk"] = {
        "documents": bulk.documents,
        "seconds": round(bulk.seconds, 1),
        "docs_per_s": round(bulk.per_second),
    }
    shutil.rmtree(data_dir, ignore_errors=True)
    print(f"[{n}] {json.dumps(result)}", flush=True)
    return result


async def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers (finally) when terminated
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="modelhub-search-bench-"))
    root.chmod(0o755)  # PostgreSQL runs as its own user when we are root
    pg = PostgresServer(root / "pg", durable=True)
    nats = NatsServer(root / "nats")
    pg.start()
    nats.start()
    sizes: dict[str, Any] = {}
    try:
        for n in SIZES:
            sizes[str(n)] = await run_size(n, pg, nats, root)
    finally:
        nats.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "search",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "engine": "tantivy",
        "settings": {
            "writer_heap_mb": HEAP_MB,
            "writer_threads": WRITER_THREADS,
            "consumer_batch_size": SearchSettings.model_fields["consumer_batch_size"].default,
            "postgres": "durable (fsync on)",
            "queries": QUERIES,
            "freshness_samples": FRESHNESS,
        },
        "goals": {
            "grpc_p99_ms": {"100000": 25, "1000000": 60},
            "grpc_over_raw_max": 3,
            "indexing_from_events_docs_per_s_min": 5000,
            "freshness_s_max": 1,
        },
        "sizes": sizes,
        "wall_seconds": round(time.perf_counter() - started),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
