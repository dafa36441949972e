"""Domain events -> protobuf payloads (modelhub.events.v1), and the ledger's event registry."""

from __future__ import annotations

from typing import TypedDict

from google.protobuf.message import Message

from modelhub.core.events.registry import EventRegistry
from modelhub.events.v1 import ledger_pb2
from modelhub.ledger.domain import events
from modelhub.ledger.domain.model import Leg

TRANSFER_POSTED = "ledger.TransferPosted"
HOLD_PLACED = "ledger.HoldPlaced"
HOLD_CAPTURED = "ledger.HoldCaptured"
HOLD_VOIDED = "ledger.HoldVoided"
HOLD_EXPIRED = "ledger.HoldExpired"
PRODUCER = "ledger"


def make_registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(TRANSFER_POSTED, ledger_pb2.LedgerTransferPosted)
    registry.register(HOLD_PLACED, ledger_pb2.LedgerHoldPlaced)
    registry.register(HOLD_CAPTURED, ledger_pb2.LedgerHoldCaptured)
    registry.register(HOLD_VOIDED, ledger_pb2.LedgerHoldVoided)
    registry.register(HOLD_EXPIRED, ledger_pb2.LedgerHoldExpired)
    return registry


class _LegFields(TypedDict):
    type: str
    currency: str
    debit_account: str
    credit_account: str
    amount: int


def _leg_fields(leg: Leg) -> _LegFields:
    """A leg's fields, as the payloads of transfers and holds both carry them."""
    return {
        "type": leg.type.value,
        "currency": leg.currency.value,
        "debit_account": str(leg.debit),
        "credit_account": str(leg.credit),
        "amount": leg.amount,
    }


def to_payload(event: events.LedgerEvent) -> Message:
    match event:
        case events.TransferPosted():
            return ledger_pb2.LedgerTransferPosted(
                transfer_id=event.transfer_id,
                idempotency_key=event.idempotency_key,
                principal_id=event.principal_id,
                leg_index=event.leg_index,
                leg_count=event.leg_count,
                **_leg_fields(event.leg),
                memo=event.memo,
                metadata=dict(event.metadata),
                debit_balance_after=event.debit_balance_after,
                credit_balance_after=event.credit_balance_after,
            )
        case events.HoldPlaced():
            placed = ledger_pb2.LedgerHoldPlaced(
                hold_id=event.hold_id,
                idempotency_key=event.idempotency_key,
                principal_id=event.principal_id,
                **_leg_fields(event.leg),
                memo=event.memo,
                metadata=dict(event.metadata),
            )
            placed.expires_at.FromDatetime(event.expires_at)
            return placed
        case events.HoldCaptured():
            return ledger_pb2.LedgerHoldCaptured(
                hold_id=event.hold_id,
                transfer_id=event.transfer_id,
                captured_amount=event.captured_amount,
                released_amount=event.released_amount,
                currency=event.leg.currency.value,
                debit_account=str(event.leg.debit),
                credit_account=str(event.leg.credit),
                debit_balance_after=event.debit_balance_after,
                credit_balance_after=event.credit_balance_after,
            )
        case events.HoldVoided():
            return ledger_pb2.LedgerHoldVoided(hold_id=event.hold_id, released_amount=event.released_amount)
        case events.HoldExpired():
            return ledger_pb2.LedgerHoldExpired(hold_id=event.hold_id, released_amount=event.released_amount)
    raise TypeError(f"not a ledger event: {event!r}")
