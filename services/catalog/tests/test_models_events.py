"""Events: every change appends its domain events plus a snapshot in one transaction, the relay publishes
each once and in order per model, and the read models rebuilt from the log equal the live ones."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta

import pytest
from nats.errors import TimeoutError as NatsTimeout
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.adapters.events import make_registry
from modelhub.catalog.adapters.projection import TABLES, ModelProjection
from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.domain import commands
from modelhub.catalog.domain.events import License
from modelhub.catalog.domain.vocabulary import Relation, ScanResult
from modelhub.core.errors import FailedPrecondition, NotFound, StreamVersionConflict
from modelhub.core.events.projection import rebuild
from modelhub.core.events.relay import OutboxRelay
from modelhub.core.nats import connect, events_stream_name, events_subject
from modelhub.events.v1 import catalog_pb2, envelope_pb2

from .conftest import FakeClock
from .model_helpers import ALICE, BOB, MOD, a_file, fields, published_model, ready_version


async def busy_history(catalog: Catalog, clock: FakeClock) -> None:
    """Every kind of change, on a few models."""
    models = catalog.models
    base, base_version = await published_model(models, BOB, name="base", license=License(allow_derivatives=True))
    model = await models.create_model(ALICE, fields("child"), request_id="r1")
    model = await models.update_model(ALICE, model.id, model.version, commands.model_changes(tags=["B", "a"]))
    model, v1 = await ready_version(models, ALICE, model)
    model = await models.add_file(ALICE, v1, a_file("extra", ScanResult.SUCCESS))
    model = await models.remove_file(ALICE, v1, "extra")
    model = await models.update_version(ALICE, v1, model.version, commands.version_changes(early_access_days=2))
    model = await models.declare_parents(
        ALICE, v1, model.version, commands.parent_requests([commands.ParentRequest(base_version, Relation.FINETUNE)])
    )
    model = await models.publish_model(ALICE, model.id, model.version, clock.now + timedelta(hours=1))
    clock.advance(hours=1)
    await models.publish_due()
    model = await models.get_model(ALICE, model.id)
    model, v2 = await ready_version(models, ALICE, model, "v2")
    model = await models.publish_version(ALICE, v2, model.version, clock.now + timedelta(hours=1))
    model = await models.add_file(ALICE, v2, a_file("pending-one"))  # v2 is no longer ready when due
    clock.advance(hours=2)
    await models.publish_due()  # v2's publication is cancelled
    model = await models.get_model(ALICE, model.id)
    model = await models.delete_version(ALICE, v2, model.version)
    model = await models.unpublish_model(MOD, model.id, model.version, "rules", True)
    base = await models.get_model(BOB, base.id)
    await models.delete_model(BOB, base.id, base.version)
    await models.create_model(ALICE, fields("untouched"))


async def read_models(engine: AsyncEngine) -> dict[str, list[tuple[object, ...]]]:
    tables: dict[str, list[tuple[object, ...]]] = {}
    async with engine.connect() as conn:
        for table in TABLES:
            rows = await conn.execute(text(f"SELECT * FROM {table}"))
            tables[table] = sorted((tuple(r) for r in rows), key=repr)
    return tables


async def test_read_models_rebuilt_from_the_log_equal_the_live_ones(
    catalog: Catalog, engine: AsyncEngine, clock: FakeClock
) -> None:
    await busy_history(catalog, clock)
    live = await read_models(engine)
    assert all(live[t] for t in TABLES), "the history touches every table"
    async with engine.begin() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
    assert await rebuild(engine, catalog.store, ModelProjection()) == count
    assert await read_models(engine) == live


async def test_every_change_is_published_once_in_order_per_model(
    catalog: Catalog, engine: AsyncEngine, clock: FakeClock, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    await busy_history(catalog, clock)
    async with engine.connect() as conn:
        stored = {
            r.event_id: (r.stream_id, r.stream_version, r.event_type)
            for r in await conn.execute(text("SELECT event_id, stream_id, stream_version, event_type FROM events"))
        }
    nc = await connect(nats_url, "catalog-test")
    try:
        relay = OutboxRelay(engine, catalog.store, nc, producer)
        await relay.setup()
        assert await relay.publish_once() == len(stored)
        assert await relay.publish_once() == 0  # nothing twice
        sub = await nc.jetstream().pull_subscribe(events_subject(producer), stream=events_stream_name(producer))
        received: list[envelope_pb2.EventEnvelope] = []
        while True:
            try:
                batch = await sub.fetch(100, timeout=1)
            except NatsTimeout:
                break
            for message in batch:
                received.append(envelope_pb2.EventEnvelope.FromString(message.data))
                await message.ack()
    finally:
        await nc.close()
    assert sorted(str(e.event_id) for e in received) == sorted(str(i) for i in stored)
    per_stream: dict[str, list[int]] = defaultdict(list)
    for envelope in received:
        per_stream[envelope.stream_id].append(envelope.stream_version)
        assert stored[uuid.UUID(envelope.event_id)][2] == envelope.event_type
    for versions in per_stream.values():
        assert versions == list(range(1, len(versions) + 1))
    # Each change ends with a snapshot; the last one carries the model's final public state.
    registry = make_registry()
    snapshots = [e for e in received if e.event_type == "catalog.ModelSnapshot"]
    child = [e for e in received if e.event_type == "catalog.ModelCreated"][1].stream_id
    last = registry.decode("catalog.ModelSnapshot", 1, [e for e in snapshots if e.stream_id == child][-1].payload)
    assert isinstance(last, catalog_pb2.CatalogModelSnapshot)
    assert (last.status, list(last.tags), last.creator_username) == ("UnpublishedViolation", ["b", "a"], "Alice")
    assert [v.name for v in last.versions] == ["v1"]
    # catalog.ModelVersionPublished once per published version: base's v1 and child's v1 (child's v2 was
    # cancelled when due, then deleted).
    published = [
        registry.decode(e.event_type, e.schema_version, e.payload)
        for e in received
        if e.event_type == "catalog.ModelVersionPublished"
    ]
    assert len(published) == 2
    assert len({p.model_version_id for p in published if isinstance(p, catalog_pb2.CatalogModelVersionPublished)}) == 2


async def test_a_failed_command_appends_nothing(catalog: Catalog, engine: AsyncEngine) -> None:
    model = await catalog.models.create_model(ALICE, fields())
    async with engine.connect() as conn:
        before = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
    with pytest.raises(FailedPrecondition):  # nothing ready to publish
        await catalog.models.publish_model(ALICE, model.id, model.version)
    with pytest.raises(StreamVersionConflict):
        await catalog.models.publish_model(ALICE, model.id, model.version + 5)
    with pytest.raises(NotFound):  # a draft is hidden from others
        await catalog.models.update_model(BOB, model.id, model.version, commands.model_changes(name="x"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one() == before
