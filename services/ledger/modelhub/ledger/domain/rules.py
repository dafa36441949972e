"""The money rules: who may move what, how legs change balances, holds, the generation split. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from modelhub.core.errors import PermissionDenied
from modelhub.ledger.domain.commands import Actor
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
    SystemAccount,
    TransferType,
)

INT64_MIN = -(2**63)

_ANY_USER: Callable[[Owner], bool] = lambda owner: owner.is_user  # noqa: E731


def _system(account: SystemAccount) -> Callable[[Owner], bool]:
    return lambda owner: owner == Owner.system(account)


USER_TRANSFERS: Mapping[TransferType, Callable[[Owner], bool]] = {
    TransferType.TIP: _ANY_USER,
    TransferType.FEE: _system(SystemAccount.PLATFORM_FEES),
    TransferType.GENERATION: _system(SystemAccount.GENERATION_ESCROW),
    TransferType.BOUNTY: _system(SystemAccount.BOUNTY_ESCROW),
    TransferType.BOUNTY_ENTRY: _system(SystemAccount.BOUNTY_ESCROW),
}
"""Transfer types a user may start from their own account, and which credit accounts each may go to.
Everything else (rewards, purchases, refunds, escrow releases, compensation) needs the service role."""


def authorize_legs(actor: Actor, legs: Iterable[Leg]) -> None:
    """Raise PermissionDenied unless `actor` may post every leg."""
    if actor.is_service:
        return
    for leg in legs:
        if not leg.debit.is_user or leg.debit.name != actor.id:
            raise PermissionDenied(
                f"you may only debit your own accounts, not {leg.debit}",
                reason="NOT_ACCOUNT_OWNER",
                metadata={"account": str(leg.debit)},
            )
        allowed = USER_TRANSFERS.get(leg.type)
        if allowed is None:
            raise PermissionDenied(
                f"{leg.type.value} transfers are made by platform services only",
                reason="SERVICE_ONLY_TRANSFER",
                metadata={"type": leg.type.value},
            )
        if not allowed(leg.credit):
            raise PermissionDenied(
                f"a {leg.type.value} transfer cannot credit {leg.credit}",
                reason="CREDIT_ACCOUNT_NOT_ALLOWED",
                metadata={"type": leg.type.value, "account": str(leg.credit)},
            )


def authorize_debit_of(actor: Actor, user_id: str) -> None:
    """A user may spend only their own Buzz; services may act for anyone."""
    if not actor.is_service and actor.id != user_id:
        raise PermissionDenied(
            f"you may only debit your own accounts, not user:{user_id}",
            reason="NOT_ACCOUNT_OWNER",
            metadata={"account": f"user:{user_id}"},
        )


def authorize_service(actor: Actor, what: str) -> None:
    if not actor.is_service:
        raise PermissionDenied(f"{what} is done by platform services only", reason="SERVICE_ONLY")


def authorize_read(actor: Actor, owner: Owner) -> None:
    """Users read their own accounts; services, admins and moderators read any."""
    if actor.is_service or actor.may_read_all:
        return
    if not owner.is_user or owner.name != actor.id:
        raise PermissionDenied(f"you may not read account {owner}", reason="NOT_ACCOUNT_OWNER")


@dataclass(frozen=True)
class PostedLeg:
    """A leg with the posted balances of both accounts right after it."""

    leg: Leg
    debit_after: int
    credit_after: int


@dataclass
class Plan:
    """The effect of a request on the locked balances, computed before anything is written."""

    balances: dict[AccountKey, BalanceState]
    posted: list[PostedLeg] = field(default_factory=list)
    changed: set[AccountKey] = field(default_factory=set)

    def _set(self, state: BalanceState) -> None:
        self.balances[state.key] = state
        self.changed.add(state.key)

    def post(self, leg: Leg) -> PostedLeg:
        """Move leg.amount from debit to credit; InsufficientFunds if the debit would pass its floor."""
        debit = self.balances[leg.debit_key]
        debit_posted = debit.posted - leg.amount
        if debit.floor is not None and debit_posted - debit.pending < debit.floor:
            raise InsufficientFunds(str(debit.key), debit.available - (debit.floor or 0), leg.amount)
        if debit_posted < INT64_MIN:
            raise BalanceOverflow(str(debit.key))
        self._set(replace(debit, posted=debit_posted))
        credit = self.balances[leg.credit_key]
        if credit.posted + leg.amount > INT64_MAX:
            raise BalanceOverflow(str(credit.key))
        self._set(replace(credit, posted=credit.posted + leg.amount))
        posted = PostedLeg(leg, debit_posted, credit.posted + leg.amount)
        self.posted.append(posted)
        return posted

    def reserve(self, key: AccountKey, amount: int) -> None:
        """Hold `amount` on an account (phase one of a two-phase transfer)."""
        state = self.balances[key]
        if state.floor is not None and state.available - amount < state.floor:
            raise InsufficientFunds(str(key), state.available - (state.floor or 0), amount)
        if state.pending + amount > INT64_MAX or state.posted - state.pending - amount < INT64_MIN:
            raise BalanceOverflow(str(key))
        self._set(replace(state, pending=state.pending + amount))

    def release(self, key: AccountKey, amount: int) -> None:
        """Give back a reservation (void, expiry, or before capturing)."""
        state = self.balances[key]
        if state.pending < amount:
            raise AssertionError(f"{key} holds {state.pending}, cannot release {amount}")
        self._set(replace(state, pending=state.pending - amount))


def plan_transfer(legs: Iterable[Leg], balances: Mapping[AccountKey, BalanceState]) -> Plan:
    """Apply linked legs in order, all or nothing (raises on the first one that cannot be posted)."""
    plan = Plan(dict(balances))
    for leg in legs:
        plan.post(leg)
    return plan


def split_generation(user_id: str, amount: int, blue: BalanceState, yellow: BalanceState) -> tuple[int, int]:
    """How much of `amount` to draw from blue and from yellow: blue first, then yellow."""
    blue_available = max(0, blue.available - (blue.floor or 0))
    yellow_available = max(0, yellow.available - (yellow.floor or 0))
    from_blue = min(blue_available, amount)
    from_yellow = amount - from_blue
    if from_yellow > yellow_available:
        raise InsufficientFunds(f"user:{user_id}/blue+yellow", blue_available + yellow_available, amount)
    return from_blue, from_yellow


def generation_legs(user_id: str, from_blue: int, from_yellow: int) -> list[Leg]:
    escrow = Owner.system(SystemAccount.GENERATION_ESCROW)
    user = Owner.user(user_id)
    legs = []
    if from_blue:
        legs.append(Leg(TransferType.GENERATION, Currency.BLUE, user, escrow, from_blue))
    if from_yellow:
        legs.append(Leg(TransferType.GENERATION, Currency.YELLOW, user, escrow, from_yellow))
    return legs


class HoldStatus(StrEnum):
    PENDING = "pending"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"


@dataclass(frozen=True)
class HoldState:
    id: str
    key: str
    principal_id: str
    leg: Leg
    memo: str
    metadata: Mapping[str, str]
    created_at: datetime
    expires_at: datetime
    status: HoldStatus = HoldStatus.PENDING
    captured_amount: int = 0
    capture_transfer_id: str = ""
    resolved_at: datetime | None = None

    def is_due(self, now: datetime) -> bool:
        return self.status is HoldStatus.PENDING and now >= self.expires_at


def check_pending(hold: HoldState) -> None:
    if hold.status is not HoldStatus.PENDING:
        raise HoldAlreadyResolved(hold.id, hold.status.value)


def capture_amount(hold: HoldState, requested: int | None) -> int:
    """The amount a capture posts: the whole hold, or a part of it."""
    amount = hold.leg.amount if requested is None else requested
    if amount > hold.leg.amount:
        raise CaptureExceedsHold(hold.id, hold.leg.amount, amount)
    return amount
