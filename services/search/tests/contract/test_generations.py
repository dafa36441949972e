"""Generations: a rebuild writes a fresh one and promotes it; queries switch atomically and never fail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from modelhub.core.errors import FailedPrecondition
from modelhub.search.domain.ports import SearchEngine
from modelhub.search.domain.queries import ModelQuery

from .factories import image, load, model, model_ids

PG = 1


async def visible(engine: SearchEngine) -> set[str]:
    page = await (await engine.live()).search_models(ModelQuery(browsing_level=PG, limit=100))
    return set(model_ids(page))


async def test_a_new_generation_is_invisible_until_promoted(search_engine: SearchEngine) -> None:
    await load(await search_engine.live(), [model("old")])
    before = await search_engine.live_generation()

    generation, fresh = await search_engine.create_generation()
    await load(fresh, [model("new-1"), model("new-2")], [image("i")])

    assert generation != before
    assert await visible(search_engine) == {"old"}
    await search_engine.promote(generation)
    assert await visible(search_engine) == {"new-1", "new-2"}
    assert await search_engine.live_generation() == generation
    assert await (await search_engine.live()).count_models() == 2

    await search_engine.drop_generation(before)
    assert await visible(search_engine) == {"new-1", "new-2"}


async def test_the_live_generation_cannot_be_dropped(search_engine: SearchEngine) -> None:
    live = await search_engine.live_generation()

    with pytest.raises(FailedPrecondition):
        await search_engine.drop_generation(live)

    generation, _ = await search_engine.create_generation()
    await search_engine.drop_generation(generation)
    await search_engine.drop_generation(generation)  # dropping it again is a no-op


async def test_queries_during_promotes_never_fail(search_engine: SearchEngine) -> None:
    await load(await search_engine.live(), [model(f"g0-{i}") for i in range(20)])
    failures: list[BaseException] = []
    answered: list[set[str]] = []
    done = asyncio.Event()

    async def query_loop() -> None:
        while not done.is_set():
            try:
                answered.append(await visible(search_engine))
            except Exception as e:  # every failure is recorded: the test asserts there are none
                failures.append(e)
            await asyncio.sleep(0)

    readers = [asyncio.create_task(query_loop()) for _ in range(4)]
    generations = [await search_engine.live_generation()]
    for round_ in range(1, 4):
        generation, fresh = await search_engine.create_generation()
        for start in range(0, 20, 5):  # written in batches while queries run
            await load(fresh, [model(f"g{round_}-{i}") for i in range(start, start + 5)])
        await search_engine.promote(generation)
        await search_engine.drop_generation(generations[-1])
        generations.append(generation)
    done.set()
    await asyncio.gather(*readers)

    assert failures == []
    complete = [{f"g{r}-{i}" for i in range(20)} for r in range(4)]
    assert answered and all(a in complete for a in answered)  # never a half-built generation
    assert await visible(search_engine) == complete[-1]


async def test_a_reopened_engine_serves_the_promoted_generation(
    search_engine: SearchEngine, engine_factory: Callable[[], SearchEngine]
) -> None:
    generation, fresh = await search_engine.create_generation()
    await load(fresh, [model("kept")])
    await search_engine.promote(generation)
    await search_engine.close()

    reopened = engine_factory()
    try:
        assert await reopened.live_generation() == generation
        assert await visible(reopened) == {"kept"}
    finally:
        await reopened.close()
