"""Transfers against a real PostgreSQL: postings, idempotency, races, generation, batches, history."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.errors import DomainError, FailedPrecondition, PermissionDenied
from modelhub.ledger.audit import run_audit
from modelhub.ledger.domain import commands
from modelhub.ledger.domain.commands import Actor
from modelhub.ledger.domain.errors import IdempotencyKeyReused, InsufficientFunds
from modelhub.ledger.domain.model import Currency, Owner, SystemAccount, TransferType
from modelhub.ledger.handlers import Ledger

from .helpers import MINT, SERVICE, balance, count, fund, leg, transfer, user

ALICE = Actor("alice")
FEES = Owner.system(SystemAccount.PLATFORM_FEES)
ESCROW = Owner.system(SystemAccount.GENERATION_ESCROW)


async def test_linked_legs_post_together_or_not_at_all(ledger: Ledger, engine: AsyncEngine) -> None:
    await fund(ledger, "alice", 100)
    tip = transfer(
        "tip-1", leg(user("alice"), user("bob"), 90), leg(user("alice"), FEES, 10, TransferType.FEE), memo="thanks"
    )
    records = await ledger.transfer(ALICE, tip)
    assert [(r.leg_index, r.leg.amount, r.memo) for r in records] == [(0, 90, "thanks"), (1, 10, "thanks")]
    assert (await balance(ledger, user("alice")), await balance(ledger, user("bob")), await balance(ledger, FEES)) == (
        0,
        90,
        10,
    )
    transfers_before = await count(engine, "transfers")
    # Second leg cannot be paid: neither leg posts.
    await fund(ledger, "alice", 50, key="fund-again")
    with pytest.raises(InsufficientFunds):
        await ledger.transfer(
            ALICE,
            transfer("tip-2", leg(user("alice"), user("bob"), 45), leg(user("alice"), FEES, 10, TransferType.FEE)),
        )
    assert await balance(ledger, user("alice")) == 50
    assert await balance(ledger, user("bob")) == 90
    assert await count(engine, "transfers") == transfers_before + 1  # only the second funding
    assert await run_audit(engine) == []


async def test_same_key_same_content_returns_the_original_result(ledger: Ledger, engine: AsyncEngine) -> None:
    await fund(ledger, "alice", 100)
    command = transfer("k1", leg(user("alice"), user("bob"), 30))
    first = await ledger.transfer(ALICE, command)
    again = await ledger.transfer(ALICE, transfer("k1", leg(user("alice"), user("bob"), 30)))
    assert again == first
    assert await balance(ledger, user("alice")) == 70
    # The key belongs to alice's namespace: bob may use the same key for his own request.
    await ledger.transfer(Actor("bob"), transfer("k1", leg(user("bob"), user("carol"), 5)))
    assert await balance(ledger, user("carol")) == 5


async def test_same_key_other_content_is_refused(ledger: Ledger) -> None:
    await fund(ledger, "alice", 100)
    await ledger.transfer(ALICE, transfer("k1", leg(user("alice"), user("bob"), 30)))
    for other in (
        transfer("k1", leg(user("alice"), user("bob"), 31)),
        transfer("k1", leg(user("alice"), user("carol"), 30)),
        transfer("k1", leg(user("alice"), user("bob"), 30), memo="different"),
    ):
        with pytest.raises(IdempotencyKeyReused) as error:
            await ledger.transfer(ALICE, other)
        assert error.value.reason == "IDEMPOTENCY_KEY_REUSED"
    with pytest.raises(IdempotencyKeyReused):
        await ledger.pay_for_generation(ALICE, commands.pay_for_generation_command("k1", "alice", 30))
    assert await balance(ledger, user("alice")) == 70


async def test_a_failed_key_stays_failed(ledger: Ledger, engine: AsyncEngine) -> None:
    command = transfer("k-poor", leg(user("alice"), user("bob"), 30))
    with pytest.raises(InsufficientFunds) as first:
        await ledger.transfer(ALICE, command)
    await fund(ledger, "alice", 100)
    with pytest.raises(FailedPrecondition) as again:
        await ledger.transfer(ALICE, command)
    assert (again.value.reason, again.value.message, again.value.metadata) == (
        first.value.reason,
        first.value.message,
        first.value.metadata,
    )
    assert await balance(ledger, user("alice")) == 100
    outcome = await ledger.outcome(ALICE, "k-poor")
    assert outcome.failure is not None and outcome.failure.reason == "INSUFFICIENT_FUNDS"
    # A new key succeeds.
    await ledger.transfer(ALICE, transfer("k-rich", leg(user("alice"), user("bob"), 30)))
    assert await balance(ledger, user("bob")) == 30


async def test_invalid_and_forbidden_requests_write_nothing(ledger: Ledger, engine: AsyncEngine) -> None:
    with pytest.raises(PermissionDenied):
        await ledger.transfer(ALICE, transfer("k", leg(user("bob"), user("alice"), 5)))
    with pytest.raises(PermissionDenied):
        await ledger.transfer(ALICE, transfer("k", leg(MINT, user("alice"), 5, TransferType.REWARD)))
    for table in ("accounts", "requests", "transfers", "postings", "events"):
        assert await count(engine, table) == 0


async def test_overdraft_race_never_goes_negative(ledger: Ledger, engine: AsyncEngine) -> None:
    await fund(ledger, "alice", 1_000)
    amounts = [random.randint(1, 40) for _ in range(100)]

    async def spend(i: int, amount: int) -> int:
        try:
            await ledger.transfer(ALICE, transfer(f"spend-{i}", leg(user("alice"), user(f"creator-{i % 7}"), amount)))
        except InsufficientFunds:
            return 0
        return amount

    accepted = await asyncio.gather(*(spend(i, a) for i, a in enumerate(amounts)))
    assert sum(accepted) <= 1_000
    assert sum(amounts) > 1_000  # the race was real: some had to be refused
    assert await balance(ledger, user("alice")) == 1_000 - sum(accepted) >= 0
    assert await run_audit(engine) == []


async def test_retry_storm_has_exactly_one_effect(ledger: Ledger, engine: AsyncEngine) -> None:
    await fund(ledger, "alice", 500)
    requests = [(f"storm-{i}", random.randint(1, 20), random.randint(2, 5)) for i in range(40)]
    calls = [(key, amount) for key, amount, copies in requests for _ in range(copies)]
    random.shuffle(calls)

    async def call(key: str, amount: int) -> list[str] | str:
        try:
            records = await ledger.transfer(ALICE, transfer(key, leg(user("alice"), user("bob"), amount)))
        except DomainError as error:
            return error.reason
        return [r.id for r in records]

    results = await asyncio.gather(*(call(k, a) for k, a in calls))
    by_key: dict[str, set[str]] = {}
    for (key, _), result in zip(calls, results, strict=True):
        by_key.setdefault(key, set()).add(repr(result))
    assert all(len(outcomes) == 1 for outcomes in by_key.values()), by_key
    assert await count(engine, "requests") == 40 + 1
    async with engine.connect() as conn:
        applied = (
            await conn.execute(
                text("SELECT count(*), coalesce(sum(amount), 0) FROM transfers WHERE idempotency_key LIKE 'storm-%'")
            )
        ).one()
    assert applied[0] == sum(1 for outcomes in by_key.values() if "[" in next(iter(outcomes)))
    assert await balance(ledger, user("bob")) == applied[1] == 500 - await balance(ledger, user("alice"))
    assert await run_audit(engine) == []


async def test_generation_draws_blue_first_then_yellow(ledger: Ledger, engine: AsyncEngine) -> None:
    await fund(ledger, "alice", 30, Currency.BLUE)
    await fund(ledger, "alice", 100, Currency.YELLOW)
    records = await ledger.pay_for_generation(ALICE, commands.pay_for_generation_command("gen-1", "alice", 50))
    assert [(r.leg.currency, r.leg.amount, r.leg.credit) for r in records] == [
        (Currency.BLUE, 30, ESCROW),
        (Currency.YELLOW, 20, ESCROW),
    ]
    assert await balance(ledger, user("alice"), Currency.BLUE) == 0
    assert await balance(ledger, user("alice"), Currency.YELLOW) == 80
    with pytest.raises(InsufficientFunds):
        await ledger.pay_for_generation(ALICE, commands.pay_for_generation_command("gen-2", "alice", 81))
    assert await balance(ledger, user("alice"), Currency.YELLOW) == 80
    records = await ledger.pay_for_generation(ALICE, commands.pay_for_generation_command("gen-3", "alice", 80))
    assert [(r.leg.currency, r.leg.amount) for r in records] == [(Currency.YELLOW, 80)]
    with pytest.raises(PermissionDenied):
        await ledger.pay_for_generation(Actor("bob"), commands.pay_for_generation_command("gen-4", "alice", 1))
    assert await run_audit(engine) == []


async def test_batch_gives_each_transfer_its_own_result(ledger: Ledger) -> None:
    await fund(ledger, "alice", 10)
    items: list[commands.TransferCommand | DomainError] = [
        transfer("b1", leg(user("alice"), user("bob"), 6)),
        transfer("b2", leg(user("alice"), user("bob"), 6)),
        transfer("b3", leg(user("alice"), user("carol"), 4)),
        transfer("b4", leg(user("bob"), user("carol"), 1)),
    ]
    results = await ledger.batch(ALICE, items)
    assert isinstance(results[0], list) and results[0][0].leg.amount == 6
    assert isinstance(results[1], InsufficientFunds)
    assert isinstance(results[2], list)
    assert isinstance(results[3], PermissionDenied)
    assert await balance(ledger, user("alice")) == 0


async def test_history_pages_newest_first(ledger: Ledger) -> None:
    await fund(ledger, "alice", 100)
    for i in range(7):
        await ledger.transfer(ALICE, transfer(f"h{i}", leg(user("alice"), user("bob"), i + 1)))
    seen = []
    before = None
    while True:
        page, before = await ledger.postings(ALICE, user("alice"), Currency.YELLOW, before, 3)
        seen.extend(page)
        if before is None:
            break
    assert [p.amount for p in seen] == [-7, -6, -5, -4, -3, -2, -1, 100]
    assert [p.balance_after for p in seen] == [72, 79, 85, 90, 94, 97, 99, 100]
    with pytest.raises(PermissionDenied):
        await ledger.postings(Actor("bob"), user("alice"), Currency.YELLOW, None, 10)


async def test_history_is_append_only(ledger: Ledger, engine: AsyncEngine) -> None:
    await fund(ledger, "alice", 100)
    for statement in (
        "UPDATE transfers SET amount = 1",
        "DELETE FROM postings",
        "UPDATE requests SET fingerprint = ''",
        "TRUNCATE transfers CASCADE",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    assert await balance(ledger, user("alice")) == 100


async def test_the_database_refuses_a_negative_user_balance(ledger: Ledger, engine: AsyncEngine) -> None:
    await fund(ledger, "alice", 5)
    with pytest.raises(DBAPIError, match="check"):
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE balances SET posted = -1 WHERE floor = 0 AND posted = 5"))


async def test_mint_may_go_negative_and_service_moves_system_money(ledger: Ledger, engine: AsyncEngine) -> None:
    await ledger.transfer(SERVICE, transfer("r1", leg(MINT, user("alice"), 25, TransferType.REWARD, Currency.BLUE)))
    assert await balance(ledger, MINT, Currency.BLUE) == -25
    with pytest.raises(InsufficientFunds):
        await ledger.transfer(SERVICE, transfer("r2", leg(FEES, user("alice"), 1, TransferType.COMPENSATION)))
    assert await run_audit(engine) == []
