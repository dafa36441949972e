"""Domain events the ledger records with every change (published as ledger.* events)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from modelhub.ledger.domain.model import Leg


@dataclass(frozen=True)
class TransferPosted:
    transfer_id: str
    idempotency_key: str
    principal_id: str
    leg_index: int
    leg_count: int
    leg: Leg
    memo: str
    metadata: Mapping[str, str]
    debit_balance_after: int
    credit_balance_after: int


@dataclass(frozen=True)
class HoldPlaced:
    hold_id: str
    idempotency_key: str
    principal_id: str
    leg: Leg
    memo: str
    metadata: Mapping[str, str]
    expires_at: datetime


@dataclass(frozen=True)
class HoldCaptured:
    hold_id: str
    transfer_id: str
    leg: Leg
    captured_amount: int
    released_amount: int
    debit_balance_after: int
    credit_balance_after: int


@dataclass(frozen=True)
class HoldVoided:
    hold_id: str
    released_amount: int


@dataclass(frozen=True)
class HoldExpired:
    hold_id: str
    released_amount: int


LedgerEvent = TransferPosted | HoldPlaced | HoldCaptured | HoldVoided | HoldExpired
