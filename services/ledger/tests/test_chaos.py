"""kill -9 of the service under load: nothing applied twice, nothing half-applied, every event published."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import grpc.aio
import pytest
from sqlalchemy import text

from modelhub.core.db import create_engine
from modelhub.core.grpc.errors import error_details
from modelhub.core.nats import connect, events_stream_name
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.ports import free_port
from modelhub.ledger.audit import run_audit
from modelhub.ledger.v1 import ledger_pb2 as pb
from modelhub.ledger.v1.ledger_pb2_grpc import LedgerServiceStub

from .conftest import SECRET, auth

REQUESTS = 400
FUNDS = 100_000


@asynccontextmanager
async def service(database_url: str, nats_url: str, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    env = os.environ | {
        "MODELHUB_LEDGER_DATABASE_URL": database_url,
        "MODELHUB_LEDGER_NATS_URL": nats_url,
        "MODELHUB_LEDGER_GRPC_PORT": str(port),
        "MODELHUB_LEDGER_JWT_SECRET": SECRET,
        "MODELHUB_LEDGER_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelhub.ledger", env=env)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


def spend(key: str, amount: int) -> pb.TransferRequest:
    return pb.TransferRequest(
        idempotency_key=key,
        legs=[
            pb.Leg(
                type=pb.TRANSFER_TYPE_TIP,
                currency=pb.CURRENCY_YELLOW,
                debit=pb.AccountOwner(user_id="alice"),
                credit=pb.AccountOwner(user_id="bob"),
                amount=amount,
            )
        ],
    )


async def send(stub: LedgerServiceStub, key: str, amount: int) -> tuple[str, object]:
    """("ok", transfer ids), ("error", reason) for a definitive answer, ("lost", code) when the server died."""
    try:
        response = await stub.Transfer(spend(key, amount), metadata=auth("alice"), timeout=10)
    except grpc.aio.AioRpcError as error:
        details = error_details(error)
        if details.reason is None:
            return "lost", details.code.name
        return "error", details.reason
    return "ok", tuple(t.id for t in response.transfers)


@pytest.mark.chaos
async def test_kill_9_under_load(migrated_url: str, nats_server: NatsServer) -> None:
    port = free_port()
    amounts = {f"k{i}": random.randint(1, 500) for i in range(REQUESTS)}
    first: dict[str, tuple[str, object]] = {}
    async with (
        service(migrated_url, nats_server.url, port) as process,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = LedgerServiceStub(channel)
        fund = pb.TransferRequest(
            idempotency_key="fund",
            legs=[
                pb.Leg(
                    type=pb.TRANSFER_TYPE_PURCHASE,
                    currency=pb.CURRENCY_YELLOW,
                    debit=pb.AccountOwner(system=pb.SYSTEM_ACCOUNT_MINT),
                    credit=pb.AccountOwner(user_id="alice"),
                    amount=FUNDS,
                )
            ],
        )
        await stub.Transfer(fund, metadata=auth("payments", "service"))
        queue = list(amounts.items())

        async def worker() -> None:
            while queue:
                key, amount = queue.pop()
                first[key] = await send(stub, key, amount)

        async def killer() -> None:
            while len(first) < REQUESTS // 4:
                await asyncio.sleep(0.005)
            process.kill()  # SIGKILL: no shutdown, transactions in flight are cut off

        await asyncio.gather(killer(), *(worker() for _ in range(24)))
        await process.wait()
    assert any(kind == "lost" for kind, _ in first.values()), "the kill came too late to cut anything off"
    assert any(kind == "ok" for kind, _ in first.values())

    # Restart and retry every request with the same key until it has a definitive answer.
    final: dict[str, tuple[str, object]] = {}
    async with service(migrated_url, nats_server.url, port):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = LedgerServiceStub(channel)
            for key, amount in amounts.items():
                final[key] = await send(stub, key, amount)
                assert final[key][0] != "lost"
                if first[key][0] != "lost":
                    assert final[key] == first[key], key  # an answered request answers the same again

        engine = create_engine(migrated_url, pool_size=1, max_overflow=0)
        try:
            assert await run_audit(engine) == []
            paid = sum(amounts[k] for k, (kind, _) in final.items() if kind == "ok")
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT count(*), coalesce(sum(amount), 0) FROM transfers WHERE idempotency_key LIKE 'k%'")
                )
                applied, total = rows.one()
                events = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
            assert (applied, total) == (sum(1 for kind, _ in final.values() if kind == "ok"), paid)
            # Every committed event reaches JetStream exactly once (the relay restarts from its checkpoint).
            nc = await connect(nats_server.url, "chaos-test")
            try:
                js = nc.jetstream()
                for _ in range(200):
                    published = (await js.stream_info(events_stream_name("ledger"))).state.messages
                    if published >= events:
                        break
                    await asyncio.sleep(0.05)
                assert published == events
            finally:
                await nc.close()
        finally:
            await engine.dispose()
