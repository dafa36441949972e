"""The in-process batcher: concurrent requests share transactions without losing any guarantee."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from modelhub.core.errors import DomainError
from modelhub.ledger.adapters.repository import BatchRepository, BatchWrite, LedgerRepository
from modelhub.ledger.audit import run_audit
from modelhub.ledger.bootstrap import build_ledger
from modelhub.ledger.domain.commands import Actor
from modelhub.ledger.domain.errors import IdempotencyKeyReused
from modelhub.ledger.domain.model import Owner, SystemAccount, TransferType
from modelhub.ledger.handlers import Ledger

from .helpers import balance, count, fund, leg, transfer, user

FEES = Owner.system(SystemAccount.PLATFORM_FEES)


async def outcome(ledger: Ledger, payer: str, key: str, payee: str, amount: int) -> str:
    legs = [leg(user(payer), user(payee), amount), leg(user(payer), FEES, 1, TransferType.FEE)]
    try:
        records = await ledger.transfer(Actor(payer), transfer(key, *legs))
    except DomainError as error:
        return error.reason
    return ",".join(r.id for r in records)


async def test_concurrent_requests_share_transactions(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b", "c"):
        await fund(ledger, name, 1_000)
    batches: list[int] = []
    write = Ledger._write_batch

    async def counting(self: Ledger, jobs: list[object], held: object) -> list[object]:
        batches.append(len(jobs))
        return await write(self, jobs, held)  # type: ignore[arg-type]

    monkeypatch.setattr(Ledger, "_write_batch", counting)
    results = await asyncio.gather(*(outcome(ledger, "abc"[i % 3], f"t{i}", "abc"[(i + 1) % 3], 5) for i in range(60)))
    assert all("," in r for r in results)
    assert sum(batches) == 60 and len(batches) < 60
    assert await balance(ledger, FEES) == 60


async def test_two_processes_race_on_the_same_rows_and_keys(engine: AsyncEngine) -> None:
    """Two batchers (as two service processes would have) on one database: requests, duplicates among
    them, overlap on rows and on keys. Each key has one effect and one answer; no balance goes negative."""
    first, second = build_ledger(engine), build_ledger(engine)
    await fund(first, "alice", 300)
    await fund(first, "bob", 300)
    rng = random.Random(7)
    calls = []
    for i in range(80):
        payer, payee = rng.choice([("alice", "bob"), ("bob", "alice")])
        amount = rng.randint(1, 40)
        calls += [(rng.choice([first, second]), payer, f"r{i}", payee, amount) for _ in range(rng.randint(1, 3))]
    rng.shuffle(calls)
    results = await asyncio.gather(*(outcome(*call) for call in calls))
    answers: dict[str, set[str]] = {}
    for (_, _, key, _, _), result in zip(calls, results, strict=True):
        answers.setdefault(key, set()).add(result)
    assert all(len(a) == 1 for a in answers.values()), answers
    applied = {k for k, a in answers.items() if "," in next(iter(a))}
    refused = {k for k, a in answers.items() if next(iter(a)) == "INSUFFICIENT_FUNDS"}
    assert applied and refused and applied | refused == set(answers)
    async with engine.connect() as conn:
        keys = (
            await conn.execute(
                text("SELECT count(DISTINCT idempotency_key) FROM transfers WHERE idempotency_key ~ '^r'")
            )
        ).scalar_one()
    assert keys == len(applied)
    assert await balance(first, user("alice")) >= 0 and await balance(first, user("bob")) >= 0
    assert await run_audit(engine) == []


async def test_two_batches_in_flight_keep_every_guarantee(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """With two batches written at a time, duplicates of a key never share a moment in the database (the
    later waits for a later batch) and overlapping rows are taken in one order: one effect and one answer
    per key, no balance below zero."""
    ledger = build_ledger(engine, batches_in_flight=2)
    await fund(ledger, "alice", 200)
    await fund(ledger, "bob", 200)
    writing = [0, 0]  # now, most
    write = Ledger._write_batch

    async def tracking(self: Ledger, jobs: list[object], held: object) -> list[object]:
        writing[0] += 1
        writing[1] = max(writing)
        try:
            return await write(self, jobs, held)  # type: ignore[arg-type]
        finally:
            writing[0] -= 1

    monkeypatch.setattr(Ledger, "_write_batch", tracking)
    rng = random.Random(11)

    async def staggered(call: tuple[Ledger, str, str, str, int], delay: float) -> str:
        await asyncio.sleep(delay)
        return await outcome(*call)

    calls = []
    for i in range(60):
        payer, payee = rng.choice([("alice", "bob"), ("bob", "alice")])
        amount = rng.randint(1, 40)
        calls += [(ledger, payer, f"d{i}", payee, amount)] * rng.randint(1, 3)
    rng.shuffle(calls)
    results = await asyncio.gather(*(staggered(call, rng.random() * 0.2) for call in calls))
    assert writing[1] == 2
    answers: dict[str, set[str]] = {}
    for (_, _, key, _, _), result in zip(calls, results, strict=True):
        answers.setdefault(key, set()).add(result)
    assert all(len(a) == 1 for a in answers.values()), answers
    assert {next(iter(a)) for a in answers.values()} & {"INSUFFICIENT_FUNDS"}
    assert await balance(ledger, user("alice")) >= 0 and await balance(ledger, user("bob")) >= 0
    assert await run_audit(engine) == []


async def test_same_key_other_content_in_one_batch(ledger: Ledger) -> None:
    await fund(ledger, "alice", 100)
    results = await asyncio.gather(
        outcome(ledger, "alice", "dup", "bob", 10), outcome(ledger, "alice", "dup", "bob", 11)
    )
    assert results[0].count(",") == 1
    assert results[1] == IdempotencyKeyReused("dup").reason
    assert await balance(ledger, user("bob")) == 10


async def test_a_failed_batch_falls_back_to_one_transaction_each(
    ledger: Ledger, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fund(ledger, "alice", 100)
    post = BatchRepository.post_batch
    failures = [RuntimeError("the database hiccuped")]

    async def flaky(self: BatchRepository, batch: BatchWrite) -> bool:
        if failures:
            raise failures.pop()
        return await post(self, batch)

    monkeypatch.setattr(BatchRepository, "post_batch", flaky)
    results = await asyncio.gather(*(outcome(ledger, "alice", f"f{i}", "bob", 30) for i in range(4)))
    assert sorted(r.count(",") for r in results if "," in r) == [1, 1, 1]
    assert results.count("INSUFFICIENT_FUNDS") == 1
    assert await balance(ledger, user("bob")) == 90
    assert await count(engine, "requests") == 1 + 4
    assert await run_audit(engine) == []


async def test_a_key_taken_between_lookup_and_write_answers_as_a_retry(
    ledger: Ledger, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another transaction records the key after the batch looked it up: the batch's write fails as a whole
    (nothing of it is written, its COMMIT is skipped), and the request, decided again, meets the stored key."""
    await fund(ledger, "alice", 100)
    post = BatchRepository.post_batch
    stolen: list[object] = []

    async def steal(self: BatchRepository, batch: BatchWrite) -> None:
        if not stolen:
            request, _ = batch.requests[0]
            stolen.append(request)
            async with engine.begin() as conn:
                other = replace(request, request_id=uuid7(), fingerprint="another request's content")
                assert await LedgerRepository(conn, ledger.store).insert_request(other)
        await post(self, batch)

    monkeypatch.setattr(BatchRepository, "post_batch", steal)
    results = await asyncio.gather(*(outcome(ledger, "alice", key, "bob", 10) for key in ("k1", "k2")))
    assert stolen and results[0] == IdempotencyKeyReused("k1").reason
    assert results[1].count(",") == 1  # its batch-mate is written on the next try
    assert await balance(ledger, user("bob")) == 10
    assert await count(engine, "transfers") == 1 + 2


async def test_without_batching(engine: AsyncEngine) -> None:
    ledger = Ledger(build_ledger(engine).engine, build_ledger(engine).store, batching=False)
    await fund(ledger, "alice", 50)
    results = await ledger.batch(
        Actor("alice"),
        [transfer(f"n{i}", leg(user("alice"), user("bob"), 20)) for i in range(3)],
    )
    assert [isinstance(r, DomainError) for r in results] == [False, False, True]
    assert await run_audit(engine) == []
