"""Two-phase transfers: hold, capture (full or partial), void, expiry; races between resolutions."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.errors import DomainError, PermissionDenied
from modelhub.ledger.audit import run_audit
from modelhub.ledger.domain import commands
from modelhub.ledger.domain.commands import Actor
from modelhub.ledger.domain.errors import HoldAlreadyResolved, HoldExpired, HoldNotFound, InsufficientFunds
from modelhub.ledger.domain.model import Currency, Owner, SystemAccount, TransferType
from modelhub.ledger.domain.rules import HoldState, HoldStatus
from modelhub.ledger.handlers import Ledger

from .conftest import FakeClock
from .helpers import SERVICE, fund, leg, user

ALICE = Actor("alice")
ESCROW = Owner.system(SystemAccount.GENERATION_ESCROW)


async def place(ledger: Ledger, key: str, amount: int, timeout: float = 60) -> HoldState:
    return await ledger.place_hold(
        ALICE,
        commands.place_hold_command(
            key, leg(user("alice"), ESCROW, amount, TransferType.GENERATION), timedelta(seconds=timeout)
        ),
    )


async def available(ledger: Ledger, owner: Owner) -> tuple[int, int]:
    view = await ledger.balance(SERVICE, owner, Currency.YELLOW)
    return view.posted, view.pending


async def test_hold_reserves_and_full_capture_posts(ledger: Ledger, engine: AsyncEngine) -> None:
    await fund(ledger, "alice", 100)
    hold = await place(ledger, "h1", 60)
    assert hold.status is HoldStatus.PENDING
    assert await available(ledger, user("alice")) == (100, 60)
    with pytest.raises(InsufficientFunds):  # the hold counts against what alice can spend
        await ledger.transfer(ALICE, commands.transfer_command("spend", [leg(user("alice"), user("bob"), 41)]))
    result = await ledger.capture_hold(SERVICE, commands.capture_hold_command("c1", hold.id, 0))
    assert (result.hold.status, result.hold.captured_amount, result.released) == (HoldStatus.CAPTURED, 60, 0)
    assert result.transfer.hold_id == hold.id and result.transfer.leg.amount == 60
    assert await available(ledger, user("alice")) == (40, 0)
    assert await available(ledger, ESCROW) == (60, 0)
    # Replaying the capture returns the same result; another resolution is refused.
    again = await ledger.capture_hold(SERVICE, commands.capture_hold_command("c1", hold.id, 0))
    assert again.transfer == result.transfer and again.hold.status is HoldStatus.CAPTURED
    with pytest.raises(HoldAlreadyResolved):
        await ledger.void_hold(SERVICE, commands.void_hold_command("v1", hold.id))
    assert await run_audit(engine) == []


async def test_partial_capture_releases_the_remainder(ledger: Ledger, engine: AsyncEngine) -> None:
    await fund(ledger, "alice", 100)
    hold = await place(ledger, "h1", 60)
    result = await ledger.capture_hold(SERVICE, commands.capture_hold_command("c1", hold.id, 25))
    assert (result.hold.captured_amount, result.released) == (25, 35)
    assert await available(ledger, user("alice")) == (75, 0)
    assert await available(ledger, ESCROW) == (25, 0)
    with pytest.raises(DomainError) as error:
        await ledger.capture_hold(SERVICE, commands.capture_hold_command("c2", (await place(ledger, "h2", 10)).id, 11))
    assert error.value.reason == "CAPTURE_EXCEEDS_HOLD"
    assert await run_audit(engine) == []


async def test_void_releases_everything(ledger: Ledger, engine: AsyncEngine) -> None:
    await fund(ledger, "alice", 100)
    hold = await place(ledger, "h1", 60)
    result = await ledger.void_hold(SERVICE, commands.void_hold_command("v1", hold.id))
    assert (result.hold.status, result.released) == (HoldStatus.VOIDED, 60)
    assert await available(ledger, user("alice")) == (100, 0)
    with pytest.raises(HoldNotFound):
        await ledger.void_hold(SERVICE, commands.void_hold_command("v2", "00000000-0000-7000-8000-000000000000"))
    assert await run_audit(engine) == []


async def test_only_services_resolve_holds_and_users_hold_only_their_own(ledger: Ledger) -> None:
    await fund(ledger, "alice", 100)
    hold = await place(ledger, "h1", 10)
    with pytest.raises(PermissionDenied):
        await ledger.capture_hold(ALICE, commands.capture_hold_command("c1", hold.id, 0))
    with pytest.raises(PermissionDenied):
        await ledger.void_hold(Actor("bob"), commands.void_hold_command("v1", hold.id))
    with pytest.raises(PermissionDenied):
        await ledger.place_hold(
            Actor("bob"),
            commands.place_hold_command(
                "h2", leg(user("alice"), ESCROW, 1, TransferType.GENERATION), timedelta(minutes=1)
            ),
        )


async def test_capture_and_void_race_exactly_one_wins(ledger: Ledger, engine: AsyncEngine) -> None:
    await fund(ledger, "alice", 10_000)
    for round_ in range(15):
        hold = await place(ledger, f"h{round_}", 100)
        racers = [
            ledger.capture_hold(SERVICE, commands.capture_hold_command(f"c{round_}-{i}", hold.id, 10 + i))
            for i in range(3)
        ] + [ledger.void_hold(SERVICE, commands.void_hold_command(f"v{round_}-{i}", hold.id)) for i in range(3)]
        results = await asyncio.gather(*racers, return_exceptions=True)
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(e, HoldAlreadyResolved) for e in losers), losers
    posted, pending = await available(ledger, user("alice"))
    assert pending == 0
    assert await run_audit(engine) == []
    assert posted == 10_000 - (await available(ledger, ESCROW))[0]


async def test_expiry_by_timeout_with_an_injected_clock(ledger: Ledger, engine: AsyncEngine, clock: FakeClock) -> None:
    await fund(ledger, "alice", 100)
    soon = await place(ledger, "h1", 30, timeout=10)
    later = await place(ledger, "h2", 20, timeout=100)
    assert await ledger.expire_due_holds() == 0
    clock.advance(seconds=10)
    assert await ledger.expire_due_holds() == 1
    assert (await ledger.get_hold(ALICE, soon.id)).status is HoldStatus.EXPIRED
    assert await available(ledger, user("alice")) == (100, 20)
    with pytest.raises(HoldAlreadyResolved) as error:
        await ledger.capture_hold(SERVICE, commands.capture_hold_command("c1", soon.id, 0))
    assert error.value.metadata["status"] == "expired"
    # A capture arriving after the timeout but before the sweep expires the hold itself, and fails.
    clock.advance(seconds=100)
    with pytest.raises(HoldExpired):
        await ledger.capture_hold(SERVICE, commands.capture_hold_command("c2", later.id, 0))
    assert (await ledger.get_hold(ALICE, later.id)).status is HoldStatus.EXPIRED
    assert await ledger.expire_due_holds() == 0
    assert await available(ledger, user("alice")) == (100, 0)
    assert await run_audit(engine) == []


async def test_expiry_races_with_capture(ledger: Ledger, engine: AsyncEngine, clock: FakeClock) -> None:
    await fund(ledger, "alice", 10_000)
    holds = [await place(ledger, f"h{i}", 10, timeout=5) for i in range(20)]
    clock.advance(seconds=5)
    captures = [ledger.capture_hold(SERVICE, commands.capture_hold_command(f"c{h.id}", h.id, 0)) for h in holds]
    results = await asyncio.gather(ledger.expire_due_holds(), *captures, return_exceptions=True)
    assert all(isinstance(r, HoldExpired | HoldAlreadyResolved) for r in results[1:]), results
    statuses = {(await ledger.get_hold(SERVICE, h.id)).status for h in holds}
    assert statuses == {HoldStatus.EXPIRED}
    assert await available(ledger, user("alice")) == (10_000, 0)
    assert await run_audit(engine) == []
