"""What the ledger hands back: posted transfers, postings, balances, holds, stored outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from modelhub.ledger.domain.errors import LedgerFailure
from modelhub.ledger.domain.model import AccountKey, Leg
from modelhub.ledger.domain.rules import HoldState


@dataclass(frozen=True)
class TransferRecord:
    id: str
    idempotency_key: str
    principal_id: str
    leg_index: int
    leg: Leg
    memo: str
    metadata: Mapping[str, str]
    hold_id: str
    created_at: datetime


@dataclass(frozen=True)
class PostingRecord:
    seq: int
    amount: int
    balance_after: int
    transfer: TransferRecord


@dataclass(frozen=True)
class BalanceView:
    key: AccountKey
    posted: int
    pending: int

    @property
    def available(self) -> int:
        return self.posted - self.pending


@dataclass(frozen=True)
class CaptureResult:
    hold: HoldState
    transfer: TransferRecord
    released: int


@dataclass(frozen=True)
class VoidResult:
    hold: HoldState
    released: int


@dataclass(frozen=True)
class Outcome:
    """A request's stored outcome, found by its idempotency key."""

    operation: str
    transfers: list[TransferRecord] = field(default_factory=list)
    hold: HoldState | None = None
    failure: LedgerFailure | None = None
