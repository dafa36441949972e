"""Rebuilds on the real tantivy engine, with the live consumer running: queries never fail nor see a half-built
index, writes made during the rebuild are in the new generation, and the result equals what the events say."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from nats.aio.client import Client
from sqlalchemy import text

from modelhub.common.v1 import pagination_pb2
from modelhub.core.errors import FailedPrecondition
from modelhub.core.grpc.server import GrpcServer
from modelhub.search.bootstrap import Search, open_engine
from modelhub.search.reindex import admin_token, reindex_offline, reindex_remote
from modelhub.search.v1 import search_pb2, search_pb2_grpc

from .catalog_events import envelope, image_snapshot, model_snapshot, model_stats, publish, running
from .conftest import auth, consumer_of
from .test_consumer import applied, images, inbox, models

STABLE = 40
"""Models published before the rebuild and never touched: every query must see all of them, always."""


class Catalog:
    """Publishes catalog events and remembers the newest state of every model (what the index must show)."""

    def __init__(self, nc: Client, producer: str) -> None:
        self.js = nc.jetstream()
        self.producer = producer
        self.versions: dict[str, int] = {}
        self.expected: dict[str, tuple[str, int]] = {}
        self.published = 0

    async def put(self, model_id: str, *, public: bool = True, level: int = 1, name: str | None = None) -> None:
        version = self.versions.get(model_id, 0) + 1
        self.versions[model_id] = version
        name = name or f"{model_id} v{version}"
        status = "Published" if public else "Unpublished"
        await publish(
            self.js,
            self.producer,
            envelope(model_snapshot(model_id, name=name, nsfw_level=level, status=status), version),
        )
        await publish(self.js, self.producer, envelope(model_stats(model_id, downloads=version * 10), version))
        self.published += 2
        if public:
            self.expected[model_id] = (name, level)
        else:
            self.expected.pop(model_id, None)


async def seed(catalog: Catalog, churn: int) -> None:
    for n in range(STABLE):
        await catalog.put(f"stable{n:03}", name=f"Stable {n}", level=1 + n % 2)
    for n in range(churn):
        await catalog.put(f"churn{n:03}", level=4)


async def churn_forever(catalog: Catalog, stop: asyncio.Event, rng: random.Random) -> None:
    """New models, renames and unpublishes, until `stop` is set."""
    n = 0
    while not stop.is_set():
        roll = rng.random()
        if roll < 0.4:
            await catalog.put(f"new{n:04}", level=8)
            n += 1
        else:
            victim = rng.choice(sorted(m for m in catalog.versions if m.startswith(("churn", "new"))))
            await catalog.put(victim, public=roll < 0.8, level=rng.choice([1, 2, 4, 8, 16]))
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def query_load(stub: search_pb2_grpc.SearchServiceStub) -> AsyncIterator[dict[str, int]]:
    """Queries through gRPC in a loop: the stable models must always all be there. Counts queries and failures."""
    counts = {"queries": 0, "failures": 0, "incomplete": 0}
    stop = asyncio.Event()
    moderator = auth("mod", "moderator")

    async def loop() -> None:
        while not stop.is_set():
            try:
                stable = await stub.SearchModels(
                    search_pb2.SearchModelsRequest(
                        query="stable", browsing_level=63, page=pagination_pb2.PageRequest(page_size=100)
                    ),
                    metadata=moderator,
                )
                await stub.SearchModels(
                    search_pb2.SearchModelsRequest(
                        sort=search_pb2.MODEL_SORT_MOST_DOWNLOADED,
                        browsing_level=31,
                        facets=[search_pb2.MODEL_FACET_NSFW_LEVEL],
                    ),
                    metadata=moderator,
                )
                await stub.Suggest(search_pb2.SuggestRequest(prefix="sta"))
            except grpc.aio.AioRpcError:
                counts["failures"] += 1
                continue
            counts["queries"] += 1
            if len(stable.hits) != STABLE:
                counts["incomplete"] += 1

    task = asyncio.create_task(loop())
    try:
        yield counts
    finally:
        stop.set()
        await task


async def settle(search: Search, catalog: Catalog) -> None:
    """Wait until the consumer has applied every event published so far."""
    await applied(search, catalog.published)


@pytest.mark.usefixtures("server")
async def test_rebuild_under_query_load_and_live_writes(
    search: Search, nc: Client, producer: str, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    catalog = Catalog(nc, producer)
    await seed(catalog, churn=60)
    search.rebuilder.batch_size = 25  # many small steps: queries and writes interleave with the copy

    async def linger(phase: str) -> None:
        if phase == "copied":  # let live writes pile up for the catch-up passes and the pause
            await asyncio.sleep(0.5)

    search.rebuilder.on_phase = linger
    async with running(consumer_of(search, nc, producer)):
        await settle(search, catalog)
        before = await search.engine.live_generation()
        stop_churn = asyncio.Event()
        async with query_load(stub) as counts:
            churn = asyncio.create_task(churn_forever(catalog, stop_churn, random.Random(3)))
            queries_before = counts["queries"]
            report = await search.rebuilder.rebuild()
            during = counts["queries"] - queries_before
            stop_churn.set()
            await churn
            await settle(search, catalog)
            # The live consumer keeps writing into the new generation after the swap.
            await catalog.put("after-swap", level=1)
            await settle(search, catalog)
        assert await search.engine.live_generation() == report.generation != before
    assert counts["failures"] == 0
    assert counts["incomplete"] == 0
    assert during >= 5, counts
    assert report.models >= STABLE
    assert await models(search) == catalog.expected
    assert await search.engine.live_generation() == report.generation


async def test_writes_held_during_the_pause_land_in_the_new_generation(
    search: Search, nc: Client, producer: str
) -> None:
    catalog = Catalog(nc, producer)
    await seed(catalog, churn=5)
    held: dict[str, int] = {}

    async def on_phase(phase: str) -> None:
        if phase == "paused":  # the index-writes lock is held: the consumer's next batch must wait
            held["inbox"] = await inbox(search)
            await catalog.put("during-pause", level=2)
            await asyncio.sleep(0.5)
            held["inbox_after"] = await inbox(search)

    search.rebuilder.on_phase = on_phase
    async with running(consumer_of(search, nc, producer)):
        await settle(search, catalog)
        report = await search.rebuilder.rebuild()
        await settle(search, catalog)
    assert held["inbox_after"] == held["inbox"]  # nothing committed while paused
    assert "during-pause" in await models(search)
    assert await models(search) == catalog.expected
    assert report.paused_seconds >= 0.5


async def test_rebuild_replaying_the_stream_restores_a_lost_mirror(search: Search, nc: Client, producer: str) -> None:
    catalog = Catalog(nc, producer)
    await seed(catalog, churn=10)
    await publish(catalog.js, producer, envelope(image_snapshot("i1"), 1))
    await publish(catalog.js, producer, envelope(image_snapshot("i2", status="Hidden"), 1))
    catalog.published += 2
    async with running(consumer_of(search, nc, producer)):
        await settle(search, catalog)
    async with search.db.begin() as conn:  # the mirror is lost
        await conn.execute(text("TRUNCATE mirror_models, mirror_model_stats, mirror_images"))
    emptied = await search.rebuilder.rebuild()
    assert (emptied.models, emptied.images) == (0, 0)
    assert await models(search) == {}
    report = await search.rebuilder.rebuild(replay_stream=True)
    assert report.replayed_events == catalog.published
    assert (report.models, report.images) == (len(catalog.expected), 1)
    assert await models(search) == catalog.expected
    assert await images(search) == {"i1"}


async def test_a_failed_rebuild_leaves_the_live_generation_alone(search: Search, nc: Client, producer: str) -> None:
    catalog = Catalog(nc, producer)
    await seed(catalog, churn=0)
    async with running(consumer_of(search, nc, producer)):
        await settle(search, catalog)
    live = await search.engine.live_generation()

    async def fail(phase: str) -> None:
        if phase == "caught_up":
            raise RuntimeError("disk full")

    search.rebuilder.on_phase = fail
    with pytest.raises(RuntimeError, match="disk full"):
        await search.rebuilder.rebuild()
    assert await search.engine.live_generation() == live
    assert await models(search) == catalog.expected
    generations = search.settings.tantivy_dir / "generations"
    assert [p.name for p in generations.iterdir()] == [live]  # the half-built one is gone


async def test_one_rebuild_at_a_time(search: Search) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(phase: str) -> None:
        if phase == "copied":
            started.set()
            await release.wait()

    search.rebuilder.on_phase = slow
    first = asyncio.create_task(search.rebuilder.rebuild())
    await started.wait()
    with pytest.raises(FailedPrecondition) as caught:
        await search.rebuilder.rebuild()
    assert caught.value.reason == "REINDEX_RUNNING"
    release.set()
    await first


async def test_the_cli_asks_the_running_service(search: Search, nc: Client, producer: str, server: GrpcServer) -> None:
    catalog = Catalog(nc, producer)
    await seed(catalog, churn=3)
    async with running(consumer_of(search, nc, producer)):
        await settle(search, catalog)
    before = await search.engine.live_generation()
    token = admin_token(search.settings, None)  # minted with the service's HMAC secret
    result = await reindex_remote(server.address, token, replay_stream=False)
    assert result["generation"] == await search.engine.live_generation() != before
    assert result["models"] == len(catalog.expected)
    assert await models(search) == catalog.expected


async def test_the_cli_rebuilds_offline(search: Search, nc: Client, producer: str, tmp_path: Path) -> None:
    catalog = Catalog(nc, producer)
    await seed(catalog, churn=3)
    async with running(consumer_of(search, nc, producer)):
        await settle(search, catalog)
    offline = search.settings.model_copy(update={"data_dir": tmp_path / "offline"})
    result = await reindex_offline(offline, replay_stream=False)
    assert result["models"] == len(catalog.expected)
    engine = await open_engine(offline)
    try:
        assert await engine.live_generation() == result["generation"]
        assert await (await engine.live()).count_models() == len(catalog.expected)
    finally:
        await engine.close()
