"""Events: appended in the posting's transaction, published to JetStream by the outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

import grpc.aio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.events.relay import OutboxRelay
from modelhub.core.nats import connect, events_stream_name, events_subject
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.ports import free_port
from modelhub.events.v1 import envelope_pb2
from modelhub.events.v1 import ledger_pb2 as events_pb
from modelhub.ledger.adapters.events import make_registry
from modelhub.ledger.domain import commands
from modelhub.ledger.domain.commands import Actor
from modelhub.ledger.domain.model import Owner, SystemAccount, TransferType
from modelhub.ledger.handlers import Ledger
from modelhub.ledger.v1 import ledger_pb2 as pb
from modelhub.ledger.v1.ledger_pb2_grpc import LedgerServiceStub

from .conftest import SECRET, FakeClock, auth
from .helpers import SERVICE, fund, leg, transfer, user

ESCROW = Owner.system(SystemAccount.GENERATION_ESCROW)


async def event_types(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT event_type FROM events ORDER BY position"))).scalars())


async def test_every_change_appends_its_event(ledger: Ledger, engine: AsyncEngine, clock: FakeClock) -> None:
    await fund(ledger, "alice", 100)
    alice = Actor("alice")
    await ledger.transfer(
        alice,
        transfer(
            "tip",
            leg(user("alice"), user("bob"), 9),
            leg(user("alice"), Owner.system(SystemAccount.PLATFORM_FEES), 1, TransferType.FEE),
        ),
    )
    holds = [
        await ledger.place_hold(
            alice,
            commands.place_hold_command(
                f"h{i}", leg(user("alice"), ESCROW, 10, TransferType.GENERATION), timedelta(seconds=5)
            ),
        )
        for i in range(3)
    ]
    await ledger.capture_hold(SERVICE, commands.capture_hold_command("c", holds[0].id, 4))
    await ledger.void_hold(SERVICE, commands.void_hold_command("v", holds[1].id))
    clock.advance(seconds=5)
    await ledger.expire_due_holds()
    assert await event_types(engine) == [
        "ledger.TransferPosted",
        "ledger.TransferPosted",
        "ledger.TransferPosted",
        "ledger.HoldPlaced",
        "ledger.HoldPlaced",
        "ledger.HoldPlaced",
        "ledger.HoldCaptured",
        "ledger.HoldVoided",
        "ledger.HoldExpired",
    ]


async def test_relay_publishes_ledger_events_to_jetstream(
    ledger: Ledger, engine: AsyncEngine, nats_url: str, unique_name: str
) -> None:
    producer = unique_name.lower()
    await fund(ledger, "alice", 100)
    await ledger.transfer(Actor("alice"), transfer("tip", leg(user("alice"), user("bob"), 30), memo="hi"))
    nc = await connect(nats_url, "ledger-test")
    try:
        relay = OutboxRelay(engine, ledger.store, nc, producer)
        await relay.setup()
        assert await relay.publish_once() == 2
        js = nc.jetstream()
        sub = await js.pull_subscribe(events_subject(producer), stream=events_stream_name(producer))
        messages = await sub.fetch(2, timeout=5)
        registry = make_registry()
        payloads = []
        for message in messages:
            envelope = envelope_pb2.EventEnvelope.FromString(message.data)
            assert envelope.event_type == "ledger.TransferPosted"
            payloads.append(registry.decode(envelope.event_type, envelope.schema_version, envelope.payload))
            await message.ack()
        tip = payloads[1]
        assert isinstance(tip, events_pb.LedgerTransferPosted)
        assert (tip.debit_account, tip.credit_account, tip.amount, tip.memo, tip.type, tip.currency) == (
            "user:alice",
            "user:bob",
            30,
            "hi",
            "TIP",
            "yellow",
        )
        assert (tip.debit_balance_after, tip.credit_balance_after) == (70, 30)
    finally:
        await nc.close()


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("workers", [1, 2])
async def test_the_service_process_serves_and_publishes(
    migrated_url: str, nats_server: NatsServer, workers: int
) -> None:
    """`python -m modelhub.ledger` end to end: migrations, gRPC, the relay inside the process, SIGTERM; with
    2 workers, the parent starts two server processes on the port and stops them on SIGTERM."""
    port = free_port()
    env = os.environ | {
        "MODELHUB_LEDGER_DATABASE_URL": migrated_url,
        "MODELHUB_LEDGER_NATS_URL": nats_server.url,
        "MODELHUB_LEDGER_GRPC_PORT": str(port),
        "MODELHUB_LEDGER_JWT_SECRET": SECRET,
        "MODELHUB_LEDGER_WORKERS": str(workers),
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelhub.ledger", env=env)
    worker_pids: list[int] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            stub = LedgerServiceStub(channel)
            await stub.Transfer(
                pb.TransferRequest(
                    idempotency_key="mint-1",
                    legs=[
                        pb.Leg(
                            type=pb.TRANSFER_TYPE_PURCHASE,
                            currency=pb.CURRENCY_YELLOW,
                            debit=pb.AccountOwner(system=pb.SYSTEM_ACCOUNT_MINT),
                            credit=pb.AccountOwner(user_id="alice"),
                            amount=42,
                        )
                    ],
                ),
                metadata=auth("payments", "service"),
            )
        nc = await connect(nats_server.url, "ledger-test")
        try:
            js = nc.jetstream()
            for _ in range(100):  # the stream appears when the relay starts
                try:
                    sub = await js.pull_subscribe(events_subject("ledger"), stream=events_stream_name("ledger"))
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            [message] = await sub.fetch(1, timeout=10)
            envelope = envelope_pb2.EventEnvelope.FromString(message.data)
            assert (envelope.event_type, envelope.producer) == ("ledger.TransferPosted", "ledger")
        finally:
            await nc.close()
        if workers > 1 and sys.platform.startswith("linux"):
            worker_pids = children(process.pid)
            assert len(worker_pids) == workers
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        for pid in worker_pids:  # every worker has exited (and been reaped) before the parent
            assert not Path(f"/proc/{pid}").exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in worker_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
