"""The stats job: many changes become one event per model per round, counts are absolute and recounting is
idempotent, downloads counted by the file RPCs are picked up, shrinking windows are refreshed, and image
snapshots follow their counts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

from modelhub.catalog.adapters import community_queries
from modelhub.catalog.adapters.community_projection import CommunityProjection
from modelhub.catalog.adapters.community_repository import CommunityRepository
from modelhub.catalog.adapters.downloads import count_download
from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.bootstrap_community import build_community, build_gallery
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.domain.collections import Visibility
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_base import SubjectKind
from modelhub.catalog.domain.downloads import window_of
from modelhub.catalog.domain.gallery import Image
from modelhub.catalog.entrypoints.grpc_community import Community
from modelhub.catalog.handlers.gallery import Gallery
from modelhub.core.errors import NotFound
from modelhub.core.events.projection import rebuild
from modelhub.events.v1 import catalog_pb2

from .community_helpers import CAROL, event_types, last_payload, model_with, post
from .conftest import FakeClock
from .model_helpers import ALICE, BOB

MODEL, IMAGE = SubjectKind.MODEL, SubjectKind.IMAGE


@pytest.fixture
def community(catalog: Catalog) -> Community:
    return build_community(catalog)


@pytest.fixture
def gallery(settings: CatalogSettings, catalog: Catalog) -> Gallery:
    return build_gallery(settings, catalog)


def periods(payload: catalog_pb2.CatalogModelStatsUpdated) -> dict[str, catalog_pb2.CatalogModelPeriodStats]:
    return {p.period: p for p in payload.periods}


async def test_a_favourite_storm_is_one_event_and_recounting_is_idempotent(
    catalog: Catalog, community: Community
) -> None:
    model_id, version = await model_with(catalog, ALICE, "Storm")
    stream = f"model-stats-{model_id}"
    fans = [Actor(f"fan-{i}") for i in range(25)]
    await asyncio.gather(*(community.favorites.add(fan, MODEL, model_id) for fan in fans))
    await community.reviews.create(BOB, version, True, "")
    await community.reviews.create(CAROL, version, False, "")
    await community.comments.post(BOB, MODEL, model_id, "", "wow", "")
    collection = await community.collections.create(BOB, "c", "", Visibility.PUBLIC, MODEL, "")
    await community.collections.add_item(BOB, collection.collection_id, MODEL, model_id)

    assert await community.stats.run_once() == 1
    assert await event_types(catalog.engine, stream) == ["catalog.ModelStatsUpdated"]
    stats = periods(await last_payload(catalog, stream, "catalog.ModelStatsUpdated"))
    assert set(stats) == {"Day", "Week", "Month", "Year", "AllTime"}
    for p in stats.values():
        assert (p.favorites, p.thumbs_up, p.thumbs_down, p.comments, p.collected, p.downloads, p.tipped_amount) == (
            25,
            1,
            1,
            1,
            1,
            0,
            0,
        )

    # Nothing changed: nothing to do, nothing appended. A rebuild marks every model again: still nothing.
    assert await community.stats.run_once() == 0
    await rebuild(catalog.engine, catalog.store, CommunityProjection())
    await community.stats.run_once()
    assert await event_types(catalog.engine, stream) == ["catalog.ModelStatsUpdated"]

    # The live counts agree with what was emitted.
    live = await community.stats.model_stats(None, model_id)
    assert {p.period: p.favorites for p in live.periods}["AllTime"] == 25
    assert [(v.model_version_id, v.thumbs_up, v.thumbs_down) for v in live.versions] == [(version, 1, 1)]


async def test_downloads_counted_by_the_file_rpcs_reach_the_stats(
    catalog: Catalog, community: Community, clock: FakeClock
) -> None:
    model_id, version = await model_with(catalog, ALICE, "Downloaded")
    await community.stats.run_once()
    async with catalog.engine.begin() as conn:
        for _ in range(3):
            await count_download(conn, version, model_id, ALICE.id, window_of(clock.now, 300))

    assert await community.stats.run_once() == 1
    stats = periods(await last_payload(catalog, f"model-stats-{model_id}", "catalog.ModelStatsUpdated"))
    assert (stats["Day"].downloads, stats["AllTime"].downloads) == (3, 3)
    assert (await community.stats.model_stats(ALICE, model_id)).versions[0].downloads == 3


async def test_shrinking_windows_are_refreshed_as_time_passes(
    catalog: Catalog, community: Community, clock: FakeClock
) -> None:
    model_id, _ = await model_with(catalog, ALICE, "Fading")
    await community.favorites.add(BOB, MODEL, model_id)
    await community.stats.run_once()
    stream = f"model-stats-{model_id}"

    clock.advance(minutes=30)
    assert await community.stats.run_once() == 0  # counted half an hour ago: not due for a refresh
    clock.advance(days=2)
    await community.stats.run_once()  # the favourite left the Day window
    stats = periods(await last_payload(catalog, stream, "catalog.ModelStatsUpdated"))
    assert (stats["Day"].favorites, stats["Week"].favorites, stats["AllTime"].favorites) == (0, 1, 1)
    clock.advance(hours=2)
    await community.stats.run_once()  # recounted: nothing changed, nothing appended
    assert len(await event_types(catalog.engine, stream)) == 2
    async with catalog.engine.connect() as conn:
        checked = (await conn.execute(text("SELECT count(*) FROM model_stats_checks"))).scalar_one()
    assert checked == 1


async def test_image_snapshots_follow_their_counts(catalog: Catalog, community: Community, gallery: Gallery) -> None:
    image = await post(gallery, ALICE)
    image_id = image.row.image_id
    stream = f"image-{image_id}"
    await community.favorites.add(BOB, IMAGE, image_id)
    await community.favorites.add(CAROL, IMAGE, image_id)
    await community.comments.post(BOB, IMAGE, image_id, "", "nice", "")

    await community.stats.run_once()
    snapshot = await last_payload(catalog, stream, "catalog.ImageSnapshot")
    assert (snapshot.reactions, snapshot.comments, snapshot.collected, snapshot.status) == (2, 1, 0, "Published")
    await community.stats.run_once()
    assert await event_types(catalog.engine, stream) == [
        "catalog.ImagePosted",
        "catalog.ImageSnapshot",
        "catalog.ImageSnapshot",
    ]
    # A change of the image itself carries the current counts at once.
    await gallery.update_image(ALICE, image_id, (await gallery.get_image(ALICE, image_id)).row.version, ("x",), None)
    snapshot = await last_payload(catalog, stream, "catalog.ImageSnapshot")
    assert (list(snapshot.tags), snapshot.reactions) == (["x"], 2)
    view = await gallery.get_image(None, image_id)
    assert (view.counts.reactions, view.counts.comments) == (2, 1)


async def test_an_image_is_loaded_from_its_events_and_its_latest_snapshot_only(
    catalog: Catalog, community: Community, gallery: Gallery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post ends with a snapshot, and each round whose counts changed adds one (for a popular image, one a minute);
    loading the image reads its other events and the latest snapshot, and folds to the same image as the whole
    stream."""
    image_id = (await post(gallery, ALICE)).row.image_id
    for _ in range(3):
        await community.favorites.add(BOB, IMAGE, image_id)
        await community.stats.run_once()
        await community.favorites.remove(BOB, IMAGE, image_id)
        await community.stats.run_once()
    await community.favorites.add(CAROL, IMAGE, image_id)
    await community.stats.run_once()
    stream = f"image-{image_id}"
    assert await event_types(catalog.engine, stream) == ["catalog.ImagePosted"] + ["catalog.ImageSnapshot"] * 8
    read: list[int] = []
    read_stream = catalog.store.read_stream

    async def counted(*args: Any, **kwargs: Any) -> Any:
        events = await read_stream(*args, **kwargs)
        read.append(len(events))
        return events

    async with catalog.engine.connect() as conn:
        whole = await CommunityRepository(conn, catalog.store).load(Image, stream)
        monkeypatch.setattr(catalog.store, "read_stream", counted)
        loaded = await CommunityRepository(conn, catalog.store).load_image(image_id)
    assert read == [2]
    assert vars(loaded) == vars(whole)
    assert (loaded.version, loaded.counts.reactions) == (9, 1)

    await gallery.update_image(ALICE, image_id, loaded.version, ("x",), None)  # its expected version is right
    assert (await gallery.get_image(None, image_id)).row.tags == ("x",)


async def test_stats_of_a_hidden_model_are_not_found(catalog: Catalog, community: Community) -> None:
    model_id, _ = await model_with(catalog, ALICE, "Draft", publish=False)
    with pytest.raises(NotFound):
        await community.stats.model_stats(BOB, model_id)
    assert (await community.stats.model_stats(ALICE, model_id)).model_id == model_id


async def test_a_round_that_fails_keeps_the_mark_and_the_next_round_emits(
    catalog: Catalog, community: Community, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a crash mid-recount leaves: the transaction that cleared the mark rolls back, so the mark stays."""
    broken, _ = await model_with(catalog, ALICE, "Broken")
    fine, _ = await model_with(catalog, ALICE, "Fine")
    await community.favorites.add(BOB, MODEL, broken)
    await community.favorites.add(BOB, MODEL, fine)
    real = community_queries.model_period_counts

    async def fails_for_broken(conn: Any, model_id: str, now: Any) -> Any:
        if model_id == broken:
            raise RuntimeError("the database went away")
        return await real(conn, model_id, now)

    monkeypatch.setattr(community_queries, "model_period_counts", fails_for_broken)
    assert await community.stats.run_once() == 1  # the other model is not held up
    async with catalog.engine.connect() as conn:
        marked = (await conn.execute(text("SELECT model_id FROM stats_dirty"))).scalars().all()
    assert marked == [broken]
    assert await event_types(catalog.engine, f"model-stats-{broken}") == []

    monkeypatch.setattr(community_queries, "model_period_counts", real)
    assert await community.stats.run_once() == 1
    assert await event_types(catalog.engine, f"model-stats-{broken}") == ["catalog.ModelStatsUpdated"]
