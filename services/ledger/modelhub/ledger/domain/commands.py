"""Commands (what a caller asks for), their validation, and their fingerprints for idempotency.

Validation is pure and complete: a command that passes it can only fail on the ledger's state
(insufficient funds, a resolved hold), never on its own content.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from modelhub.core.errors import FieldViolation, InvalidArgument
from modelhub.ledger.domain.model import (
    INT64_MAX,
    Currency,
    Leg,
    Owner,
    OwnerKind,
    SystemAccount,
    TransferType,
)

MAX_KEY_LENGTH = 128
MAX_MEMO_LENGTH = 500
MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY_LENGTH = 64
MAX_METADATA_VALUE_LENGTH = 512
MAX_USER_ID_LENGTH = 128
MAX_LEGS = 16
MAX_BATCH = 500
BLUE_TYPES = frozenset(
    {
        TransferType.GENERATION,
        TransferType.REWARD,
        TransferType.PURCHASE,
        TransferType.REFUND,
        TransferType.COMPENSATION,
        TransferType.CHARGEBACK,
    }
)
"""What blue Buzz may move as: spent on generation, or granted/returned by the platform (never a tip)."""
MIN_HOLD_TIMEOUT = timedelta(seconds=1)
MAX_HOLD_TIMEOUT = timedelta(days=30)


@dataclass(frozen=True)
class Actor:
    """Who asks: the authenticated principal's id and whether it is a service."""

    id: str
    is_service: bool = False
    may_read_all: bool = False


@dataclass(frozen=True)
class RawLeg:
    """A leg as requested, before validation (unknown enum values are None)."""

    type: TransferType | None
    currency: Currency | None
    debit: Owner | None
    credit: Owner | None
    amount: int


@dataclass(frozen=True)
class TransferCommand:
    key: str
    legs: tuple[Leg, ...]
    memo: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    operation: str = "transfer"

    def fingerprint(self) -> str:
        return fingerprint(
            self.operation,
            {
                "legs": [_leg_json(leg) for leg in self.legs],
                "memo": self.memo,
                "metadata": dict(self.metadata),
            },
        )


@dataclass(frozen=True)
class PayForGenerationCommand:
    key: str
    user_id: str
    amount: int
    memo: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    operation: str = "generation"

    def fingerprint(self) -> str:
        return fingerprint(
            self.operation,
            {"user": self.user_id, "amount": self.amount, "memo": self.memo, "metadata": dict(self.metadata)},
        )


@dataclass(frozen=True)
class PlaceHoldCommand:
    key: str
    leg: Leg
    timeout: timedelta
    memo: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    operation: str = "hold"

    def fingerprint(self) -> str:
        return fingerprint(
            self.operation,
            {
                "leg": _leg_json(self.leg),
                "timeout_us": self.timeout // timedelta(microseconds=1),
                "memo": self.memo,
                "metadata": dict(self.metadata),
            },
        )


@dataclass(frozen=True)
class CaptureHoldCommand:
    key: str
    hold_id: str
    amount: int | None
    """None captures the whole hold."""
    operation: str = "capture"

    def fingerprint(self) -> str:
        return fingerprint(self.operation, {"hold": self.hold_id, "amount": self.amount})


@dataclass(frozen=True)
class VoidHoldCommand:
    key: str
    hold_id: str
    operation: str = "void"

    def fingerprint(self) -> str:
        return fingerprint(self.operation, {"hold": self.hold_id})


Command = TransferCommand | PayForGenerationCommand | PlaceHoldCommand | CaptureHoldCommand | VoidHoldCommand


def fingerprint(operation: str, content: dict[str, Any]) -> str:
    """SHA-256 over a canonical JSON form of the request's content."""
    canonical = json.dumps([operation, content], sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _leg_json(leg: Leg) -> list[object]:
    return [leg.type.value, leg.currency.value, str(leg.debit), str(leg.credit), leg.amount]


class _Violations:
    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field_name: str, description: str) -> None:
        self.items.append(FieldViolation(field_name, description))

    def raise_if_any(self) -> None:
        if self.items:
            summary = "; ".join(f"{v.field}: {v.description}" for v in self.items[:5])
            raise InvalidArgument(f"invalid request: {summary}", violations=self.items)


def _check_text(v: _Violations, name: str, value: str, max_length: int, *, required: bool = False) -> None:
    if required and not value:
        v.add(name, "must not be empty")
        return
    if len(value) > max_length:
        v.add(name, f"must be at most {max_length} characters")
    if "\x00" in value:
        v.add(name, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        v.add(name, "must be valid UTF-8")


def _check_key(v: _Violations, value: str, name: str = "idempotency_key") -> None:
    _check_text(v, name, value, MAX_KEY_LENGTH, required=True)
    if value and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        v.add(name, "must not contain control characters")


def _check_memo_metadata(v: _Violations, memo: str, metadata: Mapping[str, str]) -> None:
    _check_text(v, "memo", memo, MAX_MEMO_LENGTH)
    if len(metadata) > MAX_METADATA_ENTRIES:
        v.add("metadata", f"must have at most {MAX_METADATA_ENTRIES} entries")
    for key, value in metadata.items():
        _check_text(v, f"metadata[{key[:64]!r}]", key, MAX_METADATA_KEY_LENGTH, required=True)
        _check_text(v, f"metadata[{key[:64]!r}]", value, MAX_METADATA_VALUE_LENGTH)


def _check_amount(v: _Violations, name: str, amount: int) -> None:
    if amount <= 0:
        v.add(name, "must be positive")
    elif amount > INT64_MAX:
        v.add(name, "must fit in a signed 64-bit integer")


def _check_owner(v: _Violations, name: str, owner: Owner | None) -> None:
    if owner is None:
        v.add(name, "must name a user or a system account")
        return
    if owner.kind is OwnerKind.USER:
        _check_text(v, f"{name}.user_id", owner.name, MAX_USER_ID_LENGTH, required=True)
    elif owner.name not in {s.value for s in SystemAccount}:
        v.add(f"{name}.system", "unknown system account")


def _check_leg(v: _Violations, prefix: str, raw: RawLeg) -> Leg | None:
    before = len(v.items)
    if raw.type is None:
        v.add(f"{prefix}.type", "must be a known transfer type")
    if raw.currency is None:
        v.add(f"{prefix}.currency", "must be yellow or blue")
    _check_owner(v, f"{prefix}.debit", raw.debit)
    _check_owner(v, f"{prefix}.credit", raw.credit)
    _check_amount(v, f"{prefix}.amount", raw.amount)
    if raw.debit is not None and raw.debit == raw.credit:
        v.add(f"{prefix}.credit", "must differ from the debit account")
    if raw.currency is Currency.BLUE and raw.type is not None and raw.type not in BLUE_TYPES:
        v.add(f"{prefix}.currency", f"blue Buzz is generation-only: it cannot move as {raw.type.value}")
    if len(v.items) > before:
        return None
    assert raw.type is not None and raw.currency is not None and raw.debit is not None and raw.credit is not None
    return Leg(raw.type, raw.currency, raw.debit, raw.credit, raw.amount)


def _check_leg_sums(v: _Violations, legs: tuple[Leg, ...]) -> None:
    """Amounts moved out of / into one account by one request must themselves fit in int64."""
    totals: dict[tuple[Owner, Currency, str], int] = {}
    for leg in legs:
        for side, owner in (("debit", leg.debit), ("credit", leg.credit)):
            key = (owner, leg.currency, side)
            totals[key] = totals.get(key, 0) + leg.amount
            if totals[key] > INT64_MAX:
                v.add("legs", f"the amounts of {side} account {owner} overflow a signed 64-bit integer")
                return


def transfer_command(
    key: str, legs: list[RawLeg], memo: str = "", metadata: Mapping[str, str] | None = None
) -> TransferCommand:
    """A validated transfer of linked legs; raises InvalidArgument listing every problem."""
    v = _Violations()
    metadata = dict(metadata or {})
    _check_key(v, key)
    _check_memo_metadata(v, memo, metadata)
    if not legs:
        v.add("legs", "must not be empty")
    if len(legs) > MAX_LEGS:
        v.add("legs", f"must have at most {MAX_LEGS} legs")
    checked = [_check_leg(v, f"legs[{i}]", raw) for i, raw in enumerate(legs[:MAX_LEGS])]
    good = tuple(leg for leg in checked if leg is not None)
    if len(good) == len(legs):
        _check_leg_sums(v, good)
    v.raise_if_any()
    return TransferCommand(key, good, memo, metadata)


def tip_command(
    key: str,
    from_user: str,
    to_user: str,
    amount: int,
    fee_basis_points: int,
    memo: str = "",
    metadata: Mapping[str, str] | None = None,
) -> TransferCommand:
    """A tip of `amount` yellow Buzz: the creator gets it less the fee, which goes to platform-fees."""
    v = _Violations()
    _check_text(v, "from_user_id", from_user, MAX_USER_ID_LENGTH, required=True)
    _check_text(v, "to_user_id", to_user, MAX_USER_ID_LENGTH, required=True)
    _check_amount(v, "amount", amount)
    if from_user and from_user == to_user:
        v.add("to_user_id", "cannot tip yourself")
    v.raise_if_any()
    fee, net = split_fee(amount, fee_basis_points)
    tipper = Owner.user(from_user)
    legs = [RawLeg(TransferType.TIP, Currency.YELLOW, tipper, Owner.user(to_user), net)]
    if fee:
        legs.append(RawLeg(TransferType.FEE, Currency.YELLOW, tipper, Owner.system(SystemAccount.PLATFORM_FEES), fee))
    command = transfer_command(key, legs, memo, metadata)
    return TransferCommand(command.key, command.legs, command.memo, command.metadata, operation="tip")


def split_fee(amount: int, fee_basis_points: int) -> tuple[int, int]:
    """(fee, net) of `amount` at `fee_basis_points` (1/100 %), the fee rounded down; net stays positive."""
    if not 0 <= fee_basis_points < 10_000:
        raise ValueError("the fee must be at least 0 and below 100 %")
    fee = amount * fee_basis_points // 10_000
    return fee, amount - fee


def pay_for_generation_command(
    key: str, user_id: str, amount: int, memo: str = "", metadata: Mapping[str, str] | None = None
) -> PayForGenerationCommand:
    v = _Violations()
    metadata = dict(metadata or {})
    _check_key(v, key)
    _check_text(v, "user_id", user_id, MAX_USER_ID_LENGTH, required=True)
    _check_amount(v, "amount", amount)
    _check_memo_metadata(v, memo, metadata)
    v.raise_if_any()
    return PayForGenerationCommand(key, user_id, amount, memo, metadata)


def place_hold_command(
    key: str, raw: RawLeg, timeout: timedelta, memo: str = "", metadata: Mapping[str, str] | None = None
) -> PlaceHoldCommand:
    v = _Violations()
    metadata = dict(metadata or {})
    _check_key(v, key)
    _check_memo_metadata(v, memo, metadata)
    leg = _check_leg(v, "hold", raw)
    if not MIN_HOLD_TIMEOUT <= timeout <= MAX_HOLD_TIMEOUT:
        v.add("timeout", f"must be between {MIN_HOLD_TIMEOUT} and {MAX_HOLD_TIMEOUT}")
    v.raise_if_any()
    assert leg is not None
    return PlaceHoldCommand(key, leg, timeout, memo, metadata)


def _check_hold_id(v: _Violations, hold_id: str) -> None:
    _check_text(v, "hold_id", hold_id, 64, required=True)
    if hold_id:
        try:
            uuid.UUID(hold_id)
        except ValueError:
            v.add("hold_id", "must be a hold id (a UUID)")


def check_hold_id(hold_id: str) -> None:
    v = _Violations()
    _check_hold_id(v, hold_id)
    v.raise_if_any()


def capture_hold_command(key: str, hold_id: str, amount: int) -> CaptureHoldCommand:
    """`amount` 0 captures the whole hold."""
    v = _Violations()
    _check_key(v, key)
    _check_hold_id(v, hold_id)
    if amount < 0:
        v.add("amount", "must not be negative (0 captures the whole hold)")
    elif amount > INT64_MAX:
        v.add("amount", "must fit in a signed 64-bit integer")
    v.raise_if_any()
    return CaptureHoldCommand(key, hold_id, amount or None)


def void_hold_command(key: str, hold_id: str) -> VoidHoldCommand:
    v = _Violations()
    _check_key(v, key)
    _check_hold_id(v, hold_id)
    v.raise_if_any()
    return VoidHoldCommand(key, hold_id)


def check_owner(name: str, owner: Owner | None, currency: Currency | None) -> tuple[Owner, Currency]:
    """Validate an account reference of a read request."""
    v = _Violations()
    _check_owner(v, name, owner)
    if currency is None:
        v.add("currency", "must be yellow or blue")
    v.raise_if_any()
    assert owner is not None and currency is not None
    return owner, currency


def check_key(key: str) -> None:
    v = _Violations()
    _check_key(v, key)
    v.raise_if_any()


def check_batch_size(size: int) -> None:
    v = _Violations()
    if not 1 <= size <= MAX_BATCH:
        v.add("transfers", f"must hold 1 to {MAX_BATCH} transfers")
    v.raise_if_any()
