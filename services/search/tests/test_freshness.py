"""Freshness: a catalog change is searchable through the gRPC API within 1 second of its event being published.

The one timing assertion of the suite, because the issue makes freshness a functional requirement: a single
generous measurement per test, with the time in the message. The consumer runs with the service's own
settings (batch size, fetch timeout). bench/search records freshness percentiles over many events.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client

from modelhub.search.bootstrap import Search
from modelhub.search.entrypoints.consumers import consumer_settings
from modelhub.search.v1 import search_pb2, search_pb2_grpc

from .catalog_events import envelope, image_snapshot, model_snapshot, publish, running
from .conftest import consumer_of
from .test_consumer import applied

LIMIT_S = 1.0


async def seconds_until(start: float, condition: Callable[[], Awaitable[bool]], give_up_after: float = 10.0) -> float:
    """Poll `condition` (each poll is one gRPC call) until it is true; the seconds since `start`."""
    while not await condition():
        if time.perf_counter() - start > give_up_after:
            break
    return time.perf_counter() - start


async def test_a_published_model_is_searchable_within_a_second_and_gone_as_fast(
    search: Search, nc: Client, producer: str, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    js = nc.jetstream()
    request = search_pb2.SearchModelsRequest(query="Zeppelin")

    async def found() -> bool:
        return [h.model_id for h in (await stub.SearchModels(request)).hits] == ["fresh"]

    async def gone() -> bool:
        return not (await stub.SearchModels(request)).hits

    async with running(consumer_of(search, nc, producer, settings=consumer_settings(search.settings))):
        await publish(js, producer, envelope(model_snapshot("warmup"), 1))  # the consumer is pulling
        await applied(search, 1)
        start = time.perf_counter()
        await publish(js, producer, envelope(model_snapshot("fresh", name="Zeppelin Pilot"), 1))
        took = await seconds_until(start, found)
        assert took < LIMIT_S, f"searchable after {took:.3f}s"
        start = time.perf_counter()
        await publish(js, producer, envelope(model_snapshot("fresh", name="Zeppelin Pilot", status="Unpublished"), 2))
        took = await seconds_until(start, gone)
        assert took < LIMIT_S, f"still found {took:.3f}s after unpublishing"


async def test_a_posted_image_is_searchable_within_a_second(
    search: Search, nc: Client, producer: str, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    js = nc.jetstream()
    request = search_pb2.SearchImagesRequest(query="lighthouse")

    async def found() -> bool:
        return [h.image_id for h in (await stub.SearchImages(request)).hits] == ["img"]

    async with running(consumer_of(search, nc, producer, settings=consumer_settings(search.settings))):
        await publish(js, producer, envelope(image_snapshot("warmup"), 1))
        await applied(search, 1)
        start = time.perf_counter()
        await publish(js, producer, envelope(image_snapshot("img", prompt="a lighthouse in a storm"), 1))
        took = await seconds_until(start, found)
        assert took < LIMIT_S, f"searchable after {took:.3f}s"
