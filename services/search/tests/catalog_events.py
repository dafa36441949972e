"""Catalog events as the catalog publishes them: protobuf envelopes of its snapshot payloads on its JetStream stream."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message
from nats.js import JetStreamContext
from uuid_utils.compat import uuid7

from modelhub.core.events.consumer import IdempotentConsumer
from modelhub.core.nats import ensure_stream, events_stream_config, events_subject
from modelhub.events.v1 import catalog_pb2, envelope_pb2
from modelhub.search.adapters.events import IMAGE_SNAPSHOT, MODEL_SNAPSHOT, MODEL_STATS_UPDATED

T0 = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


def model_snapshot(
    model_id: str,
    *,
    name: str | None = None,
    description: str = "",
    type: str = "LORA",
    status: str = "Published",
    tags: Sequence[str] = ("anime",),
    creator: str = "u1",
    username: str = "alice",
    nsfw_level: int = 1,
    base_model: str = "SDXL 1.0",
    trained_words: Sequence[str] = (),
    file_format: str = "SafeTensor",
    sha256: str = "",
    published_at: datetime | None = T0,
    created_at: datetime = T0,
    allow_commercial_use: Sequence[str] = ("Image",),
) -> catalog_pb2.CatalogModelSnapshot:
    """A model with one published version holding one file."""
    file = catalog_pb2.CatalogFileSnapshot(
        file_id=f"{model_id}-f1",
        name=f"{model_id}.safetensors",
        format=file_format,
        size_bytes=1024,
        scan_result="Success",
        hashes=[
            catalog_pb2.CatalogFileHash(
                kind="SHA256", value=sha256 or hashlib.sha256(model_id.encode()).hexdigest().upper()
            )
        ],
    )
    version = catalog_pb2.CatalogVersionSnapshot(
        model_version_id=f"{model_id}-v1",
        name="v1.0",
        base_model=base_model,
        trained_words=list(trained_words),
        status="Published",
        files=[file],
    )
    snapshot = catalog_pb2.CatalogModelSnapshot(
        model_id=model_id,
        name=name or f"Model {model_id}",
        description=description,
        type=type,
        status=status,
        tags=list(tags),
        creator_user_id=creator,
        creator_username=username,
        license=catalog_pb2.CatalogLicense(
            allow_no_credit=True, allow_commercial_use=list(allow_commercial_use), allow_derivatives=True
        ),
        nsfw_level=nsfw_level,
        versions=[version],
    )
    snapshot.created_at.FromDatetime(created_at)
    snapshot.updated_at.FromDatetime(created_at)
    if published_at is not None:
        snapshot.published_at.FromDatetime(published_at)
        snapshot.versions[0].published_at.FromDatetime(published_at)
    return snapshot


def model_stats(
    model_id: str, *, downloads: int = 0, thumbs_up: int = 0, thumbs_down: int = 0, favorites: int = 0
) -> catalog_pb2.CatalogModelStatsUpdated:
    """The same counts for every period."""
    stats = catalog_pb2.CatalogModelStatsUpdated(
        model_id=model_id,
        periods=[
            catalog_pb2.CatalogModelPeriodStats(
                period=period,
                downloads=downloads,
                thumbs_up=thumbs_up,
                thumbs_down=thumbs_down,
                favorites=favorites,
            )
            for period in ("Day", "Week", "Month", "Year", "AllTime")
        ],
    )
    stats.computed_at.FromDatetime(T0)
    return stats


def image_snapshot(
    image_id: str,
    *,
    status: str = "Published",
    prompt: str = "a castle on a hill",
    nsfw_level: int = 1,
    model_id: str = "m1",
    reactions: int = 0,
    created_at: datetime = T0,
) -> catalog_pb2.CatalogImageSnapshot:
    image = catalog_pb2.CatalogImageSnapshot(
        image_id=image_id,
        status=status,
        creator_user_id="u1",
        creator_username="alice",
        model_version_ids=[f"{model_id}-v1"],
        model_ids=[model_id],
        tags=["landscape"],
        nsfw_level=nsfw_level,
        prompt=prompt,
        width=512,
        height=768,
        blurhash="LEHV6nWB2yk8pyo0adR*.7kCMdnj",
        reactions=reactions,
    )
    image.created_at.FromDatetime(created_at)
    return image


_TYPES = {
    catalog_pb2.CatalogModelSnapshot: (MODEL_SNAPSHOT, "model-"),
    catalog_pb2.CatalogModelStatsUpdated: (MODEL_STATS_UPDATED, "model-stats-"),
    catalog_pb2.CatalogImageSnapshot: (IMAGE_SNAPSHOT, "image-"),
}


def envelope(payload: Message, version: int, *, event_id: str | None = None) -> envelope_pb2.EventEnvelope:
    """The envelope the catalog's relay publishes for `payload` at stream version `version`."""
    event_type, stream_prefix = _TYPES[type(payload)]
    item_id = payload.image_id if isinstance(payload, catalog_pb2.CatalogImageSnapshot) else payload.model_id  # type: ignore[attr-defined]
    env = envelope_pb2.EventEnvelope(
        event_id=event_id or str(uuid7()),
        event_type=event_type,
        stream_id=f"{stream_prefix}{item_id}",
        stream_version=version,
        schema_version=1,
        payload=payload.SerializeToString(),
        producer="catalog",
    )
    env.occurred_at.FromDatetime(T0 + timedelta(seconds=version))
    return env


async def create_stream(js: JetStreamContext, producer: str) -> None:
    """What the catalog's relay does at start (search never creates the stream)."""
    await ensure_stream(js, events_stream_config(producer))


async def publish(js: JetStreamContext, producer: str, env: envelope_pb2.EventEnvelope, *, msg_id: bool = True) -> None:
    """Publish like the relay (Nats-Msg-Id = event id), or without the id so JetStream stores another copy."""
    headers = {"Nats-Msg-Id": env.event_id, "Modelhub-Event-Type": env.event_type} if msg_id else None
    ack = await js.publish(events_subject(producer, env.event_type), env.SerializeToString(), headers=headers)
    assert not ack.duplicate


@contextlib.asynccontextmanager
async def running(*consumers: IdempotentConsumer) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop)) for c in consumers]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
