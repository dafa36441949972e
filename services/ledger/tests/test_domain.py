"""The money rules and validation, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelhub.core.errors import InvalidArgument, PermissionDenied
from modelhub.ledger.domain import commands
from modelhub.ledger.domain.commands import Actor, RawLeg
from modelhub.ledger.domain.errors import (
    BalanceOverflow,
    CaptureExceedsHold,
    HoldAlreadyResolved,
    InsufficientFunds,
)
from modelhub.ledger.domain.model import (
    INT64_MAX,
    AccountKey,
    BalanceState,
    Currency,
    Leg,
    Owner,
    OwnerKind,
    SystemAccount,
    TransferType,
    floor_of,
)
from modelhub.ledger.domain.rules import (
    HoldState,
    HoldStatus,
    Plan,
    authorize_legs,
    authorize_read,
    capture_amount,
    check_pending,
    plan_transfer,
    split_generation,
)

ALICE, BOB = Owner.user("alice"), Owner.user("bob")
MINT = Owner.system(SystemAccount.MINT)
FEES = Owner.system(SystemAccount.PLATFORM_FEES)
Y, B = Currency.YELLOW, Currency.BLUE


def raw(debit: Owner | None = ALICE, credit: Owner | None = BOB, amount: int = 10, **kw: object) -> RawLeg:
    values: dict[str, object] = {"type": TransferType.TIP, "currency": Y} | kw
    return RawLeg(values["type"], values["currency"], debit, credit, amount)  # type: ignore[arg-type]


def state(owner: Owner, posted: int, pending: int = 0, currency: Currency = Y, account_id: int = 1) -> BalanceState:
    return BalanceState(account_id, AccountKey(owner, currency), posted, pending, floor_of(owner))


def violations(error: pytest.ExceptionInfo[InvalidArgument]) -> set[str]:
    return {v.field for v in error.value.violations}


# -- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -1, -(2**63), 2**63])
def test_amount_must_be_a_positive_int64(amount: int) -> None:
    with pytest.raises(InvalidArgument) as error:
        commands.transfer_command("k", [raw(amount=amount)])
    assert violations(error) == {"legs[0].amount"}


def test_leg_sums_must_not_overflow() -> None:
    with pytest.raises(InvalidArgument) as error:
        commands.transfer_command("k", [raw(amount=INT64_MAX), raw(credit=FEES, amount=1, type=TransferType.FEE)])
    assert violations(error) == {"legs"}


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("", "idempotency_key"),
        ("x" * 129, "idempotency_key"),
        ("a\x00b", "idempotency_key"),
        ("a\nb", "idempotency_key"),
    ],
)
def test_bad_keys(key: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        commands.transfer_command(key, [raw()])
    assert violations(error) == {field}


def test_memo_and_metadata_are_bounded_and_valid_text() -> None:
    commands.transfer_command("k", [raw()], memo="é" * 500, metadata={"a": "b"})
    for memo in ("x" * 501, "bad\x00", "\udc80"):
        with pytest.raises(InvalidArgument) as error:
            commands.transfer_command("k", [raw()], memo=memo)
        assert violations(error) == {"memo"}
    with pytest.raises(InvalidArgument):
        commands.transfer_command("k", [raw()], metadata={str(i): "v" for i in range(33)})
    with pytest.raises(InvalidArgument):
        commands.transfer_command("k", [raw()], metadata={"": "v"})
    with pytest.raises(InvalidArgument):
        commands.transfer_command("k", [raw()], metadata={"k": "v" * 513})


def test_accounts_types_and_currencies() -> None:
    cases = [
        (raw(debit=None), "legs[0].debit"),
        (raw(credit=Owner.user("")), "legs[0].credit.user_id"),
        (raw(credit=Owner(OwnerKind.SYSTEM, "nope")), "legs[0].credit.system"),
        (raw(type=None), "legs[0].type"),
        (raw(currency=None), "legs[0].currency"),
        (raw(credit=ALICE), "legs[0].credit"),
        (raw(currency=B), "legs[0].currency"),  # blue is not tippable
        (raw(currency=B, type=TransferType.BOUNTY), "legs[0].currency"),
    ]
    for leg, field in cases:
        with pytest.raises(InvalidArgument) as error:
            commands.transfer_command("k", [leg])
        assert field in violations(error), (leg, violations(error))
    with pytest.raises(InvalidArgument):
        commands.transfer_command("k", [])
    with pytest.raises(InvalidArgument):
        commands.transfer_command("k", [raw()] * 17)
    commands.transfer_command("k", [raw(debit=MINT, currency=B, type=TransferType.REWARD)])


def test_hold_commands() -> None:
    with pytest.raises(InvalidArgument) as error:
        commands.place_hold_command("k", raw(), timedelta(0))
    assert violations(error) == {"timeout"}
    with pytest.raises(InvalidArgument):
        commands.place_hold_command("k", raw(), timedelta(days=31))
    with pytest.raises(InvalidArgument):
        commands.capture_hold_command("k", "not-a-uuid", 0)
    with pytest.raises(InvalidArgument):
        commands.capture_hold_command("k", "00000000-0000-0000-0000-000000000001", -5)
    assert commands.capture_hold_command("k", "00000000-0000-0000-0000-000000000001", 0).amount is None


def test_fingerprints_tell_content_apart() -> None:
    a = commands.transfer_command("k", [raw()], memo="m")
    assert a.fingerprint() == commands.transfer_command("k", [raw()], memo="m").fingerprint()
    assert a.fingerprint() != commands.transfer_command("k", [raw(amount=11)], memo="m").fingerprint()
    assert a.fingerprint() != commands.transfer_command("k", [raw()], memo="n").fingerprint()
    assert a.fingerprint() != commands.transfer_command("k", [raw()], memo="m", metadata={"x": "1"}).fingerprint()


def test_tip_splits_the_fee() -> None:
    tip = commands.tip_command("k", "alice", "bob", 101, 500)
    assert [(leg.type, leg.credit, leg.amount) for leg in tip.legs] == [
        (TransferType.TIP, BOB, 96),
        (TransferType.FEE, FEES, 5),
    ]
    assert [leg.amount for leg in commands.tip_command("k", "alice", "bob", 10, 0).legs] == [10]
    assert commands.split_fee(19, 500) == (0, 19)
    with pytest.raises(InvalidArgument):
        commands.tip_command("k", "alice", "alice", 10, 0)


# -- rules ------------------------------------------------------------------------------------------------


def test_users_debit_only_their_own_accounts_and_only_user_types() -> None:
    alice = Actor("alice")
    authorize_legs(alice, [Leg(TransferType.TIP, Y, ALICE, BOB, 1)])
    authorize_legs(alice, [Leg(TransferType.FEE, Y, ALICE, FEES, 1)])
    for leg, reason in [
        (Leg(TransferType.TIP, Y, BOB, ALICE, 1), "NOT_ACCOUNT_OWNER"),
        (Leg(TransferType.REWARD, Y, MINT, ALICE, 1), "NOT_ACCOUNT_OWNER"),
        (Leg(TransferType.REFUND, Y, ALICE, BOB, 1), "SERVICE_ONLY_TRANSFER"),
        (Leg(TransferType.FEE, Y, ALICE, BOB, 1), "CREDIT_ACCOUNT_NOT_ALLOWED"),
        (Leg(TransferType.TIP, Y, ALICE, MINT, 1), "CREDIT_ACCOUNT_NOT_ALLOWED"),
    ]:
        with pytest.raises(PermissionDenied) as error:
            authorize_legs(alice, [leg])
        assert error.value.reason == reason
    authorize_legs(Actor("svc", is_service=True), [Leg(TransferType.REWARD, Y, MINT, ALICE, 1)])
    authorize_read(Actor("alice"), ALICE)
    authorize_read(Actor("mod", may_read_all=True), BOB)
    with pytest.raises(PermissionDenied):
        authorize_read(Actor("alice"), BOB)


def test_plan_is_all_or_nothing_and_respects_floors() -> None:
    balances = {s.key: s for s in (state(ALICE, 10), state(BOB, 0, account_id=2), state(FEES, 0, account_id=3))}
    plan = plan_transfer([Leg(TransferType.TIP, Y, ALICE, BOB, 9), Leg(TransferType.FEE, Y, ALICE, FEES, 1)], balances)
    assert [p.debit_after for p in plan.posted] == [1, 0]
    with pytest.raises(InsufficientFunds):
        plan_transfer([Leg(TransferType.TIP, Y, ALICE, BOB, 9), Leg(TransferType.FEE, Y, ALICE, FEES, 2)], balances)
    assert balances[AccountKey(ALICE, Y)].posted == 10  # the input is untouched
    mint = {s.key: s for s in (state(MINT, -5), state(ALICE, 0, account_id=2))}
    assert plan_transfer([Leg(TransferType.PURCHASE, Y, MINT, ALICE, 100)], mint).posted[0].debit_after == -105
    with pytest.raises(BalanceOverflow):
        plan_transfer(
            [Leg(TransferType.PURCHASE, Y, MINT, ALICE, 1)],
            {**mint, AccountKey(ALICE, Y): state(ALICE, INT64_MAX, account_id=2)},
        )


def test_reservations_count_against_the_floor() -> None:
    plan = Plan({AccountKey(ALICE, Y): state(ALICE, 10, pending=4)})
    with pytest.raises(InsufficientFunds):
        plan.reserve(AccountKey(ALICE, Y), 7)
    plan.reserve(AccountKey(ALICE, Y), 6)
    assert plan.balances[AccountKey(ALICE, Y)].available == 0
    plan.release(AccountKey(ALICE, Y), 10)
    assert plan.balances[AccountKey(ALICE, Y)].pending == 0


@pytest.mark.parametrize(
    ("blue", "yellow", "amount", "split"),
    [(10, 10, 5, (5, 0)), (10, 10, 15, (10, 5)), (0, 10, 10, (0, 10)), (10, 10, 20, (10, 10))],
)
def test_generation_draws_blue_first(blue: int, yellow: int, amount: int, split: tuple[int, int]) -> None:
    assert split_generation("alice", amount, state(ALICE, blue, currency=B), state(ALICE, yellow)) == split


def test_generation_needs_enough_of_both() -> None:
    with pytest.raises(InsufficientFunds):
        split_generation("alice", 21, state(ALICE, 10, currency=B), state(ALICE, 10, pending=0))
    with pytest.raises(InsufficientFunds):
        split_generation("alice", 15, state(ALICE, 10, currency=B), state(ALICE, 10, pending=6))


def test_hold_rules() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    hold = HoldState(
        "h", "k", "alice", Leg(TransferType.GENERATION, Y, ALICE, FEES, 10), "", {}, now, now + timedelta(seconds=5)
    )
    assert capture_amount(hold, None) == 10
    assert capture_amount(hold, 4) == 4
    with pytest.raises(CaptureExceedsHold):
        capture_amount(hold, 11)
    assert not hold.is_due(now) and hold.is_due(now + timedelta(seconds=5))
    check_pending(hold)
    with pytest.raises(HoldAlreadyResolved):
        check_pending(HoldState(**{**hold.__dict__, "status": HoldStatus.VOIDED}))
