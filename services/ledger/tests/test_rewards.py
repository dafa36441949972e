"""Reward rules: catalog events published into JetStream grant capped, exactly-once blue Buzz."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.events.consumer import ERROR_HEADER, ConsumerSettings, IdempotentConsumer
from modelhub.core.nats import DEAD_LETTER_STREAM, connect, events_stream_name
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.waiting import wait_until
from modelhub.events.v1 import envelope_pb2
from modelhub.ledger.config import LedgerSettings
from modelhub.ledger.domain.model import INT64_MAX, Currency, TransferType
from modelhub.ledger.domain.rewards import (
    Reward,
    RewardPolicy,
    RewardRule,
    RuleTerms,
    capped_grant,
    requested_amount,
    reward_command,
    reward_day,
)
from modelhub.ledger.entrypoints.consumers import (
    REVIEW_CREATED,
    REWARDS_ACTOR,
    REWARDS_CONSUMER,
    build_rewards_consumer,
    reward_policy,
    rewards_consumer_settings,
    serve_rewards,
)
from modelhub.ledger.handlers import Ledger

from .catalog_events import (
    DAY,
    create_stream,
    downloads,
    envelope,
    grant_totals,
    inbox_count,
    publish,
    published,
    review,
    reward_transfers,
    running,
)
from .helpers import audit, balance, user

POLICY = RewardPolicy(
    {
        RewardRule.REVIEW_WRITTEN: RuleTerms(amount=10, daily_cap=25),
        RewardRule.VERSION_PUBLISHED: RuleTerms(amount=50, daily_cap=100),
        RewardRule.DOWNLOADS: RuleTerms(amount=2, daily_cap=500),
    }
)
FAST = ConsumerSettings(batch_size=100, fetch_timeout=0.1, ack_wait=2.0, max_deliver=3, retry_delay=0.1)
DAY_KEY = DAY.date().isoformat()


# -- the rules (pure) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "granted_today", "cap", "expected"),
    [
        (10, 0, 25, 10),  # well under the cap
        (10, 20, 25, 5),  # cut to the remainder
        (10, 25, 25, 0),  # cap reached: skipped
        (10, 30, 25, 0),  # past the cap (lowered since): nothing, never negative
        (0, 0, 25, 0),
        (10, 0, 0, 0),  # a zero cap turns the rule off
        (INT64_MAX, 0, INT64_MAX, INT64_MAX),
    ],
)
def test_capped_grant(requested: int, granted_today: int, cap: int, expected: int) -> None:
    assert capped_grant(requested, granted_today, cap) == expected


def test_requested_amount_is_per_unit_and_saturates() -> None:
    assert requested_amount(RuleTerms(2, 500), 7) == 14
    assert requested_amount(RuleTerms(2, 500), 0) == 0
    assert requested_amount(RuleTerms(2, 500), -3) == 0
    assert requested_amount(RuleTerms(0, 500), 7) == 0
    assert requested_amount(RuleTerms(2**40, 500), 2**40) == INT64_MAX
    with pytest.raises(ValueError, match="between 0"):
        RuleTerms(-1, 10)


def test_the_day_is_the_utc_day_of_the_event() -> None:
    late_in_tokyo = datetime(2026, 3, 15, 1, 0, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    assert reward_day(late_in_tokyo) == date(2026, 3, 15)
    assert reward_day(datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC)) == date(2026, 3, 14)
    with pytest.raises(ValueError, match="timezone-aware"):
        reward_day(datetime(2026, 3, 14))


def test_reward_command_is_a_blue_reward_from_the_mint_keyed_by_the_source_event() -> None:
    reward = Reward(
        RewardRule.REVIEW_WRITTEN, "alice", 1, date(2026, 3, 14), "ev-1", REVIEW_CREATED, {"review_id": "r1"}
    )
    command = reward_command(reward, 7)
    assert command.key == "reward:ev-1"
    [leg] = command.legs
    assert (leg.type, leg.currency, str(leg.debit), str(leg.credit), leg.amount) == (
        TransferType.REWARD,
        Currency.BLUE,
        "system:mint",
        "user:alice",
        7,
    )
    assert command.metadata["rule"] == "review-written"
    assert command.metadata["day"] == "2026-03-14"
    assert command.metadata["review_id"] == "r1"
    assert command.fingerprint() == reward_command(reward, 7).fingerprint()


def test_policy_from_settings() -> None:
    settings = LedgerSettings(reward_review_amount=3, reward_review_daily_cap=9, reward_download_amount=0)
    policy = reward_policy(settings)
    assert policy.terms_of(RewardRule.REVIEW_WRITTEN) == RuleTerms(3, 9)
    assert policy.terms_of(RewardRule.DOWNLOADS).amount == 0


# -- the consumer, against real NATS and Postgres -----------------------------------------------------------


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await connect(nats_url, "test-rewards")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def producer(unique_name: str) -> str:
    """A producer name of this test's own, so that its stream is private on the shared server."""
    return unique_name.lower()


async def make_consumer(
    ledger: Ledger, nc: Client, producer: str, policy: RewardPolicy = POLICY, settings: ConsumerSettings = FAST
) -> IdempotentConsumer:
    await create_stream(nc.jetstream(), producer)
    consumer = build_rewards_consumer(
        ledger, nc, policy, producer=producer, name=f"{REWARDS_CONSUMER}-{producer}", settings=settings
    )
    await consumer.setup()
    return consumer


async def drain(consumer: IdempotentConsumer) -> None:
    """Process until the consumer has nothing pending and nothing unacknowledged."""

    async def done() -> bool:
        await consumer.process_batch()
        info = await consumer._js.consumer_info(consumer.stream, consumer.name)
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    await wait_until(done, 20, "the consumer to catch up")


async def blue(ledger: Ledger, user_id: str) -> int:
    return await balance(ledger, user(user_id), Currency.BLUE)


def assert_audit_passes(url: str) -> None:
    result = audit(url)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_each_rule_grants_blue_buzz_to_the_right_user(
    ledger: Ledger, engine: AsyncEngine, migrated_url: str, nc: Client, producer: str
) -> None:
    consumer = await make_consumer(ledger, nc, producer)
    js = nc.jetstream()
    first = envelope(review("alice"))
    await publish(js, producer, first)
    await publish(js, producer, envelope(published("bob")))
    await publish(js, producer, envelope(downloads("bob", 7)))
    await drain(consumer)

    assert await blue(ledger, "alice") == 10
    assert await blue(ledger, "bob") == 50 + 14
    assert await balance(ledger, user("alice"), Currency.YELLOW) == 0
    assert await grant_totals(engine) == {
        ("alice", "review-written", DAY_KEY): 10,
        ("bob", "version-published", DAY_KEY): 50,
        ("bob", "downloads", DAY_KEY): 14,
    }
    transfers = await reward_transfers(engine)
    assert len(transfers) == 3
    key, amount, metadata = transfers[0]
    assert (key, amount) == (f"reward:{first.event_id}", 10)
    assert metadata["source_event_id"] == first.event_id
    assert metadata["source_event_type"] == REVIEW_CREATED
    assert metadata["review_id"] == "r1"
    # The ledger's own record of the grant, under the rewards principal's key.
    outcome = await ledger.outcome(REWARDS_ACTOR, f"reward:{first.event_id}")
    assert [t.leg.amount for t in outcome.transfers] == [10]
    assert_audit_passes(migrated_url)


async def test_daily_caps_per_user_rule_and_utc_day_of_the_event(
    ledger: Ledger, engine: AsyncEngine, migrated_url: str, nc: Client, producer: str
) -> None:
    consumer = await make_consumer(ledger, nc, producer)
    js = nc.jetstream()
    # alice: 4 reviews on one day at 10 each under a cap of 25 -> 10, 10, 5, then nothing.
    for i in range(4):
        await publish(js, producer, envelope(review("alice", review_id=f"a{i}"), occurred_at=DAY + timedelta(hours=i)))
    # carol is capped on her own.
    await publish(js, producer, envelope(review("carol")))
    # The next UTC day is a new cap (one second past midnight), whatever the wall clock says.
    next_day = datetime.combine(DAY.date() + timedelta(days=1), datetime.min.time(), UTC) + timedelta(seconds=1)
    await publish(js, producer, envelope(review("alice", review_id="a-next"), occurred_at=next_day))
    # Downloads: 1000 at 2 each is cut to the cap of 500; the publication cap is a separate rule.
    await publish(js, producer, envelope(downloads("alice", 1000)))
    await publish(js, producer, envelope(published("alice")))
    await drain(consumer)

    assert await grant_totals(engine) == {
        ("alice", "review-written", DAY_KEY): 25,
        ("alice", "review-written", next_day.date().isoformat()): 10,
        ("carol", "review-written", DAY_KEY): 10,
        ("alice", "downloads", DAY_KEY): 500,
        ("alice", "version-published", DAY_KEY): 50,
    }
    assert await blue(ledger, "alice") == 25 + 10 + 500 + 50
    assert await blue(ledger, "carol") == 10
    amounts = sorted(amount for _, amount, _ in await reward_transfers(engine))
    assert amounts == [5, 10, 10, 10, 10, 50, 500]  # the skipped fourth review posted nothing
    assert await inbox_count(engine, consumer.name) == 8  # but it was handled
    assert_audit_passes(migrated_url)


async def test_redelivery_and_republish_grant_once(
    ledger: Ledger, engine: AsyncEngine, migrated_url: str, nc: Client, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = await make_consumer(ledger, nc, producer)
    js = nc.jetstream()
    event = envelope(review("alice"))
    # Republished without Nats-Msg-Id (a relay replay past the duplicate window): JetStream keeps both.
    await publish(js, producer, event, msg_id=False)
    await publish(js, producer, event, msg_id=False)
    assert (await js.stream_info(events_stream_name(producer))).state.messages == 2
    await drain(consumer)
    assert await blue(ledger, "alice") == 10

    # The consumer dies after its commit, before acking: JetStream redelivers after ack_wait.
    second = envelope(review("alice", review_id="r2"))
    await publish(js, producer, second)

    async def no_ack(self: object) -> None:
        return None

    with monkeypatch.context() as patch:
        patch.setattr("nats.aio.msg.Msg.ack", no_ack)
        await wait_until(lambda: _fetched(consumer), 10, "the second review fetched")
    assert await blue(ledger, "alice") == 20
    await drain(consumer)  # the redelivery: found in the inbox, acked, nothing granted
    assert await blue(ledger, "alice") == 20

    # The same event republished a third time, much later.
    await publish(js, producer, event, msg_id=False)
    await drain(consumer)
    assert await blue(ledger, "alice") == 20
    assert len(await reward_transfers(engine)) == 2
    assert await grant_totals(engine) == {("alice", "review-written", DAY_KEY): 20}
    assert_audit_passes(migrated_url)


async def _fetched(consumer: IdempotentConsumer) -> bool:
    return await consumer.process_batch() > 0


async def test_a_grant_committed_before_a_crash_is_caught_up_not_granted_again(
    ledger: Ledger, engine: AsyncEngine, migrated_url: str, nc: Client, producer: str
) -> None:
    """The ledger committed the grant, then the process died before the consumer's transaction did."""
    consumer = await make_consumer(ledger, nc, producer)
    event = envelope(review("alice"))
    # What the dead process did: the grant (ledger transaction) committed, the inbox and total did not.
    reward = Reward(
        RewardRule.REVIEW_WRITTEN, "alice", 1, DAY.date(), event.event_id, REVIEW_CREATED, {"review_id": "r1"}
    )
    await ledger.transfer(REWARDS_ACTOR, reward_command(reward, 10))
    assert await grant_totals(engine) == {}
    # Another review comes in meanwhile, then the redelivery of the first.
    await publish(nc.jetstream(), producer, envelope(review("alice", review_id="r2")))
    await publish(nc.jetstream(), producer, event)
    await drain(consumer)

    assert len(await reward_transfers(engine)) == 2  # r2's grant, and r1's once
    assert await blue(ledger, "alice") == 20
    assert await grant_totals(engine) == {("alice", "review-written", DAY_KEY): 20}  # caught up
    assert_audit_passes(migrated_url)


async def test_concurrent_replicas_never_pass_the_cap(
    ledger: Ledger, engine: AsyncEngine, migrated_url: str, nc: Client, producer: str
) -> None:
    """Two processes pulling from the same durable consumer: the locked daily total keeps the cap."""
    first = await make_consumer(ledger, nc, producer, settings=ConsumerSettings(batch_size=7, fetch_timeout=0.1))
    second = build_rewards_consumer(
        ledger, nc, POLICY, producer=producer, name=first.name, settings=ConsumerSettings(batch_size=5)
    )
    await second.setup()
    js = nc.jetstream()
    users = [f"user-{i}" for i in range(5)]
    for i in range(60):
        await publish(js, producer, envelope(review(users[i % 5], review_id=f"r{i}")))
        await publish(js, producer, envelope(downloads(users[i % 5], 30, version=f"v{i}")))
    async with running(first, second):
        await wait_until(lambda: _inbox_is(engine, first.name, 120), 60, "every event handled")
    for u in users:
        assert await blue(ledger, u) == 25 + 500
    totals = await grant_totals(engine)
    assert set(totals.values()) == {25, 500}
    assert_audit_passes(migrated_url)


async def _inbox_is(engine: AsyncEngine, consumer: str, expected: int) -> bool:
    return await inbox_count(engine, consumer) >= expected


async def test_undecodable_and_invalid_events_are_dead_lettered_and_never_block(
    ledger: Ledger, engine: AsyncEngine, nc: Client, producer: str
) -> None:
    consumer = await make_consumer(ledger, nc, producer)
    js = nc.jetstream()
    dead = await js.subscribe(f"deadletter.{consumer.name}", stream=DEAD_LETTER_STREAM)
    # Not an envelope at all; then an envelope whose payload is not a CatalogReviewCreated; then a review
    # that names no user (retried max_deliver times, then dead-lettered); then a good one.
    await js.publish(f"events.{producer}.ReviewCreated", b"\x08\xff\xff not an envelope")
    garbled = envelope(review("alice"))
    garbled.payload = b"\xff\xff\xff"
    await publish(js, producer, garbled)
    await publish(js, producer, envelope(review("")))
    await publish(js, producer, envelope(review("alice")))
    async with running(consumer):
        await wait_until(lambda: _blue_is(ledger, "alice", 10), 20, "the good event applied")
        errors = [(await dead.next_msg(timeout=10)).headers or {} for _ in range(3)]
    reasons = sorted(h[ERROR_HEADER] for h in errors)
    assert reasons[0].startswith("InvalidCatalogEvent: catalog.ReviewCreated")
    assert reasons[1].startswith("undecodable event")
    assert reasons[2].startswith("undecodable event")
    assert await blue(ledger, "alice") == 10
    assert len(await reward_transfers(engine)) == 1


async def _blue_is(ledger: Ledger, user_id: str, expected: int) -> bool:
    return await blue(ledger, user_id) == expected


async def test_the_service_waits_for_the_catalog_stream_then_rewards(
    ledger: Ledger, engine: AsyncEngine, migrated_url: str, nats_server: NatsServer
) -> None:
    """With the real names (CATALOG_EVENTS, durable "ledger-rewards"), on a NATS server of this test's own:
    the service starts before the catalog has ever published, and picks up once the stream exists."""
    settings = LedgerSettings(nats_url=nats_server.url, database_url=migrated_url, reward_review_amount=7)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_rewards(ledger, settings, stop, retry_interval=0.2))
    nc = await connect(nats_server.url, "test-catalog")
    try:
        await asyncio.sleep(0.5)
        assert not task.done()  # waiting, not failed
        await create_stream(nc.jetstream(), "catalog")
        await publish(nc.jetstream(), "catalog", envelope(review("alice")))
        await wait_until(lambda: _blue_is(ledger, "alice", 7), 30, "the review rewarded")
        info = await nc.jetstream().consumer_info("CATALOG_EVENTS", REWARDS_CONSUMER)
        assert info.config.filter_subject == "events.catalog.>"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await nc.close()
    assert_audit_passes(migrated_url)


async def test_run_rewards_returns_when_stopped_while_waiting(ledger: Ledger, nc: Client, producer: str) -> None:
    consumer = build_rewards_consumer(ledger, nc, POLICY, producer=producer, name=f"{REWARDS_CONSUMER}-{producer}")
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run_when_stream_exists(stop, retry_interval=0.1))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 5)


def test_envelopes_round_trip() -> None:
    env = envelope(review("alice"))
    assert envelope_pb2.EventEnvelope.FromString(env.SerializeToString()) == env


def test_the_rewards_inbox_is_kept_for_the_configured_days() -> None:
    """The service's consumer prunes its inbox after rewards_inbox_retention_days (0 keeps it forever)."""
    kept = rewards_consumer_settings(LedgerSettings())
    assert (kept.batch_size, kept.inbox_retention) == (100, timedelta(days=7))
    assert rewards_consumer_settings(LedgerSettings(rewards_inbox_retention_days=0.5)).inbox_retention == timedelta(
        hours=12
    )
    assert rewards_consumer_settings(LedgerSettings(rewards_inbox_retention_days=0)).inbox_retention is None
