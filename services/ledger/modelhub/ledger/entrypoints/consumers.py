"""Reward rules as a JetStream consumer: catalog events in, REWARD transfers of blue Buzz out.

The durable pull consumer "ledger-rewards" reads the catalog's stream (CATALOG_EVENTS) with the
library's IdempotentConsumer: each event's handler runs in the consumer's transaction, next to the
event's inbox row. The grant itself goes through `Ledger.transfer`, which opens a transaction of its own
(the Ledger API takes no connection), so the grant and the inbox row cannot commit together. Exactly-once
in effect comes from two keys instead of one transaction:

- the inbox (consumer, event id): a redelivered or republished event that was handled is acknowledged
  without running the handler;
- the grant's idempotency key, `reward:<event id>` in this consumer's namespace: the ledger applies a key
  once. Before deciding anything, the handler asks the ledger for the key's outcome; if the grant was
  applied (the process died after the ledger committed and before the inbox did, or a batch was redone
  after another event's handler failed), it only records the amount that was granted, and never grants
  again.

The daily caps live in `reward_grants` (user, rule, UTC day, total), written in the consumer's
transaction: the handler locks the row (so two events of one user never both see the same remainder),
takes the remainder of the cap, grants it, adds it to the total. In the crash window above the total
lags the ledger until the event is redelivered, so another event of the same user, rule and day handled
in between may be granted up to one grant past the cap; the redelivery then catches the total up. Never
twice the same event, and the audit (sum of postings, balances) is never affected.

The inbox rows are deleted after `rewards_inbox_retention_days` (7): an event replayed after that (the stream
replayed to a new consumer) finds its grant under its key and grants nothing; it adds that grant once more to
its own, long past, day's total, which no grant of today reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta

from google.protobuf.message import Message
from nats.aio.client import Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.core.errors import NotFound
from modelhub.core.events.consumer import ConsumerSettings, Handler, IdempotentConsumer
from modelhub.core.events.model import ReceivedEvent
from modelhub.core.events.registry import EventRegistry
from modelhub.core.nats import connect_until_stopped, events_stream_name, events_subject
from modelhub.events.v1 import catalog_pb2
from modelhub.ledger.config import LedgerSettings
from modelhub.ledger.domain.commands import Actor
from modelhub.ledger.domain.errors import IdempotencyKeyReused, LedgerFailure
from modelhub.ledger.domain.rewards import (
    Reward,
    RewardPolicy,
    RewardRule,
    RuleTerms,
    capped_grant,
    requested_amount,
    reward_command,
    reward_day,
    reward_key,
)
from modelhub.ledger.handlers import Ledger

log = logging.getLogger(__name__)

CATALOG = "catalog"
REWARDS_CONSUMER = "ledger-rewards"
REWARDS_BATCH_SIZE = 100
REVIEW_CREATED = "catalog.ReviewCreated"
MODEL_VERSION_PUBLISHED = "catalog.ModelVersionPublished"
DOWNLOADS_COUNTED = "catalog.DownloadsCounted"
REWARDS_ACTOR = Actor("ledger-rewards", is_service=True)
"""The principal the grants are made as: their idempotency keys live in its namespace."""

_LOCK_TOTAL = text(
    """
    INSERT INTO reward_grants (user_id, rule, day) VALUES (:user_id, :rule, :day)
    ON CONFLICT (user_id, rule, day) DO UPDATE SET total = reward_grants.total
    RETURNING total
    """
)
_ADD_TO_TOTAL = text(
    """
    INSERT INTO reward_grants (user_id, rule, day, total) VALUES (:user_id, :rule, :day, :amount)
    ON CONFLICT (user_id, rule, day)
    DO UPDATE SET total = reward_grants.total + :amount, updated_at = clock_timestamp()
    """
)


def make_catalog_registry() -> EventRegistry:
    """The catalog's event types this service reads (the catalog owns the contract)."""
    registry = EventRegistry()
    registry.register(REVIEW_CREATED, catalog_pb2.CatalogReviewCreated)
    registry.register(MODEL_VERSION_PUBLISHED, catalog_pb2.CatalogModelVersionPublished)
    registry.register(DOWNLOADS_COUNTED, catalog_pb2.CatalogDownloadsCounted)
    return registry


def reward_policy(settings: LedgerSettings) -> RewardPolicy:
    return RewardPolicy(
        {
            RewardRule.REVIEW_WRITTEN: RuleTerms(settings.reward_review_amount, settings.reward_review_daily_cap),
            RewardRule.VERSION_PUBLISHED: RuleTerms(
                settings.reward_version_published_amount, settings.reward_version_published_daily_cap
            ),
            RewardRule.DOWNLOADS: RuleTerms(settings.reward_download_amount, settings.reward_download_daily_cap),
        }
    )


class InvalidCatalogEvent(ValueError):
    """The event breaks its contract (no user id); retried, then dead-lettered with this message."""


def reward_of(event: ReceivedEvent) -> Reward:
    """What a catalog event claims under the reward rules."""
    payload: Message = event.payload
    rule: RewardRule
    subject: dict[str, str]
    match payload:
        case catalog_pb2.CatalogReviewCreated():
            rule, user_id, units = RewardRule.REVIEW_WRITTEN, payload.author_user_id, 1
            subject = {"review_id": payload.review_id, "model_version_id": payload.model_version_id}
        case catalog_pb2.CatalogModelVersionPublished():
            rule, user_id, units = RewardRule.VERSION_PUBLISHED, payload.creator_user_id, 1
            subject = {"model_id": payload.model_id, "model_version_id": payload.model_version_id}
        case catalog_pb2.CatalogDownloadsCounted():
            rule, user_id, units = RewardRule.DOWNLOADS, payload.creator_user_id, payload.count
            subject = {"model_version_id": payload.model_version_id, "downloads": str(payload.count)}
        case _:
            raise TypeError(f"no reward rule for {event.event_type}")
    if not user_id:
        raise InvalidCatalogEvent(f"{event.event_type} {event.event_id} names no user")
    return Reward(
        rule=rule,
        user_id=user_id,
        units=units,
        day=reward_day(event.occurred_at),
        source_event_id=str(event.event_id),
        source_event_type=event.event_type,
        subject={k: v for k, v in subject.items() if v},
    )


class RewardGrants:
    """The consumer's handlers: one grant per catalog event, capped per user, rule and UTC day."""

    def __init__(self, ledger: Ledger, policy: RewardPolicy, actor: Actor = REWARDS_ACTOR) -> None:
        self.ledger = ledger
        self.policy = policy
        self.actor = actor

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return dict.fromkeys((REVIEW_CREATED, MODEL_VERSION_PUBLISHED, DOWNLOADS_COUNTED), self.handle)

    async def handle(self, conn: AsyncConnection, event: ReceivedEvent) -> None:
        reward = reward_of(event)
        key = reward_key(reward.source_event_id)
        params = {"user_id": reward.user_id, "rule": reward.rule.value, "day": reward.day}
        granted = await self._granted(key)
        if granted is None:  # not granted yet: lock the day's total, grant what is left of the cap
            terms = self.policy.terms_of(reward.rule)
            total = (await conn.execute(_LOCK_TOTAL, params)).scalar_one()
            amount = capped_grant(requested_amount(terms, reward.units), total, terms.daily_cap)
            if amount == 0:
                log.info("reward %s for %s skipped: cap reached, rule off or nothing counted", key, reward.user_id)
                return
            granted = await self._grant(reward, amount)
        if granted:
            await conn.execute(_ADD_TO_TOTAL, {**params, "amount": granted})

    async def _granted(self, key: str) -> int | None:
        """What the ledger granted under `key`: None if nothing was recorded, 0 for a recorded failure."""
        try:
            outcome = await self.ledger.outcome(self.actor, key)
        except NotFound:
            return None
        if outcome.failure is not None:
            return 0
        return sum(t.leg.amount for t in outcome.transfers)

    async def _grant(self, reward: Reward, amount: int) -> int:
        command = reward_command(reward, amount)
        try:
            transfers = await self.ledger.transfer(self.actor, command)
        except IdempotencyKeyReused:  # granted meanwhile with another amount: that grant counts
            return await self._granted(command.key) or 0
        except LedgerFailure as failure:  # e.g. the user's balance would overflow: recorded, not retried
            log.warning("reward %s for %s failed: %s", command.key, reward.user_id, failure)
            return 0
        return sum(t.leg.amount for t in transfers)


def build_rewards_consumer(
    ledger: Ledger,
    nc: Client,
    policy: RewardPolicy,
    *,
    producer: str = CATALOG,
    name: str = REWARDS_CONSUMER,
    settings: ConsumerSettings | None = None,
) -> IdempotentConsumer:
    """The durable consumer `name` on the producer's stream (CATALOG_EVENTS), granting rewards."""
    return IdempotentConsumer(
        ledger.engine,
        nc,
        make_catalog_registry(),
        name=name,
        stream=events_stream_name(producer),
        subject=events_subject(producer),
        handlers=RewardGrants(ledger, policy).handlers,
        settings=settings or ConsumerSettings(batch_size=REWARDS_BATCH_SIZE),
    )


def rewards_consumer_settings(settings: LedgerSettings) -> ConsumerSettings:
    """How the service's rewards consumer pulls, and how long it keeps its inbox rows (see the module doc: the
    grants' idempotency keys make a replayed event harmless once its row is gone)."""
    days = settings.rewards_inbox_retention_days
    return ConsumerSettings(batch_size=REWARDS_BATCH_SIZE, inbox_retention=timedelta(days=days) if days else None)


async def serve_rewards(
    ledger: Ledger, settings: LedgerSettings, stop: asyncio.Event, *, retry_interval: float = 2.0
) -> None:
    """The service's rewards consumer, until `stop` is set: connects to NATS (retrying), then
    consumes once the catalog's stream exists."""
    nc = await connect_until_stopped(settings.nats_url, f"{settings.service_name}-rewards", stop, retry_interval)
    if nc is None:
        return
    try:
        consumer = build_rewards_consumer(
            ledger, nc, reward_policy(settings), settings=rewards_consumer_settings(settings)
        )
        await consumer.run_when_stream_exists(stop, retry_interval=retry_interval, replicas=settings.stream_replicas)
    finally:
        await nc.close()
