"""The gRPC API end to end: a real grpc.aio server on a free port, real tokens, real PostgreSQL."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.duration_pb2 import Duration
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.common.v1 import pagination_pb2
from modelhub.core.grpc.errors import error_details
from modelhub.core.grpc.server import GrpcServer
from modelhub.ledger.audit import run_audit
from modelhub.ledger.v1 import ledger_pb2 as pb
from modelhub.ledger.v1.ledger_pb2_grpc import LedgerServiceStub

from .conftest import auth
from .helpers import count

SERVICE = auth("payments", "service")
ALICE = auth("alice")
MINT = pb.AccountOwner(system=pb.SYSTEM_ACCOUNT_MINT)
FEES = pb.AccountOwner(system=pb.SYSTEM_ACCOUNT_PLATFORM_FEES)
ESCROW = pb.AccountOwner(system=pb.SYSTEM_ACCOUNT_GENERATION_ESCROW)
YELLOW, BLUE = pb.CURRENCY_YELLOW, pb.CURRENCY_BLUE


def user(name: str) -> pb.AccountOwner:
    return pb.AccountOwner(user_id=name)


def leg(
    debit: pb.AccountOwner,
    credit: pb.AccountOwner,
    amount: int,
    type_: int = pb.TRANSFER_TYPE_TIP,
    currency: int = YELLOW,
) -> pb.Leg:
    return pb.Leg(type=type_, currency=currency, debit=debit, credit=credit, amount=amount)  # type: ignore[arg-type]


async def fund(stub: LedgerServiceStub, name: str, amount: int, currency: int = YELLOW) -> None:
    await stub.Transfer(
        pb.TransferRequest(
            idempotency_key=f"fund-{name}-{currency}-{amount}",
            legs=[leg(MINT, user(name), amount, pb.TRANSFER_TYPE_PURCHASE, currency)],
        ),
        metadata=SERVICE,
    )


async def balance(stub: LedgerServiceStub, owner: pb.AccountOwner, currency: int = YELLOW) -> pb.Balance:
    response = await stub.GetBalance(pb.GetBalanceRequest(owner=owner, currency=currency), metadata=SERVICE)  # type: ignore[arg-type]
    return response.balance


async def expect_error(call: Any, code: grpc.StatusCode, reason: str | None = None) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    details = error_details(error.value)
    assert details.code == code, details
    if reason is not None:
        assert details.reason == reason, details
    return details


async def test_tip_with_fee_balances_history_and_lookup(stub: LedgerServiceStub, engine: AsyncEngine) -> None:
    await fund(stub, "alice", 1_000)
    tip = await stub.Tip(
        pb.TipRequest(idempotency_key="tip-1", from_user_id="alice", to_user_id="bob", amount=200, memo="great LoRA"),
        metadata=ALICE,
    )
    assert [(t.type, t.amount, t.credit.WhichOneof("owner")) for t in tip.transfers] == [
        (pb.TRANSFER_TYPE_TIP, 190, "user_id"),
        (pb.TRANSFER_TYPE_FEE, 10, "system"),
    ]
    assert (await balance(stub, user("bob"))).posted == 190
    assert (await balance(stub, FEES)).posted == 10
    mine = await stub.GetBalance(pb.GetBalanceRequest(owner=user("alice"), currency=YELLOW), metadata=ALICE)
    assert (mine.balance.posted, mine.balance.available) == (800, 800)
    # A retry returns the same transfers.
    again = await stub.Tip(
        pb.TipRequest(idempotency_key="tip-1", from_user_id="alice", to_user_id="bob", amount=200, memo="great LoRA"),
        metadata=ALICE,
    )
    assert again == tip
    for i in range(4):
        await stub.Transfer(
            pb.TransferRequest(idempotency_key=f"t{i}", legs=[leg(user("alice"), user("carol"), i + 1)]), metadata=ALICE
        )
    amounts, cursor = [], ""
    while True:
        page = await stub.ListPostings(
            pb.ListPostingsRequest(
                owner=user("alice"), currency=YELLOW, page=pagination_pb2.PageRequest(page_size=2, cursor=cursor)
            ),
            metadata=ALICE,
        )
        amounts += [p.amount for p in page.postings]
        cursor = page.page_info.next_cursor
        if not cursor:
            break
    assert amounts == [-4, -3, -2, -1, -10, -190, 1_000]
    found = await stub.GetTransferByKey(pb.GetTransferByKeyRequest(idempotency_key="tip-1"), metadata=ALICE)
    assert found.operation == "tip" and list(found.transfers) == list(tip.transfers)
    await expect_error(
        stub.GetTransferByKey(pb.GetTransferByKeyRequest(idempotency_key="nope"), metadata=ALICE),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        stub.ListPostings(
            pb.ListPostingsRequest(
                owner=user("alice"), currency=YELLOW, page=pagination_pb2.PageRequest(cursor="garbage!")
            ),
            metadata=ALICE,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert await run_audit(engine) == []


async def test_idempotency_errors_through_grpc(stub: LedgerServiceStub) -> None:
    request = pb.TransferRequest(idempotency_key="k", legs=[leg(user("alice"), user("bob"), 5)])
    await expect_error(
        stub.Transfer(request, metadata=ALICE), grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS"
    )
    await fund(stub, "alice", 100)
    # A failed key stays failed, even now that alice could pay.
    await expect_error(
        stub.Transfer(request, metadata=ALICE), grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS"
    )
    changed = pb.TransferRequest(idempotency_key="k", legs=[leg(user("alice"), user("bob"), 6)])
    await expect_error(stub.Transfer(changed, metadata=ALICE), grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    found = await stub.GetTransferByKey(pb.GetTransferByKeyRequest(idempotency_key="k"), metadata=ALICE)
    assert (found.failure.code, found.failure.reason) == ("FAILED_PRECONDITION", "INSUFFICIENT_FUNDS")


async def test_generation_payment_and_holds(stub: LedgerServiceStub, engine: AsyncEngine) -> None:
    await fund(stub, "alice", 30, BLUE)
    await fund(stub, "alice", 100)
    paid = await stub.PayForGeneration(
        pb.PayForGenerationRequest(idempotency_key="g1", user_id="alice", amount=50), metadata=ALICE
    )
    assert (paid.blue_amount, paid.yellow_amount) == (30, 20)
    hold = (
        await stub.PlaceHold(
            pb.PlaceHoldRequest(
                idempotency_key="h1",
                type=pb.TRANSFER_TYPE_GENERATION,
                currency=YELLOW,
                debit=user("alice"),
                credit=ESCROW,
                amount=40,
                timeout=Duration(seconds=300),
            ),
            metadata=ALICE,
        )
    ).hold
    assert hold.status == pb.HOLD_STATUS_PENDING
    assert (await balance(stub, user("alice"))).available == 40
    await expect_error(
        stub.CaptureHold(pb.CaptureHoldRequest(idempotency_key="c1", hold_id=hold.id), metadata=ALICE),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    captured = await stub.CaptureHold(
        pb.CaptureHoldRequest(idempotency_key="c1", hold_id=hold.id, amount=15), metadata=SERVICE
    )
    assert (captured.hold.status, captured.released_amount, captured.transfer.amount) == (
        pb.HOLD_STATUS_CAPTURED,
        25,
        15,
    )
    await expect_error(
        stub.VoidHold(pb.VoidHoldRequest(idempotency_key="v1", hold_id=hold.id), metadata=SERVICE),
        grpc.StatusCode.FAILED_PRECONDITION,
        "HOLD_ALREADY_RESOLVED",
    )
    found = await stub.GetTransferByKey(pb.GetTransferByKeyRequest(idempotency_key="c1"), metadata=SERVICE)
    assert (found.operation, found.hold.id, found.transfers[0].id) == ("capture", hold.id, captured.transfer.id)
    found = await stub.GetTransferByKey(pb.GetTransferByKeyRequest(idempotency_key="h1"), metadata=ALICE)
    assert (found.operation, found.hold.status, len(found.transfers)) == ("hold", pb.HOLD_STATUS_CAPTURED, 0)
    fetched = await stub.GetHold(pb.GetHoldRequest(hold_id=hold.id), metadata=ALICE)
    assert fetched.hold.captured_amount == 15 and fetched.hold.capture_transfer_id == captured.transfer.id
    assert (await balance(stub, user("alice"))).posted == 65
    assert await run_audit(engine) == []


async def test_batch_transfer(stub: LedgerServiceStub) -> None:
    await fund(stub, "alice", 10)
    response = await stub.BatchTransfer(
        pb.BatchTransferRequest(
            transfers=[
                pb.TransferRequest(idempotency_key="b1", legs=[leg(user("alice"), user("bob"), 7)]),
                pb.TransferRequest(idempotency_key="b2", legs=[leg(user("alice"), user("bob"), 7)]),
                pb.TransferRequest(idempotency_key="b3", legs=[leg(user("alice"), user("bob"), 0)]),
                pb.TransferRequest(idempotency_key="b4", legs=[leg(user("bob"), user("alice"), 1)]),
                pb.TransferRequest(idempotency_key="b5", legs=[leg(user("alice"), user("bob"), 3)]),
            ]
        ),
        metadata=ALICE,
    )
    assert [r.failure.code or "OK" for r in response.results] == [
        "OK",
        "FAILED_PRECONDITION",
        "INVALID_ARGUMENT",
        "PERMISSION_DENIED",
        "OK",
    ]
    assert response.results[1].failure.reason == "INSUFFICIENT_FUNDS"
    assert (await balance(stub, user("alice"))).posted == 0
    await expect_error(stub.BatchTransfer(pb.BatchTransferRequest(), metadata=ALICE), grpc.StatusCode.INVALID_ARGUMENT)


BAD_TRANSFERS: dict[str, pb.TransferRequest] = {
    "zero amount": pb.TransferRequest(idempotency_key="k", legs=[leg(user("alice"), user("bob"), 0)]),
    "negative amount": pb.TransferRequest(idempotency_key="k", legs=[leg(user("alice"), user("bob"), -5)]),
    "overflowing legs": pb.TransferRequest(
        idempotency_key="k",
        legs=[leg(user("alice"), user("bob"), 2**63 - 1), leg(user("alice"), FEES, 1, pb.TRANSFER_TYPE_FEE)],
    ),
    "no legs": pb.TransferRequest(idempotency_key="k"),
    "missing debit": pb.TransferRequest(
        idempotency_key="k", legs=[pb.Leg(type=pb.TRANSFER_TYPE_TIP, currency=YELLOW, credit=user("bob"), amount=1)]
    ),
    "empty user id": pb.TransferRequest(idempotency_key="k", legs=[leg(user("alice"), user(""), 1)]),
    "unknown system account": pb.TransferRequest(
        idempotency_key="k",
        legs=[leg(user("alice"), pb.AccountOwner(system=99), 1)],  # type: ignore[arg-type]
    ),
    "unspecified system account": pb.TransferRequest(
        idempotency_key="k", legs=[leg(user("alice"), pb.AccountOwner(system=pb.SYSTEM_ACCOUNT_UNSPECIFIED), 1)]
    ),
    "unspecified currency": pb.TransferRequest(
        idempotency_key="k", legs=[leg(user("alice"), user("bob"), 1, currency=0)]
    ),
    "unknown type": pb.TransferRequest(idempotency_key="k", legs=[leg(user("alice"), user("bob"), 1, type_=77)]),
    "blue tip": pb.TransferRequest(idempotency_key="k", legs=[leg(user("alice"), user("bob"), 1, currency=BLUE)]),
    "self transfer": pb.TransferRequest(idempotency_key="k", legs=[leg(user("alice"), user("alice"), 1)]),
    "empty key": pb.TransferRequest(idempotency_key="", legs=[leg(user("alice"), user("bob"), 1)]),
    "overlong key": pb.TransferRequest(idempotency_key="k" * 129, legs=[leg(user("alice"), user("bob"), 1)]),
    "overlong memo": pb.TransferRequest(idempotency_key="k", legs=[leg(user("alice"), user("bob"), 1)], memo="m" * 501),
    "NUL in memo": pb.TransferRequest(idempotency_key="k", legs=[leg(user("alice"), user("bob"), 1)], memo="a\x00b"),
    "too much metadata": pb.TransferRequest(
        idempotency_key="k", legs=[leg(user("alice"), user("bob"), 1)], metadata={str(i): "v" for i in range(40)}
    ),
}


@pytest.mark.parametrize("name", list(BAD_TRANSFERS))
async def test_bad_input_is_invalid_argument_and_writes_nothing(
    stub: LedgerServiceStub, engine: AsyncEngine, name: str
) -> None:
    details = await expect_error(
        stub.Transfer(BAD_TRANSFERS[name], metadata=ALICE), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"
    )
    assert details.violations, details
    for table in ("accounts", "requests", "transfers", "postings", "events"):
        assert await count(engine, table) == 0


async def test_other_bad_inputs(stub: LedgerServiceStub, engine: AsyncEngine) -> None:
    bad_calls = [
        stub.Tip(pb.TipRequest(idempotency_key="k", from_user_id="alice", to_user_id="bob", amount=0), metadata=ALICE),
        stub.PayForGeneration(
            pb.PayForGenerationRequest(idempotency_key="k", user_id="alice", amount=-1), metadata=ALICE
        ),
        stub.PlaceHold(
            pb.PlaceHoldRequest(
                idempotency_key="k",
                type=pb.TRANSFER_TYPE_GENERATION,
                currency=YELLOW,
                debit=user("alice"),
                credit=ESCROW,
                amount=5,
            ),  # no timeout
            metadata=ALICE,
        ),
        stub.CaptureHold(pb.CaptureHoldRequest(idempotency_key="k", hold_id="not-a-uuid"), metadata=SERVICE),
        stub.VoidHold(
            pb.VoidHoldRequest(idempotency_key="", hold_id="00000000-0000-7000-8000-000000000000"), metadata=SERVICE
        ),
        stub.GetBalance(pb.GetBalanceRequest(owner=user("alice")), metadata=ALICE),
        stub.GetHold(pb.GetHoldRequest(hold_id="x"), metadata=ALICE),
    ]
    for call in bad_calls:
        await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT)
    for table in ("accounts", "requests", "transfers", "postings", "holds", "events"):
        assert await count(engine, table) == 0


async def test_invalid_utf8_is_invalid_argument(server: GrpcServer, engine: AsyncEngine) -> None:
    good = pb.TransferRequest(
        idempotency_key="k", legs=[leg(user("alice"), user("bob"), 1)], memo="MEMO"
    ).SerializeToString()
    corrupted = good.replace(b"MEMO", b"M\xffMO")
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = channel.unary_unary("/modelhub.ledger.v1.LedgerService/Transfer")
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(corrupted, metadata=ALICE)
    details = error_details(error.value)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"), details
    assert await count(engine, "requests") == 0


async def test_authorization(stub: LedgerServiceStub, engine: AsyncEngine) -> None:
    await fund(stub, "bob", 100)
    denied = [
        stub.Transfer(
            pb.TransferRequest(idempotency_key="k1", legs=[leg(user("bob"), user("alice"), 5)]), metadata=ALICE
        ),
        stub.Transfer(
            pb.TransferRequest(idempotency_key="k2", legs=[leg(MINT, user("alice"), 5, pb.TRANSFER_TYPE_REWARD)]),
            metadata=ALICE,
        ),
        stub.Transfer(
            pb.TransferRequest(
                idempotency_key="k3", legs=[leg(user("alice"), user("bob"), 5, pb.TRANSFER_TYPE_REFUND)]
            ),
            metadata=auth("alice", "admin"),
        ),
        stub.Tip(pb.TipRequest(idempotency_key="k4", from_user_id="bob", to_user_id="alice", amount=5), metadata=ALICE),
        stub.PayForGeneration(
            pb.PayForGenerationRequest(idempotency_key="k5", user_id="bob", amount=5), metadata=ALICE
        ),
        stub.GetBalance(pb.GetBalanceRequest(owner=user("bob"), currency=YELLOW), metadata=ALICE),
        stub.GetTransferByKey(pb.GetTransferByKeyRequest(idempotency_key="x", principal_id="bob"), metadata=ALICE),
    ]
    for call in denied:
        await expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(
        stub.GetBalance(pb.GetBalanceRequest(owner=user("alice"), currency=YELLOW)), grpc.StatusCode.UNAUTHENTICATED
    )
    # Moderators and admins may read any account.
    seen = await stub.GetBalance(
        pb.GetBalanceRequest(owner=user("bob"), currency=YELLOW), metadata=auth("m", "moderator")
    )
    assert seen.balance.posted == 100
    assert (await balance(stub, user("bob"))).posted == 100
    # A service may tip on a user's behalf.
    await stub.Tip(
        pb.TipRequest(idempotency_key="k6", from_user_id="bob", to_user_id="alice", amount=20), metadata=SERVICE
    )
    assert (await balance(stub, user("alice"))).posted == 19
