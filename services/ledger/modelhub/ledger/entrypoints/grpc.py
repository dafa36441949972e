"""The gRPC servicer: protobuf in, command, protobuf out. Errors are DomainErrors (mapped by libs/core)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import grpc
import grpc.aio

from modelhub.common.v1 import pagination_pb2
from modelhub.core.errors import DomainError, FieldViolation, InvalidArgument
from modelhub.core.grpc.auth import require_principal
from modelhub.core.grpc.errors import status_code_for
from modelhub.core.grpc.registration import add_service
from modelhub.ledger.domain import commands
from modelhub.ledger.domain.commands import Actor, RawLeg
from modelhub.ledger.domain.model import Currency, Owner, OwnerKind, SystemAccount, TransferType
from modelhub.ledger.domain.results import BalanceView, PostingRecord, TransferRecord
from modelhub.ledger.domain.rules import HoldState, HoldStatus
from modelhub.ledger.handlers import Ledger
from modelhub.ledger.v1 import ledger_pb2, ledger_pb2_grpc

SERVICE_NAME = "modelhub.ledger.v1.LedgerService"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
_CURSOR_PREFIX = "p1:"

Context = grpc.aio.ServicerContext[Any, Any]

_CURRENCIES: Mapping[int, Currency] = {
    ledger_pb2.CURRENCY_YELLOW: Currency.YELLOW,
    ledger_pb2.CURRENCY_BLUE: Currency.BLUE,
}
_CURRENCY_PB = {v: k for k, v in _CURRENCIES.items()}
_SYSTEM: Mapping[int, SystemAccount] = {
    ledger_pb2.SYSTEM_ACCOUNT_MINT: SystemAccount.MINT,
    ledger_pb2.SYSTEM_ACCOUNT_PLATFORM_FEES: SystemAccount.PLATFORM_FEES,
    ledger_pb2.SYSTEM_ACCOUNT_BOUNTY_ESCROW: SystemAccount.BOUNTY_ESCROW,
    ledger_pb2.SYSTEM_ACCOUNT_GENERATION_ESCROW: SystemAccount.GENERATION_ESCROW,
}
_SYSTEM_PB = {v.value: k for k, v in _SYSTEM.items()}
_TYPES: Mapping[int, TransferType] = {
    ledger_pb2.TransferType.Value(f"TRANSFER_TYPE_{t.value}"): t for t in TransferType
}
_TYPE_PB = {v: k for k, v in _TYPES.items()}
_HOLD_STATUS_PB = {
    HoldStatus.PENDING: ledger_pb2.HOLD_STATUS_PENDING,
    HoldStatus.CAPTURED: ledger_pb2.HOLD_STATUS_CAPTURED,
    HoldStatus.VOIDED: ledger_pb2.HOLD_STATUS_VOIDED,
    HoldStatus.EXPIRED: ledger_pb2.HOLD_STATUS_EXPIRED,
}


def add_to_server(servicer: LedgerServicer, server: grpc.aio.Server) -> None:
    """Like the generated add_LedgerServiceServicer_to_server, but a request that does not parse (invalid
    UTF-8 in a string field) reaches the error mapping as INVALID_ARGUMENT instead of failing as UNKNOWN
    inside grpc."""
    add_service(servicer, server, ledger_pb2, "LedgerService")


def actor() -> Actor:
    principal = require_principal()
    return Actor(
        principal.id,
        is_service=principal.has_role("service"),
        may_read_all=principal.has_role("admin", "moderator"),
    )


# -- protobuf -> domain -------------------------------------------------------------------------------------


def owner_from_pb(owner: ledger_pb2.AccountOwner) -> Owner | None:
    which = owner.WhichOneof("owner")
    if which == "user_id":
        return Owner.user(owner.user_id)
    if which == "system":
        system = _SYSTEM.get(owner.system)
        return Owner.system(system) if system else Owner(OwnerKind.SYSTEM, "")
    return None


def raw_leg(leg: ledger_pb2.Leg) -> RawLeg:
    return RawLeg(
        type=_TYPES.get(leg.type),
        currency=_CURRENCIES.get(leg.currency),
        debit=owner_from_pb(leg.debit) if leg.HasField("debit") else None,
        credit=owner_from_pb(leg.credit) if leg.HasField("credit") else None,
        amount=leg.amount,
    )


def transfer_command(request: ledger_pb2.TransferRequest) -> commands.TransferCommand:
    return commands.transfer_command(
        request.idempotency_key, [raw_leg(leg) for leg in request.legs], request.memo, dict(request.metadata)
    )


def decode_cursor(cursor: str) -> int | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        return int(text.removeprefix(_CURSOR_PREFIX))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidArgument(
            "the page cursor is not one this service issued",
            violations=[FieldViolation("page.cursor", "use the next_cursor of a previous page")],
        ) from None


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode("ascii")


# -- domain -> protobuf -------------------------------------------------------------------------------------


def owner_pb(owner: Owner) -> ledger_pb2.AccountOwner:
    if owner.kind is OwnerKind.USER:
        return ledger_pb2.AccountOwner(user_id=owner.name)
    return ledger_pb2.AccountOwner(system=_SYSTEM_PB[owner.name])  # type: ignore[arg-type]


def _timestamp(message: Any, field: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, field).FromDatetime(value)


def transfer_pb(record: TransferRecord) -> ledger_pb2.Transfer:
    message = ledger_pb2.Transfer(
        id=record.id,
        idempotency_key=record.idempotency_key,
        principal_id=record.principal_id,
        leg_index=record.leg_index,
        type=_TYPE_PB[record.leg.type],  # type: ignore[arg-type]
        currency=_CURRENCY_PB[record.leg.currency],  # type: ignore[arg-type]
        debit=owner_pb(record.leg.debit),
        credit=owner_pb(record.leg.credit),
        amount=record.leg.amount,
        memo=record.memo,
        metadata=dict(record.metadata),
        hold_id=record.hold_id,
    )
    _timestamp(message, "created_at", record.created_at)
    return message


def hold_pb(hold: HoldState) -> ledger_pb2.Hold:
    message = ledger_pb2.Hold(
        id=hold.id,
        idempotency_key=hold.key,
        principal_id=hold.principal_id,
        type=_TYPE_PB[hold.leg.type],  # type: ignore[arg-type]
        currency=_CURRENCY_PB[hold.leg.currency],  # type: ignore[arg-type]
        debit=owner_pb(hold.leg.debit),
        credit=owner_pb(hold.leg.credit),
        amount=hold.leg.amount,
        memo=hold.memo,
        metadata=dict(hold.metadata),
        status=_HOLD_STATUS_PB[hold.status],
        captured_amount=hold.captured_amount,
        capture_transfer_id=hold.capture_transfer_id,
    )
    _timestamp(message, "created_at", hold.created_at)
    _timestamp(message, "expires_at", hold.expires_at)
    _timestamp(message, "resolved_at", hold.resolved_at)
    return message


def failure_pb(error: DomainError) -> ledger_pb2.Failure:
    return ledger_pb2.Failure(
        code=status_code_for(error).name, reason=error.reason, message=error.message, metadata=error.metadata
    )


def balance_pb(view: BalanceView) -> ledger_pb2.Balance:
    return ledger_pb2.Balance(
        owner=owner_pb(view.key.owner),
        currency=_CURRENCY_PB[view.key.currency],  # type: ignore[arg-type]
        posted=view.posted,
        pending=view.pending,
        available=view.available,
    )


def posting_pb(posting: PostingRecord) -> ledger_pb2.Posting:
    return ledger_pb2.Posting(
        amount=posting.amount, balance_after=posting.balance_after, transfer=transfer_pb(posting.transfer)
    )


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    """modelhub.ledger.v1.LedgerService over the Ledger use cases."""

    def __init__(self, ledger: Ledger, *, tip_fee_basis_points: int = 0) -> None:
        self.ledger = ledger
        self.tip_fee_basis_points = tip_fee_basis_points

    async def Transfer(  # noqa: N802 - generated name
        self, request: ledger_pb2.TransferRequest, context: Context
    ) -> ledger_pb2.TransferResponse:
        records = await self.ledger.transfer(actor(), transfer_command(request))
        return ledger_pb2.TransferResponse(transfers=[transfer_pb(r) for r in records])

    async def Tip(self, request: ledger_pb2.TipRequest, context: Context) -> ledger_pb2.TipResponse:  # noqa: N802
        command = commands.tip_command(
            request.idempotency_key,
            request.from_user_id,
            request.to_user_id,
            request.amount,
            self.tip_fee_basis_points,
            request.memo,
            dict(request.metadata),
        )
        records = await self.ledger.transfer(actor(), command)
        return ledger_pb2.TipResponse(transfers=[transfer_pb(r) for r in records])

    async def PayForGeneration(  # noqa: N802
        self, request: ledger_pb2.PayForGenerationRequest, context: Context
    ) -> ledger_pb2.PayForGenerationResponse:
        command = commands.pay_for_generation_command(
            request.idempotency_key, request.user_id, request.amount, request.memo, dict(request.metadata)
        )
        records = await self.ledger.pay_for_generation(actor(), command)
        blue = sum(r.leg.amount for r in records if r.leg.currency is Currency.BLUE)
        yellow = sum(r.leg.amount for r in records if r.leg.currency is Currency.YELLOW)
        return ledger_pb2.PayForGenerationResponse(
            transfers=[transfer_pb(r) for r in records], blue_amount=blue, yellow_amount=yellow
        )

    async def BatchTransfer(  # noqa: N802
        self, request: ledger_pb2.BatchTransferRequest, context: Context
    ) -> ledger_pb2.BatchTransferResponse:
        who = actor()
        commands.check_batch_size(len(request.transfers))
        items: list[commands.TransferCommand | DomainError] = []
        for item in request.transfers:
            try:
                items.append(transfer_command(item))
            except DomainError as error:
                items.append(error)
        results = await self.ledger.batch(who, items)
        return ledger_pb2.BatchTransferResponse(
            results=[
                ledger_pb2.BatchTransferResult(failure=failure_pb(r))
                if isinstance(r, DomainError)
                else ledger_pb2.BatchTransferResult(transfers=[transfer_pb(t) for t in r])
                for r in results
            ]
        )

    async def PlaceHold(  # noqa: N802
        self, request: ledger_pb2.PlaceHoldRequest, context: Context
    ) -> ledger_pb2.PlaceHoldResponse:
        command = commands.place_hold_command(
            request.idempotency_key,
            RawLeg(
                type=_TYPES.get(request.type),
                currency=_CURRENCIES.get(request.currency),
                debit=owner_from_pb(request.debit) if request.HasField("debit") else None,
                credit=owner_from_pb(request.credit) if request.HasField("credit") else None,
                amount=request.amount,
            ),
            request.timeout.ToTimedelta(),
            request.memo,
            dict(request.metadata),
        )
        hold = await self.ledger.place_hold(actor(), command)
        return ledger_pb2.PlaceHoldResponse(hold=hold_pb(hold))

    async def CaptureHold(  # noqa: N802
        self, request: ledger_pb2.CaptureHoldRequest, context: Context
    ) -> ledger_pb2.CaptureHoldResponse:
        command = commands.capture_hold_command(request.idempotency_key, request.hold_id, request.amount)
        result = await self.ledger.capture_hold(actor(), command)
        return ledger_pb2.CaptureHoldResponse(
            hold=hold_pb(result.hold), transfer=transfer_pb(result.transfer), released_amount=result.released
        )

    async def VoidHold(  # noqa: N802
        self, request: ledger_pb2.VoidHoldRequest, context: Context
    ) -> ledger_pb2.VoidHoldResponse:
        command = commands.void_hold_command(request.idempotency_key, request.hold_id)
        result = await self.ledger.void_hold(actor(), command)
        return ledger_pb2.VoidHoldResponse(hold=hold_pb(result.hold), released_amount=result.released)

    async def GetHold(self, request: ledger_pb2.GetHoldRequest, context: Context) -> ledger_pb2.GetHoldResponse:  # noqa: N802
        who = actor()
        commands.check_hold_id(request.hold_id)
        return ledger_pb2.GetHoldResponse(hold=hold_pb(await self.ledger.get_hold(who, request.hold_id)))

    async def GetBalance(  # noqa: N802
        self, request: ledger_pb2.GetBalanceRequest, context: Context
    ) -> ledger_pb2.GetBalanceResponse:
        who = actor()
        owner, currency = commands.check_owner(
            "owner",
            owner_from_pb(request.owner) if request.HasField("owner") else None,
            _CURRENCIES.get(request.currency),
        )
        view = await self.ledger.balance(who, owner, currency)
        return ledger_pb2.GetBalanceResponse(balance=balance_pb(view))

    async def ListPostings(  # noqa: N802
        self, request: ledger_pb2.ListPostingsRequest, context: Context
    ) -> ledger_pb2.ListPostingsResponse:
        who = actor()
        owner, currency = commands.check_owner(
            "owner",
            owner_from_pb(request.owner) if request.HasField("owner") else None,
            _CURRENCIES.get(request.currency),
        )
        before = decode_cursor(request.page.cursor)
        size = min(request.page.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        postings, next_before = await self.ledger.postings(who, owner, currency, before, size)
        return ledger_pb2.ListPostingsResponse(
            postings=[posting_pb(p) for p in postings],
            page_info=pagination_pb2.PageInfo(next_cursor=encode_cursor(next_before) if next_before else ""),
        )

    async def GetTransferByKey(  # noqa: N802
        self, request: ledger_pb2.GetTransferByKeyRequest, context: Context
    ) -> ledger_pb2.GetTransferByKeyResponse:
        who = actor()
        commands.check_key(request.idempotency_key)
        outcome = await self.ledger.outcome(who, request.idempotency_key, request.principal_id)
        response = ledger_pb2.GetTransferByKeyResponse(
            operation=outcome.operation, transfers=[transfer_pb(t) for t in outcome.transfers]
        )
        if outcome.hold is not None:
            response.hold.CopyFrom(hold_pb(outcome.hold))
        if outcome.failure is not None:
            response.failure.CopyFrom(failure_pb(outcome.failure))
        return response
