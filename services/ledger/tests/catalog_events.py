"""Catalog events as the catalog will publish them: protobuf envelopes on its JetStream stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from google.protobuf.message import Message
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from modelhub.core.events.consumer import IdempotentConsumer
from modelhub.core.nats import ensure_stream, events_stream_config, events_subject
from modelhub.events.v1 import catalog_pb2, envelope_pb2
from modelhub.ledger.entrypoints.consumers import DOWNLOADS_COUNTED, MODEL_VERSION_PUBLISHED, REVIEW_CREATED

DAY = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


def review(author: str, *, review_id: str = "r1", version: str = "v1") -> tuple[str, Message]:
    payload = catalog_pb2.CatalogReviewCreated(
        review_id=review_id, model_id="m1", model_version_id=version, author_user_id=author, recommended=True
    )
    payload.created_at.FromDatetime(DAY)
    return REVIEW_CREATED, payload


def published(creator: str, *, version: str = "v1") -> tuple[str, Message]:
    payload = catalog_pb2.CatalogModelVersionPublished(model_id="m1", model_version_id=version, creator_user_id=creator)
    payload.published_at.FromDatetime(DAY)
    return MODEL_VERSION_PUBLISHED, payload


def downloads(creator: str, count: int, *, version: str = "v1") -> tuple[str, Message]:
    payload = catalog_pb2.CatalogDownloadsCounted(
        model_id="m1", model_version_id=version, creator_user_id=creator, count=count
    )
    payload.window_start.FromDatetime(DAY)
    payload.window_end.FromDatetime(DAY)
    return DOWNLOADS_COUNTED, payload


def envelope(
    event: tuple[str, Message], *, occurred_at: datetime = DAY, event_id: str | None = None
) -> envelope_pb2.EventEnvelope:
    event_type, payload = event
    env = envelope_pb2.EventEnvelope(
        event_id=event_id or str(uuid7()),
        event_type=event_type,
        stream_id=f"catalog-{event_type}-{uuid7()}",
        stream_version=1,
        schema_version=1,
        payload=payload.SerializeToString(),
        producer="catalog",
    )
    env.occurred_at.FromDatetime(occurred_at)
    return env


async def create_stream(js: JetStreamContext, producer: str) -> None:
    """What the catalog's relay does at start (the ledger never creates the stream)."""
    await ensure_stream(js, events_stream_config(producer))


async def publish(js: JetStreamContext, producer: str, env: envelope_pb2.EventEnvelope, *, msg_id: bool = True) -> None:
    """Publish like the relay (Nats-Msg-Id = event id), or without the id so JetStream stores a copy."""
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


async def inbox_count(engine: AsyncEngine, consumer: str) -> int:
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT count(*) FROM consumer_inbox WHERE consumer = :c"), {"c": consumer})
        return int(result.scalar_one())


async def grant_totals(engine: AsyncEngine) -> dict[tuple[str, str, str], int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT user_id, rule, day, total FROM reward_grants"))
        return {(r.user_id, r.rule, r.day.isoformat()): r.total for r in rows}


async def reward_transfers(engine: AsyncEngine) -> list[tuple[str, int, dict[str, str]]]:
    """(idempotency key, amount, metadata) of every REWARD transfer."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT idempotency_key, amount, metadata FROM transfers WHERE type = 'REWARD' ORDER BY seq")
        )
        return [(r.idempotency_key, r.amount, r.metadata) for r in rows]
