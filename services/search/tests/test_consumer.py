"""The catalog consumer: real events through real JetStream into the mirror (Postgres) and the index (tantivy).

Each test publishes envelopes of the catalog's payload types the way the catalog's relay does and waits until
the consumer has applied them (its inbox), then reads the index through the port.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from nats.aio.client import Client
from sqlalchemy import text

from modelhub.core.events.consumer import ERROR_HEADER, ConsumerSettings
from modelhub.core.nats import DEAD_LETTER_STREAM
from modelhub.devstack.waiting import wait_until
from modelhub.events.v1 import catalog_pb2
from modelhub.search.bootstrap import Search
from modelhub.search.config import SearchSettings
from modelhub.search.domain.documents import Period
from modelhub.search.domain.queries import ImageQuery, ModelQuery, ModelSort
from modelhub.search.entrypoints.consumers import consumer_settings

from .catalog_events import envelope, image_snapshot, model_snapshot, model_stats, publish, running
from .conftest import consumer_of

ALL = 63


async def models(search: Search, text_: str = "") -> dict[str, tuple[str, int]]:
    """Every model the live index returns for `text_` at every browsing level: id -> (name, nsfw level)."""
    found: dict[str, tuple[str, int]] = {}
    cursor = None
    while True:
        query = ModelQuery(browsing_level=ALL, text=text_, sort=ModelSort.NEWEST, limit=100, cursor=cursor)
        page = await search.searcher.models(query)
        found.update({h.model_id: (h.name, h.nsfw_level) for h in page.hits})
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def images(search: Search) -> set[str]:
    page = await search.searcher.images(ImageQuery(browsing_level=ALL, limit=100))
    return {h.image_id for h in page.hits}


async def inbox(search: Search, consumer: str = "search-catalog") -> int:
    async with search.db.connect() as conn:
        result = await conn.execute(text("SELECT count(*) FROM consumer_inbox WHERE consumer = :c"), {"c": consumer})
        return int(result.scalar_one())


async def mirror_versions(search: Search) -> dict[str, int]:
    async with search.db.connect() as conn:
        rows = await conn.execute(text("SELECT model_id, version FROM mirror_models"))
        return {r.model_id: r.version for r in rows}


async def applied(search: Search, count: int, consumer: str = "search-catalog") -> None:
    """Wait until the consumer has applied `count` events (they are in its inbox, so their batch committed)."""

    async def done() -> bool:
        return await inbox(search, consumer) >= count

    await wait_until(done, 15, f"{count} events applied by {consumer}")


async def test_snapshot_stats_and_images_become_searchable(search: Search, nc: Client, producer: str) -> None:
    js = nc.jetstream()
    await publish(js, producer, envelope(model_snapshot("m1", name="Pixel Knight", nsfw_level=4), 1))
    await publish(js, producer, envelope(model_stats("m1", downloads=42, thumbs_up=7), 1))
    await publish(js, producer, envelope(image_snapshot("i1", model_id="m1"), 1))
    async with running(consumer_of(search, nc, producer)):
        await applied(search, 3)
    assert await models(search) == {"m1": ("Pixel Knight", 4)}
    assert await models(search, "knight") == {"m1": ("Pixel Knight", 4)}
    assert await images(search) == {"i1"}
    page = await search.searcher.models(
        ModelQuery(browsing_level=ALL, sort=ModelSort.MOST_DOWNLOADED, period=Period.WEEK)
    )
    assert [(h.model_id, h.sort_value) for h in page.hits] == [("m1", 42)]


async def test_redelivered_and_replayed_events_leave_the_index_as_it_was(
    search: Search, nc: Client, producer: str
) -> None:
    js = nc.jetstream()
    first = envelope(model_snapshot("m1", name="First"), 1)
    second = envelope(model_snapshot("m1", name="Second"), 2)
    for env in (first, second):
        await publish(js, producer, env)
    async with running(consumer_of(search, nc, producer)):
        await applied(search, 2)
        before = await models(search)
        # The same events again (a relay republish past the duplicate window): the inbox drops them.
        await publish(js, producer, first, msg_id=False)
        await publish(js, producer, second, msg_id=False)

        async def redelivered() -> bool:
            info = await js.consumer_info(f"{producer.upper()}_EVENTS", "search-catalog")
            return info.num_pending == 0 and info.num_ack_pending == 0

        await wait_until(redelivered, 15, "the copies delivered and acked")
    assert await inbox(search) == 2
    assert await models(search) == before == {"m1": ("Second", 1)}
    # A replay of the whole stream through a consumer with an empty inbox (a renamed consumer): the mirror's
    # version guard finds nothing newer, so no document is written.
    live = await search.engine.live()
    writes: list[object] = []
    original = live.upsert_models

    async def counting(documents):
        writes.append(documents)
        await original(documents)

    live.upsert_models = counting  # type: ignore[method-assign]
    async with running(consumer_of(search, nc, producer, name="search-catalog-replay")):
        await applied(search, 2, consumer="search-catalog-replay")
    assert writes == []
    assert await models(search) == before
    assert await mirror_versions(search) == {"m1": 2}


async def test_an_older_snapshot_after_a_newer_one_is_ignored(search: Search, nc: Client, producer: str) -> None:
    js = nc.jetstream()
    await publish(js, producer, envelope(model_snapshot("m1", name="Version three"), 3))
    await publish(js, producer, envelope(model_snapshot("m1", name="Version two"), 2))
    await publish(js, producer, envelope(model_snapshot("m1", name="Version one", status="Unpublished"), 1))
    async with running(consumer_of(search, nc, producer)):
        await applied(search, 3)
    assert await models(search) == {"m1": ("Version three", 1)}
    assert await mirror_versions(search) == {"m1": 3}


async def test_older_and_newer_states_in_one_batch_keep_the_newest(search: Search, nc: Client, producer: str) -> None:
    js = nc.jetstream()
    for version in (2, 5, 1, 4, 3):
        await publish(js, producer, envelope(model_snapshot("m1", name=f"Version {version}"), version))
    async with running(consumer_of(search, nc, producer)):
        await applied(search, 5)
    assert await models(search) == {"m1": ("Version 5", 1)}


async def test_stats_before_the_snapshot_are_kept_until_it_arrives(search: Search, nc: Client, producer: str) -> None:
    js = nc.jetstream()
    async with running(consumer_of(search, nc, producer)):
        await publish(js, producer, envelope(model_stats("m1", downloads=500), 1))
        await applied(search, 1)
        assert await models(search) == {}  # nothing public to show yet
        await publish(js, producer, envelope(model_snapshot("m1", name="Late"), 1))
        await applied(search, 2)
    page = await search.searcher.models(ModelQuery(browsing_level=ALL, sort=ModelSort.MOST_DOWNLOADED))
    assert [(h.model_id, h.sort_value) for h in page.hits] == [("m1", 500)]
    # Older stats after newer ones change nothing.
    await publish(js, producer, envelope(model_stats("m1", downloads=3), 1))
    async with running(consumer_of(search, nc, producer)):
        await applied(search, 3)
    page = await search.searcher.models(ModelQuery(browsing_level=ALL, sort=ModelSort.MOST_DOWNLOADED))
    assert [(h.model_id, h.sort_value) for h in page.hits] == [("m1", 500)]


@pytest.mark.parametrize("status", ["Unpublished", "UnpublishedViolation", "Deleted", "Draft"])
async def test_leaving_published_removes_the_model_and_republishing_restores_it(
    search: Search, nc: Client, producer: str, status: str
) -> None:
    js = nc.jetstream()
    async with running(consumer_of(search, nc, producer)):
        await publish(js, producer, envelope(model_snapshot("m1", name="Here"), 1))
        await publish(js, producer, envelope(model_snapshot("m2", name="Stays"), 1))
        await applied(search, 2)
        assert set(await models(search)) == {"m1", "m2"}
        await publish(js, producer, envelope(model_snapshot("m1", name="Here", status=status), 2))
        await applied(search, 3)
        assert set(await models(search)) == {"m2"}
        # Stats of a removed model do not bring it back.
        await publish(js, producer, envelope(model_stats("m1", downloads=9), 1))
        await applied(search, 4)
        assert set(await models(search)) == {"m2"}
        await publish(js, producer, envelope(model_snapshot("m1", name="Back"), 3))
        await applied(search, 5)
    assert await models(search) == {"m1": ("Back", 1), "m2": ("Stays", 1)}


@pytest.mark.parametrize("status", ["Hidden", "Deleted"])
async def test_hidden_or_deleted_images_are_removed(search: Search, nc: Client, producer: str, status: str) -> None:
    js = nc.jetstream()
    async with running(consumer_of(search, nc, producer)):
        await publish(js, producer, envelope(image_snapshot("i1"), 1))
        await publish(js, producer, envelope(image_snapshot("i2"), 1))
        await applied(search, 2)
        assert await images(search) == {"i1", "i2"}
        await publish(js, producer, envelope(image_snapshot("i1", status=status), 2))
        await publish(js, producer, envelope(image_snapshot("i1"), 1))  # late older copy: ignored
        await applied(search, 4)
    assert await images(search) == {"i2"}


async def test_an_event_breaking_the_contract_is_dead_lettered_and_the_rest_applied(
    search: Search, nc: Client, producer: str
) -> None:
    js = nc.jetstream()
    bad = envelope(catalog_pb2.CatalogModelSnapshot(status="Published", name="no id"), 1)
    await publish(js, producer, envelope(model_snapshot("m1"), 1))
    await publish(js, producer, bad)
    await publish(js, producer, envelope(model_snapshot("m2"), 1))
    consumer = consumer_of(search, nc, producer, name=f"search-catalog-{producer}")
    await consumer.setup()  # creates the dead-letter stream
    dead = await js.subscribe(f"deadletter.{consumer.name}", stream=DEAD_LETTER_STREAM)
    async with running(consumer):
        message = await dead.next_msg(timeout=15)
        await applied(search, 2, consumer=f"search-catalog-{producer}")
    await dead.unsubscribe()
    assert message.data == bad.SerializeToString()
    assert "names no item id" in (message.headers or {})[ERROR_HEADER]
    assert set(await models(search)) == {"m1", "m2"}


async def test_two_consumer_processes_racing_on_one_model_converge(search: Search, nc: Client, producer: str) -> None:
    """Snapshots (publish, unpublish) and stats of the same models applied by two consumers sharing the
    durable name, in small batches: the index ends as the newest state of each model says, never resurrected
    by a stats write built from an older snapshot."""
    js = nc.jetstream()
    expected: dict[str, tuple[str, int]] = {}
    for n in range(6):
        model_id = f"m{n}"
        for version in range(1, 7):
            status = "Published" if (version + n) % 3 else "Unpublished"
            await publish(
                js, producer, envelope(model_snapshot(model_id, name=f"{model_id} v{version}", status=status), version)
            )
            await publish(js, producer, envelope(model_stats(model_id, downloads=version), version))
        if (6 + n) % 3:
            expected[model_id] = (f"{model_id} v6", 1)
    small = ConsumerSettings(batch_size=3, fetch_timeout=0.05, ack_wait=5.0, max_deliver=5)
    async with running(*(consumer_of(search, nc, producer, settings=small) for _ in range(2))):
        await applied(search, 72)
    assert await models(search) == expected


def test_the_service_lets_jetstream_deliver_a_whole_batch_unacknowledged() -> None:
    # JetStream's default (1000 unacknowledged messages) would silently cap every pull below the batch size.
    for batch_size in (1, 1000, 5000, 20_000):
        settings = consumer_settings(SearchSettings(consumer_batch_size=batch_size))
        assert settings.batch_size == batch_size
        assert settings.max_ack_pending >= batch_size


def test_the_inbox_is_pruned_after_the_configured_days_and_0_keeps_it() -> None:
    assert consumer_settings(SearchSettings()).inbox_retention == timedelta(days=7)
    assert consumer_settings(SearchSettings(consumer_inbox_retention_days=0.5)).inbox_retention == timedelta(hours=12)
    assert consumer_settings(SearchSettings(consumer_inbox_retention_days=0)).inbox_retention is None
