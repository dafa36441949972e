"""Writes: visible after refresh, deletes, and stale or repeated versions that change nothing."""

from __future__ import annotations

from dataclasses import replace

from modelhub.search.domain.documents import ImageStats, Period, PeriodStats
from modelhub.search.domain.ports import SearchIndex
from modelhub.search.domain.queries import ImageQuery, ImageSort, ModelQuery, ModelSort

from .factories import image, image_ids, load, model, model_ids

PG = 1


async def names(index: SearchIndex, text: str = "") -> dict[str, str]:
    page = await index.search_models(ModelQuery(browsing_level=PG, text=text, limit=100))
    return {h.model_id: h.name for h in page.hits}


async def test_writes_are_visible_once_refreshed(index: SearchIndex) -> None:
    await index.upsert_models([model("m", "Dragon")])
    await index.refresh()

    assert await names(index, "dragon") == {"m": "Dragon"}
    assert await index.count_models() == 1


async def test_a_newer_version_replaces_the_document(index: SearchIndex) -> None:
    await load(index, [model("m", "Dragon", model_stream_version=1)])
    await load(index, [model("m", "Phoenix", model_stream_version=2)])

    assert await names(index) == {"m": "Phoenix"}
    assert await names(index, "dragon") == {}
    assert await index.count_models() == 1


async def test_a_stale_version_is_ignored(index: SearchIndex) -> None:
    await load(index, [model("m", "Phoenix", model_stream_version=5, stats_stream_version=2)])

    await load(index, [model("m", "Dragon", model_stream_version=4, stats_stream_version=2)])  # older snapshot
    await load(index, [model("m", "Dragon", model_stream_version=5, stats_stream_version=1)])  # older stats

    assert await names(index) == {"m": "Phoenix"}


async def test_a_repeated_write_changes_nothing(index: SearchIndex) -> None:
    doc = model("m", "Phoenix", model_stream_version=3)
    await load(index, [doc])
    await load(index, [doc])
    await load(index, [replace(doc, name="Other content, same version")])

    assert await names(index) == {"m": "Phoenix"}
    assert await index.count_models() == 1


async def test_versions_within_one_batch_and_between_refreshes(index: SearchIndex) -> None:
    # Out of order inside one call, and across calls before the writes are refreshed.
    await index.upsert_models([model("m", "Three", model_stream_version=3), model("m", "Two", model_stream_version=2)])
    await index.upsert_models([model("m", "One", model_stream_version=1)])
    await index.refresh()

    assert await names(index) == {"m": "Three"}


async def test_stats_updates_move_a_model_in_its_sort(index: SearchIndex) -> None:
    def stats(n: int) -> dict[Period, PeriodStats]:
        return {Period.ALL_TIME: PeriodStats(downloads=n)}

    await load(index, [model("a", stats=stats(10)), model("b", stats=stats(20), stats_stream_version=1)])
    await load(index, [model("b", stats=stats(5), stats_stream_version=2)])

    page = await index.search_models(ModelQuery(browsing_level=PG, sort=ModelSort.MOST_DOWNLOADED))
    assert model_ids(page) == ["a", "b"]


async def test_deletes(index: SearchIndex) -> None:
    await load(index, [model("a", "Dragon"), model("b", "Dragon")])

    await index.delete_models(["a", "never-indexed"])  # deleting an absent id is a no-op
    await index.refresh()

    assert await names(index, "dragon") == {"b": "Dragon"}
    assert await index.count_models() == 1

    await index.delete_models(["a"])  # again: still a no-op
    await index.refresh()
    assert await index.count_models() == 1


async def test_a_deleted_model_can_come_back_with_a_newer_version(index: SearchIndex) -> None:
    await load(index, [model("m", "Dragon", model_stream_version=1)])
    await index.delete_models(["m"])
    await index.refresh()

    await load(index, [model("m", "Dragon again", model_stream_version=3)])

    assert await names(index) == {"m": "Dragon again"}


async def test_image_writes_follow_the_same_rules(index: SearchIndex) -> None:
    await load(index, images=[image("i", stats=ImageStats(reactions=5), stream_version=4)])
    await load(index, images=[image("i", stats=ImageStats(reactions=1), stream_version=3)])  # stale
    await load(index, images=[image("j", stream_version=1)])

    reactions = await index.search_images(ImageQuery(browsing_level=PG, sort=ImageSort.MOST_REACTIONS))
    assert [(h.image_id, h.sort_value) for h in reactions.hits] == [("i", 5.0), ("j", 0.0)]

    await index.delete_images(["i", "absent"])
    await index.refresh()
    assert image_ids(await index.search_images(ImageQuery(browsing_level=PG))) == ["j"]
