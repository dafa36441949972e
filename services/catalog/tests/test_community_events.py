"""Gallery and community events: every state change is published once and in order per stream, the committed
contract events carry what their consumers need, and the read models rebuilt from the log equal the live
ones."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from nats.errors import TimeoutError as NatsTimeout
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.adapters.community_events import EVENTS
from modelhub.catalog.adapters.community_projection import TABLES, CommunityProjection
from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.bootstrap_community import build_community, build_gallery
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.domain.collections import Visibility
from modelhub.catalog.domain.community_base import SubjectKind
from modelhub.catalog.domain.events import FileHash
from modelhub.catalog.entrypoints.grpc_community import Community
from modelhub.catalog.handlers.gallery import Gallery
from modelhub.core.events.projection import rebuild
from modelhub.core.events.relay import OutboxRelay
from modelhub.core.nats import connect, events_stream_name, events_subject
from modelhub.events.v1 import catalog_pb2, envelope_pb2

from .community_helpers import CAROL, model_file, model_with, post
from .image_samples import A1111_PARAMETERS, png
from .model_helpers import ALICE, BOB, MOD

MODEL, IMAGE = SubjectKind.MODEL, SubjectKind.IMAGE


@pytest.fixture
def community(catalog: Catalog) -> Community:
    return build_community(catalog)


@pytest.fixture
def gallery(settings: CatalogSettings, catalog: Catalog) -> Gallery:
    return build_gallery(settings, catalog)


async def busy_history(catalog: Catalog, community: Community, gallery: Gallery) -> None:
    """Every kind of gallery and community change."""
    model_id, version = await model_with(
        catalog, ALICE, "Base", [model_file("dreamshaper_8.safetensors", autov2="6CE0161689")]
    )
    image = await post(gallery, BOB, png({"parameters": A1111_PARAMETERS}), version_id=version, request_id="i1")
    hidden = await gallery.update_image(BOB, image.row.image_id, image.row.version, ("tag",), True)
    shown = await gallery.update_image(BOB, image.row.image_id, hidden.row.version, None, False)
    doomed = await post(gallery, CAROL)
    await gallery.delete_image(MOD, doomed.row.image_id, None)
    # The FlatStyle LoRA the image names by its short hash: its AutoV3 is known only now, so the image is linked.
    flat_style = model_file("FlatStyle.safetensors")
    _, flat_version = await model_with(catalog, ALICE, "FlatStyle", [flat_style], model_type="LORA")
    autov3 = (FileHash("AutoV3", "0123456789AB" + "0" * 52),)
    await catalog.models.add_file_hashes(flat_version, flat_style.file_id, autov3)
    assert await gallery.relink_queued() == 1

    review = await community.reviews.create(BOB, version, True, "good")
    review = await community.reviews.update(BOB, review.review_id, review.version, False, "meh")
    await community.reviews.delete(BOB, review.review_id, review.version)
    await community.reviews.create(BOB, version, True, "good again")
    await community.reviews.create(CAROL, version, False, "")

    top = await community.comments.post(CAROL, MODEL, model_id, "", "first", "c1")
    await community.comments.post(BOB, MODEL, model_id, top.comment_id, "reply", "")
    top = await community.comments.update(CAROL, top.comment_id, top.version, "first!")
    await community.comments.delete(CAROL, top.comment_id, None)
    await community.comments.post(ALICE, IMAGE, image.row.image_id, "", "thanks for posting", "")

    await community.favorites.add(BOB, MODEL, model_id)
    await community.favorites.add(CAROL, IMAGE, image.row.image_id)
    await community.favorites.add(CAROL, MODEL, model_id)
    await community.favorites.remove(CAROL, MODEL, model_id)
    await community.follows.follow(BOB, ALICE.id)
    await community.follows.follow(CAROL, ALICE.id)
    await community.follows.unfollow(CAROL, ALICE.id)

    models = await community.collections.create(BOB, "Faves", "", Visibility.PUBLIC, MODEL, "k1")
    images = await community.collections.create(BOB, "Pics", "", Visibility.PRIVATE, IMAGE, "")
    await community.collections.add_item(BOB, models.collection_id, MODEL, model_id)
    await community.collections.add_item(BOB, images.collection_id, IMAGE, shown.row.image_id)
    row, _ = await community.collections.add_item(BOB, images.collection_id, IMAGE, image.row.image_id)
    await community.collections.update(BOB, images.collection_id, row.version, "Pictures", None, Visibility.UNLISTED)
    await community.collections.remove_item(BOB, models.collection_id, model_id)
    await community.collections.add_item(BOB, models.collection_id, MODEL, model_id)
    throwaway = await community.collections.create(CAROL, "Tmp", "", Visibility.PUBLIC, MODEL, "")
    await community.collections.delete(CAROL, throwaway.collection_id, None)

    await community.stats.run_once()


async def read_models(engine: AsyncEngine) -> dict[str, list[tuple[object, ...]]]:
    tables: dict[str, list[tuple[object, ...]]] = {}
    async with engine.connect() as conn:
        for table in TABLES:
            rows = await conn.execute(text(f"SELECT * FROM {table}"))
            tables[table] = sorted((tuple(r) for r in rows), key=repr)
    return tables


async def test_read_models_rebuilt_from_the_log_equal_the_live_ones(
    catalog: Catalog, community: Community, gallery: Gallery, engine: AsyncEngine
) -> None:
    await busy_history(catalog, community, gallery)
    live = await read_models(engine)
    assert all(live[t] for t in TABLES), "the history touches every table"

    await rebuild(engine, catalog.store, CommunityProjection())

    assert await read_models(engine) == live


async def test_every_change_is_published_once_in_order_per_stream(
    catalog: Catalog,
    community: Community,
    gallery: Gallery,
    engine: AsyncEngine,
    nats_url: str,
    unique_name: str,
) -> None:
    producer = unique_name.lower()
    await busy_history(catalog, community, gallery)
    async with engine.connect() as conn:
        stored = {
            r.event_id: (r.stream_id, r.event_type)
            for r in await conn.execute(text("SELECT event_id, stream_id, event_type FROM events"))
        }
    types = {t for _, t in stored.values()}
    assert {event_type for event_type, _ in EVENTS.values()} <= types, "the history makes every event type"
    nc = await connect(nats_url, "catalog-community-test")
    try:
        relay = OutboxRelay(engine, catalog.store, nc, producer)
        await relay.setup()
        assert await relay.publish_once() == len(stored)
        assert await relay.publish_once() == 0
        sub = await nc.jetstream().pull_subscribe(events_subject(producer), stream=events_stream_name(producer))
        received: list[envelope_pb2.EventEnvelope] = []
        while True:
            try:
                batch = await sub.fetch(200, timeout=1)
            except NatsTimeout:
                break
            for message in batch:
                received.append(envelope_pb2.EventEnvelope.FromString(message.data))
                await message.ack()
    finally:
        await nc.close()

    assert sorted(e.event_id for e in received) == sorted(str(i) for i in stored)
    per_stream: dict[str, list[int]] = defaultdict(list)
    for envelope in received:
        assert stored[uuid.UUID(envelope.event_id)] == (envelope.stream_id, envelope.event_type)
        per_stream[envelope.stream_id].append(envelope.stream_version)
    for versions in per_stream.values():
        assert versions == list(range(1, len(versions) + 1))
    # catalog.ReviewCreated: once per (user, version), although Bob deleted his review and wrote it again.
    registry = catalog.store.registry
    created = [
        registry.decode(e.event_type, e.schema_version, e.payload)
        for e in received
        if e.event_type == "catalog.ReviewCreated"
    ]
    assert sorted(c.author_user_id for c in created if isinstance(c, catalog_pb2.CatalogReviewCreated)) == [
        "bob",
        "carol",
    ]
    # Each image change ends with a snapshot carrying the image's versions and models.
    snapshots = [
        registry.decode(e.event_type, e.schema_version, e.payload)
        for e in received
        if e.event_type == "catalog.ImageSnapshot"
    ]
    posted = [s for s in snapshots if isinstance(s, catalog_pb2.CatalogImageSnapshot) and s.creator_user_id == "bob"]
    assert [s.status for s in posted][:3] == ["Published", "Hidden", "Published"]
    assert len(posted[-1].model_version_ids) == len(posted[-1].model_ids) == 2  # the gallery's and FlatStyle's
